"""Region and polygon masks: brute-force point-in-polygon, labelled triangles, visibility, feathering."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.core.render.masks import (combine_with_user_mask, feather, polygon_mask, region_masks,
                                         triangle_labels)
from facegraph.core.render.raster import rasterise


def _even_odd(poly: np.ndarray, w: int, h: int) -> np.ndarray:
    """Brute-force ray casting in float64 at pixel centres."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        crosses = (y0 <= ys) != (y1 <= ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xc <= xs)
    return inside


def _winding(poly: np.ndarray, w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    total = np.zeros((h, w))
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        a0 = np.arctan2(y0 - ys, x0 - xs)
        a1 = np.arctan2(y1 - ys, x1 - xs)
        total += (a1 - a0 + np.pi) % (2 * np.pi) - np.pi
    return np.abs(np.round(total / (2 * np.pi))) > 0


def _near_outline(poly: np.ndarray, w: int, h: int, eps: float = 1e-3) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    near = np.zeros((h, w), bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        d = b - a
        t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
        near |= np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1]) < eps
    return near


def test_polygon_fill_matches_bruteforce(device):
    rng = np.random.default_rng(0)
    w, h = 48, 40
    polys = []
    for _ in range(6):
        k = 9
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(5, 22, k)
        polys.append(np.stack([24 + rad * np.cos(ang), 20 + rad * np.sin(ang)], 1))
    pts = torch.tensor(np.stack(polys), dtype=torch.float32, device=device)
    m = polygon_mask(pts, (w, h))
    assert m.shape == (6, 1, h, w) and m.dtype == torch.float32
    for i, poly in enumerate(polys):
        ref = _even_odd(poly.astype(np.float32).astype(np.float64), w, h)
        near = _near_outline(poly, w, h)
        got = m[i, 0].cpu().numpy() > 0.5
        np.testing.assert_array_equal(got[~near], ref[~near])
        # simple polygons: both rules agree
        nz = polygon_mask(pts[i:i + 1], (w, h), rule="nonzero")[0, 0].cpu().numpy() > 0.5
        np.testing.assert_array_equal(nz, got)


def test_even_odd_and_nonzero_differ_on_a_pentagram(device):
    star = np.array([[20 + 18 * math.sin(a), 20 - 18 * math.cos(a)] for a in np.arange(5) * 4 * math.pi / 5])
    pts = torch.tensor(star[None], dtype=torch.float32, device=device)
    eo = polygon_mask(pts, (40, 40), rule="even-odd")[0, 0].cpu().numpy() > 0.5
    nz = polygon_mask(pts, (40, 40), rule="nonzero")[0, 0].cpu().numpy() > 0.5
    near = _near_outline(star, 40, 40)
    np.testing.assert_array_equal(eo[~near], _even_odd(star, 40, 40)[~near])
    np.testing.assert_array_equal(nz[~near], _winding(star, 40, 40)[~near])
    assert not eo[20, 20] and nz[20, 20]  # the pentagon in the middle


def test_polygons_sharing_an_edge_split_its_centres(device):
    # two rectangles meeting at x = 10.5 (a column of centres) and y = 6.5 edges through centres
    a = [[2.5, 2.5], [10.5, 2.5], [10.5, 12.5], [2.5, 12.5]]
    b = [[10.5, 2.5], [18.5, 2.5], [18.5, 12.5], [10.5, 12.5]]
    m = polygon_mask(torch.tensor([a, b], dtype=torch.float32, device=device), (21, 15))
    total = m.sum(0)[0]
    assert total.max() == 1
    assert torch.all(total[3:12, 3:18] == 1)


def test_polygon_feather_is_soft_and_bounded(device):
    sq = torch.tensor([[[10.0, 10.0], [40.0, 10.0], [40.0, 40.0], [10.0, 40.0]]], device=device)
    hard = polygon_mask(sq, (50, 50))
    soft = polygon_mask(sq, (50, 50), feather_px=4.0)
    assert 0 <= soft.min() and soft.max() <= 1
    assert soft[0, 0, 25, 25] > 0.999 and soft[0, 0, 0, 0] < 1e-3
    row = soft[0, 0, 25].cpu().numpy()
    assert np.all(np.diff(row[:25]) >= -1e-6)  # a monotone ramp up to the middle
    frac = ((soft > 0.01) & (soft < 0.99)).sum()
    assert frac > 4 * 30 * 4  # a band of soft pixels all round
    # the 10-90 % ramp is feather_px wide: the edge at x = 10 ramps 10 %..90 % between 8 and 12
    x = np.arange(25) + 0.5
    assert abs(float(np.interp(0.9, row[:25], x)) - float(np.interp(0.1, row[:25], x)) - 4.0) < 0.3
    assert abs(float(soft.sum()) - float(hard.sum())) < 0.01 * float(hard.sum())  # blur keeps the area


def _labelled_grid(device, n=8, size=64.0):
    s = np.linspace(4.0, 4.0 + size - 8, n + 1)
    gx, gy = np.meshgrid(s, s, indexing="xy")
    verts = np.stack([gx, gy, np.full_like(gx, 10.0)], -1).reshape(-1, 3)
    faces = []
    for j in range(n):
        for i in range(n):
            a, b, c, d = j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i, (j + 1) * (n + 1) + i + 1
            faces += [(a, c, b), (b, c, d)]
    labels = np.where(verts[:, 0] < 30, 1, 2)
    labels[(verts[:, 1] > 40) & (verts[:, 0] < 30)] = 3
    return (torch.tensor(verts[None], dtype=torch.float32, device=device), torch.tensor(faces, device=device),
            torch.tensor(labels, device=device))


