"""UV textures: extract a face texture from frames through a screen-space mesh, accumulate it over a shot, and
render it back into a frame.

Convention:
    images     (B, C, H, W) float32, scene-linear, not clamped (any C; premultiplied where C == 4).
    vertices   (B, V, 3) float32 screen space of those images: x, y pixel-area (core/conventions.py), y down;
               z = depth, larger = further (the rasteriser's convention, core/render/raster.py).
    triangles  (F, 3) int64 into the vertices.
    uv         (V, 2) float32 texture coordinates in [0, 1], u right, v DOWN (row order: v = 0 is the texture's top
               row; flip a v-up layout with 1 - v). Where seams split vertices, uv is (Vt, 2) with
               ``uv_triangles`` (F, 3) indexing it, one row per triangle.
    textures   (B, C, T, T) float32 in the same colour space as the images; texel (i, j) covers
               [i, i+1) x [j, j+1) of uv * T (the pixel-area convention in texture space).
Resampling is bilinear (``grid_sample(align_corners=False)``, which uses the same pixel-area convention). Nothing
is clamped and nothing is quantised: colours stay float scene-linear throughout.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..tensors import check_images
from .raster import Raster, check_size, check_triangles, check_vertices, interpolate, rasterise, vertex_normals

#: Default exponent of the view-angle term cos(theta)^p in the texel weight: with p = 2 a texel seen at 60 degrees
#: from the surface normal weighs 1/4 of a frontal one (our choice: the texel's screen footprint shrinks as cos, and
#: its colour is also less reliable there - specular grazing, mesh-fit error at the silhouette).
GRAZING_POWER = 2.0
#: Default occlusion tolerance in depth units: 1 for screen vertices whose z is in pixels (3DDFA's reconstruct).
DEPTH_TOLERANCE = 1.0


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """What :func:`render_uv_texture` produced.

    Convention:
        colour (B, C, H, W) float32, premultiplied by ``alpha`` (the frames' convention), scene-linear.
        alpha  (B, 1, H, W) float32 in [0, 1]: mesh coverage x the texture's alpha.
        depth  (B, 1, H, W) float32 depth of the visible surface, +inf where the mesh does not cover the pixel.
    """

    colour: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


# ---------------------------------------------------------------------------------------------------- checks
def _check_uv(uv: torch.Tensor, uv_triangles: torch.Tensor | None, triangles: torch.Tensor, n_vertices: int,
              device: torch.device) -> torch.Tensor:
    """Validate uv (and uv_triangles); returns the (F, 3) triangle list that indexes uv."""
    if not isinstance(uv, torch.Tensor) or uv.ndim != 2 or uv.shape[1] != 2:
        raise InputError(f"uv must be a (V, 2) tensor, got "
                         f"{tuple(uv.shape) if isinstance(uv, torch.Tensor) else type(uv).__name__}")
    if uv.dtype != torch.float32:
        raise InputError(f"uv must be float32, got {uv.dtype}")
    if uv.device != device:
        raise InputError(f"uv is on {uv.device} but the vertices are on {device}: move one of them")
    if uv_triangles is None:
        if uv.shape[0] != n_vertices:
            raise InputError(f"uv has {uv.shape[0]} rows but there are {n_vertices} vertices",
                             hint="pass uv_triangles (F, 3) when seams give uv its own vertex list")
        return triangles
    uvt = check_triangles(uv_triangles, uv.shape[0], device, name="uv_triangles")
    if uvt.shape[0] != triangles.shape[0]:
        raise InputError(f"uv_triangles has {uvt.shape[0]} rows, triangles {triangles.shape[0]}: one per triangle")
    return uvt


def _check_texture_size(texture_size) -> int:
    if isinstance(texture_size, bool) or not isinstance(texture_size, int) or texture_size < 1:
        raise InputError(f"texture_size must be a positive int (texels per side), got {texture_size!r}")
    return texture_size


def uv_raster(uv: torch.Tensor, uv_triangles: torch.Tensor, texture_size: int) -> Raster:
    """Rasterise the mesh in texture space (uv * T as screen x, y; every triangle at depth 0), B = 1.

    Per texel centre: the triangle that covers it and its barycentrics. It depends only on the UV layout and T,
    so callers that extract many frames can compute it once and pass it to :func:`extract_uv_texture`.
    Where UV triangles overlap, the lower triangle index wins.
    """
    t = _check_texture_size(texture_size)
    uvs = torch.cat([uv * t, torch.zeros_like(uv[:, :1])], 1)[None]
    return rasterise(uvs, uv_triangles, (t, t))


# ---------------------------------------------------------------------------------------------------- extract
def extract_uv_texture(images: torch.Tensor, vertices: torch.Tensor, triangles: torch.Tensor, uv: torch.Tensor,
                       texture_size: int, *, uv_triangles: torch.Tensor | None = None, raster: Raster | None = None,
                       texture_raster: Raster | None = None, grazing_power: float = GRAZING_POWER,
                       depth_tolerance: float = DEPTH_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample each frame's colours into the mesh's UV layout, with a per-texel confidence.

    For every texel centre covered by the UV layout: its triangle and barycentrics (a raster in texture space)
    give its point on the screen mesh (x, y, z); the image is sampled there (bilinear). The texel is *visible*
    where the mesh's visible surface at that point lies at its depth: the screen raster's winning triangle at the
    nearest pixel centre, its depth plane evaluated at (x, y), is not nearer than z - depth_tolerance. So a nose
    in front of a cheek hides the cheek's texels (3DDFA_V2's uv texture has no such test).

    Args:
        images: (B, C, H, W) float32 frames (see the module Convention).
        vertices: (B, V, 3) float32 screen-space vertices in those frames.
        triangles: (F, 3) int64.
        uv: (V, 2) float32 in [0, 1], v down; or (Vt, 2) with ``uv_triangles``.
        texture_size: T, texels per side.
        uv_triangles: (F, 3) int64 into ``uv`` where seams split vertices; default: ``triangles``.
        raster: the screen raster of (vertices, triangles) at the images' size, if the caller has it.
        texture_raster: :func:`uv_raster` (uv, uv_triangles, T), if the caller has it (it is the same every frame).
        grazing_power: p in the view-angle term |n_z|^p, n the unit surface normal in screen space (interpolated
            vertex normals). |n_z| is the cosine between the normal and the viewing axis and the ratio of the
            texel's screen area to its surface area, so it falls to 0 at a grazing angle; either winding works.
        depth_tolerance: in the vertices' z units (the default, 1, suits z in pixels).

    Returns:
        texture (B, C, T, T) float32: the sampled colour where weight > 0, else 0; scene-linear, unclamped.
        weight (B, 1, T, T) float32 in [0, 1]: visibility x |n_z|^p x texture-space coverage.

    Convention:
        Pixel-area coordinates in the image and in texture space; bilinear sampling with align_corners=False.
    """
    check_images(images)
    check_vertices(vertices)
    b, c, h, w = images.shape
    if vertices.shape[0] != b:
        raise InputError(f"vertices has batch {vertices.shape[0]}, images {b}: one mesh per frame")
    if vertices.device != images.device:
        raise InputError(f"vertices are on {vertices.device}, images on {images.device}: move one of them")
    tris = check_triangles(triangles, vertices.shape[1], vertices.device)
    uvt = _check_uv(uv, uv_triangles, tris, vertices.shape[1], vertices.device)
    t = _check_texture_size(texture_size)
    if not (0 <= float(grazing_power) < float("inf")):
        raise InputError(f"grazing_power must be a finite number >= 0, got {grazing_power!r}")
    if not (0 <= float(depth_tolerance) < float("inf")):
        raise InputError(f"depth_tolerance must be a finite number >= 0 (in z units), got {depth_tolerance!r}")
    if raster is None:
        raster = rasterise(vertices, tris, (w, h))
    elif raster.tri_id.shape != (b, h, w):
        raise InputError(f"raster is {tuple(raster.tri_id.shape)}, expected {(b, h, w)} (batch, height, width)")
    if texture_raster is None:
        texture_raster = uv_raster(uv, uvt, t)
    elif texture_raster.tri_id.shape != (1, t, t):
        raise InputError(f"texture_raster is {tuple(texture_raster.tri_id.shape)}, expected {(1, t, t)}")
    dev = images.device
    texture = torch.zeros(b, c, t * t, dtype=torch.float32, device=dev)
    weight = torch.zeros(b, 1, t * t, dtype=torch.float32, device=dev)
    tid = texture_raster.tri_id.reshape(-1)
    texel = (tid >= 0).nonzero().squeeze(1)  # (m,) covered texels
    if texel.numel() == 0 or tris.shape[0] == 0:
        return texture.view(b, c, t, t), weight.view(b, 1, t, t)
    face = tris.index_select(0, tid.index_select(0, texel))  # (m, 3) screen vertices of each texel's triangle
    lam = texture_raster.bary.reshape(-1, 3).index_select(0, texel)  # (m, 3)
    p = _at_corners(vertices, face, lam)  # (B, m, 3) screen point of each texel
    x, y, z = p.unbind(2)
    n = _at_corners(vertex_normals(vertices, tris), face, lam)  # (B, m, 3) interpolated normal
    cos = (n[..., 2].abs() / n.norm(dim=2).clamp_min(1e-12)).clamp(0.0, 1.0)
    visible = _visible(raster, vertices, tris, x, y, z, depth_tolerance)
    wgt = visible * cos.pow(grazing_power) * texture_raster.mask.reshape(-1)[texel]
    grid = torch.stack([x * (2.0 / w) - 1.0, y * (2.0 / h) - 1.0], -1).view(b, 1, -1, 2)
    colour = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B,C,1,m)
    colour = colour.view(b, c, -1) * (wgt > 0).view(b, 1, -1)
    texture[:, :, texel] = colour
    weight[:, 0, texel] = wgt
    return texture.view(b, c, t, t), weight.view(b, 1, t, t)


