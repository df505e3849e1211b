"""The refine cascade's pure parts: eye-patch gating and merging, and pose-gated fusion of estimates.

Stage 1 is a global landmark estimate; stage 2 re-crops the mesh on its own alignment and runs local patch
models (MediaPipe's iris model on each eye). Every gate decision is returned as a short reason string that
the caller records in the face's ``notes`` ("refine.eye.left=skipped:closed").

Measured on the annotated sets (BENCHMARKS.md): the eye patch improves the 468-point v1 mesh's eye region
(AFLW2000-3D 3.50 -> 3.19 %, 300-W 5.09 -> 4.01 %) but not the 478-point v2 mesh, whose attention heads
already refine the eyes (3.05 -> 3.01 %, 3.78 -> 4.07 %); ``eyes="auto"`` therefore patches v1 meshes only.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from .errors import InputError
from .landmarks import (EYE_CORNERS_LEFT, EYE_CORNERS_RIGHT, IRIS5_LEFT, IRIS5_RIGHT, IRIS71_TO_MESH_LEFT,
                        IRIS71_TO_MESH_RIGHT, Roi)

EyeSide = Literal["left", "right"]   # MediaPipe's naming: "left" = the eye at mesh vertices 33/133
EYE_MODES: tuple[str, ...] = ("auto", "on", "off")
#: upper / lower eyelid midpoints (mesh vertices) per side, for openness
_LIDS = {"left": (159, 145), "right": (386, 374)}
_CORNERS = {"left": EYE_CORNERS_LEFT, "right": EYE_CORNERS_RIGHT}
_CONTOUR = {"left": IRIS71_TO_MESH_LEFT, "right": IRIS71_TO_MESH_RIGHT}
_IRIS = {"left": IRIS5_LEFT, "right": IRIS5_RIGHT}


@dataclasses.dataclass(frozen=True)
class RefineOptions:
    """recrop: passes of the mesh on the crop its own previous landmarks define (0-3);
    eyes: eye patches ``auto`` (meshes without attention-refined eyes), ``on`` or ``off``;
    gates: min_presence (skip refining unsure faces), min_eye_openness (eyelid gap / eye width; below it the
    eye is closed), min_eye_ratio (an eye foreshortened below this fraction of the other's width is the far
    eye of a turned head), max_outside (fraction of the eye crop outside the frame), max_patch_shift
    (mean move of the eye contour / eye width; larger moves are rejected as implausible)."""

    recrop: int = 1
    eyes: str = "auto"
    min_presence: float = 0.5
    min_eye_openness: float = 0.1
    min_eye_ratio: float = 0.6
    max_outside: float = 0.25
    max_patch_shift: float = 0.3

    def __post_init__(self) -> None:
        if self.eyes not in EYE_MODES:
            raise InputError(f"eyes must be one of {EYE_MODES}, got {self.eyes!r}")
        if not 0 <= self.recrop <= 3:
            raise InputError(f"recrop must be 0-3, got {self.recrop}")


def eye_width(mesh: np.ndarray, side: str) -> float:
    a, b = _CORNERS[side]
    return float(np.linalg.norm(mesh[a, :2] - mesh[b, :2]))


def eye_openness(mesh: np.ndarray, side: str) -> float:
    """Eyelid gap over eye width (about 0.3 for an open eye, under 0.1 when closed)."""
    up, low = _LIDS[side]
    return float(np.linalg.norm(mesh[up, :2] - mesh[low, :2]) / max(eye_width(mesh, side), 1e-6))


def outside_fraction(roi: Roi, frame_size: tuple[int, int]) -> float:
    """Fraction of a (rotated) square crop lying outside the frame, estimated on a 16 x 16 grid."""
    g = (np.arange(16) + 0.5) / 16 - 0.5
    u, v = np.meshgrid(g, g)
    c, s = np.cos(roi.angle), np.sin(roi.angle)
    x = roi.cx + roi.size * (u * c - v * s)
    y = roi.cy + roi.size * (u * s + v * c)
    w, h = frame_size
    return float(np.mean((x < 0) | (x > w) | (y < 0) | (y > h)))


def eye_gate(mesh: np.ndarray, side: str, roi: Roi, frame_size: tuple[int, int], options: RefineOptions,
             presence: float = 1.0) -> str | None:
    """Why the ``side`` eye patch must be skipped, or None to run it."""
    if presence < options.min_presence:
        return "low-presence"
    other = "right" if side == "left" else "left"
    w, wo = eye_width(mesh, side), eye_width(mesh, other)
    if w < options.min_eye_ratio * wo:
        return "far-eye"
    if eye_openness(mesh, side) < options.min_eye_openness:
        return "closed"
    if outside_fraction(roi, frame_size) > options.max_outside:
        return "out-of-frame"
    return None


def patch_shift(mesh: np.ndarray, contour71: np.ndarray, side: str) -> float:
    """Mean move of the 16 eye-contour points the patch would replace, over the eye width."""
    idx = list(_CONTOUR[side][:16])
    return float(np.linalg.norm(mesh[idx, :2] - contour71[:16, :2], axis=1).mean() / max(eye_width(mesh, side), 1e-6))


def apply_eye_patch(mesh: np.ndarray, contour71: np.ndarray, iris5: np.ndarray, side: str) -> np.ndarray:
    """Replace the mesh's eye region by a patch model's points (MediaPipe's LandmarksRefinement rules: the 71
    contour points set x, y of their mesh vertices; the 5 iris points become vertices 468-472 / 473-477 with z
    the mean of the 16 eye-contour vertices). A 468-point mesh is extended to 478 points."""
    out = np.array(mesh, dtype=np.float32, copy=True)
    if len(out) == 468:
        out = np.concatenate([out, np.zeros((10, out.shape[1]), np.float32)])
    idx = list(_CONTOUR[side])
    out[idx, :2] = contour71[:, :2]
    iris_idx = list(_IRIS[side])
    out[iris_idx, :2] = iris5[:, :2]
    if out.shape[1] > 2:
        out[iris_idx, 2] = out[idx[:16], 2].mean()
    return out


def smoothstep(x: float, lo: float, hi: float) -> float:
    t = min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return t * t * (3 - 2 * t)


def fuse_by_pose(estimate_3d: np.ndarray, estimate_2d: np.ndarray, yaw_deg: float,
                 gate: tuple[float, float] = (30.0, 60.0)) -> tuple[np.ndarray, float]:
    """Blend a 3D-model estimate (holds up to profile, e.g. 3DDFA_V2) with a 2D one (better frontal detail):
    weight of the 3D estimate = smoothstep(|yaw|; gate). Returns (points, weight of the 3D estimate)."""
    w = smoothstep(abs(yaw_deg), *gate)
    return (w * np.asarray(estimate_3d, np.float64) + (1 - w) * np.asarray(estimate_2d, np.float64)).astype(np.float32), w
