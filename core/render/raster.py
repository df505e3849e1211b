"""A triangle rasteriser in plain torch (CPU and CUDA, one code path, no compiled extension).

Convention:
    vertices   (B, V, 3) float32 in *screen space*: x, y in pixel-area coordinates of the output image
               (core/conventions.py: pixel (i, j) covers [i, i+1) x [j, j+1), centre (i+0.5, j+0.5)), y down;
               z = depth, larger = further from the camera (any unit; 3DDFA's is pixels).
    triangles  (F, 3) int64 vertex indices (int32 accepted), shared by the batch.
    size       (w, h) of the output image in pixels.
    Front faces: the normal (v1 - v0) x (v2 - v0), taken in this right-handed (x right, y down, z away)
    frame, points towards the camera (n_z < 0), i.e. the triangle runs counter-clockwise on the screen.

Sampling: one sample per pixel at its centre. A centre exactly on an edge belongs to the triangle for which that
edge is a top or left edge (the top-left rule of Direct3D / OpenGL), so two triangles sharing an edge cover each
centre on it exactly once. The rule is exact in float32: each edge function is evaluated from the edge's
endpoints in one canonical order (lexicographic in (x, y)), so the two triangles on either side of an edge compute
bit-identical values of opposite sign. Visibility: nearest depth wins (ties: the lower triangle index).

Algorithm (why it is fast without a compiled kernel): every triangle enumerates the pixel centres of its clipped
bounding box. Triangles are bucketed by box width and height (classes 1, 2, 3, 4, 6, 8, ..., 64 px, each at most
1.5x the previous); buckets too small to repay their fixed cost are merged into a larger one (a cost model, see
``_BUCKET_COST``). A bucket is one dense (kh, kw, n) tensor, triangles innermost, whose three edge functions are
evaluated by broadcasting per-triangle coefficients against per-row and per-column terms (no per-pixel gathers).
Boxes wider or taller than 64 px are cut into 64 px tiles. Covered candidates are packed into one int64 key per
sample (depth's order-preserving float bits in the high 32 bits, triangle index in the low 32) and resolved into
the z-buffer with ``scatter_reduce(..., "amin")``; barycentrics are then computed for the winners only. On CPU
tensors the compaction uses numpy's nonzero on a zero-copy view (faster here than torch's); CUDA runs the same
code with torch.nonzero, and a test holds both paths to identical rasters.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError

#: Bounding-box size classes in pixels. Consecutive classes differ by at most 1.5x, so a bucket's padded window is
#: at most (1.5)^2 = 2.25x the box it holds; bigger boxes are tiled at the last class. Chosen by measurement on
#: the BFM mesh at 1024-2048 px: powers of two alone give ~1.45x more candidate samples.
SIZE_CLASSES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)

_KEY_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Raster:
    """What :func:`rasterise` saw at each pixel centre.

    Convention:
        tri_id (B, H, W) int64: index into ``triangles`` of the visible triangle, -1 for background.
        bary   (B, H, W, 3) float32: screen-space (not perspective-corrected) barycentrics of the pixel centre
               with respect to the triangle's vertices in their listed order; they sum to 1 (up to rounding),
               0 on background.
        depth  (B, H, W) float32: the visible triangle's depth plane at the pixel centre; +inf on background.
        mask   (B, 1, H, W) float32 coverage in [0, 1]: 1/0 at the pixel centre, or the covered fraction of a
               k x k sample grid when rasterised with ``samples = k * k``.
    """

    tri_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the image."""
        return int(self.tri_id.shape[2]), int(self.tri_id.shape[1])

    @property
    def covered(self) -> torch.Tensor:
        """(B, H, W) bool: the pixel centre is covered by some triangle."""
        return self.tri_id >= 0


