"""ComfyUI registration and bridges (progress, interruption, device, model folder, UI picture folder, memory:
facegraph's torch models under ComfyUI's model manager, see memory.py).

Every ``comfy.*`` / ``folder_paths`` import is lazy and guarded: importing ``comfy.model_management`` at module
level crashes ComfyUI's custom-node loader on machines without a GPU, and outside ComfyUI none of them exist.
"""
from __future__ import annotations

import logging
import os

from ...core import paths, progress
from ...models import devices
from ...models.cache import default_cache
from ...models.store import default_store
from ...nodes import DISPLAY_NAMES, NODE_CLASSES

log = logging.getLogger(__name__)

MODEL_FOLDER = "facegraph"  # ComfyUI/models/facegraph, laid out like the mirror or with files flat

NODE_CLASS_MAPPINGS = dict(NODE_CLASSES)
NODE_DISPLAY_NAME_MAPPINGS = dict(DISPLAY_NAMES)


class ComfyReporter:
    """core.progress.Reporter backed by comfy.utils.ProgressBar and ComfyUI's interrupt flag.

    One bar per outermost task (a node's work), since ComfyUI shows one bar per node: nested tasks (detect
    inside "analyse frames", landmarks per face, ...) never make a bar of their own. A nested task advances
    within the enclosing task's current step: it spans half of what is left of that step (how many nested
    tasks a step holds is not known in advance: detect then landmarks show 1/2, then 3/4), and the step
    completes when the enclosing task advances. The bar counts the outer task's steps (fractions in between)
    and only ever moves forward.

    A node that runs several outermost tasks in a row (load, then write) keeps ONE bar: when the node ComfyUI
    is executing is the one the last bar belonged to, the next task continues that bar (its total grows by
    the new task's steps, the value never goes back) instead of starting a new one at zero.
    """

    def __init__(self) -> None:
        self._stack: list[list[float]] = []  # [total, done, lo, hi] per open task, in outer steps
        self._bar = None
        self._shown = 0.0
        self._total = 0.0
        self._node: str | None = None  # the executing node the bar belongs to

    def start(self, total: int, label: str) -> None:
        total = max(1, int(total))
        if not self._stack:
            node = _executing_node()
            if self._bar is not None and node is not None and node == self._node:
                base = self._shown  # the same node's next task: continue its bar
                self._total = base + total
                self._stack.append([total, 0, base, self._total])
                self._bar_call("update_absolute", base, self._total)
                return
            self._stack.append([total, 0, 0.0, float(total)])
            self._shown, self._total, self._node = 0.0, float(total), node
            try:
                import comfy.utils

                self._bar = comfy.utils.ProgressBar(total)
            except Exception:  # outside a prompt execution there is no bar to drive
                self._bar = None
            return
        p_total, p_done, p_lo, p_hi = self._stack[-1]
        unit = (p_hi - p_lo) / p_total
        step_lo = p_lo + min(p_done, p_total) * unit
        step_hi = min(step_lo + unit, p_hi)
        lo = min(max(step_lo, self._shown), step_hi)
        self._stack.append([total, 0, lo, lo + (step_hi - lo) / 2])

    def position(self) -> float:
        """Where the outermost task stands, in its steps (fractions from nested tasks)."""
        if not self._stack:
            return 0.0
        total, done, lo, hi = self._stack[-1]
        return lo + min(done, total) * (hi - lo) / total

    def advance(self, n: int = 1) -> None:
        if not self._stack:
            return
        self._stack[-1][1] += n
        pos = self.position()
        if self._bar is not None and pos > self._shown:
            step = pos - self._shown
            self._shown = pos
            self._bar.update(int(step) if step == int(step) else step)  # ProgressBar.update: relative

    def finish(self) -> None:
        if self._stack:
            self._stack.pop()
        if not self._stack and self._node is None:
            self._bar = None  # a node that cannot be told apart from the next one gets a fresh bar each task

    def _bar_call(self, name: str, *args) -> None:
        fn = getattr(self._bar, name, None)
        if callable(fn):
            fn(*args)

    def check_interrupt(self) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def _executing_node() -> str | None:
    """The id of the node ComfyUI is executing (its execution context, or the server's last node), or None."""
    try:
        from comfy_execution.utils import get_executing_context

        ctx = get_executing_context()
        if ctx is not None and getattr(ctx, "node_id", None) is not None:
            return f"{getattr(ctx, 'prompt_id', '')}:{ctx.node_id}"
    except Exception:
        pass
    try:
        import server

        node = getattr(server.PromptServer.instance, "last_node_id", None)
        prompt = getattr(server.PromptServer.instance, "last_prompt_id", "")
        return f"{prompt}:{node}" if node is not None else None
    except Exception:
        return None


def _ui_folder(kind: str) -> str | None:
    """ComfyUI's temp or output folder (where its /view endpoint finds the pictures a node reports); None
    when folder_paths is gone (a test's stand-in removed): the pictures then go to facegraph's own folder."""
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths.get_temp_directory() if kind == "temp" else folder_paths.get_output_directory()


def _host_folders(kind: str) -> str | None:
    """ComfyUI's input / output / temp folder for relative node paths (core/paths.py)."""
    try:
        import folder_paths
    except ImportError:
        return None
    return {"input": folder_paths.get_input_directory, "output": folder_paths.get_output_directory,
            "temp": folder_paths.get_temp_directory}[kind]()


def _host_device() -> str:
    import comfy.model_management

    return str(comfy.model_management.get_torch_device())


def _model_folders() -> list[str]:
    import folder_paths

    return list(folder_paths.get_folder_paths(MODEL_FOLDER))


def install_bridges() -> bool:
    """Wire facegraph to the running ComfyUI. Returns False (and changes nothing) outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return False
    try:
        folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    except Exception as exc:
        log.warning("facegraph: could not register the model folder: %s", exc)
    default_store().host_dirs = _model_folders
    try:
        from . import memory

        memory.install(default_cache())  # torch models under ComfyUI's memory manager (comfy imported lazily)
    except Exception as exc:
        log.warning("facegraph: models stay outside ComfyUI's memory manager: %s", exc)
    devices.host_device_provider = _host_device
    progress.set_fallback(ComfyReporter())
    progress.set_ui_folder(_ui_folder)
    paths.set_host_folders(_host_folders)
    # torch is already loaded by the host: only per-stage thread counts can still change (models/threads.py)
    from ...models import threads

    threads.host_policy()
    return True


install_bridges()