@pytest.mark.parametrize("rule", ["majority", "all"])
def test_region_masks_cover_labelled_triangles(device, rule):
    v, f, labels = _labelled_grid(device)
    m = region_masks(v, f, labels, [1, 2, 3], (64, 64), feather_px=0, rule=rule)
    assert m.shape == (1, 3, 64, 64)
    r = rasterise(v, f, (64, 64))
    tl = triangle_labels(f, labels, rule)
    for k, lab in enumerate([1, 2, 3]):
        want = (r.tri_id[0] >= 0) & (tl[r.tri_id[0].clamp(min=0)] == lab)
        assert torch.equal(m[0, k] > 0.5, want)
        assert want.sum() > 20
    assert m.sum(1).max() <= 1  # regions do not overlap
    if rule == "all":
        assert (m.sum(1)[0][r.tri_id[0] >= 0] == 0).any()  # mixed triangles belong to none


def test_triangle_labels_rules(device):
    f = torch.tensor([[0, 1, 2], [0, 1, 3], [3, 4, 5]], device=device)
    lab = torch.tensor([1, 1, 1, 2, 2, 3], device=device)
    assert triangle_labels(f, lab, "majority").tolist() == [1, 1, 2]
    assert triangle_labels(f, lab, "all").tolist() == [1, -1, -1]
    assert triangle_labels(torch.tensor([[0, 3, 5]], device=device), lab).tolist() == [-1]


def test_region_masks_only_visible_parts(device):
    v, f, labels = _labelled_grid(device)
    # a second copy of the grid, label 9, nearer the camera over the right half
    v2 = v.clone()
    v2[..., 0] += 28.0
    v2[..., 2] = 1.0
    verts = torch.cat([v, v2], 1)
    faces = torch.cat([f, f + v.shape[1]])
    lab = torch.cat([labels, torch.full_like(labels, 9)])
    m = region_masks(verts, faces, lab, [2, 9], (96, 64), feather_px=0)
    assert m[0, 0].sum() < 0.2 * m[0, 1].sum()  # label 2 (right half of the far grid) is mostly hidden
    assert torch.all(m[0, 0, :, 40:] == 0)


def test_region_feather_soft_in_unit_range(device):
    v, f, labels = _labelled_grid(device)
    m = region_masks(v, f, labels, [1, 2], (64, 64), feather_px=3.0)
    assert 0 <= m.min() and m.max() <= 1
    assert ((m > 0.05) & (m < 0.95)).sum() > 100


def test_combine_with_user_mask(device):
    region = torch.rand(2, 1, 8, 8, device=device)
    user = torch.rand(1, 1, 8, 8, device=device)
    before = user.clone()
    out = combine_with_user_mask(region, user)
    assert out.shape == (2, 1, 8, 8) and torch.equal(out, torch.minimum(region, user))
    assert torch.equal(user, before)
    with pytest.raises(InputError):
        combine_with_user_mask(region, torch.rand(1, 1, 4, 8, device=device))
    with pytest.raises(InputError):
        combine_with_user_mask(region, torch.rand(3, 1, 8, 8, device=device))


def test_feather_zero_is_identity_and_border_stays_solid(device):
    m = torch.zeros(1, 1, 20, 20, device=device)
    m[..., :, :10] = 1
    assert torch.equal(feather(m, 0), m)
    s = feather(m, 5.0)
    assert torch.allclose(s[0, 0, :, 0], torch.ones((), device=device))  # replicate padding at the border


@pytest.mark.parametrize("call", [
    lambda d: polygon_mask(torch.zeros(1, 2, 2, device=d), (8, 8)),
    lambda d: polygon_mask(torch.zeros(3, 2, device=d), (8, 8)),
    lambda d: polygon_mask(torch.full((1, 4, 2), float("nan"), device=d), (8, 8)),
    lambda d: polygon_mask(torch.zeros(1, 4, 2, device=d), (8, 8), rule="odd"),
    lambda d: polygon_mask(torch.zeros(1, 4, 2, device=d), (8, 8), feather_px=-1),
    lambda d: region_masks(torch.zeros(1, 3, 3, device=d), torch.tensor([[0, 1, 2]], device=d),
                           torch.zeros(2, dtype=torch.int64, device=d), [0], (8, 8)),
    lambda d: region_masks(torch.zeros(1, 3, 3, device=d), torch.tensor([[0, 1, 2]], device=d),
                           torch.zeros(3, device=d), [0], (8, 8)),
    lambda d: region_masks(torch.zeros(1, 3, 3, device=d), torch.tensor([[0, 1, 2]], device=d),
                           torch.zeros(3, dtype=torch.int64, device=d), [], (8, 8)),
])
def test_bad_input_raises_input_error(device, call):
    with pytest.raises(InputError):
        call(device)


def test_feather_on_the_box_equals_the_whole_frame_blur(device):
    """feather() blurs only the non-zero box (+ radius); the result must equal a whole-frame blur, including
    for a mask touching the image border."""
    import math

    import torch.nn.functional as F

    from facegraph.core.render import masks as M

    m = torch.zeros(1, 2, 90, 120, device=device)
    m[:, 0, 30:60, 40:80] = 1.0
    m[:, 1, 0:10, 0:12] = 0.5
    sigma = 6.0 / M._RAMP_SIGMAS
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    ref = m.reshape(2, 1, 90, 120)
    ref = F.conv2d(F.pad(ref, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    ref = F.conv2d(F.pad(ref, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1)).view(1, 2, 90, 120)
    assert torch.allclose(M.feather(m, 6.0), ref.clamp(0, 1), atol=1e-6)
    assert (M.feather(torch.zeros(1, 1, 8, 8, device=device), 3.0) == 0).all()
