"""Which faces of a frame go on: all, the largest, by index, the most central, or the one most like a
reference face (shape similarity of aligned points; an identity embedding can replace it later)."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import InputError
from .geometry import estimate_similarity, transform_points
from .landmarks import mesh_to_ibug68
from .types import Face, FrameFaces

SelectMode = Literal["all", "largest", "index", "central", "reference"]
SELECT_MODES: tuple[str, ...] = ("all", "largest", "index", "central", "reference")


def _shape(face: Face) -> np.ndarray | None:
    lm = face.landmarks
    if lm is not None and lm.scheme.startswith("mediapipe"):
        return mesh_to_ibug68(lm.xy)
    if lm is not None and lm.scheme == "ibug68":
        return np.asarray(lm.xy, np.float64)
    return None if face.keypoints is None else np.asarray(face.keypoints, np.float64)


def shape_distance(a: Face, b: Face) -> float:
    """Procrustes distance of two faces' points (68 when both have them, else 5), in units of the
    reference's size: 0 for identical shapes regardless of position, scale and roll."""
    pa, pb = _shape(a), _shape(b)
    if pa is None or pb is None:
        raise InputError("shape similarity needs keypoints or landmarks on both faces")
    if len(pa) != len(pb):
        from .landmarks import five_from_ibug68
        pa = five_from_ibug68(pa) if len(pa) == 68 else pa
        pb = five_from_ibug68(pb) if len(pb) == 68 else pb
    fit = estimate_similarity(pa, pb)
    size = np.sqrt(np.prod(np.ptp(pb, axis=0)))
    return float(np.linalg.norm(transform_points(fit.matrix, pa) - pb, axis=1).mean() / max(size, 1e-9))


def select(frame: FrameFaces, mode: str = "all", *, index: int = 0, count: int = 0,
           reference: Face | None = None) -> FrameFaces:
    """Keep some faces of ``frame`` (order: the mode's ranking). count > 0 keeps at most that many."""
    if mode not in SELECT_MODES:
        raise InputError(f"select mode must be one of {SELECT_MODES}, got {mode!r}")
    faces = list(frame.faces)
    if mode == "largest":
        faces.sort(key=lambda f: -f.area)
    elif mode == "index":
        faces = faces[index:index + 1] if 0 <= index < len(faces) else []
    elif mode == "central":
        cx, cy = frame.size[0] / 2, frame.size[1] / 2
        faces.sort(key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - cx, (f.box[1] + f.box[3]) / 2 - cy))
    elif mode == "reference":
        if reference is None:
            raise InputError("select mode 'reference' needs a reference face")
        faces.sort(key=lambda f: shape_distance(f, reference))
    if count > 0:
        faces = faces[:count]
    elif mode in ("largest", "central", "reference"):
        faces = faces[:1]
    return frame.replace(faces=tuple(faces))
