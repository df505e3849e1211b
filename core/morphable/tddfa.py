"""3D morphable model maths (3DDFA_V2's parameterisation over the Basel Face Model subset).

Parameters: 62 = a 3x4 scaled-orthographic camera (12), 40 shape and 10 expression coefficients, de-whitened
with the model's mean / std. Vertices: v = P[:, :3] (u + W_shp a_shp + W_exp a_exp) + P[:, 3], in 3DDFA_V2's
y-up crop frame of ``size`` pixels, 1-based (MATLAB) x (3DDFA_V2 bfm/recon_vers and utils/similar_transform).
"""
from __future__ import annotations

import numpy as np

from ..conventions import PIXEL_CENTRE


def reconstruct(params: np.ndarray, mean: np.ndarray, w_shape: np.ndarray, w_expression: np.ndarray,
                size: int) -> np.ndarray:
    """De-whitened 62 parameters -> (N, 3) points in crop pixels (pixel-area, x right, y down; z = depth in
    pixels, larger = further). mean (3N, 1), w_shape (3N, 40), w_expression (3N, 10), flat x, y, z per point."""
    p = np.asarray(params, np.float64)
    cam = p[:12].reshape(3, 4)
    shape = mean + w_shape @ p[12:52, None] + w_expression @ p[52:62, None]
    v = cam[:, :3] @ shape.reshape(3, -1, order="F") + cam[:, 3:]
    pts = np.stack([v[0] - 1.0, size - v[1], -(v[2] - 1.0)], 1)  # MATLAB x, y-up crop, z out of the face
    pts[:, :2] += PIXEL_CENTRE
    return pts


def frame_camera(params: np.ndarray, frame_from_crop: np.ndarray, size: int) -> np.ndarray:
    """The parameters' camera re-expressed as a 3x4 map from model points to (x, y) frame pixels
    (pixel-area) and depth in pixels: the same map :func:`reconstruct` then the crop's inverse apply."""
    cam = np.asarray(params, np.float64)[:12].reshape(3, 4)
    a, b = frame_from_crop[:, :2], frame_from_crop[:, 2]
    e = np.array([-1.0 + PIXEL_CENTRE, size + PIXEL_CENTRE])
    out = np.zeros((3, 4))
    out[:2] = a @ np.diag([1.0, -1.0]) @ cam[:2]
    out[:2, 3] += a @ e + b
    s = float(np.sqrt(abs(np.linalg.det(a))))
    out[2] = -s * cam[2]
    out[2, 3] += s
    return out
