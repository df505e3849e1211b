"""core.blend: feathering, Poisson blending against a sparse direct solve, analytic cases, paste-back."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from facegraph.core.blend import (PasteOptions, PoissonOptions, _box_of, _grow, _over_inplace, _smooth_length,
                                  combine_masks, feather_mask, paste_back, poisson_blend)
from facegraph.core.errors import InputError
from facegraph.core.warp import warp_affine

H, W = 40, 52


# ------------------------------------------------------------------------------------------- reference


def reference_blend(s, t, m, region, guidance="source", eps=1e-6):
    """The documented discrete system, assembled edge by edge and solved by a sparse LU (scipy.sparse.linalg).

    s, t: (C, H, W) float64; m: (H, W); region: (H, W) bool, the unknowns. For p in region:
    sum_q (u_p - u_q) = sum_q g_pq over in-frame 4-neighbours q, u_q = t_q outside the region,
    g_pq = w (G_pq) + (1 - w)(t_p - t_q), w = max(m_p, m_q). Result u m + t (1 - m) in the region, t outside."""
    c, h, w = s.shape
    nc = 3 if c == 4 else c
    t_lin = t
    if guidance == "log":
        s, t = s.copy(), t.copy()
        s[:nc] = np.log(np.maximum(s[:nc], eps))
        t[:nc] = np.log(np.maximum(t[:nc], eps))
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(region)
    idx[ys, xs] = np.arange(len(ys))
    n = len(ys)
    rows, cols, vals = [], [], []
    b = np.zeros((c, n))
    diag = np.zeros(n)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        qy, qx = ys + dy, xs + dx
        p = np.nonzero((qy >= 0) & (qy < h) & (qx >= 0) & (qx < w))[0]
        qy, qx, py, px = qy[p], qx[p], ys[p], xs[p]
        diag[p] += 1
        gs = s[:, py, px] - s[:, qy, qx]
        gt = t[:, py, px] - t[:, qy, qx]
        if guidance == "mixed":
            gs = np.where((gs[:nc] ** 2).sum(0) > (gt[:nc] ** 2).sum(0), gs, gt)
        wt = np.maximum(m[py, px], m[qy, qx])
        b[:, p] += wt * gs + (1 - wt) * gt
        qi = idx[qy, qx]
        inside = qi >= 0
        rows.append(p[inside])
        cols.append(qi[inside])
        vals.append(-np.ones(int(inside.sum())))
        b[:, p[~inside]] += t[:, qy[~inside], qx[~inside]]
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    u = t.copy()
    u[:, ys, xs] = spl.spsolve(a, b.T).T
    if guidance == "log":
        u[:nc] = np.exp(u[:nc])
    out = t_lin.copy()
    out[:, ys, xs] = u[:, ys, xs] * m[ys, xs] + t_lin[:, ys, xs] * (1 - m[ys, xs])
    return out


def dst_region(m: torch.Tensor, margin: int) -> np.ndarray:
    """The box the "dst" solver uses (the mask's box + margin, grown to a fast FFT length inside the frame)."""
    y0, y1, x0, x1 = _box_of(m, margin)
    h, w = m.shape
    if y0 > 0 and y1 < h:
        y0, y1 = _grow(y0, y1, h, _smooth_length(y1 - y0))
    if x0 > 0 and x1 < w:
        x0, x1 = _grow(x0, x1, w, _smooth_length(x1 - x0))
    r = np.zeros((h, w), bool)
    r[y0:y1, x0:x1] = True
    return r


# ------------------------------------------------------------------------------------------- data


def _grid(h=H, w=W):
    return torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                          indexing="ij")


def _hdr(seed, c=3, h=H, w=W, noise=1.0):
    """Smooth HDR-looking data in (0, 100]: an exp of low-frequency waves plus fine texture."""
    g = np.random.default_rng(seed)
    yy, xx = (v.numpy() for v in _grid(h, w))
    chans = []
    for _ in range(c):
        f = sum(g.uniform(0.2, 1) * np.sin(g.uniform(0.05, 0.3) * xx + g.uniform(0, 6))
                * np.cos(g.uniform(0.05, 0.3) * yy + g.uniform(0, 6)) for _ in range(3))
        v = np.exp(1.5 * f) + noise * g.uniform(0, 1, (h, w))
        chans.append(v / v.max() * 100)
    return torch.tensor(np.stack(chans), dtype=torch.float32)[None]


