"""The process-wide model cache: loaded models keyed by (model id, device, precision, runtime).

Bounded two ways, least recently used first: by entry count (``FACEGRAPH_MODEL_CACHE_SIZE``, default 12) and,
where set, by memory (``FACEGRAPH_MODEL_MEMORY``: bytes or "512M", "2G", ...). Each entry's size is measured
once when it is loaded (:func:`model_bytes`: torch parameters + buffers; an onnxruntime session counts its
model files). Thread-safe, with an explicit :meth:`ModelCache.unload` that also hands freed GPU memory back
to the driver. Loading happens outside the lock per key, so two different models can load at once while the
same model loads once.

Hooks for a host's memory manager (plugin/comfyui/memory.py): ``on_get(key, value)`` runs after every
:meth:`ModelCache.get` (outside the lock: the host may move the model onto its device before use),
``on_evict(key, value)`` whenever an entry leaves (LRU, budget, unload, :meth:`ModelCache.discard`).
"""
from __future__ import annotations

import collections
import dataclasses
import gc
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InputError

log = logging.getLogger(__name__)

ENV_ENTRIES = "FACEGRAPH_MODEL_CACHE_SIZE"
ENV_MEMORY = "FACEGRAPH_MODEL_MEMORY"
DEFAULT_ENTRIES = 12

#: binary multiples, as ``docker run --memory`` / ``ulimit`` read "512m", "2g" (K = 1024 bytes)
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class CacheKey:
    model_id: str
    device: str = "cpu"
    precision: str = "fp32"
    runtime: str = ""
    extra: str = ""  # e.g. thread count or input size where the loaded object depends on it


def parse_bytes(text: str | int | float | None, *, name: str = ENV_MEMORY) -> int | None:
    """A memory size: an int of bytes, or text "1048576", "512M", "1.5G", "2GiB", "800KB" (binary multiples:
    K = 1024). None, "" or "0" mean no bound (None). Raises InputError naming ``name`` for anything else."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise InputError(f"{name} must be >= 0, got {text!r}")
        return int(text) or None
    s = str(text).strip()
    if not s:
        return None
    m = _SIZE_RE.match(s)
    if m is None:
        raise InputError(f"{name} must be a size such as 512M or 2G (binary multiples), got {text!r}",
                         hint="bytes, or a number with K, M, G or T")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()]) or None


def format_bytes(n: int | float) -> str:
    """'1.5 MiB'-style text for people."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def torch_modules(value: Any) -> list:
    """The torch modules a loaded model holds, found by duck typing: the value itself when it is a
    ``torch.nn.Module``; else what its ``torch_modules()`` method returns where it has one; else the
    ``nn.Module`` attributes of the wrapper (one level into lists, tuples and dicts). Imports nothing: without
    torch imported no value can hold a module."""
    torch = sys.modules.get("torch")
    if torch is None or value is None:
        return []
    module_cls = torch.nn.Module
    if isinstance(value, module_cls):
        return [value]
    hook = getattr(value, "torch_modules", None)
    if callable(hook):
        return [m for m in hook() if isinstance(m, module_cls)]
    found: dict[int, Any] = {}
    try:
        attrs = list(vars(value).values())
    except TypeError:  # no __dict__ (slots, builtins)
        return []
    for a in attrs:
        items = a.values() if isinstance(a, dict) else a if isinstance(a, (list, tuple)) else (a,)
        for m in items:
            if isinstance(m, module_cls):
                found.setdefault(id(m), m)
    return list(found.values())


