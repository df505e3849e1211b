"""Soft masks of face regions: from a labelled screen-space mesh (visible parts only), from a polygon (e.g. the
inner-lip landmarks for the mouth interior, which face meshes leave as a hole), and their combination with a
user's occlusion mask.

Convention:
    vertices (B, V, 3) float32 screen space (pixel-area x, y, y down; z depth, larger = further), as in
    core/render/raster.py; points (B, K, 2) float32 pixel-area (core/conventions.py). Masks are (B, R, H, W)
    float32 in [0, 1], sampled at pixel centres (i + 0.5, j + 0.5), on the inputs' device.
Feathering is a separable Gaussian blur whose sigma = feather_px / 2.5631: the blurred edge of a hard mask then
ramps from 10 % to 90 % over feather_px pixels (the normal distribution's 10 % and 90 % quantiles lie at
-/+1.2816 sigma), centred on the hard edge; the kernel radius is ceil(3 sigma), and the image border is extended
(replicate padding), so a region touching the border stays solid there.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..tensors import check_masks
from .raster import Raster, check_size, check_triangles, check_vertices, rasterise

LabelRule = Literal["majority", "all"]
LABEL_RULES: tuple[str, ...] = get_args(LabelRule)
FillRule = Literal["even-odd", "nonzero"]
FILL_RULES: tuple[str, ...] = get_args(FillRule)

#: 2 * 1.2816, the width in sigmas between the standard normal's 10 % and 90 % quantiles (Phi^-1(0.9) = 1.2816).
_RAMP_SIGMAS = 2.0 * 1.2815516
#: Default feather of region masks in pixels: soft enough to hide the pixel staircase of a hard edge (our choice).
REGION_FEATHER_PX = 2.0


def feather(masks: torch.Tensor, feather_px: float) -> torch.Tensor:
    """Soften masks with a separable Gaussian blur (see the module docstring for sigma and radius).

    Args: masks (B, R, H, W) float32 in [0, 1]; feather_px >= 0, the 10-90 % ramp width in pixels (0: unchanged).
    Returns: (B, R, H, W) float32 in [0, 1] (a new tensor; the input is not modified).
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or masks.dtype != torch.float32:
        raise InputError(f"masks must be a (B, R, H, W) float32 tensor, got "
                         f"{tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__}")
    fp = _check_feather(feather_px)
    if fp == 0:
        return masks.clone()
    sigma = fp / _RAMP_SIGMAS
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=masks.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    b, r, h, w = masks.shape
    # blur only the box around what is non-zero (+ the kernel's radius): outside it the result is exactly 0, and
    # inside it the crop's edges that are not image edges hold zeros, so replicate padding there equals the
    # full frame's (a face mask in a 1080p frame: a few percent of the pixels)
    rows = masks.amax(dim=(0, 1, 3)) > 0
    cols = masks.amax(dim=(0, 1, 2)) > 0
    out = torch.zeros_like(masks)
    if not bool(rows.any()):
        return out
    ys, xs = torch.nonzero(rows).flatten(), torch.nonzero(cols).flatten()
    y0, y1 = max(0, int(ys[0]) - radius), min(h, int(ys[-1]) + 1 + radius)
    x0, x1 = max(0, int(xs[0]) - radius), min(w, int(xs[-1]) + 1 + radius)
    m = masks[:, :, y0:y1, x0:x1].reshape(b * r, 1, y1 - y0, x1 - x0)
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    out[:, :, y0:y1, x0:x1] = m.view(b, r, y1 - y0, x1 - x0).clamp_(0.0, 1.0)  # convex combinations of [0, 1]
    return out


def _check_feather(feather_px) -> float:
    try:
        fp = float(feather_px)
    except (TypeError, ValueError):
        raise InputError(f"feather_px must be a number of pixels >= 0, got {feather_px!r}") from None
    if not (fp >= 0 and math.isfinite(fp)):
        raise InputError(f"feather_px must be a finite number of pixels >= 0, got {feather_px!r}")
    return fp


def triangle_labels(triangles: torch.Tensor, labels: torch.Tensor, rule: LabelRule = "majority") -> torch.Tensor:
    """(F,) int64 label of each triangle from its vertices' labels: ``majority`` (at least two of its three
    vertices carry it) or ``all`` (all three); -1 where no label qualifies."""
    if rule not in LABEL_RULES:
        raise InputError(f"rule must be one of {LABEL_RULES}, got {rule!r}")
    lv = labels.long()[triangles]  # (F, 3)
    a, b, c = lv.unbind(1)
    none = torch.full_like(a, -1)
    if rule == "all":
        return torch.where((a == b) & (b == c), a, none)
    return torch.where((a == b) | (a == c), a, torch.where(b == c, b, none))