def _at_corners(values: torch.Tensor, face: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(B, m, D): per-vertex ``values`` (B, V, D) interpolated at m points of triangles ``face`` (m, 3) with
    barycentrics ``lam`` (m, 3)."""
    b, nv, d = values.shape
    idx = face.reshape(1, -1) + (torch.arange(b, device=face.device) * nv).view(b, 1)
    corners = values.reshape(b * nv, d).index_select(0, idx.view(-1)).view(b, -1, 3, d)
    return torch.einsum("bmkd,mk->bmd", corners, lam)


def _visible(raster: Raster, vertices: torch.Tensor, triangles: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             z: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(B, m) float 0/1: the screen point (x, y) of depth z lies on the visible surface (see extract_uv_texture)."""
    b, h, w = raster.tri_id.shape
    ix, iy = torch.floor(x), torch.floor(y)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & torch.isfinite(z)
    lin = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long()  # nearest pixel centre (ix + 0.5, iy + 0.5)
    tv = raster.tri_id.reshape(b, -1).gather(1, lin)  # (B, m) visible triangle there
    zc = raster.depth.reshape(b, -1).gather(1, lin)
    covered = inside & (tv >= 0)
    if triangles.shape[0] == 0:
        return torch.zeros_like(z)
    q = torch.gather(vertices, 1, triangles[tv.clamp(min=0)].reshape(b, -1, 1).expand(-1, -1, 3)).view(b, -1, 3, 3)
    d1, d2 = q[:, :, 1] - q[:, :, 0], q[:, :, 2] - q[:, :, 0]
    area = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    area = torch.where(area != 0, area, torch.ones_like(area))
    gx = (d1[..., 2] * d2[..., 1] - d2[..., 2] * d1[..., 1]) / area
    gy = (d2[..., 2] * d1[..., 0] - d1[..., 2] * d2[..., 0]) / area
    zv = zc + gx * (x - (ix + 0.5)) + gy * (y - (iy + 0.5))  # the visible plane at the texel's point
    return (covered & (z <= torch.where(covered, zv, zc) + tolerance)).to(torch.float32)


# ---------------------------------------------------------------------------------------------------- accumulate
class TextureAccumulator:
    """Running weighted mean of UV textures over the frames of a shot: texture = sum(w c) / sum(w).

    Optionally it also keeps, per pose bin (an int the caller assigns per frame, e.g. a yaw bucket), the single
    best-weighted sample of each texel. State lives on the device of the first textures added; later adds must
    match its device, channels and size. Inputs are never modified.

    Args:
        pose_bins: how many pose bins keep a best sample (0: none).
        full_weight: the accumulated weight at which alpha reaches 1 (default 1: one frontal, fully visible view).
    """

    def __init__(self, *, pose_bins: int = 0, full_weight: float = 1.0) -> None:
        if isinstance(pose_bins, bool) or not isinstance(pose_bins, int) or pose_bins < 0:
            raise InputError(f"pose_bins must be an int >= 0, got {pose_bins!r}")
        if not full_weight > 0:
            raise InputError(f"full_weight must be > 0, got {full_weight!r}")
        self.pose_bins = pose_bins
        self.full_weight = float(full_weight)
        self.frames = 0
        self._sum_wc: torch.Tensor | None = None  # (C, T, T)
        self._sum_w: torch.Tensor | None = None  # (1, T, T)
        self._best_c: torch.Tensor | None = None  # (P, C, T, T)
        self._best_w: torch.Tensor | None = None  # (P, 1, T, T)

    def add(self, texture: torch.Tensor, weight: torch.Tensor, pose_bin: int | Sequence[int] | None = None) -> None:
        """Add (B, C, T, T) textures with their (B, 1, T, T) weights (from :func:`extract_uv_texture`).

        pose_bin: one bin in [0, pose_bins) per batch item (or one int for all); required when pose_bins > 0.
        """
        check_images(texture, "texture")
        check_images(weight, "weight", channels=(1,))
        if weight.shape[0] != texture.shape[0] or weight.shape[2:] != texture.shape[2:]:
            raise InputError(f"weight {tuple(weight.shape)} does not match texture {tuple(texture.shape)}")
        if weight.device != texture.device:
            raise InputError(f"weight is on {weight.device}, texture on {texture.device}")
        b, c, t, _ = texture.shape
        if self._sum_w is None:
            self._sum_wc = torch.zeros(c, t, t, dtype=torch.float32, device=texture.device)
            self._sum_w = torch.zeros(1, t, t, dtype=torch.float32, device=texture.device)
            if self.pose_bins:
                self._best_c = torch.zeros(self.pose_bins, c, t, t, dtype=torch.float32, device=texture.device)
                self._best_w = torch.zeros(self.pose_bins, 1, t, t, dtype=torch.float32, device=texture.device)
        elif self._sum_wc.shape != (c, t, t) or self._sum_wc.device != texture.device:
            raise InputError(f"texture {tuple(texture.shape)} on {texture.device} does not match the accumulated "
                             f"{tuple(self._sum_wc.shape)} on {self._sum_wc.device}")
        bins = self._bins(pose_bin, b)
        self._sum_wc += (texture * weight).sum(0)
        self._sum_w += weight.sum(0)
        self.frames += b
        if self.pose_bins:
            for i, k in enumerate(bins):
                better = weight[i] > self._best_w[k]
                self._best_c[k] = torch.where(better, texture[i], self._best_c[k])
                self._best_w[k] = torch.where(better, weight[i], self._best_w[k])

    def _bins(self, pose_bin, b: int) -> list[int]:
        if not self.pose_bins:
            if pose_bin is not None:
                raise InputError("pose_bin given but the accumulator keeps no pose bins (pose_bins=0)")
            return []
        if pose_bin is None:
            raise InputError(f"pose_bin is required: the accumulator keeps {self.pose_bins} pose bins")
        bins = [int(pose_bin)] * b if isinstance(pose_bin, int) else [int(k) for k in pose_bin]
        if len(bins) != b or any(k < 0 or k >= self.pose_bins for k in bins):
            raise InputError(f"pose_bin must give {b} bins in [0, {self.pose_bins}), got {pose_bin!r}")
        return bins

    def texture(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(texture (1, C, T, T), alpha (1, 1, T, T)): the weighted mean (0 where nothing was seen) and the
        accumulated confidence min(sum(w) / full_weight, 1) in [0, 1]."""
        if self._sum_w is None:
            raise InputError("nothing accumulated yet: call add() with at least one texture")
        seen = self._sum_w > 0
        mean = torch.where(seen, self._sum_wc / torch.where(seen, self._sum_w, torch.ones_like(self._sum_w)),
                           torch.zeros_like(self._sum_wc))
        alpha = (self._sum_w / self.full_weight).clamp(0.0, 1.0)
        return mean[None], alpha[None]

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(textures (P, C, T, T), weights (P, 1, T, T)): per pose bin, each texel's best-weighted sample."""
        if not self.pose_bins:
            raise InputError("the accumulator keeps no pose bins (pose_bins=0)")
        if self._best_c is None:
            raise InputError("nothing accumulated yet: call add() with at least one texture")
        return self._best_c.clone(), self._best_w.clone()


# ---------------------------------------------------------------------------------------------------- render
def render_uv_texture(texture: torch.Tensor, vertices: torch.Tensor, triangles: torch.Tensor, uv: torch.Tensor,
                      size: Sequence[int], *, uv_triangles: torch.Tensor | None = None,
                      texture_alpha: torch.Tensor | None = None, raster: Raster | None = None) -> RenderResult:
    """Render a UV-textured mesh into frames of ``size``.

    Args:
        texture: (B, C, T, T) or (1, C, T, T) float32 straight (not premultiplied) colour, scene-linear.
        vertices: (B, V, 3) float32 screen space; triangles (F, 3) int64; uv (V, 2) or (Vt, 2) with uv_triangles
            (F, 3), v down (see the module Convention).
        size: (w, h) of the output frames.
        texture_alpha: (B or 1, 1, T, T) float32 in [0, 1], e.g. :meth:`TextureAccumulator.texture`'s alpha;
            colour and alpha are filtered premultiplied, so unseen texels (alpha 0) do not bleed dark.
        raster: the screen raster of (vertices, triangles) at ``size``, if the caller has it.

    Returns:
        :class:`RenderResult`: colour premultiplied by alpha, alpha = coverage x sampled texture alpha, depth.

    Convention:
        Bilinear texture lookup at each pixel centre's interpolated uv (grid_sample, align_corners=False, border
        padding); pixel-area coordinates; nothing is clamped.
    """
    check_images(texture, "texture")
    check_vertices(vertices)
    w, h = check_size(size)
    b = vertices.shape[0]
    if texture.shape[0] not in (1, b) or texture.shape[2] != texture.shape[3]:
        raise InputError(f"texture must be (B or 1, C, T, T) square, got {tuple(texture.shape)} for batch {b}")
    if texture.device != vertices.device:
        raise InputError(f"texture is on {texture.device}, vertices on {vertices.device}: move one of them")
    tris = check_triangles(triangles, vertices.shape[1], vertices.device)
    uvt = _check_uv(uv, uv_triangles, tris, vertices.shape[1], vertices.device)
    if texture_alpha is not None:
        check_images(texture_alpha, "texture_alpha", channels=(1,))
        if texture_alpha.shape[0] not in (1, b) or texture_alpha.shape[2:] != texture.shape[2:]:
            raise InputError(f"texture_alpha {tuple(texture_alpha.shape)} does not match texture "
                             f"{tuple(texture.shape)}")
    if raster is None:
        raster = rasterise(vertices, tris, (w, h))
    elif raster.tri_id.shape != (b, h, w):
        raise InputError(f"raster is {tuple(raster.tri_id.shape)}, expected {(b, h, w)}")
    coords = interpolate(raster, uv, uvt)  # (B, 2, H, W)
    grid = (coords * 2.0 - 1.0).permute(0, 2, 3, 1)
    centre = (raster.tri_id >= 0).unsqueeze(1).to(torch.float32)
    cov = raster.mask * centre  # colour comes from the pixel-centre sample only

    def sample(tex: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(tex.expand(b, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    if texture_alpha is None:
        colour, alpha = sample(texture) * cov, cov
    else:
        a = sample(texture_alpha)
        colour = sample(texture * texture_alpha) * cov
        alpha = a * cov
    return RenderResult(colour=colour, alpha=alpha, depth=raster.depth.unsqueeze(1))