def _ellipse(cx, cy, rx, ry, soft=0.3, h=H, w=W):
    yy, xx = _grid(h, w)
    d = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return ((1 - d) / soft).clamp(0, 1).to(torch.float32)[None, None]


def _rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    """max |ours - ref| / max(|ref|, 1): relative on HDR values, absolute below 1."""
    o = ours.double().cpu().numpy()
    return float((np.abs(o - ref) / np.maximum(np.abs(ref), 1.0)).max())


# ------------------------------------------------------------------------------------------- masks


def test_feather_mask(device):
    m = torch.zeros(2, 1, 30, 40, device=device)
    m[:, :, 4:26, 10:30] = 1
    before = m.clone()
    blur = feather_mask(m, 4.0, mode="blur")
    inner = feather_mask(m, 4.0, mode="erode_blur")
    assert torch.equal(m, before)  # the input is not modified
    assert blur.shape == m.shape and blur.device == m.device
    row = blur[0, 0, 15]
    assert 0.3 < float(row[10]) < 0.7  # the edge ramps across the original edge
    assert float(row[6]) > 0 and float(row[13]) > float(row[11]) > float(row[10])  # Gaussian, not a box
    assert bool((inner <= m + 1e-6).all())  # erode first: the feathered mask stays inside the original
    assert float(inner[0, 0, 15, 20]) > 0.99 and float(inner[0, 0, 15, 10]) < 0.01
    assert float(inner[..., :, :10].abs().max()) == 0.0  # exactly zero outside
    edge = torch.ones(1, 1, 20, 20, device=device)  # a mask that fills the frame fades out at the frame edge
    assert float(feather_mask(edge, 3.0)[0, 0, 10, 0]) < 0.01
    same = feather_mask(m, 0.0)
    assert torch.equal(same, m) and same.data_ptr() != m.data_ptr()
    with pytest.raises(InputError):
        feather_mask(m, -1.0)
    with pytest.raises(InputError):
        feather_mask(m, 2.0, mode="box")


@pytest.mark.parametrize("mode", ["blur", "erode_blur"])
def test_feather_cv2_and_torch_agree(mode):
    g = torch.Generator().manual_seed(3)
    m = (torch.rand(2, 1, 33, 47, generator=g) > 0.4).float() * torch.rand(2, 1, 33, 47, generator=g)
    for r in (4.5,):
        a = feather_mask(m, r, mode=mode, backend="torch")
        b = feather_mask(m, r, mode=mode, backend="cv2")
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_combine_masks(device):
    a = torch.rand(2, 1, 8, 9, device=device)
    b = torch.rand(2, 1, 8, 9, device=device)
    c = torch.rand(1, 1, 8, 9, device=device)
    out = combine_masks(a, b, c)
    assert torch.equal(out, torch.minimum(torch.minimum(a, b), c))
    assert torch.equal(combine_masks(a), a) and combine_masks(a).data_ptr() != a.data_ptr()
    with pytest.raises(InputError):
        combine_masks()
    with pytest.raises(InputError):
        combine_masks(a, torch.rand(2, 1, 5, 5, device=device))


# ------------------------------------------------------------------------------------------- Poisson


CASES = {"interior": (26, 20, 15, 11), "edge": (4, 20, 14, 11), "corner": (3, 2, 16, 12)}


# every case on the default path; the torch.fft path (what CUDA runs) on CPU too, in the corner case, which
# has both mirrored (frame-edge) and Dirichlet sides
SPARSE_CASES = ([(w, s, g, "auto") for w in CASES for s in ("dst", "cg") for g in ("source", "mixed", "log")]
                + [("corner", s, g, "torch") for s in ("dst", "cg") for g in ("source", "mixed", "log")])


@pytest.mark.parametrize("where,solver,guidance,backend", SPARSE_CASES)
def test_poisson_matches_sparse_direct_solve(device, where, solver, guidance, backend):
    """HDR data up to 100, soft elliptical masks (inside, on the frame edge, in the corner): the result is
    within 1e-3 relative (measured: about 2e-5 in float32) of a float64 sparse LU of the same system."""
    s, t = _hdr(1), _hdr(2)
    m = _ellipse(*CASES[where])
    opts = PoissonOptions(solver=solver, guidance=guidance, margin_px=4, tol=1e-7, backend=backend)
    out = poisson_blend(s.to(device), t.to(device), m.to(device), options=opts)
    region = dst_region(m[0, 0], 4) if solver == "dst" else (m[0, 0] > 0).numpy()
    ref = reference_blend(s[0].double().numpy(), t[0].double().numpy(), m[0, 0].double().numpy(), region,
                          guidance)
    assert _rel_err(out[0], ref) <= 1e-3