# ---------------------------------------------------------------------------------------------------- checks
def check_size(size: Sequence[int], name: str = "size") -> tuple[int, int]:
    """Validate an image size (w, h) of positive ints; returns it as a tuple."""
    try:
        w, h = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (w, h) in pixels, got {size!r}") from None
    if w < 1 or h < 1 or (w, h) != tuple(size):
        raise InputError(f"{name} must be two positive integers (w, h), got {size!r}")
    return w, h


def check_vertices(vertices: torch.Tensor, name: str = "vertices", dims: int = 3) -> torch.Tensor:
    """Validate (B, V, dims) float32 vertices; returns them unchanged."""
    if not isinstance(vertices, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor (B, V, {dims}), got {type(vertices).__name__}")
    if vertices.ndim != 3 or vertices.shape[2] != dims:
        raise InputError(f"{name} must be (B, V, {dims}), got shape {tuple(vertices.shape)}",
                         hint="add a batch dimension with vertices[None] for a single mesh")
    if vertices.dtype != torch.float32:
        raise InputError(f"{name} must be float32, got {vertices.dtype}")
    if vertices.shape[0] < 1:
        raise InputError(f"{name} has an empty batch: shape {tuple(vertices.shape)}")
    return vertices


def check_triangles(triangles: torch.Tensor, n_vertices: int, device: torch.device,
                    name: str = "triangles") -> torch.Tensor:
    """Validate (F, 3) integer vertex indices in [0, n_vertices) on ``device``; returns them as int64."""
    if not isinstance(triangles, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor (F, 3) int64, got {type(triangles).__name__}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise InputError(f"{name} must be (F, 3), got shape {tuple(triangles.shape)}")
    if triangles.dtype not in (torch.int64, torch.int32):
        raise InputError(f"{name} must be int64 (or int32) vertex indices, got {triangles.dtype}")
    if triangles.device != device:
        raise InputError(f"{name} is on {triangles.device} but the vertices are on {device}: move one of them")
    if triangles.shape[0] and (int(triangles.min()) < 0 or int(triangles.max()) >= n_vertices):
        raise InputError(f"{name} index vertices outside [0, {n_vertices}): range "
                         f"[{int(triangles.min())}, {int(triangles.max())}]")
    return triangles.long()


# ---------------------------------------------------------------------------------------------------- setup
#: Vertices farther than this from the origin (pixels) make their triangle ignored: beyond it the float32 edge
#: products (up to (2 * 2^60)^2 = 2^122) could overflow float32's 2^128 range.
_GUARD = float(2 ** 60)
#: Coefficient rows of the per-triangle table (K, N) that the buckets gather from.
_EX, _EY, _CX, _CY, _NTL = 0, 3, 6, 9, 12  # three rows each (one per edge)
_Z0, _GX, _GY, _X0, _Y0 = 15, 16, 17, 18, 19
#: Barycentric-table rows (6, N): l1 = a1 dx + b1 dy, l2 = a2 dx + b2 dy with (dx, dy) = p - v0; l0 = 1 - l1 - l2.
_BX0, _BY0, _A1, _B1, _A2, _B2 = range(6)

#: Use numpy's nonzero for CPU tensors (zero-copy views): measured ~5x faster than torch.nonzero on this CPU.
#: Tests switch it off to hold both paths to the same numbers.
USE_NUMPY_NONZERO = True


def _nonzero(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Indices (one int64 tensor per dimension, row-major order) of the True entries of ``mask``."""
    if USE_NUMPY_NONZERO and mask.device.type == "cpu":
        return tuple(torch.from_numpy(i) for i in np.nonzero(mask.numpy()))
    return mask.nonzero().unbind(1)


@dataclasses.dataclass(frozen=True)
class _Setup:
    coef: torch.Tensor  # (20, N) float32 edge and depth-plane coefficients, N = B * F
    bary: torch.Tensor  # (6, N) float32 barycentric coefficients
    keep: torch.Tensor  # (n,) int64 flat indices of triangles that may cover a sample
    origin: torch.Tensor  # (2, n) int64 first pixel (column, row) of each kept triangle's clipped box
    extent: torch.Tensor  # (2, n) int64 box width, height in pixels (>= 1)


def _setup(vertices: torch.Tensor, triangles: torch.Tensor, size: tuple[int, int], cull_backfaces: bool) -> _Setup:
    """Per-triangle data over the flattened (B * F) triangle list, laid out (row, N) so rows are contiguous."""
    w, h = size
    b, nv = vertices.shape[:2]
    f = triangles.shape[0]
    idx = triangles.reshape(1, -1) + (torch.arange(b, device=vertices.device) * nv).view(b, 1)
    corners = vertices.reshape(b * nv, 3).index_select(0, idx.view(-1)).view(b * f, 9).t().contiguous()  # (9, N)
    x, y, z = corners[0::3], corners[1::3], corners[2::3]  # (3, N) each: one row per vertex
    dx1, dy1, dz1 = x[1] - x[0], y[1] - y[0], z[1] - z[0]
    dx2, dy2, dz2 = x[2] - x[0], y[2] - y[0], z[2] - z[0]
    area = dx1 * dy2 - dy1 * dx2  # twice the signed area; > 0: clockwise on the y-down screen
    lo_x, hi_x = x.amin(0), x.amax(0)
    lo_y, hi_y = y.amin(0), y.amax(0)
    # finite area implies finite x, y; the guard keeps the edge products inside float32's range
    ok = (area != 0) & torch.isfinite(area) & torch.isfinite(z.sum(0))
    ok &= (lo_x > -_GUARD) & (lo_y > -_GUARD) & (hi_x < _GUARD) & (hi_y < _GUARD)
    if cull_backfaces:
        ok &= area < 0
    orient = torch.where(area > 0, 1.0, -1.0)
    xa, ya = x.roll(-1, 0), y.roll(-1, 0)  # edge e runs from vertex e+1 to e+2 (it faces vertex e)
    xb, yb = x.roll(-2, 0), y.roll(-2, 0)
    # oriented direction (interior on the positive side); exact: xb - xa == -(xa - xb) in IEEE arithmetic
    ex, ey = orient * (xb - xa), orient * (yb - ya)
    swap = (xa > xb) | ((xa == xb) & (ya > yb))  # canonical base point: the lexicographically smaller end
    top_left = (ey < 0) | ((ey == 0) & (ex > 0))  # interior below a horizontal edge, or right of a rising one
    inv = 1.0 / torch.where(ok, area, torch.ones_like(area))
    gx = (dz1 * dy2 - dz2 * dy1) * inv  # depth plane z = z0 + gx (px - x0) + gy (py - y0)
    gy = (dz2 * dx1 - dz1 * dx2) * inv
    coef = torch.cat([ex, ey, torch.where(swap, xb, xa), torch.where(swap, yb, ya), (~top_left).to(ex.dtype),
                      z[0:1], gx[None], gy[None], x[0:1], y[0:1]])
    bary = torch.stack([x[0], y[0], dy2 * inv, -dx2 * inv, -dy1 * inv, dx1 * inv])
    # clipped box of pixel indices whose centres may be inside: ceil(min - 1/2) .. floor(max - 1/2)
    big = float(max(w, h)) + 1.0
    lo = torch.stack([lo_x, lo_y]).clamp_(-1.0, big)
    hi = torch.stack([hi_x, hi_y]).clamp_(-1.0, big)
    i0 = torch.ceil(lo - 0.5).long().clamp_(min=0)
    i1 = torch.minimum(torch.floor(hi - 0.5).long(), torch.tensor([[w - 1], [h - 1]], device=x.device))
    ext = i1 - i0 + 1
    ok &= (ext[0] > 0) & (ext[1] > 0)
    keep = _nonzero(ok)[0]
    return _Setup(coef=coef, bary=bary, keep=keep, origin=i0.index_select(1, keep),
                  extent=ext.index_select(1, keep))


#: A bucket's fixed cost (its ~30 torch calls) in units of one candidate sample's work: a bucket whose entries
#: would cost fewer extra candidates than this in a larger existing bucket is merged into it. Measured on this
#: 2-core CPU with 2 threads (BFM mesh at 512 and 1024 px; 20k, 50k and 100k tried): 50k was fastest.
_BUCKET_COST = 50000
#: Candidate samples per chunk of a bucket: bounds the (3, kh, kw, n) float32 edge tensor to 48 MiB.
_MAX_CANDIDATES = 1 << 22


def _merge_plan(counts: dict[tuple[int, int], int]) -> dict[tuple[int, int], tuple[int, int]]:
    """Map each (width class, height class) to the bucket that processes it: small buckets, cheapest first, go
    into the existing larger one that costs fewest extra candidates, while that is cheaper than their own."""
    area = {g: SIZE_CLASSES[g[0]] * SIZE_CLASSES[g[1]] for g in counts}
    groups = dict(counts)
    target = {g: g for g in counts}
    for g in sorted(counts, key=lambda g: counts[g] * area[g]):
        best, into = _BUCKET_COST, None
        for o in groups:
            if o != g and o[0] >= g[0] and o[1] >= g[1]:
                extra = groups[g] * (area[o] - area[g])
                if extra < best:
                    best, into = extra, o
        if into is not None:
            groups[into] += groups.pop(g)
            for k, v in target.items():
                if v == g:
                    target[k] = into
    return target


def _buckets(st: _Setup, size: tuple[int, int], n_tri: int):
    """Group (triangle, window origin) entries by window class; yields (kw, kh, tri, base, x0, y0) per bucket
    (base: the window's first pixel in the flat (B * H * W) image), the triangles of a bucket in raster order of
    their windows (so the z-buffer is written nearly in order)."""
    w, h = size
    keep, ext = st.keep, st.extent
    dev = keep.device
    ncls = len(SIZE_CLASSES)
    classes = torch.tensor(SIZE_CLASSES, device=dev)
    step = int(SIZE_CLASSES[-1])
    cls = torch.searchsorted(classes, ext).clamp_(max=ncls - 1)  # (2, n) class index per axis
    tri, x0, y0 = keep, st.origin[0], st.origin[1]
    big = (ext > step).any(0)
    if bool(big.any()):
        # tile boxes bigger than the last class: each tile is one entry with the last class on that axis
        kb = _nonzero(big)[0]
        nt = (ext[:, kb] + step - 1) // step  # tiles per axis
        count = nt[0] * nt[1]
        rep = torch.repeat_interleave(torch.arange(kb.numel(), device=dev), count)
        first = torch.cumsum(count, 0) - count
        local = torch.arange(rep.numel(), device=dev) - first[rep]
        tx, ty = local % nt[0, rep], local // nt[0, rep]
        small = _nonzero(~big)[0]
        cls = torch.cat([cls[:, small], cls[:, kb][:, rep]], 1)
        tri = torch.cat([keep[small], keep[kb][rep]])
        x0 = torch.cat([x0[small], x0[kb][rep] + tx * step])
        y0 = torch.cat([y0[small], y0[kb][rep] + ty * step])
    group = cls[0] * ncls + cls[1]
    hist = torch.bincount(group, minlength=ncls * ncls).tolist()
    plan = _merge_plan({(g // ncls, g % ncls): c for g, c in enumerate(hist) if c})
    remap = list(range(ncls * ncls))
    for (a, b), (ta, tb) in plan.items():
        remap[a * ncls + b] = ta * ncls + tb
    group = torch.tensor(remap, device=dev).index_select(0, group)
    kws = classes.clamp(max=w).index_select(0, group // ncls)
    khs = classes.clamp(max=h).index_select(0, group % ncls)
    # keep each window inside the image: it still contains the clipped box (which is inside)
    x0 = torch.minimum(x0, w - kws)
    y0 = torch.minimum(y0, h - khs)
    base = (tri // n_tri) * (h * w) + y0 * w + x0
    order = torch.sort(group * (base.max() + 1) + base)[1]
    group, tri, base, x0, y0 = (a.index_select(0, order) for a in (group, tri, base, x0, y0))
    uniq, counts = torch.unique_consecutive(group, return_counts=True)
    start = 0
    for g, c in zip(uniq.tolist(), counts.tolist()):
        kw, kh = min(SIZE_CLASSES[g // ncls], w), min(SIZE_CLASSES[g % ncls], h)
        per = max(1, _MAX_CANDIDATES // (kw * kh))  # entries per chunk: bounded memory for huge triangles
        for lo in range(start, start + c, per):
            sl = slice(lo, min(lo + per, start + c))
            yield kw, kh, tri[sl], base[sl], x0[sl], y0[sl]
        start += c


def _ordered_bits(z: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 whose signed order equals the floats' order (the usual sign-magnitude flip); it is its
    own inverse on the int32 side."""
    bits = z.contiguous().view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _zbuffer(st: _Setup, size: tuple[int, int], batch: int, n_tri: int) -> torch.Tensor:
    """(B * H * W,) int64 keys of the nearest covering triangle per pixel centre (_KEY_EMPTY where none).

    A bucket's candidates are laid out (kh, kw, n) with the triangle innermost, so every broadcast below runs
    over a contiguous inner dimension (measured: 5-10x faster than (n, kh, kw) with its short inner loops)."""
    w, h = size
    dev = st.coef.device
    zbuf = torch.full((batch * h * w,), _KEY_EMPTY, dtype=torch.int64, device=dev)
    if st.keep.numel() == 0:
        return zbuf
    top = SIZE_CLASSES[-1]
    centres = torch.arange(top, device=dev, dtype=torch.float32) + 0.5
    steps = torch.arange(top, device=dev)
    inf = torch.tensor(float("inf"), device=dev)
    for kw, kh, tri, base, x0, y0 in _buckets(st, size, n_tri):
        n = tri.numel()
        c = st.coef.index_select(1, tri).view(20, 1, 1, n)
        py = y0.to(torch.float32) + centres[:kh].view(kh, 1, 1)  # (kh, 1, n) pixel centres, exact
        px = x0.to(torch.float32) + centres[:kw].view(1, kw, 1)  # (1, kw, n)
        # edge e's function is u - v with u = ex (py - cy), v = ey (px - cx): bit-identical, negated, for the
        # triangle across the edge. Covered iff u - v >= 0 on a top-left edge and > 0 otherwise; the latter is
        # u - nextafter(v, +inf) >= 0, exact in IEEE arithmetic. All three edges at once: (3, kh, kw, n).
        u = c[_EX:_EX + 3] * (py - c[_CY:_CY + 3])  # (3, kh, 1, n)
        v = c[_EY:_EY + 3] * (px - c[_CX:_CX + 3])  # (3, 1, kw, n)
        v = torch.where(c[_NTL:_NTL + 3] > 0, torch.nextafter(v, inf), v)
        rc, t = _nonzero((u - v).amin(0).view(kh * kw, n) >= 0)
        if t.numel() == 0:
            continue
        c = c.view(20, n)
        depth = (c[_Z0] + c[_GY] * (py - c[_Y0])) + c[_GX] * (px - c[_X0])  # (kh, kw, n) planes
        zs = depth.view(-1).index_select(0, rc * n + t)
        offs = (steps[:kh] * w).view(kh, 1) + steps[:kw]
        pix = base.index_select(0, t) + offs.view(-1).index_select(0, rc)
        key = (_ordered_bits(zs).to(torch.int64) << 32) | tri.index_select(0, t)
        zbuf.scatter_reduce_(0, pix, key, "amin", include_self=True)
    return zbuf


def rasterise(vertices: torch.Tensor, triangles: torch.Tensor, size: Sequence[int], *,
              cull_backfaces: bool = False, samples: int = 1) -> Raster:
    """Rasterise a batch of screen-space meshes (see the module docstring for the sampling rule).

    Args:
        vertices: (B, V, 3) float32 screen-space vertices (x, y pixel-area, y down; z depth, larger = further).
        triangles: (F, 3) int64 vertex indices on the vertices' device. Degenerate (zero-area) triangles and
            triangles with a non-finite vertex or one beyond 2^60 px are ignored; F = 0 gives an empty raster.
        size: (w, h) of the image in pixels.
        cull_backfaces: drop triangles whose normal (v1 - v0) x (v2 - v0) points away from the camera
            (clockwise on the screen).
        samples: 1, or k * k (4, 9, 16) for antialiased coverage: ``mask`` becomes the fraction of a regular
            k x k grid of samples ((i + (a + 0.5) / k, j + (b + 0.5) / k), a, b < k) that some triangle covers,
            found by rasterising at k times the resolution (about k * k times the cost). tri_id, bary and depth
            always come from the single pixel-centre sample, so ``mask`` may be fractional where tri_id is -1.

    Returns:
        :class:`Raster` on the vertices' device.

    Convention:
        Pixel-area coordinates (core/conventions.py), samples at pixel centres, top-left tie rule, nearest z.
        Never modifies its inputs; never moves data between devices.
    """
    check_vertices(vertices)
    w, h = check_size(size)
    tris = check_triangles(triangles, vertices.shape[1], vertices.device)
    k = int(round(samples ** 0.5)) if isinstance(samples, int) and samples >= 1 else 0
    if k < 1 or k * k != samples:
        raise InputError(f"samples must be a square number of samples per pixel (1, 4, 9, 16), got {samples!r}")
    b, f = vertices.shape[0], tris.shape[0]
    dev = vertices.device
    st = _setup(vertices, tris, (w, h), cull_backfaces)
    keys = _zbuffer(st, (w, h), b, f)
    hit = keys != _KEY_EMPTY
    lin = _nonzero(hit)[0]  # covered pixels of the flat (B * H * W) image
    if b > 1:
        bi = lin // (h * w)
        rest = lin - bi * (h * w)
    else:
        bi, rest = None, lin
    yi = rest // w
    xi = rest - yi * w
    ksel = keys.index_select(0, lin)
    flat = ksel & _LOW32  # index into the flattened (B * F) triangle list
    tri_id = torch.full((b * h * w,), -1, dtype=torch.int64, device=dev)
    tri_id.scatter_(0, lin, flat - bi * f if bi is not None else flat)
    depth = torch.full((b * h * w,), float("inf"), dtype=torch.float32, device=dev)
    depth.scatter_(0, lin, _ordered_bits((ksel >> 32).to(torch.int32)).view(torch.float32))
    # barycentrics of the pixel centre in the winner, from vertex 0 (small offsets keep float32 accurate)
    cb = st.bary.index_select(1, flat)  # (6, m)
    ddx = (xi.to(torch.float32) + 0.5) - cb[_BX0]
    ddy = (yi.to(torch.float32) + 0.5) - cb[_BY0]
    l1 = cb[_A1] * ddx + cb[_B1] * ddy
    l2 = cb[_A2] * ddx + cb[_B2] * ddy
    bary = torch.zeros(b * h * w, 3, dtype=torch.float32, device=dev)
    bary.scatter_(0, lin.view(-1, 1).expand(-1, 3), torch.stack([1.0 - l1 - l2, l1, l2], 1))
    if k == 1:
        mask = hit.to(torch.float32)
    else:
        fine = vertices.clone()
        fine[..., :2] *= k
        sub = _zbuffer(_setup(fine, tris, (w * k, h * k), cull_backfaces), (w * k, h * k), b, f) != _KEY_EMPTY
        mask = torch.nn.functional.avg_pool2d(sub.view(b, 1, h * k, w * k).to(torch.float32), k)
    return Raster(tri_id=tri_id.view(b, h, w), bary=bary.view(b, h, w, 3), depth=depth.view(b, h, w),
                  mask=mask.view(b, 1, h, w))


# ---------------------------------------------------------------------------------------------------- attributes
def interpolate(raster: Raster, attributes: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes at every pixel with the raster's barycentrics.

    Args:
        raster: from :func:`rasterise` (B, H, W).
        attributes: (V, D) shared by the batch or (B, V, D) per item, float32, on the raster's device.
        triangles: (F, 3) int64 indices into ``attributes``, one row per triangle of the rasterised list (the same
            triangles, or ``uv_triangles`` when seams split the attribute's vertices).

    Returns:
        (B, D, H, W) float32; 0 on background pixels.

    Convention:
        Screen-space (affine) barycentric interpolation at pixel centres; values are not clamped.
    """
    b, h, w = raster.tri_id.shape
    if not isinstance(attributes, torch.Tensor) or attributes.ndim not in (2, 3):
        raise InputError(f"attributes must be (V, D) or (B, V, D), got "
                         f"{tuple(attributes.shape) if isinstance(attributes, torch.Tensor) else type(attributes)}")
    if attributes.ndim == 3 and attributes.shape[0] not in (1, b):
        raise InputError(f"attributes has batch {attributes.shape[0]}, the raster {b}")
    if attributes.dtype != torch.float32:
        raise InputError(f"attributes must be float32, got {attributes.dtype}")
    if attributes.device != raster.tri_id.device:
        raise InputError(f"attributes are on {attributes.device}, the raster on {raster.tri_id.device}")
    nv = attributes.shape[-2]
    tris = check_triangles(triangles, nv, attributes.device)
    d = attributes.shape[-1]
    out = torch.zeros(b, h * w, d, dtype=torch.float32, device=attributes.device)
    tid = raster.tri_id.reshape(b, h * w)
    sel = (tid >= 0).nonzero()  # (m, 2): batch, pixel
    if sel.numel():
        if tid.max() >= tris.shape[0]:
            raise InputError(f"triangles has {tris.shape[0]} rows but the raster refers to triangle "
                             f"{int(tid.max())}: pass the rasterised triangle list (or its uv twin)")
        bi, pi = sel[:, 0], sel[:, 1]
        face = tris[tid[bi, pi]]  # (m, 3)
        table = attributes.reshape(-1, d)
        if attributes.ndim == 3 and attributes.shape[0] == b and b > 1:
            face = face + (bi * nv)[:, None]
        vals = table[face]  # (m, 3, d)
        lam = raster.bary.reshape(b, h * w, 3)[bi, pi]
        out[bi, pi] = (vals * lam[..., None]).sum(1)
    return out.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals: the area-weighted sum of the incident faces' normals (v1 - v0) x (v2 - v0).

    Args: vertices (B, V, 3) float32 (any right-handed frame; for screen space see the module docstring, where a
    front face's normal has n_z < 0), triangles (F, 3) int64.
    Returns: (B, V, 3) float32 unit normals; zero for vertices no non-degenerate triangle uses.
    """
    check_vertices(vertices)
    tris = check_triangles(triangles, vertices.shape[1], vertices.device)
    b, v = vertices.shape[:2]
    p = vertices[:, tris]  # (B, F, 3, 3)
    n = torch.linalg.cross(p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0], dim=-1)  # (B, F, 3), |n| = 2 area
    acc = torch.zeros(b, v, 3, dtype=vertices.dtype, device=vertices.device)
    for k in range(3):
        acc.index_add_(1, tris[:, k], n)
    length = acc.norm(dim=-1, keepdim=True)
    return torch.where(length > 0, acc / length.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(acc))