def region_masks(vertices: torch.Tensor, triangles: torch.Tensor, labels: torch.Tensor, wanted: Sequence[int],
                 size: Sequence[int], *, feather_px: float = REGION_FEATHER_PX, rule: LabelRule = "majority",
                 raster: Raster | None = None) -> torch.Tensor:
    """Masks of labelled mesh regions as seen in the frame (only visible parts: hidden ones lose the z-test).

    Args:
        vertices: (B, V, 3) float32 screen space; triangles: (F, 3) int64.
        labels: (V,) integer label per vertex, on the vertices' device.
        wanted: R labels, one output channel each (in this order).
        size: (w, h) of the masks.
        feather_px: 10-90 % edge ramp in pixels (0: hard 0/1 masks at pixel centres).
        rule: how a triangle takes its vertices' label (see :func:`triangle_labels`).
        raster: the raster of (vertices, triangles) at ``size``, if the caller has it (one raster serves any
            number of calls).

    Returns:
        (B, R, H, W) float32 in [0, 1].
    """
    check_vertices(vertices)
    w, h = check_size(size)
    tris = check_triangles(triangles, vertices.shape[1], vertices.device)
    if not isinstance(labels, torch.Tensor) or labels.shape != (vertices.shape[1],) or labels.is_floating_point():
        raise InputError(f"labels must be a ({vertices.shape[1]},) integer tensor (one label per vertex), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    if labels.device != vertices.device:
        raise InputError(f"labels are on {labels.device}, vertices on {vertices.device}: move one of them")
    try:
        want = [int(x) for x in wanted]
    except (TypeError, ValueError):
        raise InputError(f"wanted must be a sequence of integer labels, got {wanted!r}") from None
    if not want:
        raise InputError("wanted is empty: name at least one label")
    fp = _check_feather(feather_px)
    if raster is None:
        raster = rasterise(vertices, tris, (w, h))
    elif raster.tri_id.shape != (vertices.shape[0], h, w):
        raise InputError(f"raster is {tuple(raster.tri_id.shape)}, expected {(vertices.shape[0], h, w)}")
    tl = triangle_labels(tris, labels, rule)
    tid = raster.tri_id
    pixel = torch.where(tid >= 0, tl[tid.clamp(min=0)] if tl.numel() else torch.full_like(tid, -1), -1)
    want_t = torch.tensor(want, dtype=torch.int64, device=vertices.device).view(1, -1, 1, 1)
    masks = (pixel.unsqueeze(1) == want_t).to(torch.float32)
    return feather(masks, fp) if fp > 0 else masks


def polygon_mask(points: torch.Tensor, size: Sequence[int], *, feather_px: float = 0.0,
                 rule: FillRule = "even-odd") -> torch.Tensor:
    """Fill closed polygons (the last point joins the first) at pixel centres.

    Args:
        points: (B, K, 2) float32 pixel-area vertices, K >= 3, any device.
        size: (w, h) of the mask.
        feather_px: 10-90 % edge ramp in pixels (0: hard 0/1).
        rule: ``even-odd`` (a centre is inside if a ray from it crosses the outline an odd number of times) or
            ``nonzero`` (the outline's winding number around it is not 0); they differ only for self-intersecting
            outlines.

    Returns:
        (B, 1, H, W) float32 in [0, 1].

    Convention:
        Half-open edges: an edge spans rows whose centre y satisfies min(y0, y1) <= y < max(y0, y1), and a centre
        exactly on the outline is inside on a left edge and outside on a right one, so polygons that share an edge
        split its centres between them.
    """
    if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[2] != 2:
        raise InputError(f"points must be a (B, K, 2) tensor, got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if points.dtype != torch.float32:
        raise InputError(f"points must be float32, got {points.dtype}")
    if points.shape[1] < 3:
        raise InputError(f"a polygon needs at least 3 points, got {points.shape[1]}")
    if not torch.isfinite(points).all():
        raise InputError("points contain NaN or Inf")
    if rule not in FILL_RULES:
        raise InputError(f"rule must be one of {FILL_RULES}, got {rule!r}")
    w, h = check_size(size)
    fp = _check_feather(feather_px)
    b, k = points.shape[:2]
    dev = points.device
    p0, p1 = points, points.roll(-1, dims=1)  # edge i: p0[i] -> p1[i]
    x0, y0 = p0[..., 0].unsqueeze(1), p0[..., 1].unsqueeze(1)  # (B, 1, K)
    x1, y1 = p1[..., 0].unsqueeze(1), p1[..., 1].unsqueeze(1)
    yc = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5).view(1, h, 1)
    down = (y0 <= yc) & (yc < y1)  # (B, H, K)
    up = (y1 <= yc) & (yc < y0)
    crosses = down | up
    dy = torch.where(y1 != y0, y1 - y0, torch.ones_like(y1))
    xs = x0 + (yc - y0) * ((x1 - x0) / dy)  # where the edge crosses the row
    xs = torch.where(crosses, xs, torch.full_like(xs, float("inf")))
    xs, order = torch.sort(xs, dim=2)  # (B, H, K) crossings left to right, non-crossings (+inf) last
    xc = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5).expand(b * h, w).contiguous()
    count = torch.searchsorted(xs.reshape(b * h, k).contiguous(), xc, right=True)  # crossings at x <= centre
    if rule == "even-odd":
        inside = (count % 2) == 1
    else:
        direction = torch.where(down, 1, torch.where(up, -1, 0)).gather(2, order).reshape(b * h, k)
        winding = torch.cat([torch.zeros(b * h, 1, dtype=torch.int64, device=dev), direction.cumsum(1)], 1)
        inside = winding.gather(1, count) != 0
    mask = inside.view(b, 1, h, w).to(torch.float32)
    return feather(mask, fp) if fp > 0 else mask


def combine_with_user_mask(region: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
    """Restrict region masks by a user's occlusion mask (1 = the face shows, 0 = something covers it).

    Args: region (B, R, H, W) float32 in [0, 1] (R = 1 for one region); user (B or 1, 1, H, W) float32 in [0, 1]
    on the same device. Returns: (B, R, H, W) float32, the per-pixel minimum (a new tensor).
    """
    if not isinstance(region, torch.Tensor) or region.ndim != 4 or region.dtype != torch.float32:
        raise InputError(f"region must be a (B, R, H, W) float32 tensor, got "
                         f"{tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__}")
    check_masks(user, like=region, name="user")
    return torch.minimum(region, user.to(torch.float32))