def test_poisson_float64_and_both_fft_backends_agree():
    s, t, m = _hdr(3), _hdr(4), _ellipse(3, 2, 16, 12)  # a corner: mirrored and Dirichlet sides
    region = dst_region(m[0, 0], 16)
    ref = reference_blend(s[0].double().numpy(), t[0].double().numpy(), m[0, 0].double().numpy(), region)
    outs = {}
    for backend in ("torch", "scipy"):
        for precision in ("float32", "float64"):
            outs[backend, precision] = poisson_blend(s, t, m, options=PoissonOptions(backend=backend,
                                                                                      precision=precision))
    assert _rel_err(outs["scipy", "float64"][0], ref) <= 1e-6  # float64 is at float32 output rounding
    for k, v in outs.items():
        assert _rel_err(v[0], ref) <= 1e-4, k
    torch.testing.assert_close(outs["torch", "float32"], outs["scipy", "float32"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("solver", ["dst", "cg"])
def test_poisson_analytic_cases(device, solver):
    t = _hdr(5).to(device)
    m = _ellipse(26, 20, 15, 11).to(device)
    opts = PoissonOptions(solver=solver, tol=1e-8)
    # source == target -> target
    torch.testing.assert_close(poisson_blend(t, t, m, options=opts), t, rtol=1e-5, atol=1e-4)
    # a constant offset: the gradients match, so the target comes back (boundary values are the target's)
    torch.testing.assert_close(poisson_blend(t + 37.5, t, m, options=opts), t, rtol=1e-5, atol=1e-4)
    yy, xx = _grid()
    ramp = (2.0 * xx - 1.5 * yy + 80.0).to(torch.float32)[None, None].expand(1, 3, -1, -1).to(device)
    # a ramp with the target's slope at another level: the target again
    torch.testing.assert_close(poisson_blend(ramp - 20, ramp, m, options=opts), ramp, rtol=1e-5, atol=1e-3)
    if solver == "cg":  # Dirichlet on the mask's boundary: a linear ramp is discrete-harmonic, so a flat
        # source inside a hard mask gives the ramp back exactly
        hard = torch.zeros(1, 1, H, W, device=device)
        hard[..., 10:30, 12:40] = 1
        flat = torch.full_like(ramp, 5.0)
        torch.testing.assert_close(poisson_blend(flat, ramp, hard, options=opts), ramp, rtol=1e-5, atol=1e-3)


def test_poisson_mask_on_whole_frame_and_at_edges(device):
    s, t = _hdr(6).to(device), _hdr(7).to(device)
    full = torch.ones(1, 1, H, W, device=device)
    out = poisson_blend(s, t, full)  # no boundary at all: Neumann everywhere, zero-mean correction
    assert bool(torch.isfinite(out).all())
    d = (out - t).double()
    assert float(d.mean(dim=(-2, -1)).abs().max()) < 1e-3
    # gradients of the result are the source's (it is the source up to a constant per channel)
    torch.testing.assert_close(out - out.mean(dim=(-2, -1), keepdim=True), s - s.mean(dim=(-2, -1), keepdim=True),
                               rtol=0, atol=1e-3)
    strip = torch.zeros(1, 1, H, W, device=device)
    strip[..., :, :10] = 1  # touches three frame edges
    out2 = poisson_blend(t + 11.0, t, strip)
    torch.testing.assert_close(out2, t, rtol=1e-5, atol=1e-4)


def test_poisson_empty_mask_soft_mask_and_inputs_untouched(device):
    s, t = _hdr(8).to(device), _hdr(9).to(device)
    m = _ellipse(26, 20, 15, 11, soft=0.8).to(device)  # very soft
    copies = [x.clone() for x in (s, t, m)]
    out = poisson_blend(s, t, m)
    for x, c in zip((s, t, m), copies):
        assert torch.equal(x, c)
    assert out.shape == t.shape and out.device == t.device and out.data_ptr() != t.data_ptr()
    far = _ellipse(26, 20, 15, 11).to(device) == 0
    assert torch.equal(out[far.expand_as(out)], t[far.expand_as(t)])  # outside the mask: the target exactly
    zero = torch.zeros_like(m)
    e = poisson_blend(s, t, zero)
    assert torch.equal(e, t) and e.data_ptr() != t.data_ptr()
    two = poisson_blend(torch.cat([s, s]), torch.cat([t, t]), torch.cat([zero, m]))  # per-image masks
    assert torch.equal(two[0], t[0]) and torch.equal(two[1], out[0])


def test_poisson_rgba_and_log_nonpositive(device):
    s, t = _hdr(10).to(device), _hdr(11).to(device)
    a = torch.ones(1, 1, H, W, device=device)
    m = _ellipse(26, 20, 15, 11).to(device)
    for guidance in ("source", "mixed", "log"):
        out = poisson_blend(torch.cat([s, a], 1), torch.cat([t, a], 1), m, options=PoissonOptions(guidance=guidance))
        rgb = poisson_blend(s, t, m, options=PoissonOptions(guidance=guidance))
        torch.testing.assert_close(out[:, :3], rgb, rtol=1e-5, atol=1e-4)  # alpha does not disturb colour
        torch.testing.assert_close(out[:, 3:], a, rtol=0, atol=1e-5)  # opaque in, opaque out
    t2 = t.clone()
    t2[..., 18:22, 20:30] = -0.5  # negatives inside the mask: the log guidance returns positives there
    out = poisson_blend(s, t2, m, options=PoissonOptions(guidance="log"))
    assert bool(torch.isfinite(out).all()) and bool((out[..., 18:22, 20:30] > 0).all())
    torch.testing.assert_close(out[(m == 0).expand_as(out)], t2[(m == 0).expand_as(t2)], rtol=0, atol=0)


def test_poisson_errors():
    s, t, m = _hdr(12), _hdr(13), _ellipse(26, 20, 15, 11)
    bad = s.clone()
    bad[0, 1, 3, 4] = float("nan")
    with pytest.raises(InputError, match="source"):
        poisson_blend(bad, t, m)
    with pytest.raises(InputError, match="target"):
        poisson_blend(s, bad, m)
    with pytest.raises(InputError, match="mask"):
        poisson_blend(s, t, torch.ones(1, 1, H + 1, W))
    with pytest.raises(InputError, match="mask"):
        poisson_blend(s, t, torch.ones(1, 1, H, W + 4))
    with pytest.raises(InputError, match="same shape"):
        poisson_blend(s[..., :-1], t, m)
    with pytest.raises(InputError):
        PoissonOptions(guidance="average")
    with pytest.raises(InputError):
        PoissonOptions(margin_px=0)


# ------------------------------------------------------------------------------------------- paste-back


def _similarity(cx, cy, size=64, scale=1.4, deg=20.0):
    """crop_from_frame mapping frame point (cx, cy) to the crop centre, rotated and scaled."""
    a = math.radians(deg)
    ca, sa = scale * math.cos(a), scale * math.sin(a)
    c = size / 2
    return torch.tensor([[ca, -sa, c - (ca * cx - sa * cy)], [sa, ca, c - (sa * cx + ca * cy)]], dtype=torch.float64)


def _invert(m):
    full = torch.cat([m, torch.tensor([[[0, 0, 1.0]]], dtype=m.dtype).expand(m.shape[0], -1, -1)], 1)
    return torch.linalg.inv(full)[:, :2]


def _scene(device, b=3):
    yy, xx = _grid(96, 128)
    base = torch.stack([50 + 40 * torch.sin(xx / (9 + k) + k) * torch.cos(yy / (11 + 2 * k)) for k in range(3)])
    frames = torch.stack([base, base * 0.5, base + 3.0][:b]).to(torch.float32).to(device)
    yc, xc = _grid(64, 64)
    ell = (((xc - 32) / 24) ** 2 + ((yc - 32) / 28) ** 2 < 1).to(torch.float32)[None, None]
    return frames, ell.to(device)


@pytest.mark.parametrize("mode", ["over", "poisson"])
def test_paste_back_round_trip_many_faces_and_pass_through(device, mode):
    frames, ell = _scene(device)
    crop_from_frame = torch.stack([_similarity(40, 40), _similarity(90, 50), _similarity(60, 50)])
    frame_index = torch.tensor([0, 0, 2])
    crops = torch.cat([warp_affine(frames[i:i + 1], crop_from_frame[k:k + 1], (64, 64), interpolation="cubic")
                       for k, i in enumerate(frame_index.tolist())])
    masks = ell.expand(3, -1, -1, -1)
    copies = [x.clone() for x in (frames, crops, masks)]
    out = paste_back(frames, crops, _invert(crop_from_frame), masks, frame_index,
                     options=PasteOptions(mode=mode, feather_px=4, interpolation="cubic"))
    for x, c in zip((frames, crops, masks), copies):
        assert torch.equal(x, c)  # inputs untouched
    assert torch.equal(out[1], frames[1])  # a frame without faces: bit-identical
    # crop -> frame -> crop: the frame is unchanged inside the masks to interpolation tolerance (of 90)
    assert float((out - frames).abs().max()) < 0.3
    # a brighter face shows where it was pasted (two in frame 0, one in frame 2), nowhere else
    lifted = paste_back(frames, crops * 1.5, _invert(crop_from_frame), masks, frame_index,
                        options=PasteOptions(mode="over", feather_px=4))
    assert torch.equal(lifted[1], frames[1])
    for (cx, cy), b in (((40, 40), 0), ((90, 50), 0), ((60, 50), 2)):
        assert float((lifted[b, :, cy, cx] - frames[b, :, cy, cx] * 1.5).abs().max()) < 0.3
    assert torch.equal(lifted[0, :, :, 120:], frames[0, :, :, 120:])  # outside every ROI: untouched


def test_paste_back_poisson_hides_an_offset(device):
    frames, ell = _scene(device, b=1)
    cff = _similarity(60, 50)[None]
    crop = warp_affine(frames, cff, (64, 64), interpolation="cubic") + 25.0
    over = paste_back(frames, crop, _invert(cff), ell, torch.tensor([0]), options=PasteOptions(mode="over"))
    pois = paste_back(frames, crop, _invert(cff), ell, torch.tensor([0]), options=PasteOptions(mode="poisson"))
    assert float((over - frames).abs().max()) > 20
    assert float((pois - frames).abs().max()) < 0.3


def test_paste_back_rgba_alpha(device):
    frames = torch.zeros(1, 4, 40, 40, device=device)
    frames[:, 0] = 0.2
    frames[:, 3] = 0.5  # premultiplied: colour 0.4 at half coverage
    crops = torch.zeros(1, 4, 20, 20, device=device)
    crops[:, 1] = 0.6
    crops[:, 3] = 0.6
    masks = torch.full((1, 1, 20, 20), 0.5, device=device)
    m = torch.tensor([[[1.0, 0, 10], [0, 1.0, 10]]], dtype=torch.float64)  # whole pixels: exact
    out = paste_back(frames, crops, m, masks, torch.tensor([0]), options=PasteOptions(feather_px=0))
    a = 0.6 * 0.5 + 0.5 * (1 - 0.6 * 0.5)
    torch.testing.assert_close(out[0, 3, 20, 20], torch.tensor(a, device=device))
    torch.testing.assert_close(out[0, 0, 20, 20], torch.tensor(0.2 * (1 - 0.3), device=device))
    torch.testing.assert_close(out[0, 1, 20, 20], torch.tensor(0.6 * 0.5, device=device))
    assert torch.equal(out[0, :, :10], frames[0, :, :10])


@pytest.mark.parametrize("channels", [3, 4])
def test_over_composite_numpy_and_torch_agree(channels):
    g = torch.Generator().manual_seed(5)
    region = torch.rand(1, channels, 9, 11, generator=g) * 50
    src = torch.rand(1, channels, 9, 11, generator=g) * 50
    m = torch.rand(1, 1, 9, 11, generator=g)
    a, b = region.clone(), region.clone()
    _over_inplace(a, src, m, True)
    _over_inplace(b, src, m, False)
    alpha = src[:, 3:4] if channels == 4 else 1.0
    torch.testing.assert_close(a, src * m + region * (1 - alpha * m))
    torch.testing.assert_close(b, a)


def test_paste_back_errors(device):
    frames, ell = _scene(device, b=1)
    crops = torch.zeros(1, 3, 64, 64, device=device)
    m = _similarity(60, 50)[None]
    with pytest.raises(InputError, match="frame_index"):
        paste_back(frames, crops, m, ell, torch.tensor([1]))
    with pytest.raises(InputError, match="frame_index"):
        paste_back(frames, crops, m, ell, torch.tensor([0.0]))
    with pytest.raises(InputError, match="masks"):
        paste_back(frames, crops, m, ell[..., :32], torch.tensor([0]))
    with pytest.raises(InputError, match="channels"):
        paste_back(frames, torch.zeros(1, 4, 64, 64, device=device), m, ell, torch.tensor([0]))
    none = paste_back(frames, crops[:0], m[:0], ell[:0], torch.zeros(0, dtype=torch.long))
    assert torch.equal(none, frames)
