"""Conventions that every module follows. Written once here; docstrings refer to them by name.

Coordinates ("pixel-area convention")
    Points are (x, y) in pixels, float. The origin (0, 0) is the *top-left corner of the top-left pixel*; the
    centre of pixel (column i, row j) is at (i + 0.5, j + 0.5); an image of width W spans x in [0, W]. Boxes
    are (x0, y0, x1, y1) in the same frame, x1/y1 exclusive edges, so ``w = x1 - x0``.
    Models and libraries that use the "pixel-centre" convention (OpenCV's warpAffine, most landmark files,
    ``.pts`` annotations, network outputs in index units) are converted at the boundary with
    :func:`from_index_coords` / :func:`to_index_coords`. Every decoder documents which one it received.

Matrices
    2x3 affine matrices map *source -> destination* pixel coordinates in the convention above, acting on
    column vectors [x, y, 1]. They are named by direction: ``crop_from_frame`` takes frame points to crop
    points; its inverse is ``frame_from_crop``. fp64 for estimation, stored as fp64.

Images
    Graph frames are the host's IMAGE: float32 torch tensors [B, H, W, C], C = 3 (RGB) or 4 (RGBA),
    scene-linear, premultiplied alpha, NOT clamped. Masks are float32 [B, H, W] in [0, 1]. In core (numpy)
    a single frame is [H, W, C] float32 with the same meaning. 8-bit data appears only in previews and in
    the copy fed to a network (see ``core.colour.network_view``).

Angles
    Head pose is (yaw, pitch, roll) in degrees, intrinsic, camera looking down +z with y down:
    yaw > 0 turns the face towards the image's left (subject's right), pitch > 0 tilts the chin down,
    roll > 0 rotates the face clockwise in the image.
"""
from __future__ import annotations

import numpy as np

#: Offset from an integer pixel index to that pixel's centre in our coordinates.
PIXEL_CENTRE = 0.5


def from_index_coords(points: np.ndarray) -> np.ndarray:
    """Pixel-centre (index) coordinates -> pixel-area coordinates: adds 0.5 to x and y.

    Args: points (..., 2+) float; only the first two columns are shifted. Returns a new float64 array.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., :2] += PIXEL_CENTRE
    return out


def to_index_coords(points: np.ndarray) -> np.ndarray:
    """Pixel-area coordinates -> pixel-centre (index) coordinates: subtracts 0.5 from x and y."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., :2] -= PIXEL_CENTRE
    return out


def affine_index_from_area(m: np.ndarray) -> np.ndarray:
    """Re-express a 2x3 affine in pixel-centre coordinates (what cv2.warpAffine expects).

    If ``m`` maps area coords p -> q, the result maps (p - 0.5) -> (q - 0.5): M' = T(-0.5) M T(+0.5).
    """
    m = np.asarray(m, dtype=np.float64)
    out = m.copy()
    out[:, 2] = m[:, 2] + m[:, :2].sum(axis=1) * PIXEL_CENTRE - PIXEL_CENTRE
    return out
