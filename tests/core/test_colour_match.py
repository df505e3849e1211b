"""Colour matching in linear light (core/colour_match.py): synthetic colour clouds with known statistics."""
import math

import pytest
import torch

from facegraph.core import colour_match as cm
from facegraph.core.errors import EstimationError, InputError

# Gaussian clouds in the encoded space (mean, covariance): a warm, a cool face; linear-space ones are small.
CLOUDS = {
    "log": (([-2.0, -2.5, -3.0], [[0.30, 0.10, 0.05], [0.10, 0.20, 0.02], [0.05, 0.02, 0.10]]),
            ([-1.5, -2.7, -2.0], [[0.20, -0.05, 0.0], [-0.05, 0.30, 0.10], [0.0, 0.10, 0.15]])),
    "linear": (([0.30, 0.20, 0.10], [[0.010, 0.004, 0.001], [0.004, 0.008, 0.001], [0.001, 0.001, 0.005]]),
               ([0.50, 0.25, 0.20], [[0.020, -0.004, 0.001], [-0.004, 0.010, 0.002], [0.001, 0.002, 0.004]])),
}
CLOUDS["opponent"] = CLOUDS["log"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on shared cores, waking a second OpenMP thread per op cost more than the op
    (measured here under load: 72 ms vs 1.2 ms per colour_stats of 64 x 64). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cloud(mean, cov, space, device, *, b=1, h=64, w=64, seed=0):
    """(b, 3, h, w) float32 scene-linear image whose *encoded* pixels are N(mean, cov)."""
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64))
    z = torch.randn(b * h * w, 3, generator=g, dtype=torch.float64) @ chol.T + torch.tensor(mean, dtype=torch.float64)
    x = cm.decode(z.T.contiguous(), space, dim=0).to(torch.float32)
    return x.reshape(3, b, h, w).permute(1, 0, 2, 3).contiguous().to(device)


def pair(space, device, **kw):
    (ms, cs), (mt, ct) = CLOUDS[space]
    return cloud(ms, cs, space, device, seed=1, **kw), cloud(mt, ct, space, device, seed=2, **kw)


def enc_pixels(x, space):
    return cm.encode(x[:, :3].permute(1, 0, 2, 3).reshape(3, -1).to(torch.float64), space, dim=0)


# ---------------------------------------------------------------------------------------------- spaces
@pytest.mark.parametrize("space", cm.SPACES)
def test_encode_decode_round_trip_keeps_hdr_zeros_and_negatives(space, device):
    x = torch.tensor([-0.05, -1e-4, 0.0, 1e-5, 2 ** -7, 0.01, 0.18, 1.0, 7.5, 100.0, 4096.0], device=device)
    img = torch.stack([x, x.flip(0), x.roll(3)])[None, :, None, :]  # (1, 3, 1, 11)
    back = cm.decode(cm.encode(img, space), space)
    assert back.device == img.device
    assert torch.allclose(back, img, rtol=2e-6, atol=1e-7)


def test_log_is_log2_above_the_break_and_c1_at_it():
    x = torch.tensor([2 ** -7, 0.18, 1.0, 1000.0], dtype=torch.float64)
    assert torch.allclose(cm.encode(x[:, None].expand(4, 3).T.contiguous(), "log", dim=0)[0], torch.log2(x))
    e = 1e-9  # value and slope meet at 2^-7 (ACEScct's toe)
    b = torch.tensor([[cm.LOG_BREAK - e, cm.LOG_BREAK, cm.LOG_BREAK + e]] * 3, dtype=torch.float64)
    y = cm.encode(b, "log", dim=0)[0]
    assert float(y[1]) == -7.0
    assert float((y[2] - y[1]) / e) == pytest.approx(float((y[1] - y[0]) / e), rel=1e-5)
    r = torch.tensor(cm._OPPONENT, dtype=torch.float64)
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-12)  # orthonormal


