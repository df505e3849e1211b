"""facegraph's torch models inside ComfyUI's memory manager (``comfy.model_management``).

Inside ComfyUI, every torch model facegraph loads is registered with the host's manager through a
ModelPatcher subclass (:class:`FacegraphPatcher`, built on ``comfy.model_patcher.ModelPatcher`` when that
imports, else on a duck-typed base with the same methods), so that:

- before each use (every :meth:`ModelCache.get`, i.e. every ``ModelHandle.get()`` of a node) ComfyUI's
  ``load_models_gpu([patcher])`` runs: it frees room on the card the way it does for its own models, then
  moves ours onto its device if it had been offloaded;
- ComfyUI's ``free_memory`` / ``unload_all_models`` offload ours with the rest. A partial unload moves the
  model to ComfyUI's offload device (our models are a few MB and move whole) and keeps it cached; a full
  unload (``detach``) also evicts facegraph's cache entry, so the next use loads it again from disk
  (45-735 ms measured for the bundled torch models on a 2-core CPU);
- facegraph's own evictions (LRU, ``FACEGRAPH_MODEL_MEMORY``, the Unload Models node) take the model out of
  ComfyUI's ledger (``current_loaded_models``) as well.

A wrapper's torch modules are found by duck typing (:func:`facegraph.models.cache.torch_modules`) and bundled
in one ``nn.Module`` that moves in place, so the wrapper's own references stay valid. After a move, a
wrapper's ``device`` string attribute is set to where its weights now are (wrappers that place inputs with
``self.device`` keep working), and per-device caches of the modules are dropped (TFLiteModule's frozen
TorchScript traces hold the weights of the device they were traced on). ONNX Runtime sessions are not torch
modules and are left where they are.

Nothing here imports ``comfy`` at module import time; :func:`install` only sets the cache's hooks, and
``comfy.model_management`` is looked up at first use. Headless nothing changes (install is never called).
"""
from __future__ import annotations

import importlib
import logging
import sys
import threading
import weakref
from typing import Any

from ...models.cache import CacheKey, ModelCache, default_cache, format_bytes, tensor_bytes, torch_modules

log = logging.getLogger(__name__)

_lock = threading.RLock()
_patchers: dict[CacheKey, Any] = {}   # the live patcher of each cached torch model, by cache key
_retired: list[Any] = []              # detached by ComfyUI: kept alive until its ledger has let go of them
_installed: dict[int, tuple[ModelCache, Any, Any]] = {}  # id(cache) -> (cache, previous on_get, on_evict)
_warned: set[str] = set()


# ---------------------------------------------------------------------------------------------- install
def install(cache: ModelCache | None = None) -> bool:
    """Hook ``cache`` (the process cache by default) to ComfyUI's memory manager. Idempotent; call only
    inside ComfyUI (plugin/comfyui.install_bridges does). Returns True when the hooks are (now) in place."""
    cache = cache if cache is not None else default_cache()
    with _lock:
        if id(cache) in _installed:
            return True
        prev_get, prev_evict = cache.on_get, cache.on_evict

        def on_get(key: CacheKey, value: Any) -> None:
            if prev_get is not None:
                prev_get(key, value)
            _on_get(cache, key, value)

        def on_evict(key: CacheKey, value: Any) -> None:
            _on_evict(key, value)
            if prev_evict is not None:
                prev_evict(key, value)

        cache.on_get, cache.on_evict = on_get, on_evict
        _installed[id(cache)] = (cache, prev_get, prev_evict)
    return True


def uninstall(cache: ModelCache | None = None) -> None:
    """Undo :func:`install` (tests; a host shutting down): restores the cache's previous hooks and takes
    facegraph's models out of the host's ledger."""
    cache = cache if cache is not None else default_cache()
    with _lock:
        entry = _installed.pop(id(cache), None)
        if entry is None:
            return
        cache.on_get, cache.on_evict = entry[1], entry[2]
        keys = [k for k in _patchers if k in set(cache.keys())]
        patchers = [_patchers.pop(k) for k in keys]
    mm = _host()
    for p in patchers:
        if mm is not None:
            _drop_from_ledger(mm, p)
    _retired.clear()


