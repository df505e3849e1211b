"""Jaw contour correspondences for a morphable-model fit (eos-style contour fitting, landmark marching).

On a turned head the iBUG-68 jaw points 0-7 (the subject's right, image left on a frontal face) and 9-16 (the
subject's left) are not fixed mesh vertices: a 2D annotator (300-W) puts them on the face's *visible
outline*, which slides over the cheek as the head turns. Two ways to find the vertices they correspond to:

- **with detected points** (inside :func:`facegraph.core.morphable.fit.fit`): per side, a candidate pool of
  vertices (the model's contour lines, ``MorphableModel.contours``, for the side facing the camera; the
  mesh's occluding silhouette for the side turned away, or for models without lines), and each detected jaw
  point takes the nearest projected candidate. This is the scheme of eos (P. Huber et al., "A Multiresolution
  3D Morphable Face Model and Fitting Framework", VISAPP 2016: ``get_contour_correspondences`` /
  ``find_occluding_edge_correspondences``), written here from the paper's description. When a side's lines
  are one line per jaw point (8 lines, core.morphable.correspondences' layout), each point searches its own
  line only: the nearest vertex on the facing side, the outermost on the turned-away side (the "landmark
  marching" of Zhu et al., "High-Fidelity Pose and Expression Normalization", CVPR 2015).
- **without detected points** (:func:`march_jaw`, for scoring a fit in the 300-W "2D" convention): each
  jaw point's fixed ("3D" convention) position moves, at its own height along the face's vertical axis in
  the image, to the outermost projected vertex of its side: the outline of the projected mesh.

Convention:
    ``vertices`` are screen-space (V, 3) float64: x, y in frame pixels (pixel-area, y down), z depth (larger
    = further), as :func:`facegraph.core.morphable.fit.vertices_frame` returns them. ``rotation`` is the
    model -> camera rotation (camera x right, y down, z forward; conventions: Angles). Triangles are
    counter-clockwise seen from the model's front (+z), so a front-facing triangle has a *negative* signed
    area in the y-down image (the projection mirrors y).
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from ..errors import InputError
from .model import MorphableModel

#: iBUG-68 jaw points per side (0-based; iBUG 1-8 / 10-17 in the 1-based numbering of ibug_to_sfm.txt);
#: "right" is the subject's right (model -x; image left on a frontal face), matching eos's right_contour.
JAW_SIDES: dict[str, tuple[int, ...]] = {"right": tuple(range(0, 8)), "left": tuple(range(9, 17))}
#: the jaw point of each per-point candidate line, top to bottom (core.morphable.correspondences' layout:
#: ``contours["left"][k]`` belongs to point 16 - k)
CONTOUR_POINTS: dict[str, tuple[int, ...]] = {"right": tuple(range(0, 8)), "left": tuple(range(16, 8, -1))}
CHIN = 8
#: iBUG-68 points that outline the inner face (brows, nose, eyes, mouth): the jaw outline lies outside their
#: convex hull, so silhouette vertices inside it (the nose's occluding edge) are never jaw candidates.
INNER_FACE = tuple(range(17, 68))
#: a side counts as turned away when its outward axis points this far away from the camera (sin 10 deg,
#: about the yaw where the frontal outline starts to hide behind the cheek; eos switches sides at yaw 0)
TURNED_AWAY = float(np.sin(np.deg2rad(10.0)))


# ------------------------------------------------------------------------------------------- topology
@dataclasses.dataclass(frozen=True)
class EdgeTopology:
    """Unique undirected edges of a triangle mesh: ``edges`` (E, 2) vertex ids, ``faces`` (E, 2) the one or
    two adjacent triangles (-1 where the edge is on the mesh boundary)."""

    edges: np.ndarray
    faces: np.ndarray


def edge_topology(triangles: np.ndarray) -> EdgeTopology:
    """Edges and their adjacent faces of (F, 3) int triangles (non-manifold edges keep their first two)."""
    tri = np.asarray(triangles, np.int64)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise InputError(f"triangles must be (F, 3), got {tri.shape}")
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    f = np.tile(np.arange(len(tri)), 3)
    e.sort(1)
    key = e[:, 0] * (int(tri.max(initial=0)) + 1) + e[:, 1]
    order = np.argsort(key, kind="stable")
    key, e, f = key[order], e[order], f[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.diff(np.r_[start, len(key)])
    faces = np.full((len(start), 2), -1, np.int64)
    faces[:, 0] = f[start]
    two = count >= 2
    faces[two, 1] = f[start[two] + 1]
    return EdgeTopology(edges=e[start], faces=faces)


def front_facing(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F,) bool: the triangle faces the camera (negative signed area in the y-down image, see module doc)."""
    v = np.asarray(vertices, np.float64)
    a, b, c = v[triangles[:, 0], :2], v[triangles[:, 1], :2], v[triangles[:, 2], :2]
    e1, e2 = b - a, c - a
    return (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0


def silhouette_vertices(vertices: np.ndarray, triangles: np.ndarray, *, topology: EdgeTopology | None = None,
                        include_boundary: bool = True) -> np.ndarray:
    """Vertex ids on the occluding silhouette: edges between a front- and a back-facing triangle, plus (with
    ``include_boundary``) boundary edges of front-facing triangles (a face mask's own outline).

    vertices: (V, 3) screen-space (only x, y are read); triangles: (F, 3) int. Returns sorted unique ids.
    """
    tri = np.asarray(triangles, np.int64)
    topo = topology or edge_topology(tri)
    front = front_facing(vertices, tri)
    f0 = front[topo.faces[:, 0]]
    has1 = topo.faces[:, 1] >= 0
    f1 = np.where(has1, front[np.maximum(topo.faces[:, 1], 0)], False)
    sil = has1 & (f0 != f1)
    if include_boundary:
        sil |= ~has1 & f0
    return np.unique(topo.edges[sil])


# ------------------------------------------------------------------------------------ per-model regions
@dataclasses.dataclass(frozen=True)
class _Side:
    vertices: np.ndarray      # region vertex ids (this side of the chin, below the eyes)
    edges: np.ndarray         # (E, 2) mesh edges with both ends in the region
    faces: np.ndarray         # (E, 2) their adjacent triangles (into ``tris``), -1 = boundary
    tris: np.ndarray          # (T, 3) the adjacent triangles' vertex ids
    lines: list               # candidate lines of this side (list of int arrays), may be empty


_REGIONS: "weakref.WeakKeyDictionary[MorphableModel, dict[str, _Side]]" = weakref.WeakKeyDictionary()


def _fixed(model: MorphableModel, points) -> np.ndarray:
    if "ibug68" not in model.landmarks:
        return np.zeros(0, np.int64)
    idx = np.asarray(model.landmarks["ibug68"], np.int64)
    sel = idx[list(points)]
    return sel[sel >= 0]


def side_regions(model: MorphableModel) -> dict[str, _Side]:
    """Per side ("right" / "left"): the mesh region a jaw outline can lie in (cached per model): vertices on
    that side of the chin (model x) and below the eyes (model y), judged on the mean shape."""
    cached = _REGIONS.get(model)
    if cached is not None:
        return cached
    mean = model.mean
    chin = _fixed(model, [CHIN])
    x0 = float(mean[chin[0], 0]) if len(chin) else float(np.median(mean[:, 0]))
    eyes = _fixed(model, range(36, 48))
    y_top = float(mean[eyes, 1].mean()) if len(eyes) else float(np.median(mean[:, 1]))
    tri = np.asarray(model.triangles, np.int64)
    per_point = all(len(model.contours.get(s, [])) == len(JAW_SIDES[s]) for s in JAW_SIDES)
    topo = edge_topology(tri) if len(tri) and not per_point else None  # per-point lines need no mesh
    out = {}
    for side, sign in (("right", -1.0), ("left", 1.0)):
        region = np.flatnonzero(((mean[:, 0] - x0) * sign >= 0) & (mean[:, 1] <= y_top))
        lines = [np.asarray(line, np.int64) for line in model.contours.get(side, [])]
        if topo is not None and len(region):
            inside = np.zeros(model.n_vertices, bool)
            inside[region] = True
            keep = inside[topo.edges].all(1)
            faces = topo.faces[keep]
            used = np.unique(faces[faces >= 0])
            remap = np.full(len(tri), -1, np.int64)
            remap[used] = np.arange(len(used))
            faces = np.where(faces >= 0, remap[np.maximum(faces, 0)], -1)
            out[side] = _Side(region, topo.edges[keep], faces, tri[used], lines)
        else:
            out[side] = _Side(region, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64),
                              np.zeros((0, 3), np.int64), lines)
    _REGIONS[model] = out
    return out


