"""The morphable model loaders on the real files (BFM / 3DDFA, Surrey Face Model, MediaPipe canonical mesh)
and the eos cereal reader on truncated / corrupted copies of the real file."""
import dataclasses
import struct
import time

import numpy as np
import pytest

from facegraph.core.errors import InputError, ModelError
from facegraph.core.morphable.correspondences import CONTOUR_POINTS, face_centre_x, frontal_ibug68
from facegraph.core.morphable.model import REGION_NAMES, MorphableModel
from facegraph.core.morphable.synthetic import synthetic_model
from facegraph.models.cereal import parse_blendshapes, parse_morphable_model
from facegraph.models.morphable import (bfm_coefficients_from_tddfa, bfm_whitening, load_morphable_model,
                                        load_sfm_edge_topology)
from facegraph.models.registry import registry

pytestmark = pytest.mark.shared

IDS = ("bfm_3ddfa", "sfm_3448", "mediapipe_canonical")
#: (vertices, identity bases, expression bases, expression kind, unit, restricted) as the files say
EXPECTED = {"bfm_3ddfa": (38365, 40, 10, "pca", "um", True),
            "sfm_3448": (3448, 63, 6, "blendshapes", "mm", True),
            "mediapipe_canonical": (468, 0, 0, "pca", "cm", False)}


@pytest.fixture(scope="module", params=IDS)
def model(request, mirror) -> MorphableModel:
    return load_morphable_model(request.param)


def _ibug(m):
    return frontal_ibug68(m.mean, m.landmarks["ibug68"])


def test_counts_units_and_licence_from_the_registry(model):
    v, k_id, k_exp, kind, unit, restricted = EXPECTED[model.name]
    assert (model.n_vertices, model.n_identity, model.n_expression) == (v, k_id, k_exp)
    assert model.expression_kind == kind and model.unit == unit
    spec = registry().get(model.name)
    assert model.licence == spec.licence and model.restricted is spec.restricted is restricted
    assert model.mean.dtype == np.float64 and model.identity_basis.dtype == np.float64
    if kind == "blendshapes":
        assert model.expression_names == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")


def test_axes_nose_tip_forward_eyes_above_mouth_left_eye_at_plus_x(model):
    p = model.mean[model.landmarks["ibug68"][30]]
    z = model.mean[:, 2]
    assert p[2] >= np.quantile(z, 0.999)                           # the nose tip is (about) the largest z
    assert np.linalg.norm(model.mean[np.argmax(z)] - p) < 0.1 * np.ptp(model.mean[:, 0])
    q = _ibug(model)
    assert q[36:48, 1].mean() > q[30, 1] > q[48:60, 1].mean() > q[8, 1]  # eyes > nose tip > mouth > chin
    assert q[42:48, 0].mean() > 0 > q[36:42, 0].mean()                     # subject's left eye at +x
    assert q[17:27, 1].mean() > q[36:48, 1].mean()                         # brows above the eyes


def test_ibug68_frontal_layout(model):
    q = _ibug(model)
    assert q[36, 0] < q[39, 0] < q[42, 0] < q[45, 0]                      # eye corners left to right
    assert q[31, 0] < q[33, 0] < q[35, 0] and q[48, 0] < q[51, 0] < q[54, 0]
    assert q[36, 0] < q[30, 0] < q[45, 0] and q[0, 0] < q[36, 0] and q[16, 0] > q[45, 0]
    assert q[27, 1] > q[28, 1] > q[29, 1] > q[30, 1] > q[33, 1] > q[51, 1] > q[57, 1]
    iod = np.linalg.norm(q[42:48].mean(0) - q[36:42].mean(0))
    assert 0.2 < iod / np.ptp(model.mean[:, 0]) < 0.6


def test_uv_and_triangles(model):
    t = model.triangles
    assert t.dtype == np.int64 and t.min() >= 0 and t.max() < model.n_vertices
    assert len(np.unique(t)) > 0.95 * model.n_vertices
    assert (t[:, 0] != t[:, 1]).all() and (t[:, 1] != t[:, 2]).all()
    v = model.mean
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    assert (n[:, 2] > 0).mean() > 0.9                                     # counter-clockwise from the front
    assert model.uv is not None and model.uv.shape == (model.n_vertices, 2)
    assert model.uv.min() >= 0 and model.uv.max() <= 1
    assert np.corrcoef(model.uv[:, 1], v[:, 1])[0, 1] < -0.9              # v down
    assert np.corrcoef(model.uv[:, 0], v[:, 0])[0, 1] > 0.9


