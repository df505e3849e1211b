"""Head pose: rotations from a 3D landmark fit, and their yaw / pitch / roll (conventions: Angles).

Frames: the *camera* frame is x right, y down, z forward (into the scene), matching image axes. A face model
(canonical mesh, 3DMM) is expressed in its own *model* frame x right (the subject's left), y up, z out of
the face towards the viewer; a frontal face therefore has R = diag(1, -1, -1) between the two. Angles are
read from ``R_face = R @ diag(1, -1, -1)`` (identity for a frontal face) as intrinsic yaw (about y), pitch
(about x), roll (about z): R_face = Ry(yaw) Rx(pitch) Rz(roll).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import EstimationError, InputError
from .geometry import umeyama

FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Model -> camera rotation for the given angles in degrees (inverse of :func:`angles_from_rotation`)."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    return _ry(y) @ _rx(p) @ _rz(r) @ FLIP_YZ


def angles_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a model -> camera rotation (see module docstring).

    Sign conventions (camera y down): yaw > 0 turns the face towards image right... measured as the
    rotation of the face's forward axis about the camera's vertical; pitch > 0 tips the face's top away
    from the camera... about x; roll > 0 rotates the face clockwise on screen.
    """
    f = np.asarray(r, np.float64) @ FLIP_YZ
    # f = Ry(y) Rx(p) Rz(r): f[1,2] = -sin(p)
    sp = -f[1, 2]
    p = np.arcsin(np.clip(sp, -1.0, 1.0))
    if abs(np.cos(p)) > 1e-6:
        y = np.arctan2(f[0, 2], f[2, 2])
        rr = np.arctan2(f[1, 0], f[1, 1])
    else:  # gimbal lock: roll folded into yaw
        y = np.arctan2(-f[2, 0], f[0, 0])
        rr = 0.0
    return tuple(float(v) for v in np.rad2deg([y, p, rr]))


@dataclasses.dataclass(frozen=True)
class RigidFit:
    """src (model) -> dst (camera) similarity: dst ~ scale * R @ src + t."""

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    rms: float


def fit_rigid_3d(model: np.ndarray, observed: np.ndarray, weights: np.ndarray | None = None) -> RigidFit:
    """Weighted 3D similarity (Umeyama 1991, no reflection) from model points to observed points.

    model, observed: (N, 3). Raises EstimationError on degenerate input.
    """
    a = np.asarray(model, np.float64)
    b = np.asarray(observed, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"fit_rigid_3d needs two (N, 3) arrays, got {a.shape} and {b.shape}")
    w = np.ones(len(a)) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1) & (w > 0)
    if ok.sum() < 3:
        raise EstimationError("a 3D pose needs at least 3 valid points")
    a, b, w = a[ok], b[ok], w[ok] / w[ok].sum()
    scale, r, t = umeyama(a, b, w)
    res = np.linalg.norm((scale * (r @ a.T)).T + t - b, axis=1)
    return RigidFit(rotation=r, scale=scale, translation=t, rms=float(np.sqrt(w @ res ** 2)))


def rotation_from_scaled(p: np.ndarray) -> np.ndarray:
    """Nearest rotation to the first two rows of a scaled-orthographic 3x3 (3DDFA's P[:, :3]), rows
    normalised and completed by their cross product."""
    r1, r2 = np.asarray(p[0], np.float64), np.asarray(p[1], np.float64)
    r1 = r1 / np.linalg.norm(r1)
    r2 = r2 - (r2 @ r1) * r1
    r2 = r2 / np.linalg.norm(r2)
    return np.stack([r1, r2, np.cross(r1, r2)])


def rigid_residual(model: np.ndarray, observed: np.ndarray, fit: RigidFit) -> float:
    """How far ``observed`` (N, 3) is from a rigid copy of ``model`` under ``fit``: the unweighted rms over all
    points divided by the fitted size of the model (sqrt of its x-y extent area, scaled)."""
    m = np.asarray(model, np.float64)
    placed = (fit.scale * (fit.rotation @ m.T)).T + fit.translation
    extent = float(np.sqrt(np.prod(np.ptp(m[:, :2], axis=0)))) * fit.scale
    return float(np.sqrt(np.mean(np.sum((placed - np.asarray(observed, np.float64)) ** 2, axis=1))) / max(extent, 1e-9))
