"""UV extraction / re-rendering on synthetic meshes with known textures: round trip PSNR, occlusion, grazing
angles, the accumulator and the renderer's alpha."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.core.render.raster import rasterise
from facegraph.core.render.uv import (TextureAccumulator, extract_uv_texture, render_uv_texture, uv_raster)


def grid_mesh(n: int, x0: float, y0: float, size: float, depth, uv_box=(0.0, 0.0, 1.0, 1.0)):
    """A counter-clockwise (n x n)-cell grid over [x0, x0+size] x [y0, y0+size], z = depth(x, y); uv spans
    uv_box (u0, v0, u1, v1), v down. Returns vertices (V, 3), triangles (F, 3), uv (V, 2) as numpy."""
    s = np.linspace(0.0, 1.0, n + 1)
    gu, gv = np.meshgrid(s, s, indexing="xy")
    x, y = x0 + gu * size, y0 + gv * size
    verts = np.stack([x, y, depth(x, y)], -1).reshape(-1, 3)
    u0, v0, u1, v1 = uv_box
    uv = np.stack([u0 + gu * (u1 - u0), v0 + gv * (v1 - v0)], -1).reshape(-1, 2)
    faces = []
    for j in range(n):
        for i in range(n):
            a, b, c, d = j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i, (j + 1) * (n + 1) + i + 1
            faces += [(a, c, b), (b, c, d)]  # counter-clockwise on the y-down screen: front faces
    return verts, np.array(faces), uv


def smooth_texture(t: int, c: int = 3) -> torch.Tensor:
    """A smooth scene-linear test texture with values above 1 (nothing may clamp them)."""
    v, u = torch.meshgrid((torch.arange(t) + 0.5) / t, (torch.arange(t) + 0.5) / t, indexing="ij")
    chans = [0.6 + 0.4 * torch.sin(2 * math.pi * (1 + k) * u) * torch.cos(2 * math.pi * (2 - k % 2) * v)
             for k in range(c)]
    return (torch.stack(chans)[None] * torch.tensor([3.0, 1.0, 0.5][:c]).view(1, c, 1, 1)).float()


def _t(a, device, dtype=torch.float32):
    return torch.as_tensor(np.asarray(a), device=device).to(dtype)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    return 10 * math.log10(peak ** 2 / float(((a - b) ** 2).mean()))


def test_round_trip_psnr(device):
    verts, faces, uv = grid_mesh(12, 8.0, 8.0, 112.0, lambda x, y: 60 + 0.002 * ((x - 64) ** 2 + (y - 64) ** 2))
    v, f, uvt = _t(verts, device)[None], _t(faces, device, torch.int64), _t(uv, device)
    tex = smooth_texture(64).to(device)
    frame = render_uv_texture(tex, v, f, uvt, (128, 128))
    assert frame.colour.shape == (1, 3, 128, 128) and frame.alpha.shape == frame.depth.shape == (1, 1, 128, 128)
    assert frame.colour.max() > 1.5  # scene-linear, not clamped
    got, weight = extract_uv_texture(frame.colour, v, f, uvt, 64)
    assert got.shape == (1, 3, 64, 64) and weight.shape == (1, 1, 64, 64)
    assert 0 <= weight.min() and weight.max() <= 1
    good = weight[0, 0] > 0.5
    good[:2], good[-2:], good[:, :2], good[:, -2:] = False, False, False, False  # the mesh's border texels
    assert good.float().mean() > 0.8
    value = psnr(got[0][:, good], tex[0][:, good], peak=float(tex.max()))
    assert value > 45.0, value  # measured 63.8 dB: two bilinear resamplings of a smooth texture, 1.75 px per texel


def test_occluder_gets_zero_weight_behind_it(device):
    plane, pf, puv = grid_mesh(8, 4.0, 4.0, 56.0, lambda x, y: 50.0 + 0 * x, uv_box=(0.0, 0.0, 0.8, 0.8))
    occ, of, ouv = grid_mesh(1, 20.0, 24.0, 16.0, lambda x, y: 10.0 + 0 * x, uv_box=(0.85, 0.85, 1.0, 1.0))
    verts = np.concatenate([plane, occ])
    faces = np.concatenate([pf, of + len(plane)])
    uv = np.concatenate([puv, ouv])
    v, f, uvt = _t(verts, device)[None], _t(faces, device, torch.int64), _t(uv, device)
    image = torch.rand(1, 3, 64, 64, device=device)
    tex, weight = extract_uv_texture(image, v, f, uvt, 80)
    # screen position of plane texel (i, j): x = 4 + 56 * u / 0.8 with u = (i + 0.5) / 80
    c = (torch.arange(80, device=device) + 0.5) / 80
    sx = 4 + 56 * c / 0.8
    on_plane = (c < 0.8 - 1e-3)
    behind = on_plane & (sx > 20 + 1) & (sx < 36 - 1)
    behind_y = on_plane & (sx > 24 + 1) & (sx < 40 - 1)
    hidden = behind_y[:, None] & behind[None, :]
    assert hidden.sum() > 50 and torch.all(weight[0, 0][hidden] == 0)
    assert torch.all(tex[0][:, hidden] == 0)
    clear_x = on_plane & ((sx < 20 - 1) | (sx > 36 + 1))
    seen = on_plane[:, None] & clear_x[None, :]
    seen[:1], seen[:, :1] = False, False
    assert torch.all(weight[0, 0][seen & (weight[0, 0] > 0)] > 0.99)
    assert (weight[0, 0][seen] > 0.99).float().mean() > 0.95
    # the occluder itself is visible
    occ_texels = (c > 0.86)[:, None] & (c > 0.86)[None, :] & (c < 0.99)[:, None] & (c < 0.99)[None, :]
    assert torch.all(weight[0, 0][occ_texels] > 0.99)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_grazing_texels_weigh_less(device, power):
    slope = math.tan(math.radians(60))  # the right panel turns 60 degrees from the view axis
    left, lf, luv = grid_mesh(4, 4.0, 4.0, 28.0, lambda x, y: 40 + 0 * x, uv_box=(0.0, 0.0, 0.45, 1.0))
    right, rf, ruv = grid_mesh(4, 36.0, 4.0, 28.0, lambda x, y: 40 + slope * (x - 36), uv_box=(0.55, 0.0, 1.0, 1.0))
    verts = np.concatenate([left, right])
    faces = np.concatenate([lf, rf + len(left)])
    uv = np.concatenate([luv, ruv])
    v, f, uvt = _t(verts, device)[None], _t(faces, device, torch.int64), _t(uv, device)
    image = torch.ones(1, 1, 40, 68, device=device)
    _, weight = extract_uv_texture(image, v, f, uvt, 64, grazing_power=power, depth_tolerance=0.5)
    c = (torch.arange(64, device=device) + 0.5) / 64
    rows = (c > 0.1) & (c < 0.9)
    frontal = weight[0, 0][rows][:, (c > 0.05) & (c < 0.4)]
    grazing = weight[0, 0][rows][:, (c > 0.6) & (c < 0.9)]
    assert torch.allclose(frontal, torch.ones((), device=device), atol=1e-4)
    assert torch.allclose(grazing, torch.full((), 0.5 ** power, device=device), atol=2e-3)


def test_extract_accepts_uv_triangles_and_a_given_raster(device):
    verts, faces, uv = grid_mesh(4, 2.0, 2.0, 28.0, lambda x, y: 5 + 0 * x)
    # split every triangle's uv corners into their own rows (a seam everywhere)
    uv_split = uv[faces.reshape(-1)]
    uv_tris = np.arange(len(uv_split)).reshape(-1, 3)
    v, f = _t(verts, device)[None], _t(faces, device, torch.int64)
    image = torch.rand(1, 2, 32, 32, device=device)
    ref = extract_uv_texture(image, v, f, _t(uv, device), 32)
    raster = rasterise(v, f, (32, 32))
    texr = uv_raster(_t(uv_split, device), _t(uv_tris, device, torch.int64), 32)
    got = extract_uv_texture(image, v, f, _t(uv_split, device), 32, uv_triangles=_t(uv_tris, device, torch.int64),
                             raster=raster, texture_raster=texr)
    assert torch.allclose(ref[0], got[0], atol=1e-5) and torch.allclose(ref[1], got[1], atol=1e-5)


def test_accumulator_weighted_mean_alpha_and_best(device):
    acc = TextureAccumulator(pose_bins=2, full_weight=2.0)
    a = torch.full((1, 3, 4, 4), 1.0, device=device)
    b = torch.full((2, 3, 4, 4), 4.0, device=device)
    wa = torch.full((1, 1, 4, 4), 0.75, device=device)
    wb = torch.full((2, 1, 4, 4), 0.25, device=device)
    wb[:, :, 0, 0] = 0.0
    wa_before = wa.clone()
    acc.add(a, wa, pose_bin=0)
    acc.add(b, wb, pose_bin=[1, 1])
    assert torch.equal(wa, wa_before)
    tex, alpha = acc.texture()
    assert tex.shape == (1, 3, 4, 4) and alpha.shape == (1, 1, 4, 4)
    assert torch.allclose(tex[0, :, 1, 1], torch.tensor(2.2, device=device))  # (0.75 + 2 * 0.25 * 4) / 1.25
    assert torch.allclose(tex[0, :, 0, 0], torch.tensor(1.0, device=device))
    assert torch.allclose(alpha[0, 0, 1, 1], torch.tensor(0.625, device=device))
    best, bw = acc.best()
    assert torch.all(best[0] == 1.0) and torch.all(best[1, :, 1, 1] == 4.0) and best[1, 0, 0, 0] == 0
    assert acc.frames == 3
    acc2 = TextureAccumulator()
    acc2.add(a, torch.full_like(wa, 5.0))
    assert torch.all(acc2.texture()[1] == 1.0)  # alpha saturates at 1
    with pytest.raises(InputError):
        acc2.add(torch.zeros(1, 3, 8, 8, device=device), torch.zeros(1, 1, 8, 8, device=device))
    with pytest.raises(InputError):
        acc.add(a, wa)  # pose_bin missing
    with pytest.raises(InputError):
        acc.add(a, wa, pose_bin=2)
    with pytest.raises(InputError):
        TextureAccumulator().texture()


def test_render_alpha_and_premultiplied_colour(device):
    verts, faces, uv = grid_mesh(2, 4.0, 4.0, 24.0, lambda x, y: 3 + 0 * x)
    v, f, uvt = _t(verts, device)[None], _t(faces, device, torch.int64), _t(uv, device)
    tex = torch.full((1, 3, 16, 16), 2.5, device=device)
    ta = torch.ones(1, 1, 16, 16, device=device)
    ta[..., 8:] = 0.0  # right half of the texture unseen
    r = render_uv_texture(tex, v, f, uvt, (32, 32), texture_alpha=ta)
    cov = rasterise(v, f, (32, 32)).mask
    assert torch.all(r.alpha <= cov) and torch.all(r.alpha[cov == 0] == 0)
    left = r.alpha[0, 0, 8:24, 6:14]
    assert torch.allclose(left, torch.ones((), device=device))
    assert torch.allclose(r.colour[0, :, 8:24, 6:14], torch.tensor(2.5, device=device))
    assert torch.all(r.alpha[0, 0, 8:24, 18:26] == 0) and torch.all(r.colour[0, :, 8:24, 18:26] == 0)
    premult = r.colour / r.alpha.clamp_min(1e-6)
    assert torch.allclose(premult[r.alpha.expand_as(premult) > 0.01], torch.tensor(2.5, device=device), atol=1e-4)
    assert torch.isinf(r.depth[cov == 0]).all() and torch.all(r.depth[cov > 0] == 3)


@pytest.mark.parametrize("call", [
    lambda d: extract_uv_texture(torch.zeros(1, 3, 8, 8, device=d), torch.zeros(2, 3, 3, device=d),
                                 torch.tensor([[0, 1, 2]], device=d), torch.zeros(3, 2, device=d), 8),
    lambda d: extract_uv_texture(torch.zeros(1, 3, 8, 8, device=d), torch.zeros(1, 3, 3, device=d),
                                 torch.tensor([[0, 1, 2]], device=d), torch.zeros(4, 2, device=d), 8),
    lambda d: extract_uv_texture(torch.zeros(1, 3, 8, 8, device=d), torch.zeros(1, 3, 3, device=d),
                                 torch.tensor([[0, 1, 2]], device=d), torch.zeros(3, 2, device=d), 0),
    lambda d: extract_uv_texture(torch.zeros(3, 8, 8, device=d), torch.zeros(1, 3, 3, device=d),
                                 torch.tensor([[0, 1, 2]], device=d), torch.zeros(3, 2, device=d), 8),
    lambda d: render_uv_texture(torch.zeros(1, 3, 8, 4, device=d), torch.zeros(1, 3, 3, device=d),
                                torch.tensor([[0, 1, 2]], device=d), torch.zeros(3, 2, device=d), (8, 8)),
    lambda d: render_uv_texture(torch.zeros(1, 3, 8, 8, device=d), torch.zeros(1, 3, 3, device=d),
                                torch.tensor([[0, 1, 2]], device=d), torch.zeros(3, 2, device=d), (8, 8),
                                uv_triangles=torch.tensor([[0, 1, 2], [0, 1, 2]], device=d)),
])
def test_bad_input_raises_input_error(device, call):
    with pytest.raises(InputError):
        call(device)
