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
a third larger than the box); a bucket is one dense (n, kh, kw) tensor whose edge functions are evaluated by
broadcasting per-triangle coefficients against per-row and per-column offsets (no per-pixel gathers). Boxes wider
or taller than 64 px are cut into 64 px tiles. Covered candidates are packed into one int64 key per sample
(depth's order-preserving float bits in the high 32 bits, triangle index in the low 32) and resolved into the
z-buffer with ``scatter_reduce(..., "amin")``; barycentrics are then recomputed for the winners only.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..errors import InputError

#: Bounding-box size classes in pixels. Consecutive classes differ by at most 1.5x, so a bucket's padded window is
#: at most (1.5)^2 = 2.25x the box it holds; bigger boxes are tiled at the last class. Chosen by measurement
#: (bench/render.py): powers of two alone waste ~1.6x more candidates on the BFM mesh.
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
def _edge_coefficients(x: torch.Tensor, y: torch.Tensor, orient: torch.Tensor, a: int, b: int):
    """Per-triangle coefficients of the oriented edge function of edge (a -> b), evaluated later as
    ``A * (py - cy) - Bc * (px - cx)`` from the canonical endpoint c (the lexicographically smaller one), and the
    threshold it must reach at a covered sample (0 on a top-left edge, the smallest normal float otherwise)."""
    xa, ya, xb, yb = x[:, a], y[:, a], x[:, b], y[:, b]
    swap = (xa > xb) | ((xa == xb) & (ya > yb))
    cx, cy = torch.where(swap, xb, xa), torch.where(swap, yb, ya)
    dx, dy = torch.where(swap, xa - xb, xb - xa), torch.where(swap, ya - yb, yb - ya)  # canonical direction
    sign = torch.where(swap, -orient, orient)  # canonical -> oriented (interior positive)
    ex, ey = sign * dx, sign * dy  # the oriented edge direction, exact (a sign flip)
    top_left = (ey < 0) | ((ey == 0) & (ex > 0))  # interior below a horizontal edge, or right of a rising one
    thr = torch.where(top_left, torch.zeros_like(ex), torch.full_like(ex, torch.finfo(torch.float32).tiny))
    return ex, ey, cx, cy, thr


def _setup(vertices: torch.Tensor, triangles: torch.Tensor, size: tuple[int, int], cull_backfaces: bool):
    """Per-triangle data over the flattened (B * F) triangle list: coefficients (N, 18) and the clipped pixel
    box (ix0, iy0, bw, bh) of every triangle that can cover a sample; plus the triangles' corners."""
    w, h = size
    b, f = vertices.shape[0], triangles.shape[0]
    corners = vertices[:, triangles].reshape(b * f, 3, 3)  # (N, vertex, xyz)
    x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    ok = (area != 0) & torch.isfinite(corners).all(dim=(1, 2)) & torch.isfinite(area)
    if cull_backfaces:
        ok &= area < 0
    orient = torch.where(area > 0, 1.0, -1.0).to(x.dtype)
    coef = [c for e in ((1, 2), (2, 0), (0, 1)) for c in _edge_coefficients(x, y, orient, *e)]
    # depth plane z = z0 + gx (px - x0) + gy (py - y0)
    inv = 1.0 / torch.where(ok, area, torch.ones_like(area))
    dx1, dy1, dz1 = x[:, 1] - x[:, 0], y[:, 1] - y[:, 0], z[:, 1] - z[:, 0]
    dx2, dy2, dz2 = x[:, 2] - x[:, 0], y[:, 2] - y[:, 0], z[:, 2] - z[:, 0]
    gx = (dz1 * dy2 - dz2 * dy1) * inv
    gy = (dz2 * dx1 - dz1 * dx2) * inv
    coef += [z[:, 0], gx, gy, x[:, 0], y[:, 0]]
    coef = torch.stack(coef, 1)  # (N, 20)
    # clipped box of pixel indices whose centres may be inside: ceil(min - 1/2) .. floor(max - 1/2)
    lo = torch.stack([x.amin(1), y.amin(1)], 1).clamp(-1.0, float(max(w, h)) + 1.0)
    hi = torch.stack([x.amax(1), y.amax(1)], 1).clamp(-1.0, float(max(w, h)) + 1.0)
    i0 = torch.ceil(lo - 0.5).long().clamp_(min=0)
    i1 = torch.floor(hi - 0.5).long()
    i1[:, 0].clamp_(max=w - 1)
    i1[:, 1].clamp_(max=h - 1)
    ext = i1 - i0 + 1
    ok &= (ext > 0).all(1)
    keep = ok.nonzero().squeeze(1)
    return coef, keep, i0[keep], ext[keep], corners


def _buckets(keep: torch.Tensor, i0: torch.Tensor, ext: torch.Tensor, size: tuple[int, int]):
    """Group (triangle, window origin) entries by window class; yields (kw, kh, tri, x0, y0) per bucket."""
    w, h = size
    dev = keep.device
    classes = torch.tensor(SIZE_CLASSES, device=dev)
    top = len(SIZE_CLASSES) - 1
    cls = torch.searchsorted(classes, ext).clamp_(max=top)  # (n, 2) class index per axis
    big = (ext > classes[top]).any(1)
    tri, x0, y0 = keep, i0[:, 0], i0[:, 1]
    if bool(big.any()):
        # tile boxes bigger than the last class: each tile is one entry with the last class on that axis
        kb = big.nonzero().squeeze(1)
        step = int(SIZE_CLASSES[top])
        nt = (ext[kb] + step - 1) // step  # tiles per axis
        count = nt[:, 0] * nt[:, 1]
        rep = torch.repeat_interleave(torch.arange(kb.numel(), device=dev), count)
        first = torch.cumsum(count, 0) - count
        local = torch.arange(rep.numel(), device=dev) - first[rep]
        tx, ty = local % nt[rep, 0], local // nt[rep, 0]
        small = (~big).nonzero().squeeze(1)
        cls_big = cls[kb][rep]
        cls = torch.cat([cls[small], cls_big])
        tri = torch.cat([keep[small], keep[kb][rep]])
        x0 = torch.cat([x0[small], x0[kb][rep] + tx * step])
        y0 = torch.cat([y0[small], y0[kb][rep] + ty * step])
    group = cls[:, 0] * len(SIZE_CLASSES) + cls[:, 1]
    order = torch.argsort(group)
    group = group[order]
    uniq, counts = torch.unique_consecutive(group, return_counts=True)
    start = 0
    for g, c in zip(uniq.tolist(), counts.tolist()):
        sel = order[start:start + c]
        start += c
        kw = min(SIZE_CLASSES[g // len(SIZE_CLASSES)], w)
        kh = min(SIZE_CLASSES[g % len(SIZE_CLASSES)], h)
        # keep the window inside the image: it still contains the clipped box (which is inside)
        yield kw, kh, tri[sel], x0[sel].clamp(max=w - kw), y0[sel].clamp(max=h - kh)


def _ordered_bits(z: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 whose signed order equals the floats' order (the usual sign-magnitude flip)."""
    bits = z.contiguous().view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _zbuffer(coef: torch.Tensor, keep, i0, ext, size: tuple[int, int], batch: int, n_tri: int) -> torch.Tensor:
    """(B * H * W,) int64 keys of the nearest covering triangle per pixel centre (_KEY_EMPTY where none).

    A bucket's candidates are laid out (kh, kw, n) with the triangle innermost, so every broadcast below runs
    over a contiguous inner dimension (measured: 5-10x faster than (n, kh, kw) with its short inner loops)."""
    w, h = size
    dev = coef.device
    zbuf = torch.full((batch * h * w,), _KEY_EMPTY, dtype=torch.int64, device=dev)
    if keep.numel() == 0:
        return zbuf
    coef = coef.t().contiguous()  # (20, N): one row per coefficient, gathered per bucket below
    for kw, kh, tri, x0, y0 in _buckets(keep, i0, ext, size):
        n = tri.numel()
        c = coef.index_select(1, tri)  # (20, n)
        oy = torch.arange(kh, device=dev, dtype=torch.float32).view(kh, 1, 1) + 0.5
        ox = torch.arange(kw, device=dev, dtype=torch.float32).view(1, kw, 1) + 0.5
        py = y0.to(torch.float32) + oy  # (kh, 1, n) pixel centres, exact
        px = x0.to(torch.float32) + ox  # (1, kw, n)
        inside = None
        for e in range(3):
            ex, ey, cx, cy, thr = c[5 * e:5 * e + 5]
            u = ex * (py - cy)  # the edge function is u - v; bit-identical (negated) for the neighbour
            v = ey * (px - cx)
            # covered iff u - v >= thr, i.e. u >= v on a top-left edge and u > v otherwise: the latter is
            # u >= nextafter(v, +inf), exact in floating point (thr > 0 marks a non-top-left edge)
            v = torch.where(thr > 0, torch.nextafter(v, torch.full_like(v, float("inf"))), v)
            cov = torch.ge(u, v)
            inside = cov if inside is None else inside.logical_and_(cov)
        sel = inside.view(-1).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        z0, gx, gy, xv, yv = c[15:20]
        depth = (z0 + gy * (py - yv)) + gx * (px - xv)  # (kh, kw, n)
        ent = sel % n
        base = (tri // n_tri) * (h * w) + y0 * w + x0  # (n,)
        offs = (torch.arange(kh, device=dev).view(kh, 1, 1) * w + torch.arange(kw, device=dev).view(1, kw, 1))
        pix = (base + offs).view(-1).index_select(0, sel)
        zs = depth.view(-1).index_select(0, sel)
        key = (_ordered_bits(zs).to(torch.int64) << 32) | tri.index_select(0, ent)
        zbuf.scatter_reduce_(0, pix, key, "amin", include_self=True)
    return zbuf


def _rasterise_keys(vertices, triangles, size, cull_backfaces):
    coef, keep, i0, ext, corners = _setup(vertices, triangles, size, cull_backfaces)
    return _zbuffer(coef, keep, i0, ext, size, vertices.shape[0], triangles.shape[0]), corners


def rasterise(vertices: torch.Tensor, triangles: torch.Tensor, size: Sequence[int], *,
              cull_backfaces: bool = False, samples: int = 1) -> Raster:
    """Rasterise a batch of screen-space meshes (see the module docstring for the sampling rule).

    Args:
        vertices: (B, V, 3) float32 screen-space vertices (x, y pixel-area, y down; z depth, larger = further).
        triangles: (F, 3) int64 vertex indices on the vertices' device; degenerate (zero-area) triangles and
            triangles with a non-finite vertex are ignored; F = 0 gives an empty raster.
        size: (w, h) of the image in pixels.
        cull_backfaces: drop triangles whose normal (v1 - v0) x (v2 - v0) points away from the camera
            (clockwise on the screen).
        samples: 1, or k * k (4, 9, 16) for antialiased coverage: ``mask`` becomes the fraction of a regular
            k x k grid of samples ((i + (a + 0.5) / k, j + (b + 0.5) / k), a, b < k) that some triangle covers,
            found by rasterising at k times the resolution (k * k times the cost). tri_id, bary and depth always
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
    keys, corners = _rasterise_keys(vertices, tris, (w, h), cull_backfaces)
    keys = keys.view(b, h * w)
    hit = keys != _KEY_EMPTY
    flat = keys & _LOW32  # index into the flattened (B * F) triangle list
    if b > 1:
        flat = flat - (torch.arange(b, device=keys.device) * f).view(b, 1)
    tri_id = torch.where(hit, flat, -1)
    depth = _ordered_bits((keys >> 32).to(torch.int32)).view(torch.float32)
    depth = torch.where(hit, depth, float("inf"))
    bary = _barycentrics(corners, keys, hit, (w, h))
    if k == 1:
        mask = hit.to(torch.float32)
    else:
        fine = vertices.clone()
        fine[..., :2] *= k
        sub = _rasterise_keys(fine, tris, (w * k, h * k), cull_backfaces)[0] != _KEY_EMPTY
        mask = torch.nn.functional.avg_pool2d(sub.view(b, 1, h * k, w * k).to(torch.float32), k)
    return Raster(tri_id=tri_id.view(b, h, w), bary=bary.view(b, h, w, 3), depth=depth.view(b, h, w),
                  mask=mask.view(b, 1, h, w))


def _barycentrics(corners: torch.Tensor, keys: torch.Tensor, hit: torch.Tensor, size: tuple[int, int]):
    """(B*H*W, 3) barycentrics of each covered pixel centre in its winning triangle (0 where not covered)."""
    w, h = size
    out = torch.zeros(keys.numel(), 3, dtype=torch.float32, device=keys.device)
    sel = hit.view(-1).nonzero().squeeze(1)
    if sel.numel() == 0:
        return out
    c = corners.index_select(0, keys.view(-1).index_select(0, sel) & _LOW32)  # (m, 3, 3)
    pix = sel % (h * w)
    row = pix // w
    px = (pix - row * w).to(torch.float32) + 0.5
    py = row.to(torch.float32) + 0.5
    x, y = c[..., 0] - px[:, None], c[..., 1] - py[:, None]  # corners relative to the sample
    lam = torch.stack([x[:, 1] * y[:, 2] - y[:, 1] * x[:, 2],
                       x[:, 2] * y[:, 0] - y[:, 2] * x[:, 0],
                       x[:, 0] * y[:, 1] - y[:, 0] * x[:, 1]], 1)  # twice the signed sub-areas
    out.index_copy_(0, sel, lam / lam.sum(1, keepdim=True))
    return out


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
