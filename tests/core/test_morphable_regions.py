import numpy as np
import pytest

from facegraph.core.errors import InputError
from facegraph.core.morphable.synthetic import synthetic_model


def _signed_volume(v, t):
    return float(np.einsum("ij,ij->i", v[t[:, 0]], np.cross(v[t[:, 1]], v[t[:, 2]])).sum() / 6.0)


def test_synthetic_model_is_a_closed_outward_face():
    m = synthetic_model()
    assert (m.n_vertices, m.n_identity, m.n_expression) == (1922, 5, 3)
    t = m.triangles
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    keys = set(map(tuple, edges))
    assert len(keys) == len(edges) and all((b, a) in keys for a, b in keys)      # closed 2-manifold
    assert _signed_volume(m.mean, t) > 0                                          # outward normals
    ib = m.landmarks["ibug68"]
    assert len(set(ib.tolist())) == 68 and ib[30] == np.argmax(m.mean[:, 2])
    p = m.mean[ib]
    assert p[36:48, 1].mean() > p[30, 1] > p[48:68, 1].mean()                      # eyes above nose above mouth
    assert p[42:48, 0].mean() > 0 > p[36:42, 0].mean()                            # subject's left eye at +x
    assert m.uv.min() >= 0 and m.uv.max() <= 1 and m.uv_triangles.shape == t.shape
    assert len(m.contours["right"]) == len(m.contours["left"]) == 8
    assert np.all(m.mean[np.concatenate(m.contours["right"]), 0] <= 1e-9)


def test_synthetic_model_options_and_determinism():
    a, b = synthetic_model(seed=3), synthetic_model(seed=3)
    assert np.array_equal(a.identity_basis, b.identity_basis)
    m = synthetic_model(0, 2, with_uv=False, fixed_jaw=False, expression_kind="blendshapes")
    assert m.n_identity == 0 and not m.has_uv and m.expression_kind == "blendshapes"
    assert (m.landmarks["ibug68"][:8] == -1).all() and m.landmarks["ibug68"][8] >= 0
    assert m.shape(None, np.ones(2)).shape == (m.n_vertices, 3)
    with pytest.raises(InputError):
        synthetic_model(expression_kind="nope")


# ------------------------------------------------------------------------------------------ regions
from facegraph.core.morphable.correspondences import (  # noqa: E402
    CONTOUR_POINTS, bfm_ibug68, face_centre_x, frontal_ibug68, jaw_contour_lines, mediapipe_ibug68,
    nearest_vertices, sfm_ibug68)
from facegraph.core.morphable.model import REGION_NAMES  # noqa: E402
from facegraph.core.morphable.regions import RegionOptions, label_regions, points_in_polygon, region_counts  # noqa: E402


def test_points_in_polygon_even_odd():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    pts = np.array([[1, 1], [3, 1], [-0.1, 1], [1.9, 1.9], [1, 2.5]])
    assert points_in_polygon(pts, square).tolist() == [True, False, False, True, False]
    assert not points_in_polygon(pts, square[:2]).any()                  # degenerate polygon


def test_regions_of_the_synthetic_face_are_where_they_belong():
    m = synthetic_model()
    counts = region_counts(m.regions)
    assert all(c > 0 for c in counts.values()), counts
    v, name = m.mean, np.array(REGION_NAMES)[m.regions]
    assert (v[name == "left_eye", 0] > 0).all() and (v[name == "right_eye", 0] < 0).all()
    assert (v[name == "left_brow", 0] > 0).all() and (v[name == "right_brow", 0] < 0).all()
    assert v[name == "left_brow", 1].min() > v[name == "left_eye", 1].max() - 5.0
    assert (v[name != "skin", 2] > 0).all()                               # nothing at the back of the head
    assert v[name == "mouth_interior", 1].mean() == pytest.approx(-29.5, abs=3.0)
    ib = m.landmarks["ibug68"]
    assert m.regions[ib[30]] == REGION_NAMES.index("nose") and m.regions[ib[51]] == REGION_NAMES.index("lips")
    wide = label_regions(m.mean, ib, RegionOptions(eye_scale=2.0))
    assert (wide == 1).sum() > counts["left_eye"]


def test_label_regions_rejects_bad_input():
    m = synthetic_model()
    ib = m.landmarks["ibug68"].copy()
    with pytest.raises(InputError):
        label_regions(m.mean[:, :2], ib)
    ib[37] = -1
    with pytest.raises(InputError, match="36-41"):
        label_regions(m.mean, ib)


# ------------------------------------------------------------------------------------ correspondences
def test_jaw_contour_lines_on_the_synthetic_face():
    m = synthetic_model(fixed_jaw=False)
    lines = jaw_contour_lines(m.mean, m.triangles, m.landmarks["ibug68"])
    xc = face_centre_x(frontal_ibug68(m.mean, m.landmarks["ibug68"]))
    for side, sign in (("right", -1), ("left", 1)):
        assert len(lines[side]) == len(CONTOUR_POINTS[side]) == 8
        for line, ring in zip(lines[side], m.contours[side]):
            d = sign * (m.mean[line, 0] - xc)
            assert (d >= 0).all() and (np.diff(d) > 0).all() and len(line) >= 5
            assert abs(m.mean[line, 1].mean() - m.mean[ring, 1].mean()) < 8.0   # about the ring's height
            assert (m.mean[line, 2] > -0.5 * 60).all()                          # not the back of the head


def test_frontal_ibug68_fills_missing_points_from_the_template():
    m = synthetic_model()
    full = frontal_ibug68(m.mean, m.landmarks["ibug68"])
    ib = m.landmarks["ibug68"].copy()
    ib[[*range(0, 8), *range(9, 17)]] = -1
    filled = frontal_ibug68(m.mean, ib)
    assert np.array_equal(filled[17:], full[17:])
    assert np.abs(filled[:17] - full[:17]).max() < 25.0                       # mm: a plausible jaw
    assert (filled[:8, 0] < 0).all() and (filled[9:17, 0] > 0).all()


def test_ibug68_index_arrays():
    text = "[landmark_mappings]\n9 = 33 # chin\n31 = 114\n"
    ib = sfm_ibug68(text)
    assert ib[8] == 33 and ib[30] == 114 and (np.delete(ib, [8, 30]) == -1).all()
    with pytest.raises(InputError):
        sfm_ibug68("[landmark_mappings]\n69 = 3\n")
    with pytest.raises(InputError):
        sfm_ibug68(text, n_vertices=100)
    kp = (np.arange(68)[:, None] * 30 * 3 + np.arange(3)).reshape(-1)
    assert np.array_equal(bfm_ibug68(kp), np.arange(68) * 30)
    assert np.array_equal(bfm_ibug68(kp, np.arange(0, 68 * 30, 30)), np.arange(68))
    assert (bfm_ibug68(kp, np.arange(0, 68 * 30, 60))[1::2] == -1).all()
    with pytest.raises(InputError):
        bfm_ibug68(kp[::-1])
    mp = mediapipe_ibug68()
    assert mp.shape == (68,) and mp[30] == 4 and mp[36] == 33 and mp[45] == 263


def test_nearest_vertices_is_exact():
    rng = np.random.default_rng(1)
    v, p = rng.normal(size=(500, 3)), rng.normal(size=(40, 3))
    idx, dist = nearest_vertices(v, p)
    ref = np.linalg.norm(p[:, None] - v[None], axis=2)
    assert np.array_equal(idx, ref.argmin(1)) and np.allclose(dist, ref.min(1))