def test_regions_cover_every_part(model):
    counts = np.bincount(model.regions, minlength=len(REGION_NAMES))
    need = [n for n in REGION_NAMES if n != "mouth_interior"]
    assert all(counts[REGION_NAMES.index(n)] > 0 for n in need), dict(zip(REGION_NAMES, counts))
    assert counts[0] > 0.5 * model.n_vertices                              # mostly skin
    x = model.mean[:, 0]
    assert x[model.regions == REGION_NAMES.index("left_eye")].min() > 0
    assert x[model.regions == REGION_NAMES.index("right_brow")].max() < 0


def test_contour_lines_run_from_the_centre_outwards(model):
    xc = face_centre_x(_ibug(model))
    for side, sign in (("right", -1), ("left", 1)):
        lines = model.contours[side]
        assert len(lines) == len(CONTOUR_POINTS[side]) == 8
        for line in lines:
            d = sign * (model.mean[line, 0] - xc)
            assert len(line) >= 3 and (d >= 0).all() and (np.diff(d) > 0).all()
        heights = [model.mean[line, 1].mean() for line in lines]
        assert (np.diff(heights) < 0).all()                                 # top to bottom


def test_mediapipe478_correspondences(model):
    mp = model.landmarks["mediapipe478"]
    assert mp.shape == (478,) and (mp[468:] == -1).all() and (mp[:468] >= 0).mean() > 0.8
    ib = model.landmarks["ibug68"]
    q = model.mean
    iod = np.linalg.norm(q[ib[42:48]].mean(0) - q[ib[36:42]].mean(0))
    for mesh_v, ibug_k in ((4, 30), (33, 36), (263, 45), (61, 48), (291, 54)):  # nose tip, eye / mouth corners
        assert np.linalg.norm(q[mp[mesh_v]] - q[ib[ibug_k]]) < 0.15 * iod, (mesh_v, ibug_k)


def test_models_are_cached_and_read_only(model):
    assert load_morphable_model(model.name) is model
    with pytest.raises(ValueError):
        model.mean[0, 0] = 1.0
    assert model.shape().flags.writeable


def test_unknown_id_and_a_model_without_uvs():
    with pytest.raises(InputError, match="unknown morphable model"):
        load_morphable_model("nope")
    m = synthetic_model(with_uv=False)
    assert not m.has_uv and m.uv is None
    sfm = load_morphable_model("sfm_3448")
    bare = dataclasses.replace(sfm, uv=None, regions=None)
    assert not bare.has_uv and bare.shape(np.ones(63)).shape == (3448, 3)


def test_bfm_coefficients_are_3ddfa_whitened_parameters(mirror):
    m = load_morphable_model("bfm_3ddfa")
    mean, std = bfm_whitening()
    ident, expr = bfm_coefficients_from_tddfa(mean[12:52], mean[52:62])
    assert np.allclose(ident, 0) and np.allclose(expr, 0)
    # the record reproduces 3DDFA's u + W_shp a + W_exp b on its keypoints for any coefficients
    rng = np.random.default_rng(0)
    c_id, c_exp = rng.normal(size=40), rng.normal(size=10)
    a, b = mean[12:52] + std[12:52] * c_id, mean[52:62] + std[52:62] * c_exp
    kp = np.load(mirror / "bfm/keypoints_sim.npy")
    u = (np.load(mirror / "bfm/u_shp.npy") + np.load(mirror / "bfm/u_exp.npy"))[kp, 0].astype(np.float64)
    ref = u + np.load(mirror / "bfm/w_shp_sim.npy", mmap_mode="r")[kp] @ a \
        + np.load(mirror / "bfm/w_exp_sim.npy", mmap_mode="r")[kp] @ b
    got = m.shape(c_id, c_exp)[m.landmarks["ibug68"]]
    assert np.allclose(got, ref.reshape(68, 3), atol=1e-3 * np.abs(ref).max())


