"""A triangle rasteriser in plain torch / numpy (CPU and CUDA, one algorithm, no compiled extension).

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

Precision: float32 throughout (edge functions, depth planes, barycentrics), which is exact where it matters: the
coverage test and the tie rule compare float32 values that both triangles of an edge evaluate identically; depth is
the triangle's plane at the centre (~1e-7 relative); screen-space barycentrics are taken from vertex 0 with small
pixel offsets (~1e-6 absolute for triangles of a few pixels). float64 would double the memory traffic for nothing.

Algorithm: every triangle enumerates the pixel centres of its clipped bounding box; boxes over ``TILE`` px are cut
into TILE x TILE tiles. Triangles are sorted by their exact box size (width, height) - a stable radix sort of one
small key, so mesh order (which is spatially coherent) is kept within a size - with their coefficients gathered
once in that order, and processed in chunks of one window size: a chunk is a dense (kh, kw, n) block, triangles
innermost, whose three edge functions are compared by broadcasting per-triangle row terms (kh, n) against column
terms (kw, n) (no per-pixel gathers). A group too small to fill a chunk joins the next group's chunk (the window
grows to fit both) while the extra padding costs less than a chunk's fixed cost (``_CHUNK_COST``). Covered
candidates are packed into one int64 key per sample (depth's order-preserving float bits in the high 32 bits,
triangle index in the low 32) and resolved into the z-buffer by a scatter-min; triangle id, depth and barycentrics
are then read out per pixel from the winners' keys, in bands of rows.

Backends: the kernel is written once against a small set of array operations (``_Ops``). CPU tensors run it in
numpy on zero-copy views: numpy never starts threads and costs ~1 us per call (torch ~5 us). Measured on this
2-core machine shared with other jobs: with 2 torch threads and the default (spinning) OpenMP wait policy, a torch
op big enough to be split over threads waits 4-8 ms whenever the other core is busy, and the previous
all-torch rasteriser (a few hundred such ops) took 0.5-1.4 s instead of 0.1 s at 1024 px. CUDA (and CPU with
``USE_NUMPY_NONZERO = False``) runs the same code in torch; a test holds both paths to identical rasters.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError

#: Largest window side in pixels: bigger bounding boxes are cut into TILE x TILE tiles (the last ones smaller).
#: 64 keeps a tile's per-row / per-column terms small and the number of tiles of a full-image triangle low.
TILE = 64

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
    if triangles.shape[0]:
        lo, hi = _min_max(triangles)
        if lo < 0 or hi >= n_vertices:
            raise InputError(f"{name} index vertices outside [0, {n_vertices}): range [{lo}, {hi}]")
    if triangles.dtype == torch.int32 and triangles.device.type == "cpu":
        return torch.from_numpy(triangles.numpy().astype(np.int64))  # on this thread (see _min_max)
    return triangles.long()


def _min_max(t: torch.Tensor) -> tuple[int, int]:
    """(min, max) of a non-empty integer tensor; numpy's on CPU (torch's reductions over 32k elements start the
    OpenMP threads, see the module docstring)."""
    if t.device.type == "cpu":
        a = t.numpy()
        return int(a.min()), int(a.max())
    return int(t.min()), int(t.max())


# ---------------------------------------------------------------------------------------------------- backends
#: Largest op on CPU tensors in the torch path, in elements: ATen runs an op with fewer than
#: at::internal::GRAIN_SIZE = 32768 elements (aten/src/ATen/Parallel.h) on the calling thread.
CPU_CHUNK = 32767
#: Candidate samples per chunk in the numpy path (CPU): a chunk's (3, kh, kw, n) float32 edge tensor (384 KiB) stays
#: in this CPU's 512 KiB L2 cache. 16k-128k tried on the BFM mesh at 512-2048 px: within the noise of this machine.
NUMPY_CHUNK = 1 << 15
#: Candidate samples per chunk on other devices (CUDA): bounds a chunk's (3, kh, kw, n) tensor to 48 MiB.
_MAX_CANDIDATES = 1 << 22
#: A chunk's fixed cost (its ~30 array calls, ~40 us in numpy) in units of one candidate sample's work (~20 ns): the
#: next group of boxes joins the open chunk (whose window grows to fit both) when that costs fewer extra candidates
#: than this. 500-8000 tried on the BFM mesh at 512-2048 px: within the noise of this machine.
_CHUNK_COST = 2000

#: Run CPU tensors through numpy on zero-copy views (single-threaded, ~1 us per call instead of torch's ~5 us; its
#: nonzero and small-key argsort are also several times faster here). The name is historical (it first covered
#: nonzero only). Tests switch it off to hold the numpy path and the torch path (what CUDA runs) to identical
#: rasters.
USE_NUMPY_NONZERO = True


class _Ops:
    """The array operations the kernel needs, for numpy arrays (CPU) or torch tensors (any device). Elementwise
    arithmetic, comparisons, bit operations, broadcasting and slicing are written once with operators; ``xp`` is
    the module whose minimum / maximum / where / floor / ceil / sign / amin / isfinite the kernel calls."""

    def __init__(self, device: torch.device, grad: bool = False) -> None:
        """``grad``: an input requires grad (with grad mode on): stay in torch, which keeps the graph."""
        self.device = device
        self.numpy = bool(USE_NUMPY_NONZERO and device.type == "cpu" and not grad)
        if self.numpy:
            self.xp = np
            self.f32, self.i32, self.i64, self.bool = np.float32, np.int32, np.int64, np.bool_
            self.limit = max(1, min(NUMPY_CHUNK, _MAX_CANDIDATES))
            self.one, self.inf = np.float32(1.0), np.float32(np.inf)
        else:
            self.xp = torch
            self.f32, self.i32, self.i64, self.bool = torch.float32, torch.int32, torch.int64, torch.bool
            self.limit = max(1, min(CPU_CHUNK, _MAX_CANDIDATES)) if device.type == "cpu" else _MAX_CANDIDATES
            self.one = torch.ones((), device=device)
            self.inf = torch.full((), float("inf"), device=device)

    # conversions between the caller's tensors and this backend's arrays (zero-copy on CPU)
    def array(self, t: torch.Tensor):
        return t.numpy() if self.numpy else t

    def tensor(self, a) -> torch.Tensor:
        return torch.from_numpy(a) if self.numpy else a

    # creation
    def empty(self, shape, dtype):
        return np.empty(shape, dtype) if self.numpy else torch.empty(shape, dtype=dtype, device=self.device)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype) if self.numpy else torch.zeros(shape, dtype=dtype, device=self.device)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype) if self.numpy else torch.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, start, stop, dtype):
        if self.numpy:
            return np.arange(start, stop, dtype=dtype)
        return torch.arange(start, stop, dtype=dtype, device=self.device)

    # element types and gathers
    def cast(self, a, dtype):
        return a.astype(dtype) if self.numpy else a.to(dtype)

    def take(self, a, idx):
        """a[idx] along the last axis (a 1-D or 2-D, idx 1-D int64)."""
        if self.numpy:
            return np.take(a, idx, axis=a.ndim - 1)
        return a.index_select(a.ndim - 1, idx)

    def take_rows(self, a, idx):
        """a[idx] along the first axis."""
        return np.take(a, idx, axis=0) if self.numpy else a.index_select(0, idx)

    def contiguous(self, a):
        return np.ascontiguousarray(a) if self.numpy else a.contiguous()

    def clip(self, a, lo=None, hi=None):
        """min(max(a, lo), hi) with Python scalar bounds (NaN stays NaN)."""
        if not self.numpy:
            return a.clamp(min=lo, max=hi)
        if lo is not None:
            a = np.maximum(a, lo)
        return a if hi is None else np.minimum(a, hi)

    def flatnonzero(self, mask):
        """(m,) int64 flat (row-major) indices of the True entries of ``mask``."""
        return np.flatnonzero(mask) if self.numpy else mask.reshape(-1).nonzero().view(-1)

    def scatter_min(self, buf, idx, values) -> None:
        """buf[idx] = min(buf[idx], values) in place, duplicates in idx reduced together."""
        if self.numpy:
            np.minimum.at(buf, idx, values)
        else:
            buf.scatter_reduce_(0, idx, values, "amin", include_self=True)

    def mark(self, buf, idx) -> None:
        """buf[idx] = True in place (bool buf)."""
        if self.numpy:
            buf[idx] = True
        else:
            buf.index_fill_(0, idx, True)

    def group_order(self, group, n_groups: int):
        """Stable argsort of small non-negative int keys in [0, n_groups), and the count of each key."""
        if self.numpy:
            g = group.astype(np.int16 if n_groups <= 2 ** 15 else np.int64)  # int16: numpy's radix sort
            return np.argsort(g, kind="stable"), np.bincount(g, minlength=n_groups).tolist()
        return torch.sort(group, stable=True)[1], torch.bincount(group, minlength=n_groups).tolist()

    def repeat(self, values, counts):
        return np.repeat(values, counts) if self.numpy else torch.repeat_interleave(values, counts)

    def cumsum(self, a):
        return np.cumsum(a) if self.numpy else torch.cumsum(a, 0)

    def box_sum(self, sub, k: int):
        """(R, W) float32 count of True entries per k x k block of a (R, k, W, k) bool array."""
        if self.numpy:
            return sub.sum((1, 3), dtype=np.float32)
        return sub.sum((1, 3), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------- setup
#: Rows of the per-triangle coefficient table (20, N) the chunks read.
_EX, _EY, _CX, _CY, _NTL = 0, 3, 6, 9, 12  # three rows each (one per edge); _NTL rows hold int32 0 / 1 bits
_Z0, _GX, _GY, _X0, _Y0 = 15, 16, 17, 18, 19
_ROWS = 20
#: Barycentric-table rows (6, N + 1): l1 = a1 dx + b1 dy, l2 = a2 dx + b2 dy with (dx, dy) = p - v0; l0 = 1 - l1 - l2.
#: The last column is all zeros: background pixels read it.
_BX0, _BY0, _A1, _B1, _A2, _B2 = range(6)
#: Vertices farther than this from the origin (pixels) make their triangle ignored: beyond it the float32 edge
#: products (up to (2 * 2^60)^2 = 2^122) could overflow float32's 2^128 range.
_GUARD = float(2 ** 60)
#: Group of a triangle whose box is bigger than TILE (tiled), and of one that covers no pixel centre.
_BIG, _NONE = TILE * TILE, TILE * TILE + 1


@dataclasses.dataclass(frozen=True)
class _Setup:
    coef: object  # (20, N) float32 edge and depth-plane coefficients, N = B * F
    bary: object  # (6, N + 1) float32 barycentric coefficients
    box: object  # (4, N) int64 first pixel (column, row) and size (width, height) of the clipped box
    group: object  # (N,) int64 (h - 1) * TILE + (w - 1) for boxes up to TILE; _BIG bigger; _NONE none


def _setup(ops: _Ops, vertices: torch.Tensor, triangles: torch.Tensor, size: tuple[int, int], cull_backfaces: bool,
           scale: int) -> _Setup:
    """Per-triangle data over the flattened (B * F) triangle list, rows contiguous, in slices of ``ops.limit``.
    ``scale``: vertices' x, y are multiplied by it first (the fine grid of antialiased coverage)."""
    xp = ops.xp
    w, h = size
    b, nv = vertices.shape[:2]
    f = triangles.shape[0]
    n = b * f
    flat = ops.array(vertices.reshape(-1))
    tris = ops.array(triangles)
    coef = ops.empty((_ROWS, n), ops.f32)
    bary = ops.zeros((6, n + 1), ops.f32)
    box = ops.empty((4, n), ops.i64)
    group = ops.empty((n,), ops.i64)
    big = float(max(w, h)) + 1.0
    step = ops.limit
    for bi in range(b):
        for f0 in range(0, f, step):
            f1 = min(f, f0 + step)
            sl = slice(bi * f + f0, bi * f + f1)
            x, y, z = [], [], []
            for k in range(3):
                i3 = (tris[f0:f1, k] + bi * nv) * 3
                x.append(ops.take(flat, i3))
                y.append(ops.take(flat, i3 + 1))
                z.append(ops.take(flat, i3 + 2))
            if scale != 1:
                x = [xi * scale for xi in x]
                y = [yi * scale for yi in y]
            dx1, dy1, dz1 = x[1] - x[0], y[1] - y[0], z[1] - z[0]
            dx2, dy2, dz2 = x[2] - x[0], y[2] - y[0], z[2] - z[0]
            area = dx1 * dy2 - dy1 * dx2  # twice the signed area; > 0: clockwise on the y-down screen
            lo_x, hi_x = xp.minimum(xp.minimum(x[0], x[1]), x[2]), xp.maximum(xp.maximum(x[0], x[1]), x[2])
            lo_y, hi_y = xp.minimum(xp.minimum(y[0], y[1]), y[2]), xp.maximum(xp.maximum(y[0], y[1]), y[2])
            # inside the guard (NaN compares false) x, y and the area are finite
            ok = (area != 0) & (lo_x > -_GUARD) & (lo_y > -_GUARD) & (hi_x < _GUARD) & (hi_y < _GUARD)
            ok &= xp.isfinite(z[0] + z[1] + z[2])
            if cull_backfaces:
                ok &= area < 0
            orient = xp.sign(area)  # +-1 where ok
            for e in range(3):  # edge e runs from vertex e+1 to e+2 (it faces vertex e)
                xa, ya, xb, yb = x[(e + 1) % 3], y[(e + 1) % 3], x[(e + 2) % 3], y[(e + 2) % 3]
                # oriented direction (interior on the positive side); exact: xb - xa == -(xa - xb) in IEEE
                ex, ey = orient * (xb - xa), orient * (yb - ya)
                swap = (xa > xb) | ((xa == xb) & (ya > yb))  # canonical base point: the lexicographically smaller end
                not_top_left = (ey > 0) | ((ey == 0) & (ex <= 0))  # top-left: interior below a horizontal edge,
                coef[_EX + e, sl] = ex  # or right of a rising one
                coef[_EY + e, sl] = ey
                coef[_CX + e, sl] = xp.minimum(xa, xb)  # the smaller x is the canonical end's (equal x: either)
                coef[_CY + e, sl] = xp.where(swap, yb, ya)
                coef[_NTL + e, sl] = ops.cast(not_top_left, ops.i32).view(ops.f32)
            inv = 1.0 / xp.where(ok, area, ops.one)
            coef[_Z0, sl] = z[0]
            coef[_GX, sl] = (dz1 * dy2 - dz2 * dy1) * inv  # depth plane z = z0 + gx (px - x0) + gy (py - y0)
            coef[_GY, sl] = (dz2 * dx1 - dz1 * dx2) * inv
            coef[_X0, sl] = x[0]
            coef[_Y0, sl] = y[0]
            bary[_BX0, sl] = x[0]
            bary[_BY0, sl] = y[0]
            bary[_A1, sl] = dy2 * inv
            bary[_B1, sl] = -dx2 * inv
            bary[_A2, sl] = -dy1 * inv
            bary[_B2, sl] = dx1 * inv
            # clipped box of pixel indices whose centres may be inside: ceil(min - 1/2) .. floor(max - 1/2)
            ext = []
            for r, (lo, hi, m) in enumerate(((lo_x, hi_x, w), (lo_y, hi_y, h))):
                i0 = ops.clip(ops.cast(xp.ceil(ops.clip(lo, -1.0, big) - 0.5), ops.i64), lo=0)
                i1 = ops.clip(ops.cast(xp.floor(ops.clip(hi, -1.0, big) - 0.5), ops.i64), hi=m - 1)
                box[r, sl] = i0
                ext.append(i1 - i0 + 1)
                box[2 + r, sl] = ext[-1]
            ok = ok & (ext[0] > 0) & (ext[1] > 0)  # not in place: autograd keeps the first ok (torch path)
            small = (ext[0] <= TILE) & (ext[1] <= TILE)
            g = xp.where(small, (ext[1] - 1) * TILE + (ext[0] - 1), _BIG)
            group[sl] = xp.where(ok, g, _NONE)
    return _Setup(coef=coef, bary=bary, box=box, group=group)


