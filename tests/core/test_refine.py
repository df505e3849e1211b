import numpy as np
import pytest

from facegraph.core.errors import InputError
from facegraph.core.landmarks import IRIS71_TO_MESH_LEFT, IRIS5_LEFT, Roi
from facegraph.core.refine import (RefineOptions, apply_eye_patch, eye_gate, eye_openness, fuse_by_pose,
                                   outside_fraction, patch_shift, smoothstep)


def _mesh(open_gap=4.0, right_scale=1.0):
    m = np.zeros((478, 3), np.float32)
    m[33], m[133] = [100, 100, 0], [120, 100, 0]           # left eye corners, width 20
    m[159], m[145] = [110, 100 - open_gap / 2, 0], [110, 100 + open_gap / 2, 0]
    m[362], m[263] = [140, 100, 0], [140 + 20 * right_scale, 100, 0]
    m[386], m[374] = [150, 97, 0], [150, 103, 0]
    return m


def test_openness_and_gates():
    opts = RefineOptions()
    roi = Roi(110, 100, 46)
    assert eye_openness(_mesh(6.0), "left") == pytest.approx(0.3)
    assert eye_gate(_mesh(6.0), "left", roi, (640, 480), opts) is None
    assert eye_gate(_mesh(1.0), "left", roi, (640, 480), opts) == "closed"
    assert eye_gate(_mesh(6.0, right_scale=2.5), "left", roi, (640, 480), opts) == "far-eye"
    assert eye_gate(_mesh(6.0), "left", Roi(0, 0, 46), (640, 480), opts) == "out-of-frame"
    assert eye_gate(_mesh(6.0), "left", roi, (640, 480), opts, presence=0.2) == "low-presence"
    assert outside_fraction(Roi(0, 0, 10), (100, 100)) == pytest.approx(0.75)


def test_patch_replaces_eye_and_extends_468_meshes():
    mesh = _mesh()[:468]
    contour = np.tile(np.array([[1.0, 2.0, 0.0]], np.float32), (71, 1))
    iris = np.tile(np.array([[5.0, 6.0, 0.0]], np.float32), (5, 1))
    out = apply_eye_patch(mesh, contour, iris, "left")
    assert out.shape == (478, 3)
    assert np.allclose(out[list(IRIS71_TO_MESH_LEFT), :2], [1, 2])
    assert np.allclose(out[list(IRIS5_LEFT), :2], [5, 6])
    assert patch_shift(_mesh(), np.asarray(_mesh())[list(IRIS71_TO_MESH_LEFT)], "left") == 0


def test_pose_gated_fusion():
    a, b = np.zeros((68, 2)), np.ones((68, 2))
    assert np.allclose(fuse_by_pose(a, b, 10)[0], b)
    assert np.allclose(fuse_by_pose(a, b, -80)[0], a)
    p, w = fuse_by_pose(a, b, 45)
    assert w == pytest.approx(0.5) and np.allclose(p, 0.5)
    assert smoothstep(0, 0, 1) == 0 and smoothstep(2, 0, 1) == 1


def test_options_validated():
    with pytest.raises(InputError):
        RefineOptions(eyes="sometimes")
    with pytest.raises(InputError):
        RefineOptions(recrop=9)