_NEEDED: "weakref.WeakKeyDictionary[MorphableModel, np.ndarray]" = weakref.WeakKeyDictionary()


def needed_vertices(model: MorphableModel) -> np.ndarray:
    """Vertex ids whose screen positions :func:`contour_correspondences` and :func:`march_jaw` read (the
    contour lines; where a side has no per-point lines, its jaw region and the region's triangles), plus the
    inner-face landmarks: project only these. Cached per model."""
    cached = _NEEDED.get(model)
    if cached is None:
        sides = side_regions(model)
        parts = [_fixed(model, INNER_FACE)]
        for name, side in sides.items():
            parts += [np.asarray(x, np.int64) for x in side.lines]
            if len(side.lines) != len(JAW_SIDES[name]):
                parts += [side.vertices, side.tris.reshape(-1)]
        cached = np.unique(np.concatenate(parts))
        _NEEDED[model] = cached
    return cached


# ------------------------------------------------------------------------------------------ geometry
def face_axes(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(up, right, outward_z): the face's up and its (subject's-left) right directions as unit 2D image
    vectors (right made perpendicular to up), and the camera-z of the model's +x axis."""
    r = np.asarray(rotation, np.float64)
    up = r[:2, 1] / max(np.linalg.norm(r[:2, 1]), 1e-12)
    right = np.array([-up[1], up[0]])
    if right @ r[:2, 0] < 0:
        right = -right
    return up, right, float(r[2, 0])


