"""System nodes: what facegraph holds in memory, and letting go of it."""
from __future__ import annotations

from ..models.cache import default_cache, format_bytes
from ..models.loader import WRAPPERS
from ..models.registry import registry
from .types import CATEGORY, STRING, widget

ALL = "all"


def unload_choices() -> list[str]:
    """The Unload Models choices: "all", then every model id this version can load (sorted). Fixed at
    startup, since ComfyUI checks a combo's value against the list it read then."""
    return [ALL] + sorted(s.id for s in registry() if s.family in WRAPPERS)


def unload_models(model: str = ALL) -> str:
    """Unload facegraph's cached models (every one, or every device / precision of one model id) and return
    a line per model for people. Inside ComfyUI they also leave its memory manager (plugin/comfyui/memory.py);
    freed GPU memory goes back to the driver (ModelCache.unload)."""
    cache = default_cache()
    target = None if (model or ALL) == ALL else model
    before = cache.sizes()
    gone = [(k, n) for k, n in before.items() if target is None or k.model_id == target]
    cache.unload(target)
    if not gone:
        what = "no facegraph models" if target is None else f"{target} was not"
        return f"{what} loaded: nothing to unload"
    lines = [f"unloaded {len(gone)} model{'s' if len(gone) != 1 else ''} ({format_bytes(sum(n for _, n in gone))}):"]
    lines += [f"  {k.model_id} on {k.device} ({format_bytes(n)})" for k, n in gone]
    kept = cache.sizes()
    if kept:
        lines.append(f"still loaded: {', '.join(sorted({k.model_id for k in kept}))} "
                     f"({format_bytes(sum(kept.values()))})")
    return "\n".join(lines)


class UnloadModels:
    DESCRIPTION = (
        "Unload facegraph's models from memory: every one (all) or one model id, on every device it was loaded "
        "on. The next node that needs a model loads it again from disk. Inside ComfyUI facegraph's torch models "
        "are also under ComfyUI's own memory manager (it offloads them like its own when it needs the room); "
        "this node frees them outright, GPU and RAM, and returns freed GPU memory to the driver. It does not "
        "touch ComfyUI's own models. Runs every time it is queued. FACEGRAPH_MODEL_MEMORY (e.g. 2G) bounds "
        "what facegraph keeps loaded at any time, least recently used unloaded first.")
    CATEGORY = f"{CATEGORY}/models"
    FUNCTION = "unload"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("unloaded",)
    OUTPUT_TOOLTIPS = ("what was unloaded: a line per model (id, device, size), then what is still loaded",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": widget(unload_choices(), "which model to unload: all, or one model id (every device and "
                            "precision it is loaded with)", default=ALL),
        }}

    @classmethod
    def IS_CHANGED(cls, model=ALL):
        return float("nan")  # never equal to itself: ComfyUI runs the node on every queue

    def unload(self, model=ALL):
        text = unload_models(model)
        return {"ui": {"text": [text]}, "result": (text,)}


NODES = {"FacegraphUnloadModels": (UnloadModels, "Unload Models (facegraph)")}
