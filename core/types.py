"""Typed, frozen, array-backed records: one face per frame, a face set per frame, tracks, alignments.

Every record validates its arrays on construction (dtype, rank, fixed dimensions), stores read-only copies,
compares by value (NaN equals NaN), and round-trips losslessly through JSON (:meth:`Record.to_dict` /
:meth:`Record.from_dict`, :func:`dumps` / :func:`loads`). float32 values survive JSON exactly because they are
written as the shortest repr of the equal float64.

Coordinates follow ``core.conventions`` (pixel-area, origin at the top-left corner, (x, y)).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Literal, Mapping, get_args

import numpy as np

from .errors import InputError

Provenance = Literal["detected", "refined", "smoothed", "filled"]
PROVENANCES: tuple[str, ...] = get_args(Provenance)


# ---------------------------------------------------------------------------------------------------- fields
def array_field(dtype: Any, shape: tuple, *, optional: bool = False) -> Any:
    """A numpy field. ``shape`` uses -1 for a free dimension and a tuple for alternatives, e.g. (-1, (2, 3))."""
    meta = {"kind": "array", "dtype": np.dtype(dtype), "shape": shape}
    if optional:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(metadata=meta)


def record_field(cls_name: str, *, optional: bool = True) -> Any:
    meta = {"kind": "record", "cls": cls_name}
    return dataclasses.field(default=None, metadata=meta) if optional else dataclasses.field(metadata=meta)


def records_field(cls_name: str) -> Any:
    return dataclasses.field(default=(), metadata={"kind": "records", "cls": cls_name})


def tuple_field(default: tuple = ()) -> Any:
    return dataclasses.field(default=default, metadata={"kind": "tuple"})


_REGISTRY: dict[str, type["Record"]] = {}


def _check_shape(name: str, owner: str, arr: np.ndarray, shape: tuple) -> None:
    ok = arr.ndim == len(shape)
    if ok:
        for got, want in zip(arr.shape, shape):
            if want == -1:
                continue
            if isinstance(want, tuple):
                ok = ok and got in want
            else:
                ok = ok and got == want
    if not ok:
        raise InputError(f"{owner}.{name} must have shape {shape} (-1 = any), got {arr.shape}")


class Record:
    """Mixin for frozen dataclasses with array fields. Subclasses are registered by class name for JSON."""

    _json_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            kind = f.metadata.get("kind")
            value = getattr(self, f.name)
            if kind == "array":
                if value is None:
                    if f.default is dataclasses.MISSING:
                        raise InputError(f"{type(self).__name__}.{f.name} is required")
                    continue
                try:
                    arr = np.array(value, dtype=f.metadata["dtype"], copy=True)
                except (TypeError, ValueError) as exc:
                    raise InputError(f"{type(self).__name__}.{f.name}: not a numeric array ({exc})") from None
                _check_shape(f.name, type(self).__name__, arr, f.metadata["shape"])
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)
            elif kind in ("tuple", "records") and value is not None and not isinstance(value, tuple):
                object.__setattr__(self, f.name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        """Subclass hook for cross-field checks."""

    # ------------------------------------------------------------------------------------------ equality
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
                    return False
                if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    # ---------------------------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            kind = f.metadata.get("kind")
            if v is None:
                out[f.name] = None
            elif kind == "array":
                out[f.name] = v.tolist()
            elif kind == "record":
                out[f.name] = v.to_dict()
            elif kind == "records":
                out[f.name] = [r.to_dict() for r in v]
            elif kind == "tuple":
                out[f.name] = [list(x) if isinstance(x, tuple) else x for x in v]
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Record":
        name = d.get("type", cls.__name__)
        target = _REGISTRY.get(name)
        if target is None or not issubclass(target, cls):
            raise InputError(f"JSON record of type {name!r} where {cls.__name__} was expected")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(target):  # type: ignore[arg-type]
            if f.name not in d:
                continue
            v = d[f.name]
            kind = f.metadata.get("kind")
            if v is None:
                kwargs[f.name] = None
            elif kind == "array":
                arr = np.asarray(v, dtype=f.metadata["dtype"])
                shape = f.metadata["shape"]
                if arr.size == 0:
                    arr = arr.reshape([0 if s == -1 or isinstance(s, tuple) else s for s in shape])
                kwargs[f.name] = arr
            elif kind == "record":
                kwargs[f.name] = _REGISTRY[f.metadata["cls"]].from_dict(v)
            elif kind == "records":
                kwargs[f.name] = tuple(_REGISTRY[f.metadata["cls"]].from_dict(x) for x in v)
            elif kind == "tuple":
                kwargs[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            else:
                kwargs[f.name] = v
        return target(**kwargs)


def dumps(record: Record, **kw: Any) -> str:
    """Serialise a record (or anything with ``to_dict``) to JSON text."""
    return json.dumps(record.to_dict(), **kw)


def loads(text: str | bytes) -> Record:
    """Parse JSON text written by :func:`dumps` back into the record it came from."""
    return Record.from_dict(json.loads(text))


# --------------------------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Landmarks(Record):
    """Landmark points of one face in frame pixels (conventions: pixel-area, (x, y[, z])).

    points: (K, 2|3) float32. z, where present, is relative depth in the same pixel units (smaller = nearer).
    scheme: point order and meaning, e.g. ``ibug68``, ``mediapipe478``, ``mediapipe468``, ``iris5``.
    confidence: (K,) float32 in [0, 1], per-point visibility/confidence where the model gives it.
    """

    points: np.ndarray = array_field(np.float32, (-1, (2, 3)))
    scheme: str = ""
    confidence: np.ndarray | None = array_field(np.float32, (-1,), optional=True)

    def _validate(self) -> None:
        if not self.scheme:
            raise InputError("Landmarks.scheme must name the point order (e.g. 'ibug68')")
        if self.confidence is not None and len(self.confidence) != len(self.points):
            raise InputError(
                f"Landmarks.confidence has {len(self.confidence)} values for {len(self.points)} points")

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class HeadPose(Record):
    """Head rotation in degrees (conventions: yaw, pitch, roll) and, optionally, the 4x4 face transform
    (model space -> camera space) it came from, with the method that produced it. ``residual``: how far the
    landmarks are from a rigid 3D face (fit rms over face size; 0 for model-based estimates)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    matrix: np.ndarray | None = array_field(np.float64, (4, 4), optional=True)
    method: str = ""
    residual: float = 0.0


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Blendshapes(Record):
    """Named expression coefficients in [0, 1] (ARKit-style names for MediaPipe's 52)."""

    names: tuple = tuple_field()
    values: np.ndarray = array_field(np.float32, (-1,))

    def _validate(self) -> None:
        if len(self.names) != len(self.values):
            raise InputError(f"Blendshapes: {len(self.names)} names for {len(self.values)} values")

    def as_dict(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values)}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class MorphableParams(Record):
    """3D morphable model parameters: ``model`` names the basis (e.g. ``bfm_3ddfa``), ``shape`` and
    ``expression`` its coefficients, ``camera`` the projection (3x4 scaled-orthographic, frame pixels)."""

    model: str = ""
    shape: np.ndarray = array_field(np.float32, (-1,))
    expression: np.ndarray = array_field(np.float32, (-1,))
    camera: np.ndarray | None = array_field(np.float64, (3, 4), optional=True)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Face(Record):
    """One face in one frame.

    box: (4,) float32 (x0, y0, x1, y1) frame pixels. score: detector confidence in [0, 1].
    keypoints: (5, 2) float32 right eye, left eye, nose tip, right mouth corner, left mouth corner (the
    subject's right = image left; the insightface / YuNet order), or None for box-only detectors.
    provenance: how this record came to be (``detected``, ``refined``, ``smoothed``, ``filled``); ``notes``
    records gate decisions and reasons, e.g. ``("refine.iris.left=skipped:closed",)``.
    """

    box: np.ndarray = array_field(np.float32, (4,))
    score: float = 0.0
    keypoints: np.ndarray | None = array_field(np.float32, (5, 2), optional=True)
    landmarks: Landmarks | None = record_field("Landmarks")
    pose: HeadPose | None = record_field("HeadPose")
    blendshapes: Blendshapes | None = record_field("Blendshapes")
    morphable: MorphableParams | None = record_field("MorphableParams")
    provenance: str = "detected"
    detector: str = ""
    notes: tuple = tuple_field()
    track_id: int | None = None

    def _validate(self) -> None:
        if self.provenance not in PROVENANCES:
            raise InputError(f"Face.provenance must be one of {PROVENANCES}, got {self.provenance!r}")
        x0, y0, x1, y1 = (float(v) for v in self.box)
        if not (x1 >= x0 and y1 >= y0):
            raise InputError(f"Face.box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {self.box}")

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height

    def replace(self, **changes: Any) -> "Face":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class FrameFaces(Record):
    """All faces found in one frame. ``frame`` is the frame number; ``size`` is (width, height) in pixels."""

    frame: int = 0
    size: tuple = tuple_field((0, 0))
    faces: tuple = records_field("Face")

    def __len__(self) -> int:
        return len(self.faces)

    def replace(self, **changes: Any) -> "FrameFaces":
        return dataclasses.replace(self, **changes)

    def shifted(self, dx: float, dy: float, size: tuple | None = None) -> "FrameFaces":
        """The same faces with every frame coordinate moved by (dx, dy) pixels (boxes, keypoints, landmarks,
        a 3DMM camera's translation), e.g. from data-window to display-window pixels; ``size``: the new
        frame size. Rotations and blendshapes do not change."""
        if dx == 0 and dy == 0:
            return self if size is None else self.replace(size=tuple(size))
        d2 = np.array([dx, dy], np.float32)
        out = []
        for f in self.faces:
            ch: dict[str, Any] = {"box": f.box + np.array([dx, dy, dx, dy], np.float32)}
            if f.keypoints is not None:
                ch["keypoints"] = f.keypoints + d2
            if f.landmarks is not None:
                pts = f.landmarks.points.copy()
                pts[:, :2] += d2
                ch["landmarks"] = dataclasses.replace(f.landmarks, points=pts)
            if f.morphable is not None and f.morphable.camera is not None:
                cam = f.morphable.camera.copy()
                cam[:2, 3] += (dx, dy)
                ch["morphable"] = dataclasses.replace(f.morphable, camera=cam)
            out.append(f.replace(**ch))
        return self.replace(faces=tuple(out), size=tuple(size) if size is not None else self.size)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Track(Record):
    """One face followed over frames: ``faces[i]`` belongs to frame number ``frames[i]`` (increasing)."""

    track_id: int = 0
    frames: tuple = tuple_field()
    faces: tuple = records_field("Face")

    def _validate(self) -> None:
        if len(self.frames) != len(self.faces):
            raise InputError(f"Track {self.track_id}: {len(self.frames)} frames for {len(self.faces)} faces")
        if any(b <= a for a, b in zip(self.frames, self.frames[1:])):
            raise InputError(f"Track {self.track_id}: frame numbers must increase")


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Alignment(Record):
    """A similarity alignment of one face to a template crop.

    crop_from_frame: (2, 3) float64, maps frame pixels -> crop pixels (conventions: matrices).
    crop_size: (width, height) of the crop in pixels. template: the template's name (``core.templates``).
    frame: frame number it belongs to; face_index: which face of that frame (or -1); rms: the fit's residual
    in crop pixels (how well the face's points matched the template).
    """

    crop_from_frame: np.ndarray = array_field(np.float64, (2, 3))
    crop_size: tuple = tuple_field((0, 0))
    template: str = ""
    frame: int = 0
    face_index: int = -1
    rms: float = 0.0

    def _validate(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) <= 0:
            raise InputError(f"Alignment.crop_size must be (width, height) > 0, got {self.crop_size}")
        if abs(np.linalg.det(self.crop_from_frame[:, :2])) < 1e-12:
            raise InputError("Alignment.crop_from_frame is singular")

    @property
    def frame_from_crop(self) -> np.ndarray:
        """(2, 3) float64 inverse of ``crop_from_frame``: crop pixels -> frame pixels."""
        a = self.crop_from_frame[:, :2]
        inv = np.linalg.inv(a)
        return np.concatenate([inv, -inv @ self.crop_from_frame[:, 2:]], axis=1)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel (uniform scale of the similarity)."""
        return float(np.sqrt(abs(np.linalg.det(self.crop_from_frame[:, :2]))))