def test_sfm_identity_basis_is_scaled_orthonormal_and_edges_load(mirror):
    m = load_morphable_model("sfm_3448")
    flat = m.identity_basis.reshape(63, -1)
    gram = flat @ flat.T
    eig = np.diag(gram)
    assert np.allclose(gram, np.diag(eig), atol=1e-6 * eig.max()) and (np.diff(eig) <= 1e-6 * eig.max()).all()
    assert np.allclose(np.sqrt(eig[0]), 237.7, rtol=1e-3)  # sqrt of the first eigenvalue, 56502.4 mm^2
    faces, verts = load_sfm_edge_topology()
    assert faces.shape == verts.shape and faces.shape[1] == 2 and faces.max() < len(m.triangles)
    assert verts.max() < m.n_vertices and (faces < 0).any(1).sum() == 160  # boundary edges have one face
    t = m.triangles
    assert all(set(verts[i]) <= set(t[j]) for i in range(0, len(faces), 97) for j in faces[i] if j >= 0)
    assert (m.landmarks["ibug68"][[*range(8), *range(9, 17), 60, 64]] == -1).all()


# ------------------------------------------------------------------------------------------ cereal
@pytest.fixture(scope="module")
def sfm_bytes(mirror) -> bytes:
    return (mirror / "sfm/sfm_shape_3448.bin").read_bytes()


@pytest.fixture(scope="module")
def blend_bytes(mirror) -> bytes:
    return (mirror / "sfm/expression_blendshapes_3448.bin").read_bytes()


def test_cereal_reads_the_real_files(sfm_bytes, blend_bytes):
    mm = parse_morphable_model(sfm_bytes)
    assert mm.version == 1 and mm.shape.mean.shape == (10344,) and mm.shape.basis.shape == (10344, 63)
    assert mm.shape.triangles.shape == (6736, 3) and mm.colour.empty and mm.texture_coordinates.shape == (3448, 2)
    bs = parse_blendshapes(blend_bytes)
    assert [b.name for b in bs][:2] == ["anger", "disgust"] and bs[0].deformation.shape == (10344,)


def test_cereal_rejects_truncated_files(sfm_bytes, blend_bytes, tmp_path):
    for cut in (0, 3, 11, 100, 41400, len(sfm_bytes) // 2, len(sfm_bytes) - 1):
        with pytest.raises(ModelError, match="malformed"):
            parse_morphable_model(sfm_bytes[:cut])
    for cut in (0, 7, 20, len(blend_bytes) - 1):
        with pytest.raises(ModelError, match="malformed"):
            parse_blendshapes(blend_bytes[:cut])
    with pytest.raises(ModelError, match="left over"):
        parse_morphable_model(sfm_bytes + b"\0")
    # through a file, as the loader reads it
    from facegraph.models.cereal import read_morphable_model
    bad = tmp_path / "sfm_shape_3448.bin"
    bad.write_bytes(sfm_bytes[:5000])
    with pytest.raises(ModelError, match="sfm_shape_3448.bin"):
        read_morphable_model(bad)


def _patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into("<" + fmt, b, offset, value)
    return bytes(b)


def test_cereal_rejects_corrupted_sizes_fast(sfm_bytes, blend_bytes):
    mean_end = 12 + 10344 * 4
    basis_end = mean_end + 8 + 10344 * 63 * 4
    tri_count_at = basis_end + 8 + 63 * 4
    cases = [(0, "I", 7),                               # unknown class version
             (4, "i", 0x7FFFFFFF), (4, "i", -3),        # absurd / negative mean rows
             (mean_end, "i", 10343),                    # basis rows disagree with the mean
             (tri_count_at, "Q", 2 ** 62),              # absurd triangle count
             (tri_count_at + 8, "i", 3448),             # triangle index out of range
             (basis_end + 8, "f", -1.0),                # negative eigenvalue (variance)
             (12, "f", float("nan"))]                   # non-finite mean
    t0 = time.perf_counter()
    for offset, fmt, value in cases:
        with pytest.raises(ModelError, match="malformed"):
            parse_morphable_model(_patched(sfm_bytes, offset, fmt, value))
    for offset, fmt, value in [(0, "Q", 2 ** 63), (8, "Q", 2 ** 40), (21, "i", 10000)]:
        with pytest.raises(ModelError, match="malformed"):
            parse_blendshapes(_patched(blend_bytes, offset, fmt, value))
    assert time.perf_counter() - t0 < 2.0
