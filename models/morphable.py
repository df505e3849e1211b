"""Loaders: a registered morphable model id -> the in-memory :class:`~facegraph.core.morphable.model.MorphableModel`.

Models (files resolved and sha256-verified through the model store; licence and ``restricted`` come from the
registry entry):

``bfm_3ddfa``  The Basel Face Model subset of 3DDFA (``bfm/`` files) restricted to 3DDFA_V2's 38365-vertex
    no-neck mesh (``3ddfa_v2/indices.npy``) with its triangles (``tri.pkl``) and UVs (``BFM_UV.mat``).
    Coefficients: 3DDFA writes a shape as ``u_shp + u_exp + w_shp a + w_exp b`` with raw coefficients a (40)
    and b (10) whose training-set mean and standard deviation are ``param_whitening.pkl``'s ``param_mean`` /
    ``param_std`` (62 = 12 pose, 40 shape, 10 expression). Here ``mean = u_shp + u_exp + w_shp m_a + w_exp
    m_b`` and ``identity_basis[k] = w_shp[:, k] * s_a[k]`` (likewise the expression), so a coefficient is
    the whitened 3DDFA parameter ``(a - m_a) / s_a`` with an N(0, 1) prior (the 300W-LP fits' distribution,
    not BFM's own PCA prior); :func:`bfm_coefficients_from_tddfa` converts raw 3DDFA coefficients.
    Unit: BFM's micrometres ("um"). Triangles are re-ordered counter-clockwise seen from the front; UV v is
    flipped to down (3DDFA_V2's uv.py flips it for image rows too). iBUG-68: 3DDFA's ``keypoints_sim``
    (fixed vertices, jaw included).
``sfm_3448``  The Surrey Face Model (eos ``share/``): 63 identity PCs scaled by sqrt(eigenvalue) (eos's
    rescaled basis: N(0, 1) coefficients), 6 expression blendshapes (``expression_kind="blendshapes"``,
    weights in [0, 1]: anger, disgust, fear, happiness, sadness, surprise), per-vertex texture coordinates
    (already v down), iBUG-68 from ``ibug_to_sfm.txt`` (jaw 0-7 / 9-16 and inner mouth corners 60 / 64: -1),
    jaw contour lines ending at ``sfm_model_contours.json``'s outline. Unit "mm". The edge topology is
    :func:`load_sfm_edge_topology`.
``mediapipe_canonical``  MediaPipe's 468-vertex canonical face mesh (in ``face_landmarker.task``) with UVs
    (v down) and 898 triangles; no identity and no expression basis (K_id = K_exp = 0: a fitter handles
    expression as a per-frame residual plus the network's 52 blendshapes). Unit "cm". iBUG-68 via
    core.landmarks.MESH_TO_IBUG68, the first vertex where that mapping averages two (points 3, 4, 12, 27,
    28: see correspondences.MEDIAPIPE_IBUG68_TWO_VERTEX).

Every model is converted to the record's axes (x towards the image's right for a frontal face, y up, z
towards the camera): all three sources already use them (checked by the tests: nose tip at the largest z,
eyes above the mouth, the subject's left eye at +x). Landmarks "mediapipe478" are (478,) for every model:
the canonical model's own vertices 0-467 (the 10 iris points 468-477 are -1), for BFM / SFM the nearest
vertex after a similarity fit of the canonical mesh on the shared iBUG points (core/morphable/
correspondences.py), present only when ``face_landmarker.task`` resolves. Loaded models are cached (they
are immutable: their arrays are read-only).
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import FacegraphError, InputError, ModelError
from ..core.morphable.correspondences import (bfm_ibug68, jaw_contour_lines, mediapipe478_correspondences,
                                              mediapipe_ibug68, sfm_ibug68)
from ..core.morphable.model import MorphableModel
from ..core.morphable.regions import label_regions
from .registry import ModelSpec, registry
from .store import ModelStore, default_store

log = logging.getLogger(__name__)

#: the morphable model ids :func:`load_morphable_model` knows
MORPHABLE_MODEL_IDS: tuple[str, ...] = ("bfm_3ddfa", "sfm_3448", "mediapipe_canonical")
#: the zip member of face_landmarker.task that holds the canonical mesh (MediaPipe face_geometry)
CANONICAL_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
_CACHE_SIZE = 4

_cache: "collections.OrderedDict[tuple[str, int], MorphableModel]" = collections.OrderedDict()
_stores: dict[int, ModelStore] = {}
_lock = threading.Lock()


def load_morphable_model(model_id: str, *, store: ModelStore | None = None) -> MorphableModel:
    """The :class:`MorphableModel` of a registered id (:data:`MORPHABLE_MODEL_IDS`), from verified files.

    Cached per (id, store) in a small LRU (the returned model's arrays are read-only: copy to modify).
    Raises InputError for an unknown id, ModelNotFoundError / IntegrityError when files are missing or
    fail their hash, ModelError when a file is malformed. Conventions: module docstring and core/morphable/
    model.py.
    """
    if model_id not in MORPHABLE_MODEL_IDS:
        raise InputError(f"unknown morphable model {model_id!r}", hint=f"known: {', '.join(MORPHABLE_MODEL_IDS)}")
    st = store if store is not None else default_store()
    key = (model_id, id(st))
    with _lock:
        if key in _cache and _stores.get(id(st)) is st:
            _cache.move_to_end(key)
            return _cache[key]
    model = _LOADERS[model_id](st, registry().get(model_id))
    _freeze(model)
    with _lock:
        _cache[key] = model
        _stores[id(st)] = st
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def clear_cache() -> None:
    """Forget every cached model."""
    with _lock:
        _cache.clear()
        _stores.clear()


def _freeze(model: MorphableModel) -> None:
    arrays = [model.mean, model.identity_basis, model.expression_basis, model.triangles, model.uv,
              model.uv_triangles, model.regions, *model.landmarks.values()]
    arrays += [line for lines in model.contours.values() for line in lines]
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def _paths(store: ModelStore, model_id: str) -> dict[str, Path]:
    return dict(store.resolve(registry().get(model_id)).paths)


def _common(spec: ModelSpec) -> dict:
    return {"licence": spec.licence, "restricted": spec.restricted}


def _canonical_vertices(store: ModelStore) -> np.ndarray | None:
    """The canonical mesh's (468, 3) vertices, or None (logged) when face_landmarker.task does not resolve."""
    try:
        return read_canonical(_paths(store, "mediapipe_canonical")["mediapipe/face_landmarker.task"])[0]
    except FacegraphError as exc:
        log.info("no MediaPipe-478 correspondences: %s", exc)
        return None


def read_canonical(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (468, 3) cm, uv (468, 2) v down, triangles (898, 3), Procrustes weights (468,)) from a
    face_landmarker.task bundle; ModelError when the bundle or its canonical mesh is malformed."""
    from .landmarkers import read_canonical_mesh

    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(CANONICAL_MEMBER)
        verts, uv, tri, weights = read_canonical_mesh(data)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read MediaPipe's canonical mesh: {exc}", file=str(path)) from None
    if verts.shape != (468, 3) or uv.shape != (468, 2) or tri.ndim != 2 or not len(tri) or \
            tri.min() < 0 or tri.max() >= 468:
        raise ModelError(f"unexpected canonical mesh: {verts.shape} vertices, {tri.shape} triangles",
                         file=str(path))
    return verts, uv, tri, weights


def _ccw_from_front(mean: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Triangles re-ordered so that most of them face +z (counter-clockwise seen from the front)."""
    n = np.cross(mean[tri[:, 1]] - mean[tri[:, 0]], mean[tri[:, 2]] - mean[tri[:, 0]])
    return tri if (n[:, 2] > 0).sum() >= (n[:, 2] < 0).sum() else tri[:, [0, 2, 1]].copy()


def _mp478(mean: np.ndarray, ibug: np.ndarray, store: ModelStore) -> dict[str, np.ndarray]:
    can = _canonical_vertices(store)
    return {} if can is None else {"mediapipe478": mediapipe478_correspondences(mean, ibug, can)}


# ------------------------------------------------------------------------------------------------ BFM
def bfm_whitening(store: ModelStore | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean (62,), std (62,)) fp64 of 3DDFA's parameters from ``bfm/param_whitening.pkl``: 12 pose, 40
    shape, 10 expression; the bfm_3ddfa model's coefficients are ``(raw - mean) / std`` of the last 50."""
    from .safe_pickle import load_arrays

    path = _paths(store or default_store(), "bfm_3ddfa")["bfm/param_whitening.pkl"]
    pw = load_arrays(path)
    try:
        mean = np.asarray(pw["param_mean"], np.float64).reshape(-1)
        std = np.asarray(pw["param_std"], np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise ModelError("param_whitening.pkl must hold param_mean and param_std", file=str(path)) from None
    if mean.shape != (62,) or std.shape != (62,) or not (std[12:] > 0).all():
        raise ModelError(f"param_whitening.pkl: expected 62 means and positive stds, got {mean.shape}",
                         file=str(path))
    return mean, std


def bfm_coefficients_from_tddfa(shape: np.ndarray, expression: np.ndarray, *,
                                store: ModelStore | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw (de-whitened) 3DDFA coefficients, shape (40,) and expression (10,) (``MorphableParams`` of
    ``bfm_3ddfa`` / params[12:52], params[52:62] after 3DDFA_V2's de-whitening) -> the bfm_3ddfa model's
    N(0, 1) identity and expression coefficients: ``(raw - param_mean) / param_std``."""
    mean, std = bfm_whitening(store)
    a = np.asarray(shape, np.float64).reshape(-1)
    b = np.asarray(expression, np.float64).reshape(-1)
    if a.shape != (40,) or b.shape != (10,):
        raise InputError(f"bfm coefficients: shape must be (40,) and expression (10,), got {a.shape}, {b.shape}")
    return (a - mean[12:52]) / std[12:52], (b - mean[52:62]) / std[52:62]


def _load_bfm(store: ModelStore, spec: ModelSpec) -> MorphableModel:
    import scipy.io

    from .safe_pickle import load_arrays

    bfm = _paths(store, "bfm_3ddfa")
    mesh = _paths(store, "tddfa_v2_mesh")

    def npy(key: str, paths: dict[str, Path]) -> np.ndarray:
        try:
            return np.load(paths[key], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {key}: {exc}", file=str(paths[key])) from None

    u = (npy("bfm/u_shp.npy", bfm) + npy("bfm/u_exp.npy", bfm)).astype(np.float64).reshape(-1)
    w_shp, w_exp = npy("bfm/w_shp_sim.npy", bfm), npy("bfm/w_exp_sim.npy", bfm)
    sub = npy("3ddfa_v2/indices.npy", mesh).astype(np.int64).reshape(-1)
    n_full = u.size // 3
    if u.size % 3 or w_shp.shape != (u.size, 40) or w_exp.shape != (u.size, 10):
        raise ModelError(f"bfm_3ddfa: bases {w_shp.shape} / {w_exp.shape} do not fit a mean of {u.size}")
    if sub.size == 0 or sub.min() < 0 or sub.max() >= n_full or np.any(np.diff(sub) <= 0):
        raise ModelError("3ddfa_v2/indices.npy must be sorted, unique vertex indices into the BFM")
    mean_p, std_p = bfm_whitening(store)
    ws = w_shp.reshape(n_full, 3, 40)[sub].astype(np.float64)      # (V, 3, 40)
    we = w_exp.reshape(n_full, 3, 10)[sub].astype(np.float64)
    mean = u.reshape(n_full, 3)[sub] + ws @ mean_p[12:52] + we @ mean_p[52:62]
    ident = np.ascontiguousarray((ws * std_p[12:52]).transpose(2, 0, 1))
    expr = np.ascontiguousarray((we * std_p[52:62]).transpose(2, 0, 1))
    v = len(sub)

    tri = np.asarray(load_arrays(mesh["3ddfa_v2/tri.pkl"]))
    if tri.ndim != 2 or 3 not in tri.shape:
        raise ModelError(f"3ddfa_v2/tri.pkl: expected (3, F) triangles, got {tri.shape}")
    tri = (tri.T if tri.shape[0] == 3 else tri).astype(np.int64)
    if tri.min() < 0 or tri.max() >= v:
        raise ModelError(f"3ddfa_v2/tri.pkl indexes beyond the {v} no-neck vertices")
    tri = _ccw_from_front(mean, np.ascontiguousarray(tri))
    try:
        uv_full = np.asarray(scipy.io.loadmat(mesh["3ddfa_v2/BFM_UV.mat"])["UV"], np.float64)
    except (OSError, KeyError, ValueError, NotImplementedError) as exc:
        raise ModelError(f"cannot read BFM_UV.mat: {exc}", file=str(mesh["3ddfa_v2/BFM_UV.mat"])) from None
    if uv_full.shape != (n_full, 2):
        raise ModelError(f"BFM_UV.mat: UV must be ({n_full}, 2), got {uv_full.shape}")
    uv = uv_full[sub] * [1.0, -1.0] + [0.0, 1.0]          # v up -> v down
    kp = npy("bfm/keypoints_sim.npy", bfm)
    try:
        ibug = bfm_ibug68(kp, sub)
    except InputError as exc:
        raise ModelError(f"bfm/keypoints_sim.npy: {exc.message}") from None
    if (ibug < 0).any():
        raise ModelError("bfm_3ddfa: a keypoint lies outside 3DDFA_V2's no-neck mesh")
    landmarks = {"ibug68": ibug, **_mp478(mean, ibug, store)}
    return MorphableModel(
        name="bfm_3ddfa", mean=mean, identity_basis=ident, expression_basis=expr, triangles=tri,
        expression_kind="pca", uv=uv, landmarks=landmarks, contours=jaw_contour_lines(mean, tri, ibug),
        regions=label_regions(mean, ibug), unit="um", **_common(spec),
        notes=("3DDFA BFM subset on 3DDFA_V2's 38365-vertex no-neck mesh (indices.npy)",
               "coefficients = 3DDFA whitened parameters (raw - param_mean) / param_std "
               "(bfm/param_whitening.pkl); mean includes u_exp and the parameter means",
               "jaw contour lines derived from the mesh geometry (core/morphable/correspondences.py)"))


# ------------------------------------------------------------------------------------------------ SFM
def _load_sfm(store: ModelStore, spec: ModelSpec) -> MorphableModel:
    from .cereal import read_blendshapes, read_morphable_model

    p = _paths(store, "sfm_3448")
    mm = read_morphable_model(p["sfm/sfm_shape_3448.bin"])
    bs = read_blendshapes(p["sfm/expression_blendshapes_3448.bin"])
    d = mm.shape.mean.size
    v = d // 3
    if bs and bs[0].deformation.size != d:
        raise ModelError(f"sfm blendshapes have {bs[0].deformation.size} values for {d} shape values")
    if not len(mm.shape.triangles):
        raise ModelError("sfm_shape_3448.bin has no triangles")
    mean = mm.shape.mean.reshape(v, 3)
    scaled = mm.shape.basis * np.sqrt(mm.shape.eigenvalues)[None, :]
    ident = np.ascontiguousarray(scaled.T.reshape(-1, v, 3))
    expr = np.stack([b.deformation.reshape(v, 3) for b in bs]) if bs else np.zeros((0, v, 3))
    tri = _ccw_from_front(mean, mm.shape.triangles)
    uv = mm.texture_coordinates if len(mm.texture_coordinates) else None
    try:
        ibug = sfm_ibug68(p["sfm/ibug_to_sfm.txt"].read_text(encoding="utf-8"), v)
        contour = json.loads(p["sfm/sfm_model_contours.json"].read_text(encoding="utf-8"))["model_contour"]
        outline = {"right": [int(i) for i in contour["right_contour"]],
                   "left": [int(i) for i in contour["left_contour"]]}
    except (InputError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"sfm_3448 landmark / contour files: {exc}", model="sfm_3448") from None
    if any(i < 0 or i >= v for side in outline.values() for i in side):
        raise ModelError("sfm_model_contours.json indexes beyond the model's vertices")
    landmarks = {"ibug68": ibug, **_mp478(mean, ibug, store)}
    return MorphableModel(
        name="sfm_3448", mean=mean, identity_basis=ident, expression_basis=expr, triangles=tri,
        expression_kind="blendshapes", expression_names=tuple(b.name for b in bs), uv=uv, landmarks=landmarks,
        contours=jaw_contour_lines(mean, tri, ibug, outline=outline), regions=label_regions(mean, ibug),
        unit="mm", **_common(spec),
        notes=(f"eos cereal MorphableModel version {mm.version}; shape-only (no colour model)"
               if mm.colour.empty else f"eos cereal MorphableModel version {mm.version}",
               "identity basis = orthonormal PCs x sqrt(eigenvalue); expressions are blendshape deltas",
               "jaw contour lines end at sfm_model_contours.json's outline"))


def load_sfm_edge_topology(store: ModelStore | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(adjacent_faces (E, 2), adjacent_vertices (E, 2)) int64 of sfm_3448's edges from
    ``sfm_3448_edge_topology.json``, converted from its 1-based indices to 0-based with -1 = none (eos's
    "0" means no adjacent face: a boundary edge, where the file puts the -1 in either column; 160 of the
    10184 edges). Faces index the model's ``triangles``; each edge's two vertices belong to its faces."""
    path = _paths(store or default_store(), "sfm_3448")["sfm/sfm_3448_edge_topology.json"]
    try:
        top = json.loads(path.read_text(encoding="utf-8"))["edge_topology"]
        faces = np.array([[e["value0"], e["value1"]] for e in top["adjacent_faces"]], np.int64) - 1
        verts = np.array([[e["value0"], e["value1"]] for e in top["adjacent_vertices"]], np.int64) - 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read the SFM edge topology: {exc}", file=str(path)) from None
    if faces.shape != verts.shape or faces.ndim != 2 or faces.min(initial=0) < -1 or verts.min(initial=0) < -1:
        raise ModelError("malformed SFM edge topology", file=str(path))
    return faces, verts


# ------------------------------------------------------------------------------------------ MediaPipe
def _load_mediapipe(store: ModelStore, spec: ModelSpec) -> MorphableModel:
    verts, uv, tri, _ = read_canonical(_paths(store, "mediapipe_canonical")["mediapipe/face_landmarker.task"])
    tri = _ccw_from_front(verts, tri)
    ibug = mediapipe_ibug68()
    mp = np.full(478, -1, np.int64)
    mp[:468] = np.arange(468)
    return MorphableModel(
        name="mediapipe_canonical", mean=verts, identity_basis=np.zeros((0, 468, 3)),
        expression_basis=np.zeros((0, 468, 3)), triangles=tri, uv=np.clip(uv, 0.0, 1.0),
        landmarks={"ibug68": ibug, "mediapipe478": mp}, contours=jaw_contour_lines(verts, tri, ibug),
        regions=label_regions(verts, ibug), unit="cm", **_common(spec),
        notes=("MediaPipe canonical face mesh (face_geometry); no identity or expression basis",
               "ibug68 points 3, 4, 12, 27, 28 use the first of MESH_TO_IBUG68's two vertices",
               "mediapipe478 = the mesh's own vertices 0-467; iris points 468-477 have none (-1)"))


_LOADERS = {"bfm_3ddfa": _load_bfm, "sfm_3448": _load_sfm, "mediapipe_canonical": _load_mediapipe}


def canonical_head(store: ModelStore | None = None) -> np.ndarray | None:
    """The MediaPipe canonical face mesh's vertices (468, 3) in cm (x right, y up, z out of the face), for the
    3D head pose export; None (with a log line) when the model file cannot be resolved."""
    from ..core.errors import FacegraphError

    try:
        return np.array(load_morphable_model("mediapipe_canonical", store=store).mean)
    except FacegraphError as exc:
        logging.getLogger(__name__).info("no canonical face mesh for the 3D head export: %s", exc)
        return None
