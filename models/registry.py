"""The model registry: explicit, declarative records loaded from ``registry.yaml`` beside this file.

A spec says what a model is (task, decoder family, runtime, input contract), which files make it (path
relative to any model root, sha256, size, official URL) and under which licence. Nothing in the pack guesses
a model's kind from its tensors; wrappers dispatch on ``spec.family``.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Iterable, Literal, get_args

import yaml

from ..core.errors import InputError, ModelError

Task = Literal["detect", "landmarks", "refine", "blendshapes", "morphable", "segmentation"]
Runtime = Literal["onnx", "tflite", "torch", "data"]
LicenceClass = Literal["permissive", "non-commercial", "gpl", "unknown"]

TASKS: tuple[str, ...] = get_args(Task)
RUNTIMES: tuple[str, ...] = get_args(Runtime)
LICENCE_CLASSES: tuple[str, ...] = get_args(LicenceClass)

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")


@dataclasses.dataclass(frozen=True)
class ModelFile:
    path: str               # relative path under a model root, POSIX separators ("yunet/yunet_n_dynamic.onnx")
    sha256: str | None      # lower-case hex; None = no published hash (must be pinned by the user)
    size: int | None
    url: str | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    id: str
    task: str
    family: str
    runtime: str
    licence: str
    licence_class: str
    files: tuple[ModelFile, ...]
    default: bool = False
    summary: str = ""
    input: tuple[tuple[str, Any], ...] = ()

    @property
    def restricted(self) -> bool:
        """True when the licence is not known to allow commercial use (non-commercial, GPL, unknown)."""
        return self.licence_class != "permissive"

    @property
    def licence_flag(self) -> str:
        return {"permissive": "", "non-commercial": "NON-COMMERCIAL", "gpl": "GPL",
                "unknown": "LICENCE UNKNOWN"}[self.licence_class]

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def contract(self, key: str, default: Any = None) -> Any:
        return dict(self.input).get(key, default)

    def file(self, suffix: str) -> ModelFile:
        """The file whose path ends with ``suffix`` (e.g. ``".pth"``)."""
        hits = [f for f in self.files if f.path.endswith(suffix)]
        if len(hits) != 1:
            raise ModelError(f"model {self.id!r} has {len(hits)} files ending in {suffix!r}")
        return hits[0]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _parse(entry: dict[str, Any], where: str) -> ModelSpec:
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = set(entry) - known
    if unknown:
        raise ModelError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        files = tuple(ModelFile(path=f["path"], sha256=(f.get("sha256") or None), size=f.get("size"),
                                url=f.get("url")) for f in entry["files"])
        spec = ModelSpec(id=entry["id"], task=entry["task"], family=entry["family"], runtime=entry["runtime"],
                         licence=entry["licence"], licence_class=entry["licence_class"], files=files,
                         default=bool(entry.get("default", False)), summary=entry.get("summary", ""),
                         input=_freeze(entry.get("input", {})))
    except KeyError as exc:
        raise ModelError(f"{where}: missing key {exc}") from None
    if spec.task not in TASKS:
        raise ModelError(f"{where}: task {spec.task!r} not in {TASKS}")
    if spec.runtime not in RUNTIMES:
        raise ModelError(f"{where}: runtime {spec.runtime!r} not in {RUNTIMES}")
    if spec.licence_class not in LICENCE_CLASSES:
        raise ModelError(f"{where}: licence_class {spec.licence_class!r} not in {LICENCE_CLASSES}")
    for f in files:
        if f.sha256 is not None and (len(f.sha256) != 64 or f.sha256.lower() != f.sha256):
            raise ModelError(f"{where}: {f.path}: sha256 must be 64 lower-case hex digits")
    return spec


class Registry:
    """An ordered, validated set of :class:`ModelSpec`."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for s in specs:
            if s.id in self._specs:
                raise ModelError(f"duplicate model id {s.id!r} in the registry")
            self._specs[s.id] = s
        for task in TASKS:
            defaults = [s for s in self._specs.values() if s.task == task and s.default]
            if len(defaults) > 1:
                raise ModelError(f"task {task!r} has {len(defaults)} defaults: {[s.id for s in defaults]}")
            for s in defaults:
                if s.restricted:
                    raise ModelError(f"{s.id} is {s.licence_flag} and cannot be the default for {task}")

    @classmethod
    def from_yaml(cls, path: Path = REGISTRY_FILE) -> "Registry":
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, list):
            raise ModelError(f"{path}: expected a list of model entries")
        return cls(_parse(e, f"{path}[{i}]") for i, e in enumerate(data))

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            raise InputError(f"unknown model id {model_id!r}",
                             hint=f"known ids: {', '.join(self._specs)}") from None

    def ids(self, task: str | None = None, family: str | None = None) -> list[str]:
        return [s.id for s in self._specs.values()
                if (task is None or s.task == task) and (family is None or s.family == family)]

    def default(self, task: str) -> ModelSpec:
        for s in self._specs.values():
            if s.task == task and s.default:
                return s
        raise ModelError(f"no default model for task {task!r}")


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The pack's registry (parsed once per process)."""
    return Registry.from_yaml()
