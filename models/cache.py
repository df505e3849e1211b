"""The process-wide model cache: loaded models keyed by (model id, device, precision, runtime).

Bounded (least recently used goes first), thread-safe, with an explicit :meth:`ModelCache.unload`. Loading
happens outside the lock per key, so two different models can load at once while the same model loads once.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CacheKey:
    model_id: str
    device: str = "cpu"
    precision: str = "fp32"
    runtime: str = ""
    extra: str = ""  # e.g. thread count or input size where the loaded object depends on it


class ModelCache:
    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is None:
            max_entries = int(os.environ.get("FACEGRAPH_MODEL_CACHE_SIZE", "12"))
        self.max_entries = max(1, max_entries)
        self._items: "collections.OrderedDict[CacheKey, Any]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[CacheKey, threading.Lock] = {}
        self.on_evict: Callable[[CacheKey, Any], None] | None = None

    def get(self, key: CacheKey, loader: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = loader()
            evicted = []
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.max_entries:
                    evicted.append(self._items.popitem(last=False))
        for k, v in evicted:
            self._release(k, v)
        return value

    def unload(self, model_id: str | None = None) -> int:
        """Drop every entry (or those of one model id); returns how many were dropped."""
        with self._lock:
            keys = [k for k in self._items if model_id is None or k.model_id == model_id]
            dropped = [(k, self._items.pop(k)) for k in keys]
        for k, v in dropped:
            self._release(k, v)
        return len(dropped)

    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _release(self, key: CacheKey, value: Any) -> None:
        log.debug("unloading %s", key)
        if self.on_evict is not None:
            self.on_evict(key, value)
        close = getattr(value, "close", None)
        if callable(close):
            close()


_default_cache: ModelCache | None = None


def default_cache() -> ModelCache:
    global _default_cache
    if _default_cache is None:
        _default_cache = ModelCache()
    return _default_cache