def turned_away(rotation: np.ndarray, side: str) -> bool:
    """Whether ``side``'s outward axis (model -x for "right", +x for "left") points away from the camera by
    more than :data:`TURNED_AWAY` (camera z forward)."""
    z = face_axes(rotation)[2]
    return (-z if side == "right" else z) > TURNED_AWAY


def _outside_hull(points: np.ndarray, hull_points: np.ndarray) -> np.ndarray:
    """(N,) bool: points outside the convex hull of hull_points (all True when the hull is degenerate)."""
    h = np.asarray(hull_points, np.float64)
    if len(h) < 3:
        return np.ones(len(points), bool)
    import cv2  # local: contour fitting is the only user here

    hull = cv2.convexHull(h.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return np.ones(len(points), bool)
    nxt = np.roll(hull, -1, 0)
    cross = ((nxt[:, 0] - hull[:, 0])[None] * (points[:, 1:2] - hull[None, :, 1])
             - (nxt[:, 1] - hull[:, 1])[None] * (points[:, 0:1] - hull[None, :, 0]))
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    return ~inside


def _side_silhouette(side: _Side, screen: np.ndarray) -> np.ndarray:
    """Silhouette vertex ids within one side's region (screen: (V, 3) with at least the needed rows)."""
    if not len(side.edges):
        return side.vertices
    front = front_facing(screen, side.tris)
    f0 = np.where(side.faces[:, 0] >= 0, front[np.maximum(side.faces[:, 0], 0)], False)
    has1 = side.faces[:, 1] >= 0
    f1 = np.where(has1, front[np.maximum(side.faces[:, 1], 0)], False)
    sil = (has1 & (f0 != f1)) | (~has1 & f0)
    return np.unique(side.edges[sil])


# ------------------------------------------------------------------------------------ correspondences
def contour_correspondences(model: MorphableModel, screen: np.ndarray, rotation: np.ndarray,
                            image_points: np.ndarray) -> dict[int, int]:
    """Vertex ids for the detected iBUG-68 jaw points 0-7 / 9-16 (see module doc).

    screen: (V, 3) float64 screen-space vertices of the current fit (rows outside :func:`needed_vertices`
    may be anything); rotation: (3, 3) model -> camera; image_points: (68, 2) detected points in frame
    pixels (pixel-area), NaN rows = missing. Returns {ibug index: vertex id} for the points found (a side
    without lines and without a mesh yields nothing).
    """
    pts = np.asarray(image_points, np.float64)
    if pts.shape[0] != 68:
        raise InputError(f"contour correspondences need the 68 iBUG points, got {pts.shape}")
    sides = side_regions(model)
    inner = _fixed(model, INNER_FACE)
    hull = screen[inner, :2] if len(inner) >= 3 else np.zeros((0, 2))
    _, right, _ = face_axes(rotation)
    out: dict[int, int] = {}
    for name, jaw in JAW_SIDES.items():
        side = sides[name]
        away = turned_away(rotation, name)
        lines = side.lines
        want = [j for j in jaw if np.isfinite(pts[j]).all()]
        if not want:
            continue
        outward = -right if name == "right" else right
        if len(lines) == len(jaw):  # one line per jaw point: outermost when turned away, else nearest
            for j, line in zip(CONTOUR_POINTS[name], lines):
                if j in want and len(line):
                    if away:
                        out[j] = int(line[np.argmax(screen[line, :2] @ outward)])
                    else:
                        out[j] = int(line[np.argmin(((screen[line, :2] - pts[j]) ** 2).sum(1))])
            continue
        if lines and not away:
            cand = np.unique(np.concatenate(lines))
        else:
            cand = _side_silhouette(side, screen) if len(side.tris) else np.unique(
                np.concatenate(lines)) if lines else np.zeros(0, np.int64)
            if len(cand) and len(hull):
                cand = cand[_outside_hull(screen[cand, :2], hull)]
        if not len(cand):
            continue
        c2 = screen[cand, :2]
        for j in want:
            out[j] = int(cand[np.argmin(((c2 - pts[j]) ** 2).sum(1))])
    return out


def march_jaw(model: MorphableModel, screen: np.ndarray, rotation: np.ndarray, jaw_points: np.ndarray,
              *, band: float = 0.35) -> np.ndarray:
    """Move the "3D" jaw points to the projected outline (the 300-W "2D" convention).

    jaw_points: (68, 2) frame pixels, the fit's 3D-convention iBUG points (only 0-7 / 9-16 are moved);
    screen / rotation as in :func:`contour_correspondences`. Each point moves, at its height along the
    face's image up-axis, to the outermost vertex of its side's region within ``band`` x the local spacing
    of the jaw points (0.35: a third of the way to the neighbouring points, so bands do not overlap), and
    never inwards. Returns a new (68, 2) array.
    """
    pts = np.array(jaw_points, np.float64, copy=True)
    up, right, _ = face_axes(rotation)
    sides = side_regions(model)
    inner = _fixed(model, INNER_FACE)
    hull = screen[inner, :2] if len(inner) >= 3 else np.zeros((0, 2))
    for name, jaw in JAW_SIDES.items():
        lines = sides[name].lines
        outward = -right if name == "right" else right
        if len(lines) == len(jaw):  # per-point lines: the outermost vertex of each (landmark marching)
            for j, line in zip(CONTOUR_POINTS[name], lines):
                if len(line):
                    pts[j] = screen[line[np.argmax(screen[line, :2] @ outward)], :2]
            continue
        region = sides[name].vertices
        if not len(region):
            continue
        region = region[_outside_hull(screen[region, :2], hull)] if len(hull) else region
        if not len(region):
            continue
        xy = screen[region, :2]
        h = xy @ up
        o = xy @ outward
        chain = list(jaw) + [CHIN] if name == "right" else [CHIN] + list(jaw)
        heights = pts[chain] @ up
        for k, j in enumerate(chain):
            if j == CHIN:
                continue
            nb = [heights[i] for i in (k - 1, k + 1) if 0 <= i < len(chain)]
            spacing = min(abs(heights[k] - n) for n in nb) if nb else 0.0
            width = max(band * spacing, 1e-6 + 0.01 * float(np.ptp(h)))
            sel = np.abs(h - heights[k]) <= width
            if not sel.any():
                continue
            best = np.argmax(np.where(sel, o, -np.inf))
            if o[best] > pts[j] @ outward:
                pts[j] = pts[j] + (o[best] - pts[j] @ outward) * outward
    return pts
