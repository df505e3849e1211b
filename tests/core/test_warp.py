"""core.warp: exactness, torch vs cv2 parity, round trips, ROI boxes and shape errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.core.geometry import warp_affine as warp_numpy
from facegraph.core.warp import roi_of_warp, warp_affine


def _images(b=2, c=3, h=40, w=52, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, h, w, generator=g) * 100).to(device)


def _smooth(b=1, c=3, h=64, w=80, device="cpu"):
    """Values in [0, 100] with gradients well under 1 per pixel (what a real face crop looks like)."""
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    chans = [50 + 40 * torch.sin(xx / (9 + k) + k) * torch.cos(yy / (11 + 2 * k)) for k in range(c)]
    return torch.stack(chans)[None].expand(b, -1, -1, -1).contiguous().to(device)


def _mat(rows, device="cpu"):
    return torch.tensor([rows], dtype=torch.float64, device=device)


IDENTITY = [[1, 0, 0], [0, 1, 0]]
# matrices whose samples land on a 1/32-pixel lattice (see core/warp.py, "How close the two paths are")
LATTICE = [[[0.5, 0, 3.25], [0, 0.5, -2.0]], [[2, 0, 1.5], [0, 2, 0.25]], [[0, -1, 40], [1, 0, 0]]]
GENERAL = [[0.9, 0.2, 3.1], [-0.2, 0.9, 5.3]]


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "nearest"])
def test_identity_is_exact(device, interpolation):
    x = _images(device=device)
    for backend in (["torch", "cv2"] if device.type == "cpu" else ["torch"]):
        out = warp_affine(x, _mat(IDENTITY, device), (52, 40), interpolation=interpolation, backend=backend)
        assert out.shape == x.shape and out.device == x.device
        torch.testing.assert_close(out, x, rtol=0, atol=2e-5)


@pytest.mark.parametrize("shift", [(3, 0), (-2, 5), (7, -4)])
def test_integer_shift_is_exact(device, shift):
    x = _images(b=1, device=device)
    dx, dy = shift
    for backend in (["torch", "cv2"] if device.type == "cpu" else ["torch"]):
        out = warp_affine(x, _mat([[1, 0, dx], [0, 1, dy]], device), (52, 40), backend=backend, fill=-1.0)
        # destination pixel (i, j) = source pixel (i - dx, j - dy); outside -> fill
        ref = torch.full_like(x, -1.0)
        ys, yd = slice(max(0, -dy), min(40, 40 - dy)), slice(max(0, dy), min(40, 40 + dy))
        xs, xd = slice(max(0, -dx), min(52, 52 - dx)), slice(max(0, dx), min(52, 52 + dx))
        ref[..., yd, xd] = x[..., ys, xs]
        torch.testing.assert_close(out, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("border", ["constant", "replicate", "reflect"])
def test_torch_matches_cv2(interpolation, border):
    """Both CPU paths give the same numbers: 2e-3 abs on random values in [0, 100] (gradients up to 100 per
    pixel, so 2e-5 pixel of position), on matrices on and off the 1/32-pixel lattice."""
    x = _images()
    # output sizes keep every sample within one image size of the source (see the reflect note in core/warp.py)
    for rows, size in zip(LATTICE + [GENERAL], [(26, 20), (60, 44), (40, 52), (60, 44)]):
        m = _mat(rows)
        tol = 2e-3
        a = warp_affine(x, m, size, interpolation=interpolation, border=border, fill=1.5, backend="torch")
        b = warp_affine(x, m, size, interpolation=interpolation, border=border, fill=1.5, backend="cv2")
        assert float((a - b).abs().max()) <= tol, (rows, float((a - b).abs().max()))


def test_nearest_parity_without_ties():
    x = _images()
    m = _mat([[0, -1, 40], [1, 0, 0]])
    a = warp_affine(x, m, (40, 52), interpolation="nearest", backend="torch")
    b = warp_affine(x, m, (40, 52), interpolation="nearest", backend="cv2")
    assert torch.equal(a, b)


def test_channels_last_and_many_channels_take_the_same_numbers():
    x = _images(c=3)
    m = _mat(GENERAL)
    ref = warp_affine(x, m, (50, 40))
    cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # a ComfyUI IMAGE through bchw
    torch.testing.assert_close(warp_affine(cl, m, (50, 40)), ref, rtol=0, atol=0)
    x6 = torch.cat([x, x], 1)  # > 4 channels: one plane at a time
    out6 = warp_affine(x6, m, (50, 40))
    torch.testing.assert_close(out6[:, 3:], ref, rtol=0, atol=0)
    one = warp_affine(x[:, :1], m, (50, 40))
    torch.testing.assert_close(one, ref[:, :1], rtol=0, atol=0)


def test_matches_core_geometry_numpy_warp():
    x = _images(b=1)
    m = np.array(GENERAL)
    ours = warp_affine(x, torch.from_numpy(m)[None], (50, 40), interpolation="cubic")[0].permute(1, 2, 0).numpy()
    theirs = warp_numpy(x[0].permute(1, 2, 0).numpy(), m, (50, 40), interpolation="cubic")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_round_trip_crop_frame_crop(device):
    frame = _smooth(h=96, w=120, device=device)
    a, s = math.radians(17.0), 1.3
    # frame point (60, 48) -> crop centre (32, 32); the crop sees a 49 px patch well inside the frame
    tx = 32 - s * (math.cos(a) * 60 - math.sin(a) * 48)
    ty = 32 - s * (math.sin(a) * 60 + math.cos(a) * 48)
    crop_from_frame = _mat([[s * math.cos(a), -s * math.sin(a), tx], [s * math.sin(a), s * math.cos(a), ty]], device)
    crop = warp_affine(frame, crop_from_frame, (64, 64), interpolation="cubic", border="replicate")
    inv = torch.linalg.inv(torch.cat([crop_from_frame[0], torch.tensor([[0, 0, 1.0]], dtype=torch.float64,
                                                                          device=device)]))[:2][None]
    back = warp_affine(crop, inv, (120, 96), interpolation="cubic", border="constant")
    again = warp_affine(back, crop_from_frame, (64, 64), interpolation="cubic")
    inner = (slice(None), slice(None), slice(8, 56), slice(8, 56))
    torch.testing.assert_close(again[inner], crop[inner], rtol=0, atol=0.2)  # 0.2 of 100 on a smooth image
    # and the frame itself is recovered where the crop saw it (well inside the crop's footprint)
    ones = torch.ones_like(crop[:, :1])
    seen = warp_affine(ones, inv, (120, 96), interpolation="nearest")
    seen = (-torch.nn.functional.max_pool2d(-seen, 5, 1, 2) > 0.5).expand_as(back)
    err = (back[seen] - frame[seen]).abs()
    assert int(seen.sum()) > 3000 and float(err.max()) < 0.2


def test_fill_and_batch_broadcast(device):
    x = _images(b=3, device=device)
    m = _mat([[1, 0, 100], [0, 1, 0]], device)  # everything moves out of view
    out = warp_affine(x, m, (20, 10), fill=2.5, backend="torch")
    assert out.shape == (3, 3, 10, 20) and bool((out == 2.5).all())
    two = torch.cat([_mat(IDENTITY, device), _mat([[1, 0, 1], [0, 1, 0]], device)])
    out2 = warp_affine(x[:2], two, (52, 40), backend="torch")
    torch.testing.assert_close(out2[0], x[0], rtol=0, atol=2e-5)
    torch.testing.assert_close(out2[1, :, :, 1:], x[1, :, :, :-1], rtol=0, atol=2e-5)


def test_inputs_unchanged_and_gradients_flow():
    x = _images(b=1)
    before = x.clone()
    m = _mat(GENERAL)
    mb = m.clone()
    warp_affine(x, m, (30, 30))
    assert torch.equal(x, before) and torch.equal(m, mb)
    xg = x.clone().requires_grad_(True)
    warp_affine(xg, m, (30, 30)).sum().backward()  # auto takes the torch path for autograd
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0


def test_shape_and_value_errors():
    x = _images()
    m = _mat(IDENTITY)
    with pytest.raises(InputError, match="images"):
        warp_affine(x[0], m, (10, 10))
    with pytest.raises(InputError, match="matrices|dst_from_src"):
        warp_affine(x, torch.zeros(2, 3, 3), (10, 10))
    with pytest.raises(InputError, match="batch"):
        warp_affine(x, torch.zeros(3, 2, 3, dtype=torch.float64), (10, 10))
    with pytest.raises(InputError, match="singular"):
        warp_affine(x, torch.zeros(1, 2, 3, dtype=torch.float64), (10, 10))
    with pytest.raises(InputError, match="out_size"):
        warp_affine(x, m, (0, 10))
    with pytest.raises(InputError, match="interpolation"):
        warp_affine(x, m, (10, 10), interpolation="area")
    with pytest.raises(InputError, match="border"):
        warp_affine(x, m, (10, 10), border="wrap")
    with pytest.raises(InputError, match="float32"):
        warp_affine(x.to(torch.int32), m, (10, 10))
    with pytest.raises(InputError, match="NaN"):
        warp_affine(x, torch.full((1, 2, 3), float("nan")), (10, 10))


def test_roi_of_warp():
    # a 10 x 20 crop scaled by 2 and moved to (30, 40) in a 100 x 80 frame
    m = np.array([[2.0, 0, 30], [0, 2.0, 40]])
    assert roi_of_warp(m, (10, 20), (100, 80)) == (30, 40, 50, 80)
    assert roi_of_warp(m, (10, 20), (100, 80), pad=2) == (28, 38, 52, 80)  # clipped at the bottom
    assert roi_of_warp(torch.from_numpy(m)[None], (10, 20), (100, 80), pad=0.5) == (29, 39, 51, 80)
    # rotated: the box covers all four corners
    a = math.radians(30)
    r = np.array([[math.cos(a), -math.sin(a), 50], [math.sin(a), math.cos(a), 20]])
    x0, y0, x1, y1 = roi_of_warp(r, (20, 10), (100, 80))
    corners = np.array([[0, 0, 1], [20, 0, 1], [0, 10, 1], [20, 10, 1]]) @ r.T
    assert x0 <= corners[:, 0].min() and x1 >= corners[:, 0].max()
    assert y0 <= corners[:, 1].min() and y1 >= corners[:, 1].max()
    assert roi_of_warp(np.array([[1.0, 0, 500], [0, 1, 0]]), (10, 10), (100, 80))[0] == 100  # empty, x0 == x1
    with pytest.raises(InputError):
        roi_of_warp(m, (10, 20), (100, 80), pad=-1)