def registered() -> dict[CacheKey, Any]:
    """The patchers facegraph has registered with the host, by cache key (a copy)."""
    with _lock:
        return dict(_patchers)


def _host():
    """``comfy.model_management`` when it is there (inside ComfyUI it was imported long before us)."""
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        return mm
    try:
        return importlib.import_module("comfy.model_management")
    except Exception:
        return None


def _warn_once(tag: str, msg: str, *args: Any) -> None:
    if tag not in _warned:
        _warned.add(tag)
        log.warning(msg, *args)


# ---------------------------------------------------------------------------------------------- hooks
def _on_get(cache: ModelCache, key: CacheKey, value: Any) -> None:
    """Before use: register ``value``'s torch modules with the host (first time) and let the host load them."""
    mm = _host()
    load = getattr(mm, "load_models_gpu", None)
    if load is None:
        return
    _purge_retired(mm)
    with _lock:
        patcher = _patchers.get(key)
        if patcher is not None and patcher.fg_wrapper() is not value:  # a newer object under the same key
            _patchers.pop(key)
            _drop_from_ledger(mm, patcher)
            patcher = None
        if patcher is None:
            patcher = _new_patcher(mm, cache, key, value)
            if patcher is None:
                return
            _patchers[key] = patcher
    try:
        load([patcher])
    except Exception as exc:  # the model still runs where it is; ComfyUI just does not manage it this time
        _warn_once(f"load:{key.model_id}", "facegraph: ComfyUI could not load %s onto %s (%s); running it "
                   "where it is", key.model_id, patcher.load_device, exc)


def _on_evict(key: CacheKey, value: Any) -> None:
    """facegraph's cache dropped ``value``: forget its patcher; out of the host's ledger unless the host is
    the one unloading it (it then pops the entry itself, by index, after its walk)."""
    with _lock:
        patcher = _patchers.get(key)
        if patcher is None or patcher.fg_wrapper() is not value:
            return
        _patchers.pop(key)
        if patcher.fg_detaching:
            _retired.append(patcher)  # alive until ComfyUI's walk is over: its ledger holds it weakly
            return
    mm = _host()
    if mm is not None:
        _drop_from_ledger(mm, patcher)


def _drop_from_ledger(mm: Any, patcher: Any) -> None:
    ledger = getattr(mm, "current_loaded_models", None)
    if not isinstance(ledger, list):
        return
    for i in range(len(ledger) - 1, -1, -1):
        if getattr(ledger[i], "model", None) is patcher:
            entry = ledger.pop(i)
            finalizer = getattr(entry, "model_finalizer", None)
            if finalizer is not None:
                finalizer.detach()


def _purge_retired(mm: Any) -> None:
    ledger = getattr(mm, "current_loaded_models", None) or []
    with _lock:
        held = {id(getattr(e, "model", None)) for e in ledger}
        _retired[:] = [p for p in _retired if id(p) in held]


# --------------------------------------------------------------------------------------------- patcher
def _new_patcher(mm: Any, cache: ModelCache, key: CacheKey, value: Any):
    mods = torch_modules(value)
    if not mods:
        return None  # onnxruntime sessions and the like: nothing ComfyUI could move
    import torch

    try:
        load_device = torch.device(key.device)
    except (RuntimeError, TypeError):
        return None
    offload = getattr(mm, "unet_offload_device", None)
    offload_device = torch.device(offload()) if callable(offload) else torch.device("cpu")
    if load_device.type == "cpu" and offload_device.type != "cpu":  # high-VRAM mode offloads to the card
        offload_device = load_device
    bundle = _bundle_class()(mods)
    size = tensor_bytes(mods)
    if size == 0:
        return None
    for base in _bases():
        try:
            return _patcher_class(base)(bundle, load_device, offload_device, size, key=key, wrapper=value,
                                        cache=cache)
        except Exception as exc:  # a host whose ModelPatcher no longer fits: the duck-typed base next
            log.debug("ModelPatcher base %r refused facegraph's model: %s", base, exc)
    _warn_once("patcher", "facegraph: ComfyUI's ModelPatcher cannot wrap facegraph's models; they stay "
               "outside ComfyUI's memory manager")
    return None


