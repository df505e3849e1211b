"""Per-vertex face-region labels of a morphable model, derived generically from its mean shape and its
iBUG-68 vertices. Pure numpy.

Convention:
    Model space as in :mod:`.model` (x towards the image's right for a frontal face = the subject's left,
    y up, z towards the camera). Labels are (V,) int8 indices into ``REGION_NAMES`` ("skin", "left_eye",
    "right_eye", "left_brow", "right_brow", "nose", "lips", "mouth_interior"); left / right are the
    subject's: left_eye = iBUG 42-47 (x > 0), right_eye = 36-41, left_brow = 22-26, right_brow = 17-21.

Rule (:func:`label_regions`): every vertex is tested in the frontal (x, y) projection against polygons
built from the iBUG points' vertices, and only counts where it is not far behind that polygon's points
(z >= their minimum z - ``depth_margin`` x the interocular distance, so the back of a closed head or the
ears never land in a face region). Distances are in units of the interocular distance (IOD, eye centre to
eye centre), so the rule is unit-free:
    eyes      the eye polygon 36-41 / 42-47 scaled by ``eye_scale`` about its centroid (the iBUG polygon is
              the visible aperture; the dilation takes in the lid margin);
    brows     the band from ``brow_up`` IOD above to ``brow_down`` IOD below the brow points 17-21 / 22-26
              (iBUG traces the brow's upper edge), lengthened by ``brow_up`` IOD at both ends;
    nose      bridge 27 widened to +-``nose_bridge`` IOD, down to the nose base 31-35 with 31 / 35 pushed
              out by ``nose_alar`` IOD (the alae reach past the nostril points);
    lips      inside the outer lip polygon 48-59 scaled by ``lip_scale`` and outside the inner polygon
              60-67 (points without a vertex, e.g. SFM's 60 / 64, are left out of their polygon);
    mouth_interior  inside the inner lip polygon (empty where the mean's mouth is closed);
    skin      everything else.
Later rules win where polygons overlap: lips, mouth_interior, nose, brows, eyes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .model import REGION_NAMES


@dataclass(frozen=True)
class RegionOptions:
    eye_scale: float = 1.3       # eye aperture polygon dilation about its centroid
    brow_up: float = 0.05        # IOD above the brow points (and the lengthening at each end)
    brow_down: float = 0.14      # IOD below the brow points (brows are ~1 cm tall: ~0.15 IOD of ~63 mm)
    nose_bridge: float = 0.12    # half-width of the nose at the bridge point 27, IOD
    nose_alar: float = 0.08      # how far the alae reach past the nostril points 31 / 35, IOD
    lip_scale: float = 1.08      # outer lip polygon dilation about its centroid
    depth_margin: float = 0.35   # how far behind a polygon's points a vertex may lie and still belong, IOD


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which (N, 2) points lie inside the closed (M, 2) polygon (even-odd rule, vectorised)."""
    p = np.asarray(points, np.float64)
    poly = np.asarray(polygon, np.float64)
    if len(poly) < 3:
        return np.zeros(len(p), bool)
    x, y = p[:, 0:1], p[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < xi)).sum(1) % 2 == 1


def _scaled(poly: np.ndarray, s: float) -> np.ndarray:
    c = poly.mean(0)
    return c + s * (poly - c)


def _brow_band(p: np.ndarray, up: float, down: float, iod: float) -> np.ndarray:
    d = p[-1] - p[0]
    d = d / max(float(np.linalg.norm(d)), 1e-12)
    ext = np.concatenate([[p[0] - up * iod * d], p, [p[-1] + up * iod * d]])
    return np.concatenate([ext + [0.0, up * iod], (ext - [0.0, down * iod])[::-1]])


def label_regions(mean: np.ndarray, ibug68: np.ndarray, options: RegionOptions = RegionOptions(), *,
                  names: tuple[str, ...] = REGION_NAMES) -> np.ndarray:
    """(V,) int8 region labels into ``names`` for mean (V, 3) fp64 model space and ibug68 (68,) int vertex
    indices (-1 = none; the jaw is not used). Rule and conventions in the module docstring."""
    v = np.asarray(mean, np.float64)
    idx = np.asarray(ibug68, np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"label_regions: mean must be (V, 3), got {v.shape}")
    if idx.shape != (68,) or idx.max(initial=-1) >= len(v):
        raise InputError(f"label_regions: ibug68 must be (68,) indices < {len(v)}")
    missing = [n for n in REGION_NAMES if n not in names]
    if missing:
        raise InputError(f"label_regions: names lack {missing}")
    for group in (range(36, 42), range(42, 48), range(17, 22), range(22, 27)):
        if any(idx[k] < 0 for k in group):
            raise InputError(f"label_regions: iBUG points {group.start}-{group.stop - 1} need vertices")
    pts = np.where((idx >= 0)[:, None], v[np.maximum(idx, 0)], np.nan)
    iod = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    o = options
    labels = np.zeros(len(v), np.int8)

    def paint(name: str, poly2: np.ndarray, depth_from: list[int], keep: np.ndarray | None = None) -> None:
        zmin = np.nanmin(pts[depth_from, 2])
        inside = points_in_polygon(v[:, :2], poly2) & (v[:, 2] >= zmin - o.depth_margin * iod)
        if keep is not None:
            inside &= keep
        labels[inside] = names.index(name)

    def poly(ks: range | list[int]) -> tuple[np.ndarray, list[int]]:
        ks = [k for k in ks if idx[k] >= 0]
        return pts[ks, :2], ks

    outer, outer_k = poly(range(48, 60))
    inner, inner_k = poly(range(60, 68))
    if len(outer) >= 3:
        paint("lips", _scaled(outer, o.lip_scale), outer_k)
    if len(inner) >= 3:
        paint("mouth_interior", inner, inner_k + outer_k)
    nose_k = [k for k in (27, 31, 32, 33, 34, 35) if idx[k] >= 0]
    if len(nose_k) == 6:
        p = pts[:, :2]
        nose = np.stack([p[27] - [o.nose_bridge * iod, 0.0], p[31] - [o.nose_alar * iod, 0.0], p[32], p[33],
                         p[34], p[35] + [o.nose_alar * iod, 0.0], p[27] + [o.nose_bridge * iod, 0.0]])
        paint("nose", nose, [k for k in range(27, 36) if idx[k] >= 0])
    for name, ks in (("right_brow", range(17, 22)), ("left_brow", range(22, 27))):
        band, kk = poly(ks)
        paint(name, _brow_band(band, o.brow_up, o.brow_down, iod), kk)
    for name, ks in (("right_eye", range(36, 42)), ("left_eye", range(42, 48))):
        eye, kk = poly(ks)
        paint(name, _scaled(eye, o.eye_scale), kk)
    return labels


def region_counts(labels: np.ndarray, names: tuple[str, ...] = REGION_NAMES) -> dict[str, int]:
    """{region name: number of vertices} for (V,) labels."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts)}
