"""Landmark correspondences of morphable models: iBUG-68 index arrays, jaw contour candidate lines and
MediaPipe-478 correspondences. Pure numpy (the loaders in models/morphable.py read the files and call these).

Convention:
    Model space as in :mod:`.model` (x towards the image's right for a frontal face = the subject's left,
    y up, z towards the camera). iBUG-68 indices are 0-based; points 0-7 are the subject's right jaw (x < 0),
    8 the chin, 9-16 the subject's left jaw (x > 0), 36-41 the subject's right eye, 42-47 the left eye.
    -1 in an index array = the scheme's point has no fixed vertex in the model.

Jaw contour lines (``contours``): :data:`CONTOUR_POINTS` says which jaw point each line belongs to:
    ``contours["right"][k]`` is the candidate line of iBUG point ``CONTOUR_POINTS["right"][k]`` (0..7) and
    ``contours["left"][k]`` that of ``CONTOUR_POINTS["left"][k]`` (16..9), so both lists run top to bottom.
    A line is the model's vertices at that jaw point's frontal height (y), on that half of the face, ordered
    from the face's centre line outwards (increasing |x - x_centre|); a contour-aware fitter takes as the
    jaw point's vertex the line's vertex that projects outermost under the current pose (the silhouette:
    "landmark marching", Zhu et al., "Face alignment across large poses: a 3D solution", CVPR 2016).
    Rule (:func:`jaw_contour_lines`): the jaw point's frontal (x, y) is its vertex's, or where the model has
    none, the point of the frontal iBUG template :data:`~facegraph.core.templates.MEAN68` placed by a
    least-squares similarity on the model's other iBUG points; candidates are the vertices whose area-weighted
    normal does not face backwards (n_z > -0.5), on that side of the centre line x_centre (the median x of
    the nose and mouth midline points 27-30, 33, 51, 57, 62, 66 and the chin 8), within a band of one median
    edge length of that height (widened x2 until 3 vertices qualify); they are binned along |x - x_centre|
    in bins one median edge long, keeping in each bin the vertex closest to the height, so a line is one
    vertex thick. With an ``outline`` (a published silhouette such as eos's SFM contour) a line ends at the
    outline vertex nearest that height (vertices beyond it are dropped, it is appended if missing).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import EstimationError, InputError
from ..geometry import umeyama
from ..landmarks import MESH_TO_IBUG68
from ..templates import MEAN68

#: the iBUG-68 jaw point each contour line belongs to, top to bottom per side (see the module docstring)
CONTOUR_POINTS: dict[str, tuple[int, ...]] = {"right": tuple(range(0, 8)), "left": tuple(range(16, 8, -1))}
#: iBUG points on the face's vertical midline (nose bridge and tip, nose base centre, lip centres, chin)
MIDLINE_POINTS = (27, 28, 29, 30, 33, 51, 57, 62, 66, 8)
#: iBUG points that have a surface counterpart in every model (brows, nose, eyes, mouth; not the jaw,
#: whose points are silhouette points)
INNER_POINTS = tuple(range(17, 68))
#: iBUG points whose MediaPipe definition (core.landmarks.MESH_TO_IBUG68) is the mean of two mesh vertices;
#: the canonical model's single-vertex "ibug68" stores the first of the two for these
MEDIAPIPE_IBUG68_TWO_VERTEX = tuple(k for k, v in enumerate(MESH_TO_IBUG68) if len(v) > 1)


def mediapipe_ibug68() -> np.ndarray:
    """(68,) int64 canonical-mesh vertex per iBUG point: MESH_TO_IBUG68's first vertex (for the points in
    :data:`MEDIAPIPE_IBUG68_TWO_VERTEX`, which MESH_TO_IBUG68 defines as the mean of two vertices)."""
    return np.array([v[0] for v in MESH_TO_IBUG68], np.int64)


def sfm_ibug68(text: str, n_vertices: int | None = None) -> np.ndarray:
    """(68,) int64 from eos's ``ibug_to_sfm.txt`` (TOML: ``[landmark_mappings]`` 1-based iBUG number = 0-based
    SFM vertex); unmapped points (the jaw contour 1-8 / 10-17 and the inner mouth corners 61 / 65) are -1."""
    import tomllib

    try:
        table = tomllib.loads(text)["landmark_mappings"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise InputError(f"ibug_to_sfm mapping: not a [landmark_mappings] TOML table ({exc})") from None
    out = np.full(68, -1, np.int64)
    for key, value in table.items():
        k = int(key) - 1 if str(key).isdigit() else -1
        if not 0 <= k < 68 or not isinstance(value, int) or value < 0 or (
                n_vertices is not None and value >= n_vertices):
            raise InputError(f"ibug_to_sfm mapping: bad entry {key!r} = {value!r}")
        out[k] = value
    return out


def bfm_ibug68(keypoints_flat: np.ndarray, vertex_subset: np.ndarray | None = None) -> np.ndarray:
    """(68,) int64 vertex indices from 3DDFA's ``keypoints_sim.npy`` (204 flat indices 3 i, 3 i + 1, 3 i + 2
    into the x, y, z-interleaved full BFM), re-indexed into ``vertex_subset`` (sorted full-BFM indices of the
    vertices kept, e.g. 3DDFA_V2's no-neck ``indices.npy``) when given; -1 where a keypoint is not kept."""
    kp = np.asarray(keypoints_flat, np.int64).reshape(-1)
    if kp.shape != (204,) or not np.array_equal(kp.reshape(68, 3) % 3, np.tile([0, 1, 2], (68, 1))) or \
            not np.all(np.diff(kp.reshape(68, 3), axis=1) == 1):
        raise InputError("bfm keypoints: expected 204 flat x, y, z indices (3 i, 3 i + 1, 3 i + 2)")
    full = kp[0::3] // 3
    if vertex_subset is None:
        return full
    sub = np.asarray(vertex_subset, np.int64)
    pos = np.clip(np.searchsorted(sub, full), 0, len(sub) - 1)
    return np.where(sub[pos] == full, pos, -1).astype(np.int64)


def _interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))