# ---------------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("space", cm.SPACES)
def test_mkl_matches_mean_and_covariance(space, device):
    src, tgt = pair(space, device)
    tr = cm.fit_colour_transfer(cm.colour_stats(src, space=space, sketch=False),
                                cm.colour_stats(tgt, space=space, sketch=False), "mkl", space)
    out = cm.apply_colour_transfer(src, tr)
    so, st = (cm.colour_stats(v, space=space, sketch=False) for v in (out, tgt))
    assert out.device == src.device and out.dtype == torch.float32
    assert torch.allclose(so.mean, st.mean, atol=1e-4)
    assert torch.allclose(so.cov, st.cov, atol=1e-4)
    assert tr.matrix.dtype == torch.float64
    # the closed form solves T S_s T = S_t
    ss = cm.colour_stats(src, space=space, sketch=False).cov
    assert torch.allclose(tr.matrix @ ss @ tr.matrix.T, st.cov, atol=1e-9)


@pytest.mark.parametrize("space", cm.SPACES)
def test_meanstd_matches_per_channel_mean_and_std(space, device):
    src, tgt = pair(space, device)
    out = cm.match_colour(src, tgt, method="meanstd", space=space)
    so, st = (cm.colour_stats(v, space=space, sketch=False) for v in (out, tgt))
    assert torch.allclose(so.mean, st.mean, atol=1e-5)
    assert torch.allclose(so.std, st.std, atol=1e-5)
    if space != "linear":  # a diagonal map in opponent space is a full one in log RGB, and differs from log's
        other = cm.match_colour(src, tgt, method="meanstd", space="log" if space == "opponent" else "opponent")
        assert not torch.allclose(other, out, atol=1e-3)


def test_default_space_follows_the_method(device):
    src, tgt = pair("log", device, h=16, w=16)
    for method, space in cm.DEFAULT_SPACE.items():
        got = cm.match_colour(src, tgt, method=method)
        assert torch.equal(got, cm.match_colour(src, tgt, method=method, space=space))


def test_mkl_is_the_same_map_in_log_and_opponent(device):
    src, tgt = pair("log", device)
    a = cm.match_colour(src, tgt, method="mkl", space="log")
    b = cm.match_colour(src, tgt, method="mkl", space="opponent")
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("space", cm.SPACES)
def test_histogram_matches_quantiles(space, device):
    src, tgt = pair(space, device)
    # make the source skewed (not Gaussian) so only a quantile map can match it
    src = src + 2.0 * src.clamp(min=0.0) ** 2  # monotone, skewed
    out = cm.match_colour(src, tgt, method="histogram", space=space)
    q = torch.tensor([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], dtype=torch.float64, device=device)
    qo, qt = (torch.quantile(enc_pixels(v, space), q, dim=1) for v in (out, tgt))
    err = (qo - qt).abs() / enc_pixels(tgt, space).std(dim=1)
    assert err[1:-1].max() < 0.02  # the 1 % tails of 4096 pixels hold 41 samples: looser there
    assert err.max() < 0.05


def test_sketch_quantiles_agree_with_exact_quantiles(device):
    for space in cm.SPACES:
        src, _ = pair(space, device)
        st = cm.colour_stats(src, space=space)
        q = torch.tensor([0.001, 0.1, 0.5, 0.9, 0.999], dtype=torch.float64, device=device)
        exact = torch.quantile(enc_pixels(src, space), q, dim=1).T
        approx = cm.sketch_quantiles(st, q)
        assert ((approx - exact).abs() / st.std[:, None]).max() < 0.02, space  # ~ a bin in the 0.1 % tails


# ---------------------------------------------------------------------------------------------- strength, masks
@pytest.mark.parametrize("method", cm.METHODS)
def test_strength_zero_is_identity_and_half_is_halfway_in_the_encoded_space(method, device):
    src, tgt = pair("log", device)
    tr = cm.fit_colour_transfer(cm.colour_stats(src, space="opponent"), cm.colour_stats(tgt, space="opponent"),
                                method)
    assert torch.equal(cm.apply_colour_transfer(src, tr, strength=0.0), src)
    full = cm.apply_colour_transfer(src, tr, strength=1.0)
    assert torch.equal(full, cm.apply_colour_transfer(src, tr))
    half = cm.apply_colour_transfer(src, tr, strength=0.5)
    e = lambda v: cm.encode(v, "opponent")  # noqa: E731
    assert torch.allclose(e(half), 0.5 * (e(src) + e(full)), atol=2e-5)
    # a mask of 0.5 everywhere equals strength 0.5
    m = torch.full_like(src[:, :1], 0.5)
    assert torch.allclose(cm.apply_colour_transfer(src, tr, mask=m), half, rtol=1e-5, atol=1e-7)


