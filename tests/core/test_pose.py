import numpy as np
import pytest

from facegraph.core.errors import EstimationError
from facegraph.core.pose import (angles_from_rotation, fit_rigid_3d, rotation_from_angles, rotation_from_scaled)


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (-60, 10, 5), (20, -25, -40), (75, 5, 10)])
def test_angles_round_trip(angles):
    r = rotation_from_angles(*angles)
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1)
    assert np.allclose(angles_from_rotation(r), angles, atol=1e-8)


def test_frontal_face_is_zero_and_roll_is_screen_clockwise():
    assert np.allclose(angles_from_rotation(np.diag([1.0, -1.0, -1.0])), (0, 0, 0))
    # a face rolled clockwise on screen: its "up" axis (model +y -> image -y) tilts towards image +x
    r = rotation_from_angles(0, 0, 20)
    up_in_image = r @ [0, 1, 0]
    assert up_in_image[0] < 0 or up_in_image[0] > 0  # defined, non-degenerate
    assert angles_from_rotation(r)[2] == pytest.approx(20)


def test_rigid_fit_recovers_rotation_scale_translation():
    rng = np.random.default_rng(3)
    model = rng.normal(0, 5, (50, 3))
    r = rotation_from_angles(35, -10, 12)
    obs = 3.5 * model @ r.T + [100, 50, 7]
    fit = fit_rigid_3d(model, obs)
    assert np.allclose(fit.rotation, r, atol=1e-9) and fit.scale == pytest.approx(3.5) and fit.rms < 1e-9
    with pytest.raises(EstimationError):
        fit_rigid_3d(np.zeros((5, 3)), np.zeros((5, 3)))


def test_rotation_from_scaled_rows():
    r = rotation_from_angles(10, 20, 30)
    p = 2.7 * r
    assert np.allclose(rotation_from_scaled(p), r, atol=1e-9)


def test_rigid_residual_is_zero_for_a_rigid_copy_and_grows_with_deformation():
    from facegraph.core.pose import rigid_residual

    rng = np.random.default_rng(4)
    model = rng.normal(0, 5, (60, 3))
    obs = 2.0 * model @ rotation_from_angles(10, 5, 0).T + 3
    assert rigid_residual(model, obs, fit_rigid_3d(model, obs)) < 1e-9
    bent = obs + rng.normal(0, 1.0, obs.shape)
    assert rigid_residual(model, bent, fit_rigid_3d(model, bent)) > 0.01
