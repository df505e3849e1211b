"""Synthetic plates with known motion: a real photo moved by smooth similarity transforms.

Used by the demo (the built-in sample) and by tests and benchmarks that need ground-truth motion (temporal
lag, position error, tracking). Everything is linear float; the photo is sRGB-decoded first.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .colour import srgb_to_linear
from .geometry import compose, similarity_matrix, warp_affine


@dataclasses.dataclass(frozen=True)
class Motion:
    """Per-frame plate_from_photo 2x3 matrices and exposure (stops) of a synthetic shot."""

    matrices: tuple[np.ndarray, ...]
    stops: tuple[float, ...]


def smooth_motion(n: int, photo_size: tuple[int, int], plate_size: tuple[int, int], *, seed: int = 7,
                  drift: float = 0.08, sway_deg: float = 8.0, zoom: float = 0.12, exposure_stops: float = 1.5,
                  step_at: int | None = None, step_px: float = 0.0) -> Motion:
    """Smooth, deterministic camera-like motion: the photo centred in the plate, drifting by ``drift`` of
    the plate width, rolling +-``sway_deg``, zooming +-``zoom``, exposure swinging +-``exposure_stops``.
    ``step_at``/``step_px``: an abrupt horizontal jump at that frame (for lag tests).
    """
    pw, ph = photo_size
    w, h = plate_size
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 4)
    base_scale = 0.8 * min(w / pw, h / ph)
    mats, stops = [], []
    for i in range(n):
        t = i / max(1, n - 1)
        s = base_scale * (1 + zoom * np.sin(2 * np.pi * t + phase[0]))
        a = np.deg2rad(sway_deg) * np.sin(2 * np.pi * t * 0.7 + phase[1])
        tx = w / 2 + drift * w * np.sin(2 * np.pi * t * 0.5 + phase[2])
        ty = h / 2 + 0.5 * drift * h * np.sin(2 * np.pi * t * 0.9 + phase[3])
        if step_at is not None and i >= step_at:
            tx += step_px
        centre = np.array([[1, 0, -pw / 2], [0, 1, -ph / 2]], dtype=np.float64)
        mats.append(compose(similarity_matrix(s, a, tx, ty), centre))
        stops.append(float(exposure_stops * np.sin(2 * np.pi * t * 1.3)))
    return Motion(matrices=tuple(mats), stops=tuple(stops))


def render_plate(photo_srgb: np.ndarray, motion: Motion, plate_size: tuple[int, int],
                 background: float = 0.02) -> "list[np.ndarray]":
    """Frames (H, W, 3) float32 linear: the sRGB-decoded photo warped by each matrix, scaled by 2**stops,
    over a flat background. photo_srgb: (h, w, 3) uint8 or float in [0, 1]."""
    photo = photo_srgb.astype(np.float32)
    if photo_srgb.dtype == np.uint8:
        photo /= 255.0
    lin = srgb_to_linear(photo[..., :3])
    rgba = np.concatenate([lin, np.ones(lin.shape[:2] + (1,), np.float32)], axis=-1)
    frames = []
    for m, st in zip(motion.matrices, motion.stops):
        warped = warp_affine(rgba, m, plate_size)
        a = warped[..., 3:4]
        img = warped[..., :3] + background * (1 - a)
        frames.append((img * np.float32(2.0 ** st)).astype(np.float32))
    return frames