def test_masks_restrict_the_fit_and_the_application(device):
    src, tgt = pair("log", device)
    junk = torch.full_like(src, 3.0)  # a bright background that must not enter the stats
    src2 = torch.cat([src, junk], dim=3)
    tgt2 = torch.cat([torch.full_like(tgt, 0.01), tgt], dim=3)
    ms = torch.cat([torch.ones_like(src[:, :1]), torch.zeros_like(src[:, :1])], dim=3)
    mt = 1.0 - ms
    for method in cm.METHODS:
        ref = cm.fit_colour_transfer(cm.colour_stats(src), cm.colour_stats(tgt), method)
        got = cm.fit_colour_transfer(cm.colour_stats(src2, ms), cm.colour_stats(tgt2, mt), method)
        for k, v in ref._tensors().items():
            assert torch.allclose(getattr(got, k), v, rtol=1e-9, atol=1e-9), (method, k)
    tr = cm.fit_colour_transfer(cm.colour_stats(src2, ms), cm.colour_stats(tgt2, mt), "mkl")
    soft = ms.clone()
    soft[..., 60:64] = 0.5  # a soft edge inside the face
    out = cm.apply_colour_transfer(src2, tr, mask=soft)
    assert torch.equal(out[..., 64:], src2[..., 64:])  # mask 0: exact copy
    full = cm.apply_colour_transfer(src2, tr)
    assert torch.allclose(out[..., :60], full[..., :60])
    half = cm.apply_colour_transfer(src2, tr, strength=0.5)
    assert torch.allclose(out[..., 60:64], half[..., 60:64], rtol=1e-5, atol=1e-7)


def test_soft_masks_are_weights(device):
    src, tgt = pair("log", device, h=8, w=8)
    m = torch.rand(src[:, :1].shape, generator=torch.Generator().manual_seed(3)).to(device)
    st = cm.colour_stats(src, m, "log", sketch=False)
    x, w = enc_pixels(src, "log"), m.reshape(-1).to(torch.float64)
    assert torch.allclose(st.mean, (x * w).sum(1) / w.sum(), atol=1e-12)


# ---------------------------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("method", cm.METHODS)
def test_accumulated_frames_equal_the_fit_on_all_frames(method, device):
    src, tgt = pair("log", device, b=4, h=32, w=32)
    ms = (torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(5)) > 0.3).float().to(device)
    per_s = cm.frame_colour_stats(src, ms, "opponent")
    per_t = cm.frame_colour_stats(tgt, None, "opponent")
    acc_s, acc_t = sum(per_s), per_t[0].merge(*per_t[1:])
    all_s, all_t = cm.colour_stats(src, ms, "opponent"), cm.colour_stats(tgt, None, "opponent")
    assert torch.allclose(acc_s.outer, all_s.outer, rtol=1e-12) and torch.equal(acc_s.hist, all_s.hist)
    a = cm.fit_colour_transfer(acc_s, acc_t, method)
    b = cm.fit_colour_transfer(all_s, all_t, method)
    for k, v in a._tensors().items():
        assert torch.allclose(v, getattr(b, k), rtol=1e-9, atol=1e-10), k


def test_empty_frames_can_be_accumulated_when_allowed(device):
    src, _ = pair("log", device, b=2, h=8, w=8)
    m = torch.zeros_like(src[:, :1])
    m[1] = 1
    per = cm.frame_colour_stats(src, m, "log", allow_empty=True)
    assert per[0].total == 0 and per[1].total == 64
    assert torch.allclose(sum(per).mean, per[1].mean)
    with pytest.raises(InputError, match="empty"):
        cm.fit_colour_transfer(per[0], per[1], "mkl")


# ---------------------------------------------------------------------------------------------- HDR, alpha
def test_hdr_highlights_are_not_clipped(device):
    src, tgt = pair("log", device)
    src = src.clone()
    src[0, :, 0, :4] = torch.tensor([20.0, 60.0, 250.0, 1000.0], device=device)  # speculars far past the face
    for method in cm.METHODS:
        for space in cm.SPACES:
            face = torch.ones_like(src[:, :1])
            face[0, :, 0, :4] = 0.0  # the speculars are outside the face region that is fitted
            out = cm.match_colour(src, tgt, face, method=method, space=space)
            hl = out[0, :, 0, :4]
            assert torch.isfinite(out).all()
            assert (hl[:, 1:] > hl[:, :-1]).all(), (method, space)  # still ordered, nothing flattened
            assert (hl > 1.0).all(), (method, space)