def frontal_ibug68(mean: np.ndarray, ibug68: np.ndarray) -> np.ndarray:
    """(68, 2) frontal (x, y) model-space positions of the iBUG points: the vertex's where ``ibug68`` has one,
    else :data:`MEAN68` (y flipped to up) placed by a least-squares similarity on the defined points."""
    mean = np.asarray(mean, np.float64)
    idx = np.asarray(ibug68, np.int64)
    if idx.shape != (68,):
        raise InputError(f"ibug68 must be (68,), got {idx.shape}")
    have = idx >= 0
    out = np.zeros((68, 2))
    out[have] = mean[idx[have], :2]
    if not have.all():
        if have.sum() < 3:
            raise InputError("frontal_ibug68 needs at least 3 defined iBUG points")
        tmpl = MEAN68 * np.array([1.0, -1.0])
        s, r, t = umeyama(tmpl[have], out[have], np.ones(int(have.sum())))
        out[~have] = s * tmpl[~have] @ r.T + t
    return out


def vertex_normals(mean: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals of counter-clockwise (outward) triangles; 0 for lone vertices."""
    v = np.asarray(mean, np.float64)
    t = np.asarray(triangles, np.int64)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n = np.zeros_like(v)
    for j in range(3):
        np.add.at(n, t[:, j], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def median_edge_length(mean: np.ndarray, triangles: np.ndarray) -> float:
    v = np.asarray(mean, np.float64)
    t = np.asarray(triangles, np.int64)
    e = np.concatenate([v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 1]], v[t[:, 0]] - v[t[:, 2]]])
    return float(np.median(np.linalg.norm(e, axis=1)))


def face_centre_x(frontal: np.ndarray) -> float:
    return float(np.median(frontal[list(MIDLINE_POINTS), 0]))


def jaw_contour_lines(mean: np.ndarray, triangles: np.ndarray, ibug68: np.ndarray, *,
                      outline: dict[str, Sequence[int]] | None = None) -> dict[str, list[np.ndarray]]:
    """Jaw contour candidate lines {"right": 8 lines, "left": 8 lines}, each (L,) int64 vertex indices ordered
    from the face's centre line outwards, lists top to bottom as :data:`CONTOUR_POINTS`. The rule is in the
    module docstring; ``outline`` {"right"/"left": vertex indices} ends each line at a published silhouette.
    mean (V, 3) fp64 model space, triangles (F, 3) counter-clockwise seen from outside."""
    v = np.asarray(mean, np.float64)
    tri = np.asarray(triangles, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or tri.ndim != 2 or tri.shape[1] != 3 or len(tri) == 0:
        raise InputError("jaw_contour_lines needs mean (V, 3) and a non-empty triangles (F, 3)")
    frontal = frontal_ibug68(v, ibug68)
    xc = face_centre_x(frontal)
    h = median_edge_length(v, tri)
    facing = vertex_normals(v, tri)[:, 2] > -0.5
    out: dict[str, list[np.ndarray]] = {}
    for side, sign in (("right", -1.0), ("left", 1.0)):
        d_all = sign * (v[:, 0] - xc)
        cand = facing & (d_all >= 0.0)
        lines = []
        for k in CONTOUR_POINTS[side]:
            yk = frontal[k, 1]
            dy = np.abs(v[:, 1] - yk)
            band = h
            sel = np.flatnonzero(cand & (dy <= band))
            while len(sel) < 3 and band < 64 * h:
                band *= 2.0
                sel = np.flatnonzero(cand & (dy <= band))
            if len(sel) == 0:
                raise EstimationError(f"no vertices at the height of jaw point {k}")
            bins = np.floor(d_all[sel] / h).astype(np.int64)
            order = np.lexsort((dy[sel], bins))
            first = np.ones(len(order), bool)
            first[1:] = bins[order][1:] != bins[order][:-1]
            line = sel[order[first]]
            if outline is not None and len(outline.get(side, ())):
                ol = np.asarray(outline[side], np.int64)
                o = int(ol[np.argmin(np.abs(v[ol, 1] - yk))])
                line = line[d_all[line] < d_all[o]]
                line = np.append(line[line != o], o)
            lines.append(line.astype(np.int64))
        out[side] = lines
    return out


def nearest_vertices(vertices: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index (N,) int64, distance (N,) fp64) of the nearest of (V, 3) vertices to each of (N, 3) points
    (brute force in chunks of about 2**22 pairs: exact, and no spatial index to build for a few hundred points)."""
    v = np.asarray(vertices, np.float64)
    p = np.asarray(points, np.float64)
    vv = (v ** 2).sum(1)
    idx = np.zeros(len(p), np.int64)
    d2 = np.zeros(len(p))
    step = max(1, (1 << 22) // max(len(v), 1))
    for a in range(0, len(p), step):
        q = p[a:a + step]
        dist = vv[None, :] - 2.0 * q @ v.T
        idx[a:a + step] = np.argmin(dist, 1)
        d2[a:a + step] = ((v[idx[a:a + step]] - q) ** 2).sum(1)
    return idx, np.sqrt(d2)


def mediapipe478_correspondences(mean: np.ndarray, ibug68: np.ndarray, canonical: np.ndarray, *,
                                 max_distance: float = 0.2) -> np.ndarray:
    """(478,) int64 model vertex per MediaPipe-478 point: the canonical mesh (468, 3) is placed on the model's
    mean by a least-squares similarity (Umeyama) between its iBUG points (MESH_TO_IBUG68 means) and the
    model's defined :data:`INNER_POINTS`; each canonical vertex takes the nearest model vertex in 3D, or -1
    when that is further than ``max_distance`` x the model's interocular distance (eye-centre to eye-centre:
    the canonical mesh reaches where the model has no surface). The iris points 468-477 are -1."""
    v = np.asarray(mean, np.float64)
    can = np.asarray(canonical, np.float64)
    idx = np.asarray(ibug68, np.int64)
    if can.shape != (468, 3):
        raise InputError(f"canonical mesh must be (468, 3), got {can.shape}")
    can68 = np.stack([can[list(p)].mean(0) for p in MESH_TO_IBUG68])
    use = np.array([k for k in INNER_POINTS if idx[k] >= 0])
    if len(use) < 6:
        raise InputError("mediapipe478_correspondences needs at least 6 defined inner iBUG points")
    s, r, t = umeyama(can68[use], v[idx[use]], np.ones(len(use)))
    placed = s * can @ r.T + t
    near, dist = nearest_vertices(v, placed)
    iod = _interocular(np.where((idx >= 0)[:, None], v[np.maximum(idx, 0)], s * can68 @ r.T + t))
    out = np.full(478, -1, np.int64)
    out[:468] = np.where(dist <= max_distance * iod, near, -1)
    return out
