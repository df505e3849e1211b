"""Compare a tracked face's motion with the known motion of a synthetic plate (core.synthetic).

The plate shows a photo moved by known plate_from_photo matrices M_t. Whatever point of the photo a track
follows, its frame position must be M_t(p) for one fixed photo point p; p is estimated as the median of
M_t^-1(c_t) over the frames, then the error of each frame is |c_t - M_t(p)| in pixels. Used by the temporal
tests (lag after a step) and the temporal benchmark.
"""
from __future__ import annotations

import numpy as np

from .geometry import invert_affine, transform_points


def follow_error(centres: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """Per-frame error (px) of tracked centres (T, 2) against the best fixed photo point under ``matrices``."""
    c = np.asarray(centres, np.float64)
    photo = np.array([transform_points(invert_affine(m), c[i:i + 1])[0] for i, m in enumerate(matrices)])
    p = np.median(photo[np.isfinite(photo).all(1)], axis=0)
    truth = np.array([transform_points(m, p[None])[0] for m in matrices])
    return np.linalg.norm(c - truth, axis=1)


def frames_to_settle(error: np.ndarray, step_at: int, tolerance: float) -> int:
    """Frames after ``step_at`` until the error stays within ``tolerance`` (0 = settled on the step frame)."""
    for t in range(step_at, len(error)):
        if np.all(error[t:] <= tolerance):
            return t - step_at
    return len(error) - step_at
