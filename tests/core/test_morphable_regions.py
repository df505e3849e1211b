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