def _bases() -> list[type]:
    out = []
    try:
        out.append(importlib.import_module("comfy.model_patcher").ModelPatcher)
    except Exception:
        pass
    return out + [_DuckPatcher]


_classes: dict[type, type] = {}
_bundle: list[type] = []


def _bundle_class() -> type:
    """nn.Module holding a wrapper's modules as children: ``.to()`` moves them all, in place."""
    if not _bundle:
        import torch

        class FacegraphModules(torch.nn.Module):
            def __init__(self, modules: list) -> None:
                super().__init__()
                self.parts = torch.nn.ModuleList(modules)
                self.device = _tensor_device(self)  # ComfyUI's patchers read and write model.device

            def forward(self, *args: Any) -> Any:  # pragma: no cover - never called: the wrapper runs them
                raise RuntimeError("facegraph's models run through their wrappers")

        _bundle.append(FacegraphModules)
    return _bundle[0]


def _tensor_device(module: Any):
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return None


def _claimed_device(wrapper: Any):
    """The torch device a wrapper's ``device`` string names (None when it has none or it is not one)."""
    name = getattr(wrapper, "device", None)
    if not isinstance(name, str):
        return None
    import torch

    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        return None


def _patcher_class(base: type) -> type:
    with _lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type("FacegraphPatcher", (FacegraphPatcherMixin, base), {"__module__": __name__})
            _classes[base] = cls
        return cls