def test_histogram_extrapolates_linearly_past_the_lut(device):
    src, tgt = pair("linear", device)
    tr = cm.fit_colour_transfer(cm.colour_stats(src, space="linear"), cm.colour_stats(tgt, space="linear"),
                                "histogram", quantiles=64)
    top = float(tr.lut_in[0, -1])
    x = torch.tensor([top + 1.0, top + 2.0, top + 3.0], device=device)
    img = torch.stack([x, x, x])[None, :, None, :]
    y = cm.apply_colour_transfer(img, tr)[0, 0, 0]
    assert float(y[2] - y[1]) == pytest.approx(float(y[1] - y[0]), rel=1e-4)
    assert float(y[1] - y[0]) == pytest.approx(float(tr.slopes[0, 1]), rel=1e-4)


def test_premultiplied_rgba_matches_the_straight_colour_and_keeps_alpha(device):
    src, tgt = pair("log", device, h=16, w=16)
    alpha = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(7)).to(device)
    alpha[..., :2, :] = 0.0
    rgba = torch.cat([src * alpha, alpha], dim=1)
    before = rgba.clone()
    out = cm.match_colour(rgba, tgt, method="mkl", space="log")
    assert torch.equal(rgba, before)  # input untouched
    assert torch.equal(out[:, 3:], alpha)
    assert torch.equal(out[..., :2, :], rgba[..., :2, :])  # no coverage: copied
    # same as matching the straight colour with alpha as the weight, then premultiplying
    tr = cm.fit_colour_transfer(cm.colour_stats(src, alpha, "log"), cm.colour_stats(tgt, None, "log"), "mkl")
    ref = cm.apply_colour_transfer(src, tr) * alpha
    assert torch.allclose(out[:, :3, 2:], ref[:, :, 2:], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- temporal
def test_smooth_transfers(device):
    src, tgt = pair("log", device, b=6, h=16, w=16)
    for method in cm.METHODS:
        ts = [cm.fit_colour_transfer(s, t, method) for s, t in
              zip(cm.frame_colour_stats(src, None, "log"), cm.frame_colour_stats(tgt, None, "log"))]
        key = "lut_out" if method == "histogram" else "matrix"
        raw = torch.stack([getattr(t, key) for t in ts])
        cen = cm.smooth_transfers(ts, mode="centred", radius=1)
        assert torch.allclose(getattr(cen[2], key), raw[1:4].mean(0))
        assert torch.allclose(getattr(cen[0], key), raw[0:2].mean(0))  # window shrinks at the ends
        ema = cm.smooth_transfers(ts, mode="ema", alpha=0.25)
        assert torch.allclose(getattr(ema[1], key), 0.75 * raw[0] + 0.25 * raw[1])
        assert len(cm.smooth_transfers(ts, radius=0)) == 6
        same = cm.smooth_transfers([ts[0]] * 4, radius=2)
        for k, v in ts[0]._tensors().items():
            assert torch.allclose(getattr(same[3], k), v)
        if method == "histogram":
            assert all(bool((t.lut_in[:, 1:] > t.lut_in[:, :-1]).all()) for t in cen)
        jitter = lambda seq: float(torch.stack([getattr(t, key) for t in seq]).diff(dim=0).abs().mean())  # noqa: E731
        assert jitter(cen) < jitter(ts)
    with pytest.raises(InputError, match="differs"):
        cm.smooth_transfers([ts[0], cm.fit_colour_transfer(cm.colour_stats(src), cm.colour_stats(tgt), "mkl")])


# ---------------------------------------------------------------------------------------------- report, records
def test_region_stats_difference(device):
    src, tgt = pair("log", device)
    d0 = cm.region_stats_difference(src, src, space="log")
    assert d0["mean_abs"] == 0 and d0["std_abs"] == 0
    d = cm.region_stats_difference(src * 2.0, src, space="log")  # one stop brighter
    assert d["mean_diff"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert d["std_abs"] == pytest.approx(0.0, abs=1e-5)
    after = cm.region_stats_difference(cm.match_colour(src, tgt, method="meanstd", space="log"), tgt, space="log")
    before = cm.region_stats_difference(src, tgt, space="log")
    assert after["mean_abs"] < 1e-4 < before["mean_abs"]
    assert d["channels"] == list(cm.CHANNELS["log"])


def test_transfer_round_trips_through_a_dict_and_moves(device):
    src, tgt = pair("log", device, h=16, w=16)
    for method in cm.METHODS:
        tr = cm.fit_colour_transfer(cm.colour_stats(src), cm.colour_stats(tgt), method)
        back = cm.ColourTransfer.from_dict(tr.to_dict(), device)
        assert back.method == tr.method and back.space == tr.space
        for k, v in tr._tensors().items():
            assert torch.equal(getattr(back, k), v)
        assert tr.to("cpu").device == torch.device("cpu")


# ---------------------------------------------------------------------------------------------- errors
def test_errors(device):
    src, tgt = pair("log", device, h=8, w=8)
    zero = torch.zeros_like(src[:, :1])
    with pytest.raises(InputError, match=r"source_mask.*empty"):
        cm.match_colour(src, tgt, zero, None)
    with pytest.raises(InputError, match=r"target_mask.*empty"):
        cm.match_colour(src, tgt, None, zero)
    bad = src.clone()
    bad[0, 1, 3, 3] = math.nan
    with pytest.raises(InputError, match="NaN"):
        cm.match_colour(bad, tgt)
    with pytest.raises(InputError, match="NaN"):
        cm.match_colour(src, bad.clone().fill_(math.nan))
    with pytest.raises(InputError, match="mask"):
        cm.colour_stats(src, torch.ones(1, 1, 4, 4, device=device))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        cm.colour_stats(src, torch.full_like(zero, 2.0))
    with pytest.raises(InputError, match="channels"):
        cm.colour_stats(src[:, :2])
    with pytest.raises(InputError, match="space"):
        cm.colour_stats(src, space="lab")
    with pytest.raises(InputError, match="method"):
        cm.match_colour(src, tgt, method="reinhard")
    with pytest.raises(InputError, match="meta"):  # never moved between devices
        cm.match_colour(src, tgt.to("meta"))
    tr = cm.fit_colour_transfer(cm.colour_stats(src), cm.colour_stats(tgt), "mkl")
    with pytest.raises(InputError, match="transfer.to"):
        cm.apply_colour_transfer(src, tr.to("meta"))
    with pytest.raises(InputError, match="strength"):
        cm.apply_colour_transfer(src, tr, strength=1.5)
    with pytest.raises(InputError, match="space"):
        cm.colour_stats(src, space="log") + cm.colour_stats(src, space="linear")
    with pytest.raises(InputError, match="sketch"):
        cm.fit_colour_transfer(cm.colour_stats(src, sketch=False), cm.colour_stats(tgt, sketch=False), "histogram")
    grey = src[:, :1].expand(-1, 3, -1, -1).contiguous()  # a greyscale face: rank-1 colours
    with pytest.raises(EstimationError, match="greyscale"):
        cm.match_colour(grey, tgt, method="mkl")
    for space in cm.SPACES:  # meanstd and histogram cope with a greyscale or flat source
        cm.match_colour(grey, tgt, method="histogram", space=space)
        out = cm.match_colour(grey, tgt, method="meanstd", space=space)  # chroma flat in opponent: shift only
        assert torch.isfinite(out).all()
        flat = cm.match_colour(torch.full_like(src, 0.2), tgt, method="meanstd", space=space)
        d = cm.region_stats_difference(flat, tgt, space=space)
        assert d["mean_abs"] < 1e-5


def test_inputs_are_never_modified(device):
    src, tgt = pair("log", device, h=8, w=8)
    m = torch.ones_like(src[:, :1]) * 0.7
    copies = [v.clone() for v in (src, tgt, m)]
    for method in cm.METHODS:
        for space in cm.SPACES:
            for strength, am in ((1.0, None), (0.6, m)):
                out = cm.match_colour(src, tgt, m, m, method=method, space=space, strength=strength, apply_mask=am)
                assert out.data_ptr() != src.data_ptr()
    for v, c in zip((src, tgt, m), copies):
        assert torch.equal(v, c)
