"""Load any registered model by id (or a task's default) into the process-wide cache.

One entry point for nodes and the CLI: resolve + verify the files (store), build the wrapper for the spec's
task/family, and cache it by (model id, device, precision, runtime). Wrappers are looked up in
:data:`WRAPPERS`, keyed by family, so adding a family is one line here and one class beside it.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import threading
from pathlib import Path
from typing import Any

from ..core.errors import InputError, ModelError
from .cache import CacheKey, ModelCache, default_cache
from .devices import resolve_device
from .registry import ModelSpec, registry
from .store import ModelStore, default_store

log = logging.getLogger(__name__)

#: family -> "module:Class" (imported lazily: torch-backed wrappers cost nothing until used)
WRAPPERS: dict[str, str] = {
    "yunet": "detectors:FaceDetector",
    "scrfd": "detectors:FaceDetector",
    "retinaface": "detectors:FaceDetector",
    "yolo5face": "detectors:FaceDetector",
    "ultraface": "detectors:FaceDetector",
    "blazeface": "detectors:FaceDetector",
    "mediapipe_mesh": "landmarkers:MediaPipeMesh",
    "pfld": "landmarkers:PFLD",
    "tddfa": "landmarkers:TDDFA",
    "fan_heatmap": "landmarkers:FanHeatmap",
    "mediapipe_iris": "landmarkers:IrisModel",
}


@dataclasses.dataclass(frozen=True)
class ModelHandle:
    """What a FACEGRAPH_MODEL carries between nodes: which model, where to run it; ``get()`` returns the
    process-wide cached instance (loading it on first use)."""

    model_id: str
    device: str = "auto"
    threads: int = 0
    path: str = ""
    precision: str = "fp32"   # fp16 / bf16: the torch-ported graphs in that dtype (for GPUs; PRECISIONS)

    @property
    def spec(self) -> ModelSpec:
        return registry().get(self.model_id)

    def get(self) -> Any:
        return load_model(self.model_id, device=self.device, threads=self.threads, explicit=self.path or None,
                          precision=self.precision)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def licence_note(spec: ModelSpec) -> str:
    """One line for people: the model and its licence, flagged when it is not known to allow commercial use."""
    text = f"{spec.id}: licence {spec.licence}"
    return f"{text} [{spec.licence_flag}: not for commercial use]" if spec.restricted else text


def warn_restricted(spec: ModelSpec) -> bool:
    """Log a warning the first time in this process that a restricted model (non-commercial, GPL, licence
    unknown) is loaded. Returns True when it warned now."""
    if not spec.restricted:
        return False
    with _warned_lock:
        if spec.id in _warned:
            return False
        _warned.add(spec.id)
    log.warning("facegraph: loaded %s; check the licence before any commercial use", licence_note(spec))
    return True


def runnable_ids(task: str) -> list[str]:
    """Registered models of ``task`` that this version can run (default first)."""
    reg = registry()
    ids = [s.id for s in reg if s.task == task and s.family in WRAPPERS]
    return sorted(ids, key=lambda i: (not reg.get(i).default, ids.index(i)))


def spec_for(model_id: str | None, task: str | None = None) -> ModelSpec:
    if model_id:
        return registry().get(model_id)
    if task is None:
        raise ModelError("name a model id or a task")
    return registry().default(task)


#: precisions a model can be loaded in (the wrappers that take ``precision`` say which they support)
PRECISIONS = ("fp32", "fp16", "bf16")


def load_model(model_id: str | None = None, *, task: str | None = None, device: str = "auto",
               precision: str = "fp32", threads: int = 0, explicit: str | Path | None = None,
               store: ModelStore | None = None, cache: ModelCache | None = None) -> Any:
    """The cached wrapper for ``model_id`` (or ``task``'s default) on ``device``."""
    spec = spec_for(model_id, task)
    if task is not None and spec.task != task:
        raise ModelError(f"model {spec.id!r} is a {spec.task} model, not {task}", model=spec.id)
    target = WRAPPERS.get(spec.family)
    if target is None:
        raise ModelError(f"model {spec.id!r} (family {spec.family}) has no runnable wrapper in this version",
                         model=spec.id)
    dev = resolve_device(device)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    key = CacheKey(spec.id, dev, precision, spec.runtime, extra=f"threads={threads};path={explicit or ''}")

    def build() -> Any:
        resolved = (store if store is not None else default_store()).resolve(spec, explicit=explicit)
        mod_name, cls_name = target.split(":")
        cls = getattr(importlib.import_module(f"{__package__}.{mod_name}"), cls_name)
        if precision == "fp32":
            model = cls(spec, resolved, device=dev, threads=threads)
        elif "precision" in inspect.signature(cls).parameters:
            model = cls(spec, resolved, device=dev, threads=threads, precision=precision)
        else:
            raise ModelError(f"model {spec.id!r} runs in fp32 only (precision {precision!r} asked)", model=spec.id,
                             hint="the TFLite-ported MediaPipe models take fp16 / bf16")
        warn_restricted(spec)
        return model

    return (cache if cache is not None else default_cache()).get(key, build)  # an empty cache is falsy


def resolve_files(model_id: str, store: ModelStore | None = None) -> dict[str, Path]:
    """Verified local paths of a data-only model's files (e.g. a 3DMM basis), keyed by registry path."""
    spec = registry().get(model_id)
    paths = dict((store or default_store()).resolve(spec).paths)
    warn_restricted(spec)
    return paths