class FacegraphPatcherMixin:
    """What ComfyUI's memory manager calls, for a facegraph model: the whole model moves at once.

    ``model`` is the bundle of the wrapper's torch modules; ``fg_wrapper`` a weak reference to the wrapper
    (facegraph's cache owns it); ``fg_loaded`` whether ComfyUI counts it as on its load device."""

    def __init__(self, model: Any, load_device: Any, offload_device: Any, size: int, *, key: CacheKey,
                 wrapper: Any, cache: ModelCache) -> None:
        self.fg_key = key
        self.fg_size = int(size)
        self.fg_wrapper = weakref.ref(wrapper)
        self.fg_cache = weakref.ref(cache)
        self.fg_detaching = False
        self.fg_device = _claimed_device(wrapper) or _tensor_device(model)  # where facegraph last put it
        self.fg_loaded = self.fg_device == load_device
        super().__init__(model, load_device, offload_device, size)
        self._fg_mark()

    # -------------------------------------------------------------------------------- what is where
    def model_size(self) -> int:
        return self.fg_size

    def loaded_size(self) -> int:
        return self.fg_size if self.fg_loaded else 0

    def lowvram_patch_counter(self) -> int:
        return 0

    def current_loaded_device(self):
        return self.load_device if self.fg_loaded else self.offload_device

    def model_dtype(self):
        for t in list(self.model.parameters()) + list(self.model.buffers()):
            if t.is_floating_point():
                return t.dtype
        import torch

        return torch.float32

    def model_patches_to(self, device: Any) -> None:
        pass  # no patches (LoRA, hooks) on facegraph's models

    def model_patches_models(self) -> list:
        return []

    def is_clone(self, other: Any) -> bool:
        return getattr(other, "model", None) is self.model

    # --------------------------------------------------------------------------------------- moves
    def partially_load(self, device_to: Any, extra_memory: float = 0, force_patch_weights: bool = False) -> int:
        """Load it all onto ``device_to`` if the budget ``extra_memory`` holds it (ComfyUI's low-VRAM / no-VRAM
        budgets may not: it then stays on the offload device and runs there). Returns the bytes loaded."""
        if self.fg_loaded:
            return 0
        if extra_memory < self.fg_size:
            log.debug("%s stays on %s: budget %s < %s", self.fg_key.model_id, self.offload_device,
                      format_bytes(extra_memory), format_bytes(self.fg_size))
            return 0
        self._fg_move(device_to, loaded=True)
        return self.fg_size

    def partially_unload(self, device_to: Any, memory_to_free: float = 0, force_patch_weights: bool = False) -> int:
        """Offload it all (facegraph's models are too small to split): stays in both caches. Returns bytes."""
        if not self.fg_loaded:
            return 0
        self._fg_move(device_to, loaded=False)
        return self.fg_size

    def detach(self, unpatch_all: bool = True):
        """ComfyUI unloads it (``unpatch_all``): to the offload device, and out of facegraph's cache (the next
        use loads it again). ``unpatch_all=False`` is ComfyUI re-listing a model it is about to load again
        (load_models_gpu drops each incoming model's clones, the model itself included): nothing moves."""
        if not unpatch_all:
            return self.model
        self.fg_detaching = True
        self._fg_move(self.offload_device, loaded=False)
        cache, wrapper = self.fg_cache(), self.fg_wrapper()
        if cache is not None and wrapper is not None:
            cache.discard(self.fg_key, wrapper)
        # ComfyUI still holds this patcher until its walk is over (and we keep it alive for that): let go of
        # the modules now, so they are freed with the wrapper, whoever held it last
        self.model.parts = type(self.model.parts)()
        return self.model

    def patch_model(self, device_to: Any = None, lowvram_model_memory: float = 0, load_weights: bool = True,
                    force_patch_weights: bool = False):
        """Older ComfyUI's load call."""
        if device_to is not None and load_weights:
            self.partially_load(device_to, lowvram_model_memory or 1e32)
        return self.model

    def unpatch_model(self, device_to: Any = None, unpatch_weights: bool = True) -> None:
        """Older ComfyUI's unload call: offload, stay cached."""
        if device_to is not None:
            self._fg_move(device_to, loaded=False)

    def load(self, device_to: Any = None, lowvram_model_memory: float = 0, force_patch_weights: bool = False,
             full_load: bool = False) -> None:
        if device_to is not None:
            self._fg_move(device_to, loaded=True)

    def _fg_move(self, device: Any, *, loaded: bool) -> None:
        import torch

        device = torch.device(device)
        if self.fg_device != device:
            self.model.to(device)
            self.fg_device = device
            for m in self.model.modules():  # caches made for the old device would keep its memory
                release = getattr(m, "release_device_caches", None)
                if callable(release):
                    release()
                elif isinstance(getattr(m, "_traces", None), dict):
                    m._traces.clear()
        wrapper = self.fg_wrapper()
        if wrapper is not None and isinstance(getattr(wrapper, "device", None), str):
            wrapper.device = str(device)
        self.fg_loaded = loaded and device == self.load_device
        self._fg_mark()

    def _fg_mark(self) -> None:
        """Keep the attributes ComfyUI's own patchers keep on their model in step."""
        self.model.device = self.current_loaded_device()
        self.model.model_loaded_weight_memory = self.loaded_size()
        self.model.model_lowvram = False
        self.model.lowvram_patch_counter = 0

    def __repr__(self) -> str:
        where = "loaded" if self.fg_loaded else "offloaded"
        return (f"<FacegraphPatcher {self.fg_key.model_id} {format_bytes(self.fg_size)} {where} "
                f"({self.load_device} / {self.offload_device})>")


class _DuckPatcher:
    """The base used when ``comfy.model_patcher.ModelPatcher`` is missing or refuses our model: the
    attributes and no-op methods ComfyUI's manager may touch on any patcher."""

    def __init__(self, model: Any, load_device: Any, offload_device: Any, size: int = 0,
                 weight_inplace_update: bool = False) -> None:
        self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
        self.weight_inplace_update = weight_inplace_update
        self.parent = None
        self.patches: dict = {}
        self.backup: dict = {}
        self.object_patches: dict = {}
        self.model_options: dict = {"transformer_options": {}}
        self.attachments: dict = {}
        self.additional_models: dict = {}
        self.callbacks: dict = {}
        self.wrappers: dict = {}
        self.hook_patches: dict = {}
        self.is_injected = False
        self.skip_injection = False

    def is_dynamic(self) -> bool:
        return False

    def get_nested_additional_models(self) -> list:
        return []

    def get_additional_models(self) -> list:
        return []

    def pinned_memory_size(self) -> int:
        return 0

    def loaded_ram_size(self) -> int:
        return 0

    def partially_unload_ram(self, ram_to_unload: int = 0) -> int:
        return 0

    def cleanup(self) -> None:
        pass

    def pre_run(self) -> None:
        pass

    def clone(self):
        return self
