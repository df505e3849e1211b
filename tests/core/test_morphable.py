import numpy as np

from facegraph.core.geometry import transform_points
from facegraph.core.landmarks import Roi
from facegraph.core.morphable import frame_camera, reconstruct


def test_reconstruct_and_frame_camera_agree():
    rng = np.random.default_rng(0)
    n = 7
    mean = rng.normal(0, 50, (3 * n, 1))
    ws, we = rng.normal(0, 1, (3 * n, 40)), rng.normal(0, 1, (3 * n, 10))
    p = rng.normal(0, 0.1, 62)
    p[:12] = [0.5, 0.01, 0.0, 60, -0.01, 0.5, 0.0, 60, 0.0, 0.0, 0.5, 10]
    pts = reconstruct(p, mean, ws, we, 120)
    roi = Roi(300.0, 200.0, 240.0, 0.3)
    in_frame = transform_points(roi.frame_from_crop(120), pts)
    cam = frame_camera(p, roi.frame_from_crop(120), 120)
    shape = (mean + ws @ p[12:52, None] + we @ p[52:62, None]).reshape(3, -1, order="F")
    assert np.allclose((cam[:, :3] @ shape + cam[:, 3:]).T, in_frame, atol=1e-9)
    # y is flipped from 3DDFA's y-up crop frame: a larger model y is higher in the image
    assert pts.shape == (n, 3)
