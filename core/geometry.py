"""Affine geometry in facegraph's pixel convention (see core.conventions): point transforms, inversion,
similarity estimation (weighted Umeyama, optional RANSAC) and float warps.

Matrices are 2x3 source -> destination, fp64, acting on column vectors [x, y, 1] in pixel-area coordinates.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .conventions import affine_index_from_area
from .errors import EstimationError, InputError


def as_affine(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):
        m = m[:2]
    if m.shape != (2, 3):
        raise InputError(f"an affine matrix must be 2x3 (or 3x3), got {m.shape}")
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (dst -> src). Raises EstimationError when singular."""
    m = as_affine(m)
    det = np.linalg.det(m[:, :2])
    if abs(det) < 1e-12 or not np.isfinite(det):
        raise EstimationError("cannot invert a singular affine matrix")
    inv = np.linalg.inv(m[:, :2])
    return np.concatenate([inv, -inv @ m[:, 2:]], axis=1)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine that applies ``b`` first, then ``a`` (a @ b in homogeneous form)."""
    a3 = np.vstack([as_affine(a), [0, 0, 1]])
    b3 = np.vstack([as_affine(b), [0, 0, 1]])
    return (a3 @ b3)[:2]


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (..., 2+) points; extra columns (z) are scaled by the similarity scale."""
    m = as_affine(m)
    p = np.asarray(points, dtype=np.float64)
    out = p.copy()
    out[..., :2] = p[..., :2] @ m[:, :2].T + m[:, 2]
    if p.shape[-1] > 2:
        out[..., 2:] = p[..., 2:] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out


def similarity_matrix(scale: float, angle_rad: float, tx: float, ty: float) -> np.ndarray:
    """2x3 matrix of x -> s R(angle) x + t (angle counter-clockwise in x-right/y-down images looks clockwise)."""
    c, s = np.cos(angle_rad) * scale, np.sin(angle_rad) * scale
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def decompose_similarity(m: np.ndarray) -> tuple[float, float, float, float]:
    """(scale, angle_rad, tx, ty) of a similarity 2x3 matrix (the inverse of :func:`similarity_matrix`)."""
    m = as_affine(m)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    angle = float(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    return scale, angle, float(m[0, 2]), float(m[1, 2])


@dataclasses.dataclass(frozen=True)
class SimilarityFit:
    """Result of :func:`estimate_similarity`: ``matrix`` maps src -> dst; ``rms`` residual in dst pixels;
    ``inliers`` mask (all True without RANSAC)."""

    matrix: np.ndarray
    rms: float
    inliers: np.ndarray


def estimate_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, *,
                        ransac_threshold: float | None = None, ransac_iterations: int = 200,
                        seed: int = 0) -> SimilarityFit:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst, in fp64.

    Weighted Umeyama (Umeyama 1991, "Least-squares estimation of transformation parameters between two point
    patterns", with the determinant sign correction that forbids reflections). With ``ransac_threshold``
    (dst pixels), minimal 2-point samples pick the largest inlier set, then a weighted refit on it.

    Args: src, dst (N, 2) points; weights (N,) >= 0 or None.
    Raises: EstimationError when fewer than 2 usable points, points are coincident, or the result is
    degenerate (zero scale, non-finite).
    """
    src = np.asarray(src, dtype=np.float64)[:, :2]
    dst = np.asarray(dst, dtype=np.float64)[:, :2]
    if src.shape != dst.shape or src.ndim != 2:
        raise InputError(f"src {src.shape} and dst {dst.shape} must both be (N, 2)")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(src):
        raise InputError(f"{len(w)} weights for {len(src)} points")
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & np.isfinite(w) & (w > 0)
    if ok.sum() < 2:
        raise EstimationError(f"a similarity needs at least 2 valid weighted points, got {int(ok.sum())}")
    inliers = ok.copy()
    if ransac_threshold is not None:
        rng = np.random.default_rng(seed)
        idx = np.flatnonzero(ok)
        best = None
        for _ in range(ransac_iterations):
            i, j = rng.choice(idx, 2, replace=False)
            if np.allclose(src[i], src[j]):
                continue
            try:
                m = _umeyama(src[[i, j]], dst[[i, j]], np.ones(2))
            except EstimationError:
                continue
            err = np.linalg.norm(transform_points(m, src) - dst, axis=1)
            cand = ok & (err < ransac_threshold)
            score = (w * cand).sum()
            if best is None or score > best[0]:
                best = (score, cand)
        if best is None or best[1].sum() < 2:
            raise EstimationError("RANSAC found no consistent similarity")
        inliers = best[1]
    m = _umeyama(src[inliers], dst[inliers], w[inliers])
    res = np.linalg.norm(transform_points(m, src[inliers]) - dst[inliers], axis=1)
    rms = float(np.sqrt(np.average(res ** 2, weights=w[inliers])))
    return SimilarityFit(matrix=m, rms=rms, inliers=inliers)


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted least-squares similarity in any dimension (Umeyama 1991, with the determinant sign correction
    that forbids reflections): (scale, rotation (D, D), translation (D,)) with dst ~ scale R src + t.

    src, dst (N, D) fp64, w (N,) > 0 (normalised here). Raises EstimationError when degenerate.
    """
    wsum = w.sum()
    if wsum <= 0:
        raise EstimationError("all weights are zero")
    wn = w / wsum
    mu_s = wn @ src
    mu_d = wn @ dst
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float(wn @ (s0 ** 2).sum(1))
    if var_s < 1e-18:
        raise EstimationError("source points are coincident")
    cov = (d0 * wn[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(src.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # forbid reflections
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    if not np.isfinite(scale) or scale <= 1e-12:
        raise EstimationError(f"degenerate similarity (scale {scale})")
    return scale, r, mu_d - scale * r @ mu_s


def _umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    scale, r, t = umeyama(src, dst, w)
    return np.concatenate([scale * r, t[:, None]], axis=1)


BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}


def warp_affine(image: np.ndarray, dst_from_src: np.ndarray, size: tuple[int, int], *,
                border: str = "constant", interpolation: str = "linear") -> np.ndarray:
    """Warp a float image with a 2x3 src -> dst matrix (pixel-area convention) into ``size`` = (w, h).

    image: (H, W, C) or (H, W) float32 (any range; linear data stays linear). Returns float32.
    OpenCV works in pixel-centre coordinates; the matrix is converted here, once, so callers never see it.
    """
    if image.ndim not in (2, 3):
        raise InputError(f"warp_affine expects (H, W[, C]), got {image.shape}")
    m = affine_index_from_area(as_affine(dst_from_src))
    flags = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
             "area": cv2.INTER_AREA}[interpolation]
    img = np.ascontiguousarray(image, dtype=np.float32)
    w, h = int(size[0]), int(size[1])
    if img.ndim == 3 and img.shape[2] > 4:  # OpenCV handles at most 4 channels per call
        return np.stack([warp_affine(img[..., c], dst_from_src, size, border=border,
                                     interpolation=interpolation) for c in range(img.shape[2])], axis=-1)
    out = cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=BORDERS[border], borderValue=0)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out