# ---------------------------------------------------------------------------------------------------- plan
@dataclasses.dataclass(frozen=True)
class _Entries:
    """Windows to enumerate, sorted by box size, with their triangles' coefficients in the same order: coef
    (20, n), first pixel x0, y0 (n,) int64, flat triangle index j (n,) int64; chunks (start, stop, kw, kh)."""
    coef: object
    x0: object
    y0: object
    j: object
    chunks: list


def _plan_chunks(counts: list[int], limit: int) -> list[tuple[int, int, int, int]]:
    """Cut entries sorted by group (counts[g] entries of group g = (h - 1) * TILE + (w - 1)) into chunks
    (start, stop, kw, kh) of at most ``limit`` candidates (kw * kh per entry) and row / column terms (3 * kh or
    3 * kw per entry) where the window allows: each group fills chunks of its own window; the group after it may
    join the last one (its window grows to fit both) while the extra padding costs fewer than _CHUNK_COST
    candidates."""
    def capacity(kw: int, kh: int) -> int:
        return max(1, min(limit // (kw * kh), limit // (3 * max(kw, kh))))

    chunks: list[list[int]] = []
    last = None  # [start, stop, kw, kh] of the last chunk while it may still take entries
    pos = 0
    for g, c in enumerate(counts):
        if not c:
            continue
        gw, gh = g % TILE + 1, g // TILE + 1
        end = pos + c
        if last is not None:
            mw, mh = max(last[2], gw), max(last[3], gh)
            have = last[1] - last[0]
            take = min(c, capacity(mw, mh) - have)
            if take > 0 and have * (mw * mh - last[2] * last[3]) + take * (mw * mh - gw * gh) <= _CHUNK_COST:
                last[1] += take
                last[2], last[3] = mw, mh
                pos += take
        cap = capacity(gw, gh)
        while pos < end:
            take = min(cap, end - pos)
            last = [pos, pos + take, gw, gh]
            chunks.append(last)
            pos += take
    return [tuple(ch) for ch in chunks]


def _plan(ops: _Ops, st: _Setup) -> list[_Entries]:
    """Entry lists: whole boxes up to TILE, then the tiles of bigger boxes."""
    order, counts = ops.group_order(st.group, _NONE + 1)
    n_small, n_big = sum(counts[:_BIG]), counts[_BIG]
    out = []
    if n_small:
        j = order[:n_small]
        out.append(_Entries(ops.take(st.coef, j), ops.take(st.box[0], j), ops.take(st.box[1], j), j,
                            _plan_chunks(counts[:_BIG], ops.limit)))
    if n_big:
        kb = order[n_small:n_small + n_big]
        box = ops.take(st.box, kb)
        nt = (box[2:] + (TILE - 1)) // TILE  # tiles per axis
        count = nt[0] * nt[1]
        rep = ops.repeat(ops.arange(0, n_big, ops.i64), count)
        first = ops.cumsum(count) - count
        local = ops.arange(0, int(count.sum()), ops.i64) - ops.take(first, rep)
        ntx = ops.take(nt[0], rep)
        ty = local // ntx
        tx = (local - ty * ntx) * TILE
        ty = ty * TILE
        tw = ops.clip(ops.take(box[2], rep) - tx, hi=TILE)
        th = ops.clip(ops.take(box[3], rep) - ty, hi=TILE)
        tile_order, tile_counts = ops.group_order((th - 1) * TILE + (tw - 1), _BIG)
        rep = ops.take(rep, tile_order)
        j = ops.take(kb, rep)
        out.append(_Entries(ops.take(st.coef, j), ops.take(box[0], rep) + ops.take(tx, tile_order),
                            ops.take(box[1], rep) + ops.take(ty, tile_order), j,
                            _plan_chunks(tile_counts, ops.limit)))
    return out


# ---------------------------------------------------------------------------------------------------- z-buffer
def _ordered_bits(z):
    """float32 -> int32 (both backends) whose signed order equals the floats' order (the usual sign-magnitude flip);
    it is its own inverse on the int32 side."""
    bits = z.view(torch.int32 if isinstance(z, torch.Tensor) else np.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _next_up_where(v, flag, ops: _Ops):
    """nextafter(v, +inf) where the int32 ``flag`` is 1, v where it is 0, for finite float32 v (a new array; -0 may
    become +0, which compares equal). On the int32 view: v >= +0 steps up by one unit in the last place as bits + 1,
    v < 0 as bits - 1; -0 is made +0 first (so it steps to the smallest subnormal, as nextafter does). Exact, and
    cheaper than nextafter + where (numpy's nextafter is scalar code)."""
    v = v + 0.0
    bits = v.view(ops.i32)
    bits += flag * (1 - ((bits >> 31) & 2))
    return v


def _zbuffer(ops: _Ops, st: _Setup, size: tuple[int, int], batch: int, n_tri: int, coverage_only: bool = False):
    """(B * H * W,) int64 keys of the nearest covering triangle per pixel centre (_KEY_EMPTY where none); with
    ``coverage_only`` (B * H * W,) bool: some triangle covers the centre.

    A chunk's candidates are laid out (kh, kw, n) with the triangle innermost, so every broadcast below runs
    over a contiguous inner dimension (measured: 5-10x faster than (n, kh, kw) with its short inner loops)."""
    xp = ops.xp
    w, h = size
    if coverage_only:
        zbuf = ops.zeros((batch * h * w,), ops.bool)
    else:
        zbuf = ops.full((batch * h * w,), _KEY_EMPTY, ops.i64)
    centres = (ops.arange(0, TILE, ops.f32) + 0.5).reshape(TILE, 1)
    steps = ops.arange(0, TILE, ops.i64)
    offsets: dict[tuple[int, int], object] = {}
    for ent in _plan(ops, st):
        for s0, s1, kw, kh in ent.chunks:
            kw, kh = min(kw, w), min(kh, h)
            n = s1 - s0
            c = ent.coef[:, s0:s1]
            # keep each window inside the image: it still contains the clipped box (which is inside)
            x0 = ops.clip(ent.x0[s0:s1], hi=w - kw)
            y0 = ops.clip(ent.y0[s0:s1], hi=h - kh)
            py = ops.cast(y0, ops.f32) + centres[:kh]  # (kh, n) pixel centres, exact
            px = ops.cast(x0, ops.f32) + centres[:kw]  # (kw, n)
            # edge e's function is u - v with u = ex (py - cy), v = ey (px - cx): bit-identical, negated, for the
            # triangle across the edge. Covered iff u - v >= 0 on a top-left edge and u - v > 0 otherwise; the
            # latter is u - nextafter(v, +inf) >= 0, exact in IEEE arithmetic. nextafter(v, +inf) of a finite v is
            # v's bits + 1 (v >= +0; -0 is made +0 first) or - 1 (v < 0), done on the int32 view.
            u = c[_EX:_EX + 3].reshape(3, 1, n) * (py - c[_CY:_CY + 3].reshape(3, 1, n))  # (3, kh, n)
            v = _next_up_where(c[_EY:_EY + 3].reshape(3, 1, n) * (px - c[_CX:_CX + 3].reshape(3, 1, n)),
                               c[_NTL:_NTL + 3].view(ops.i32).reshape(3, 1, n), ops)  # (3, kw, n)
            d = u.reshape(3, kh, 1, n) - v.reshape(3, 1, kw, n)  # (3, kh, kw, n)
            idx = ops.flatnonzero(xp.amin(d, 0) >= 0)  # covered candidates, into (kh, kw, n)
            if idx.shape[0] == 0:
                continue
            rc = idx // n
            t = idx - rc * n
            off = offsets.get((kw, kh))
            if off is None:
                off = offsets[(kw, kh)] = ((steps[:kh] * w).reshape(kh, 1) + steps[:kw]).reshape(-1)
            j = ent.j[s0:s1]
            base = y0 * w + x0
            if batch > 1:
                bi = j // n_tri
                base = base + bi * (h * w)
                j = j - bi * n_tri  # the triangle's index in the mesh
            pix = ops.take(base, t) + ops.take(off, rc)
            if coverage_only:
                ops.mark(zbuf, pix)
                continue
            zrow = c[_Z0] + c[_GY] * (py - c[_Y0])  # (kh, n) depth planes
            zcol = c[_GX] * (px - c[_X0])  # (kw, n)
            zs = ops.take((zrow.reshape(kh, 1, n) + zcol.reshape(1, kw, n)).reshape(-1), idx)
            key = (ops.cast(_ordered_bits(zs), ops.i64) << 32) | ops.take(j, t)
            ops.scatter_min(zbuf, pix, key)
    return zbuf


def _resolve(ops: _Ops, keys, st: _Setup, size: tuple[int, int], batch: int, n_tri: int):
    """tri_id (B*H*W,) int64 (the keys' buffer, overwritten), depth (B*H*W,) float32, bary (B*H*W, 3) float32 and
    hit (B*H*W,) float32 from the z-buffer keys, image by image in bands of whole rows (``ops.limit`` pixels where a
    row fits)."""
    xp = ops.xp
    w, h = size
    m = batch * h * w
    depth = ops.empty((m,), ops.f32)
    bary = ops.empty((m, 3), ops.f32)
    hitf = ops.empty((m,), ops.f32)
    rows = max(1, ops.limit // w)
    xs = ops.arange(0, w, ops.f32) + 0.5
    none = st.bary.shape[1] - 1  # the all-zero column
    for bi in range(batch):
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            sl = slice((bi * h + r0) * w, (bi * h + r1) * w)
            k = keys[sl]
            hit = k != _KEY_EMPTY
            low = k & _LOW32  # the winner's index in the mesh; 2^32 - 1 where none
            depth[sl] = xp.where(hit, _ordered_bits(ops.cast(k >> 32, ops.i32)).view(ops.f32), ops.inf)
            hitf[sl] = hit
            # barycentrics of the pixel centre in the winner, from vertex 0 (small offsets keep float32 accurate)
            cb = ops.take(st.bary, ops.clip(low + bi * n_tri, hi=none) if bi else ops.clip(low, hi=none))
            cb = cb.reshape(6, r1 - r0, w)
            ys = (ops.arange(r0, r1, ops.f32) + 0.5).reshape(-1, 1)
            ddx = xs - cb[_BX0]
            ddy = ys - cb[_BY0]
            l1 = cb[_A1] * ddx + cb[_B1] * ddy  # background: the zero column gives +0
            l2 = cb[_A2] * ddx + cb[_B2] * ddy
            out = bary[sl].reshape(r1 - r0, w, 3)
            out[..., 0] = (1.0 - l1 - l2) * hitf[sl].reshape(r1 - r0, w)
            out[..., 1] = l1
            out[..., 2] = l2
            k[...] = ((low + 1) & _LOW32) - 1  # tri_id: -1 where none
    return keys, depth, bary, hitf


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
            found by rasterising coverage (no depth test) at k times the resolution. tri_id, bary and depth always
            come from the single pixel-centre sample, so ``mask`` may be fractional where tri_id is -1.

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
    ops = _Ops(vertices.device, grad=vertices.requires_grad and torch.is_grad_enabled())
    if ops.numpy:
        vertices = vertices.detach()
    with np.errstate(all="ignore"):  # NaN / inf of ignored triangles, in the numpy path
        st = _setup(ops, vertices, tris, (w, h), cull_backfaces, 1)
        keys = _zbuffer(ops, st, (w, h), b, f)
        tri_id, depth, bary, hit = _resolve(ops, keys, st, (w, h), b, f)
        if k == 1:
            mask = hit
        else:
            fine = _setup(ops, vertices, tris, (w * k, h * k), cull_backfaces, k)
            sub = _zbuffer(ops, fine, (w * k, h * k), b, f, coverage_only=True).reshape(b * h, k, w, k)
            mask = ops.empty((b * h, w), ops.f32)
            rows = max(1, ops.limit // (k * k * w))
            for r0 in range(0, b * h, rows):
                # the covered count of each k x k block is exact in float32; / k^2 rounds as avg_pool2d's does
                mask[r0:r0 + rows] = ops.box_sum(sub[r0:r0 + rows], k) / (k * k)
    return Raster(tri_id=ops.tensor(tri_id).view(b, h, w), bary=ops.tensor(bary).view(b, h, w, 3),
                  depth=ops.tensor(depth).view(b, h, w), mask=ops.tensor(mask).view(b, 1, h, w))


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
    top = _min_max(raster.tri_id)[1] if raster.tri_id.numel() else -1
    if top >= tris.shape[0]:
        raise InputError(f"triangles has {tris.shape[0]} rows but the raster refers to triangle {top}: pass the "
                         f"rasterised triangle list (or its uv twin)")
    ops = _Ops(attributes.device, grad=torch.is_grad_enabled() and (attributes.requires_grad or
                                                                    raster.bary.requires_grad))
    per_item = attributes.ndim == 3 and attributes.shape[0] == b and b > 1
    tid = ops.array(raster.tri_id.reshape(b, h * w))
    lam = ops.array(raster.bary.reshape(b, h * w, 3))
    table = ops.contiguous(ops.array(attributes.reshape(-1, d)).T)  # (D, V * items)
    corners = [ops.contiguous(ops.array(tris[:, k])) for k in range(3)]
    out = ops.zeros((b, d, h * w), ops.f32)
    for bi in range(b):
        lin = ops.flatnonzero(tid[bi] >= 0)  # covered pixels
        if lin.shape[0] == 0:
            continue
        face = ops.take(tid[bi], lin)
        lb = ops.contiguous(ops.take_rows(lam[bi], lin).T)  # (3, m)
        acc = None
        for k in range(3):  # ((v0 l0 + v1 l1) + v2 l2): the order of torch's sum over the corner axis
            vi = ops.take(corners[k], face)
            if per_item:
                vi = vi + bi * nv
            p = ops.take(table, vi) * lb[k]  # (D, m)
            acc = p if acc is None else acc + p
        for c in range(d):
            out[bi, c][lin] = acc[c]
    return ops.tensor(out).view(b, d, h, w)


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
