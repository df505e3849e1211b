"""A small synthetic face-like morphable model for tests (no model files needed).

Convention:
    Same as :class:`~facegraph.core.morphable.model.MorphableModel`: right-handed model space, x towards the
    image's right for a frontal face (the subject's left), y up, z towards the camera, unit "mm".
    The mesh is a closed ellipsoid (half-axes 70 / 95 / 60 mm, roughly a head's half-width / half-height /
    half-depth) on a latitude-longitude grid whose longitude and latitude are warped so the front of the face
    (where the landmarks are) is sampled about 10x denser than the back, plus a nose ridge bump whose peak is
    the nose tip (the vertex of largest z). Triangles are counter-clockwise seen from outside (outward
    normals). UVs are a cylindrical projection: u = 0.5 + longitude / (2 pi) (seam at the back of the head),
    v = (1 - y / ry) / 2 (v down); the seam and the poles split UV vertices, so ``uv_triangles`` is set.
    Landmarks "ibug68" are placed at plausible positions (a hand-made frontal template in mm, below) as the
    nearest distinct front vertex in the frontal (x, y) projection; point 30 (nose tip) is the vertex of
    largest z; ``regions`` come from :func:`.regions.label_regions`. Contours follow
    :mod:`.correspondences`'s layout: ``contours["right"][k]`` is the candidate line
    of jaw point k (k = 0..7, subject's right, x < 0), ``contours["left"][k]`` that of point 16 - k, each line
    one latitude ring of vertices ordered from the face's centre line outwards past the silhouette.
    Bases: identity directions are random smooth (quadratic polynomial) displacement fields with RMS
    6 / sqrt(k + 1) mm; expression directions are random smooth fields localised (Gaussian, sigma 18 mm)
    around the mouth or the brows, RMS 3 / sqrt(k + 1) mm. Both are unit-variance directions (N(0, 1) prior),
    or blendshape deltas when ``expression_kind == "blendshapes"``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .model import MorphableModel
from .regions import label_regions

#: half-axes of the head ellipsoid, mm (x: half-width, y: half-height, z: half-depth) - plausible head size
RADII = (70.0, 95.0, 60.0)
#: grid warp strength: angle = pi * (u + A u^3) / (1 + A); A = 3 makes the front ~10x denser than the back
_WARP = 3.0


def _template_ibug68() -> np.ndarray:
    """(68, 2) hand-made frontal iBUG-68 template in mm (x right of the image, y up, nose base near y = 0)."""
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-60.0 * np.cos(t), 30.0 - 100.0 * np.sin(t) ** 1.2], 1)          # 0-16, 0 at image left
    brow_r = np.array([[-55, 44], [-46, 50], [-36, 52], [-26, 51], [-16, 48]], float)  # 17-21
    brow_l = brow_r[::-1] * [-1, 1]                                                     # 22-26
    nose = np.array([[0, 36], [0, 28], [0, 20], [0, 10],                              # 27-30 bridge..tip
                     [-13, 0], [-7, -2], [0, -3], [7, -2], [13, 0]], float)            # 31-35 base
    eye_r = np.array([[-44, 33], [-37, 37], [-27, 37], [-19, 33], [-27, 29], [-37, 29]], float)  # 36-41
    eye_l = eye_r[[3, 2, 1, 0, 5, 4]] * [-1, 1]                                         # 42-47
    lip_o = np.array([[-25, -28], [-15, -22], [-6, -20], [0, -21], [6, -20], [15, -22], [25, -28],
                      [15, -36], [6, -39], [0, -39], [-6, -39], [-15, -36]], float)   # 48-59
    lip_i = np.array([[-20, -28], [-8, -25], [0, -25], [8, -25], [20, -28],
                      [8, -34], [0, -34], [-8, -34]], float)                           # 60-67, mouth ajar
    return np.concatenate([jaw, brow_r, brow_l, nose, eye_r, eye_l, lip_o, lip_i])


def _warp(u: np.ndarray, half_range: float) -> np.ndarray:
    return half_range * (u + _WARP * u ** 3) / (1.0 + _WARP)


def _smooth_field(rng: np.random.Generator, p: np.ndarray, rms: float, weight: np.ndarray | None) -> np.ndarray:
    """(V, 3) random quadratic displacement field of normalised positions p (V, 3), scaled to RMS ``rms``."""
    x, y, z = p.T
    feats = np.stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, y * z, x * z], 1)
    field = feats @ rng.normal(0.0, 1.0, (feats.shape[1], 3))
    if weight is not None:
        field *= weight[:, None]
    return field * (rms / max(float(np.sqrt((field ** 2).sum(1).mean())), 1e-12))


def synthetic_model(n_identity: int = 5, n_expression: int = 3, seed: int = 0, *, n_lon: int = 48,
                    n_lat: int = 40, with_uv: bool = True, fixed_jaw: bool = True,
                    expression_kind: str = "pca") -> MorphableModel:
    """A closed, face-like :class:`MorphableModel` with ``n_lon * n_lat + 2`` vertices (1922 by default).

    ``fixed_jaw`` False sets ibug68 points 0-7 and 9-16 to -1 (no fixed vertex: contour-aware fitting only);
    ``with_uv`` False gives a model without UVs; ``expression_kind`` "blendshapes" marks the expression
    directions as [0, 1] blendshape deltas. Deterministic for a given ``seed``. See the module docstring for
    the geometry, units (mm) and conventions.
    """
    if n_identity < 0 or n_expression < 0:
        raise InputError(f"synthetic_model: n_identity / n_expression must be >= 0, got {n_identity}, {n_expression}")
    if n_lon < 16 or n_lat < 12:
        raise InputError(f"synthetic_model: n_lon >= 16 and n_lat >= 12 needed, got {n_lon}, {n_lat}")
    if expression_kind not in ("pca", "blendshapes"):
        raise InputError(f"synthetic_model: expression_kind must be 'pca' or 'blendshapes', got {expression_kind!r}")
    rx, ry, rz = RADII
    theta = _warp(-1.0 + 2.0 * np.arange(n_lon) / n_lon, np.pi)              # longitude from +z towards +x
    phi = _warp(1.0 - 2.0 * (np.arange(n_lat) + 1.0) / (n_lat + 1.0), np.pi / 2)  # latitude, top ring first
    ph, th = np.meshgrid(phi, theta, indexing="ij")
    ring = np.stack([rx * np.cos(ph) * np.sin(th), ry * np.sin(ph), rz * np.cos(ph) * np.cos(th)], -1)
    mean = np.concatenate([ring.reshape(-1, 3), [[0.0, ry, 0.0], [0.0, -ry, 0.0]]])
    top, bottom = n_lat * n_lon, n_lat * n_lon + 1

    # nose ridge: a bump along +z, narrow in x, rising from the brows to the tip at y = 10 mm, falling fast below
    x, y, z = mean.T
    tip_y = 10.0
    along = np.where(y >= tip_y, 0.4 + 0.6 * np.exp(-0.5 * ((y - tip_y) / 16.0) ** 2),
                     np.exp(-0.5 * ((y - tip_y) / 6.0) ** 2)) / (1.0 + np.exp((y - 42.0) / 3.0))
    mean[:, 2] += 24.0 * np.exp(-0.5 * (x / 8.0) ** 2) * along * np.clip(z / rz, 0.0, None) ** 4

    idx = np.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    quads = np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])
    j0, j1 = idx[0], np.roll(idx[0], -1)
    k0, k1 = idx[-1], np.roll(idx[-1], -1)
    caps = np.concatenate([np.stack([np.full(n_lon, top), j0, j1], 1), np.stack([k0, np.full(n_lon, bottom), k1], 1)])
    triangles = np.concatenate([quads, caps]).astype(np.int64)

    uv = uv_triangles = None
    if with_uv:
        cols = np.arange(n_lon + 1)
        u = 0.5 + np.append(theta, np.pi) / (2.0 * np.pi)
        vv = (1.0 - np.sin(phi)) / 2.0
        uv_grid = np.stack(np.broadcast_arrays(u[None, :], vv[:, None]), -1).reshape(-1, 2)
        pole_u = (np.arange(n_lon) + 0.5) / n_lon
        uv = np.concatenate([uv_grid, np.stack([pole_u, np.zeros(n_lon)], 1),
                             np.stack([pole_u, np.ones(n_lon)], 1)])
        uidx = (np.arange(n_lat)[:, None] * (n_lon + 1) + cols[None, :])
        ua, ub, uc, ud = uidx[:-1, :-1], uidx[:-1, 1:], uidx[1:, :-1], uidx[1:, 1:]
        uquads = np.concatenate([np.stack([ua, uc, ud], -1).reshape(-1, 3), np.stack([ua, ud, ub], -1).reshape(-1, 3)])
        ptop = n_lat * (n_lon + 1) + np.arange(n_lon)
        pbot = ptop + n_lon
        ucaps = np.concatenate([np.stack([ptop, uidx[0, :-1], uidx[0, 1:]], 1),
                                np.stack([uidx[-1, :-1], pbot, uidx[-1, 1:]], 1)])
        uv_triangles = np.concatenate([uquads, ucaps]).astype(np.int64)
        uv = np.clip(uv, 0.0, 1.0)

    # ibug68: nearest distinct front vertex in the frontal projection; nose tip = vertex of largest z
    tmpl = _template_ibug68()
    front = np.flatnonzero(np.abs(np.append(th.ravel(), [0.0, 0.0])) < np.pi / 2)
    front = front[mean[front, 2] > 0]
    ibug = np.full(68, -1, np.int64)
    ibug[30] = int(np.argmax(mean[:, 2]))
    used = {int(ibug[30])}
    for k in range(68):
        if k == 30:
            continue
        order = front[np.argsort(((mean[front, :2] - tmpl[k]) ** 2).sum(1))]
        ibug[k] = next(int(v) for v in order if int(v) not in used)
        used.add(int(ibug[k]))

    # contour candidate lines: the latitude ring of each jaw point, centre line outwards to 0.6 pi
    ring_of = ibug // n_lon
    right_cols = [j for j in np.argsort(-theta) if -0.6 * np.pi <= theta[j] <= 0.0]   # 0 .. -0.6 pi
    left_cols = [j for j in np.argsort(theta) if 0.0 <= theta[j] <= 0.6 * np.pi]
    contours = {"right": [idx[ring_of[k], right_cols].astype(np.int64) for k in range(0, 8)],
                "left": [idx[ring_of[16 - k], left_cols].astype(np.int64) for k in range(0, 8)]}

    rng = np.random.default_rng(seed)
    p = mean / np.array(RADII)
    ident = np.stack([_smooth_field(rng, p, 6.0 / np.sqrt(k + 1.0), None) for k in range(n_identity)]) \
        if n_identity else np.zeros((0, len(mean), 3))
    centres = (np.array([0.0, -30.0]), np.array([0.0, 48.0]))                    # mouth, brows
    expr = []
    for k in range(n_expression):
        cx, cy = centres[k % 2]
        sx = 40.0 if k % 2 else 18.0
        w = np.exp(-0.5 * (((mean[:, 0] - cx) / sx) ** 2 + ((mean[:, 1] - cy) / 18.0) ** 2)) * (mean[:, 2] > 0)
        expr.append(_smooth_field(rng, p, 3.0 / np.sqrt(k + 1.0), w))
    expr_b = np.stack(expr) if expr else np.zeros((0, len(mean), 3))
    names = tuple(f"expr{k}" for k in range(n_expression)) if expression_kind == "blendshapes" else ()

    regions = label_regions(mean, ibug)
    if not fixed_jaw:
        ibug[[*range(0, 8), *range(9, 17)]] = -1
    return MorphableModel(
        name="synthetic", mean=mean, identity_basis=ident, expression_basis=expr_b, triangles=triangles,
        expression_kind=expression_kind, expression_names=names, uv=uv, uv_triangles=uv_triangles,
        landmarks={"ibug68": ibug}, contours=contours, regions=regions, unit="mm",
        licence="synthetic test fixture (no licence needed)", restricted=False,
        notes=(f"synthetic ellipsoid face, seed {seed}",))