def tensor_bytes(modules: list) -> int:
    """Bytes of the parameters and buffers of ``modules``, each storage counted once (shared weights, tied
    modules, the same module listed twice)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for mod in modules:
        for t in list(mod.parameters()) + list(mod.buffers()):
            try:
                storage = t.untyped_storage()
                ident, size = (str(t.device), storage.data_ptr()), storage.nbytes()
            except Exception:  # tensors without a storage (some subclasses): count the view
                ident, size = (str(t.device), id(t)), t.nelement() * t.element_size()
            if ident[1] and ident in seen:
                continue
            seen.add(ident)
            total += size
    return total


def model_bytes(value: Any) -> int:
    """Estimated memory of a loaded model in bytes: ``value.memory_bytes()`` where the wrapper says; else its
    torch modules' parameters + buffers (:func:`tensor_bytes`); else (an onnxruntime session, whose arena is
    not visible from Python) the size of its model files: the registry's sizes via ``value.spec``, or the
    file an ``onnxruntime.InferenceSession`` attribute was made from. 0 when nothing is known."""
    hook = getattr(value, "memory_bytes", None)
    if callable(hook):
        try:
            return max(0, int(hook()))
        except Exception as exc:
            log.debug("memory_bytes() of %r failed: %s", type(value).__name__, exc)
    mods = torch_modules(value)
    if mods:
        return tensor_bytes(mods)
    spec_size = getattr(getattr(value, "spec", None), "size", 0)
    if isinstance(spec_size, int) and spec_size > 0:
        return spec_size
    total = 0
    try:
        attrs = list(vars(value).values())
    except TypeError:
        return 0
    for a in attrs:
        path = getattr(a, "_model_path", None)  # onnxruntime.InferenceSession keeps the path it was given
        if isinstance(path, (str, os.PathLike)) and Path(path).is_file():
            total += Path(path).stat().st_size
    return total


class ModelCache:
    """Loaded models by :class:`CacheKey`, least recently used evicted first.

    ``max_entries`` (default ``$FACEGRAPH_MODEL_CACHE_SIZE`` or 12) bounds the count; ``max_bytes`` (default
    ``$FACEGRAPH_MODEL_MEMORY``; None = no bound) bounds the sum of :func:`model_bytes` of the entries. The
    entry just loaded is never evicted for it, even when it alone is over the budget (logged once per key).
    """

    def __init__(self, max_entries: int | None = None, max_bytes: int | str | None = "env",
                 sizer: Callable[[Any], int] = model_bytes) -> None:
        if max_entries is None:
            max_entries = int(os.environ.get(ENV_ENTRIES, str(DEFAULT_ENTRIES)))
        self.max_entries = max(1, max_entries)
        if max_bytes == "env":
            self.max_bytes = parse_bytes(os.environ.get(ENV_MEMORY), name=ENV_MEMORY)
        else:
            self.max_bytes = parse_bytes(max_bytes, name="max_bytes")
        self.sizer = sizer
        self._items: "collections.OrderedDict[CacheKey, Any]" = collections.OrderedDict()
        self._sizes: dict[CacheKey, int] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[CacheKey, threading.Lock] = {}
        self._warned_over: set[CacheKey] = set()
        self.on_evict: Callable[[CacheKey, Any], None] | None = None
        self.on_get: Callable[[CacheKey, Any], None] | None = None

    # ----------------------------------------------------------------------------------------- access
    def get(self, key: CacheKey, loader: Callable[[], Any]) -> Any:
        """The cached value for ``key``, made by ``loader()`` on a miss (once, whatever the threads)."""
        with self._lock:
            hit = key in self._items
            if hit:
                self._items.move_to_end(key)
                value = self._items[key]
            else:
                key_lock = self._key_locks.setdefault(key, threading.Lock())
        if not hit:
            value = self._load(key, key_lock, loader)
        self._notify_get(key, value)
        return value

    def _load(self, key: CacheKey, key_lock: threading.Lock, loader: Callable[[], Any]) -> Any:
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = loader()
            size = self._measure(value)
            with self._lock:
                self._items[key] = value
                self._sizes[key] = size
                evicted = self._over_bounds(keep=key)
                over = self.max_bytes is not None and size > self.max_bytes and key not in self._warned_over
                if over:
                    self._warned_over.add(key)
        if over:
            log.warning("facegraph: %s alone (%s) is over the model memory budget %s=%s; kept while in use",
                        key.model_id, format_bytes(size), ENV_MEMORY, format_bytes(self.max_bytes))
        for k, v in evicted:
            self._release(k, v)
        return value

    def _measure(self, value: Any) -> int:
        try:
            return max(0, int(self.sizer(value)))
        except Exception as exc:  # a size is an estimate: never fail a load over it
            log.debug("could not measure %r: %s", type(value).__name__, exc)
            return 0

    def _over_bounds(self, keep: CacheKey | None = None) -> list[tuple[CacheKey, Any]]:
        """Pop least recently used entries (never ``keep``) until both bounds hold. Call with the lock held."""
        out = []
        for k in list(self._items):
            count_over = len(self._items) > self.max_entries
            bytes_over = self.max_bytes is not None and sum(self._sizes.values()) > self.max_bytes
            if not (count_over or bytes_over):
                break
            if k == keep:
                continue
            out.append((k, self._items.pop(k)))
            self._sizes.pop(k, None)
        return out

    def _notify_get(self, key: CacheKey, value: Any) -> None:
        hook = self.on_get
        if hook is not None:
            hook(key, value)

    # ---------------------------------------------------------------------------------------- release
    def unload(self, model_id: str | None = None) -> int:
        """Drop every entry (or those of one model id); returns how many were dropped. Then collects garbage
        and, where torch has initialised CUDA, empties torch's CUDA cache, so the memory goes back to the
        driver (and to other processes) rather than staying in torch's allocator."""
        with self._lock:
            keys = [k for k in self._items if model_id is None or k.model_id == model_id]
            dropped = [(k, self._items.pop(k)) for k in keys]
            for k in keys:
                self._sizes.pop(k, None)
        n = len(dropped)
        while dropped:  # pop as we go: no list or loop variable keeps a model alive through the collection
            self._release(*dropped.pop(0))
        if n:
            empty_device_caches()
        return n

    def discard(self, key: CacheKey, value: Any = None) -> bool:
        """Drop one entry (only if it still holds ``value``, when given: a newer load under the same key
        stays). Returns True when something was dropped. For a host that unloaded the model itself."""
        with self._lock:
            if key not in self._items or (value is not None and self._items[key] is not value):
                return False
            item = self._items.pop(key)
            self._sizes.pop(key, None)
        self._release(key, item)
        return True

    def set_budget(self, max_bytes: int | str | None) -> int:
        """Change the memory bound (same forms as ``$FACEGRAPH_MODEL_MEMORY``); evicts what is now over it.
        Returns how many entries were evicted."""
        limit = parse_bytes(max_bytes, name="max_bytes")
        with self._lock:
            self.max_bytes = limit
            evicted = self._over_bounds()
        for k, v in evicted:
            self._release(k, v)
        return len(evicted)

    def _release(self, key: CacheKey, value: Any) -> None:
        log.debug("unloading %s", key)
        if self.on_evict is not None:
            try:
                self.on_evict(key, value)
            except Exception as exc:  # a host hook must not keep a model alive or break an unload
                log.warning("facegraph: evict hook failed for %s: %s", key.model_id, exc)
        close = getattr(value, "close", None)
        if callable(close):
            close()

    # ------------------------------------------------------------------------------------------ state
    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._items)

    def sizes(self) -> dict[CacheKey, int]:
        """Bytes per entry (see :func:`model_bytes`), least recently used first."""
        with self._lock:
            return {k: self._sizes.get(k, 0) for k in self._items}

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._items)


def empty_device_caches() -> None:
    """Collect garbage, then return torch's cached CUDA blocks to the driver where CUDA is initialised.
    Imports nothing: a process that never used torch (or CUDA) has nothing to return."""
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception as exc:  # pragma: no cover - driver trouble must not fail an unload
        log.debug("torch.cuda.empty_cache failed: %s", exc)


_default_cache: ModelCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ModelCache:
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            _default_cache = ModelCache()
        return _default_cache
