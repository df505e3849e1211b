import numpy as np
import pytest

from facegraph.core.conventions import affine_index_from_area, from_index_coords, to_index_coords
from facegraph.core.errors import EstimationError, InputError
from facegraph.core.geometry import (compose, decompose_similarity, estimate_similarity, invert_affine,
                                     similarity_matrix, transform_points, warp_affine)

RNG = np.random.default_rng(0)


def test_umeyama_recovers_a_similarity_in_fp64():
    m = similarity_matrix(1.7, 0.3, 12.5, -4.25)
    src = RNG.uniform(0, 100, (20, 2))
    fit = estimate_similarity(src, transform_points(m, src))
    assert np.allclose(fit.matrix, m, atol=1e-10) and fit.rms < 1e-9
    assert np.allclose(decompose_similarity(fit.matrix), (1.7, 0.3, 12.5, -4.25))


def test_weights_and_ransac_reject_outliers():
    m = similarity_matrix(0.5, -0.8, 3, 4)
    src = RNG.uniform(0, 100, (30, 2))
    dst = transform_points(m, src) + RNG.normal(0, 0.05, (30, 2))
    dst[:5] += 40  # outliers
    plain = estimate_similarity(src, dst)
    weighted = estimate_similarity(src, dst, weights=np.r_[np.zeros(5), np.ones(25)])
    robust = estimate_similarity(src, dst, ransac_threshold=1.0)
    assert plain.rms > 5
    clean = transform_points(m, src[5:])
    for fit in (weighted, robust):  # within the injected 0.05 px noise on the inliers
        assert np.abs(transform_points(fit.matrix, src[5:]) - clean).mean() < 0.05
    assert robust.inliers[:5].sum() == 0 and robust.inliers[5:].all()


def test_no_reflection_ever():
    src = RNG.uniform(0, 10, (10, 2))
    mirrored = src * [-1, 1]
    fit = estimate_similarity(src, mirrored)
    assert np.linalg.det(fit.matrix[:, :2]) > 0


@pytest.mark.parametrize("src", [np.zeros((1, 2)), np.ones((5, 2)), np.array([[np.nan, 0], [1, 1]])])
def test_degenerate_input_raises(src):
    with pytest.raises(EstimationError):
        estimate_similarity(src, src)


def test_bad_shapes():
    with pytest.raises(InputError):
        estimate_similarity(np.zeros((3, 2)), np.zeros((4, 2)))


def test_invert_and_compose():
    a = similarity_matrix(2, 0.4, 1, 2)
    b = similarity_matrix(0.5, -0.1, -3, 7)
    assert np.allclose(compose(a, invert_affine(a)), [[1, 0, 0], [0, 1, 0]])
    p = RNG.uniform(0, 5, (4, 2))
    assert np.allclose(transform_points(compose(a, b), p), transform_points(a, transform_points(b, p)))
    with pytest.raises(EstimationError):
        invert_affine(np.zeros((2, 3)))


def test_pixel_conventions():
    p = np.array([[0.0, 0.0], [2.0, 3.0]])
    assert np.allclose(to_index_coords(from_index_coords(p)), p)
    # a pure x2 scale about the origin corner: pixel centre 0.5 -> 1.0, i.e. index 0 -> 0.5
    m = affine_index_from_area(np.array([[2.0, 0, 0], [0, 2.0, 0]]))
    assert np.allclose(m @ [0, 0, 1], [0.5, 0.5])


def test_warp_follows_the_area_convention():
    img = np.zeros((8, 8), np.float32)
    img[2, 3] = 1.0  # pixel centre (3.5, 2.5)
    out = warp_affine(img, [[1, 0, 2], [0, 1, 1]], (8, 8), interpolation="nearest")
    assert out[3, 5] == 1.0  # moved by (2, 1)
    up = warp_affine(img, [[2, 0, 0], [0, 2, 0]], (16, 16), interpolation="linear")
    ys, xs = np.nonzero(up == up.max())
    assert np.allclose([(xs.mean() + 0.5), (ys.mean() + 0.5)], [7.0, 5.0])  # centre scales from the corner


def test_warp_keeps_linear_values_and_many_channels():
    img = RNG.uniform(-2, 40, (10, 12, 6)).astype(np.float32)
    out = warp_affine(img, [[1, 0, 0], [0, 1, 0]], (12, 10))
    assert np.allclose(out, img, atol=1e-5) and out.shape == img.shape
