"""The blend nodes (colour match, Poisson blend, paste back) on real photos and real Align Faces crops, called
directly and through the headless runner."""
import dataclasses
import types

import numpy as np
import pytest
import torch

from facegraph.core.align import warp_to_crop
from facegraph.core.colour_match import ColourTransfer, region_stats_difference
from facegraph.core.errors import InputError
from facegraph.core.tensors import bchw
from facegraph.nodes import NODE_CLASSES
from facegraph.nodes.analysis import AlignFaces, DetectFaces
from facegraph.nodes.blend import NODES, ColourMatch, PasteBack, PoissonBlend, crop_frame_indices
from facegraph.plugin.runner import Runner

pytestmark = pytest.mark.shared


def _result(out):
    return out["result"] if isinstance(out, dict) else out


def _text(out) -> str:
    return "\n".join(out["ui"]["text"])


def _psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    err = float(((a - b) ** 2)[where].mean())
    return 10 * np.log10(1.0 / max(err, 1e-12))  # peak 1: sRGB-decoded stills are in [0, 1]


def _still(data, name):
    from facegraph.core.io.images import read_image
    from facegraph.nodes.types import numpy_to_image

    px, _ = read_image(data / "stills" / name)
    return numpy_to_image(px[..., :3])


@pytest.fixture(scope="module")
def frames(data):
    """Two real frames of one size: a photo, and the same photo mirrored and a stop darker."""
    a = _still(data, "s0.jpg")
    return torch.cat([a, torch.flip(a, dims=[2]) * 0.5])


@pytest.fixture(scope="module")
def aligned(frames, mirror):
    (faces,) = DetectFaces().detect(frames, score_threshold=0.6, max_faces=1)
    assert all(len(ff) == 1 for ff in faces)
    crops, aligns, masks = AlignFaces().align(frames, faces, template="ffhq_512", size=256, margin=0.3)
    return crops, aligns, masks


@pytest.fixture(scope="module")
def other_crop(data, mirror):
    img = _still(data, "d8.jpg")
    (faces,) = DetectFaces().detect(img, score_threshold=0.6, max_faces=1)
    crops, _, masks = AlignFaces().align(img, faces, template="ffhq_512", size=256, margin=0.3)
    return crops, masks


# ------------------------------------------------------------------------------------------ colour match
def test_colour_match_moves_the_masked_stats_to_the_target(aligned, other_crop):
    crops, _, masks = aligned
    target, tmask = other_crop
    out = ColourMatch().match(crops, target, method="mkl", space="opponent", per_batch=True,
                              source_mask=masks, target_mask=tmask)
    matched, transfer = _result(out)
    assert isinstance(transfer, ColourTransfer) and matched.shape == crops.shape
    s, t, sm, tm = bchw(crops), bchw(target), masks[:, None], tmask[:, None]
    before = region_stats_difference(s, t, sm, tm, "log")
    after = region_stats_difference(bchw(matched), t, sm, tm, "log")
    # the two faces differ before (0.24 log2 mean since detection tones its own resized input, 0.30 before)
    assert before["mean_abs"] > 0.2 and after["mean_abs"] < 0.02 and after["std_abs"] < 0.02
    assert "stops" in _text(out)


def test_colour_match_per_frame_and_limited_to_the_mask(aligned, other_crop):
    crops, _, masks = aligned
    target, tmask = other_crop
    matched, transfers = _result(ColourMatch().match(crops, target, method="meanstd", space="log",
                                                     per_batch=False, source_mask=masks, target_mask=tmask))
    assert isinstance(transfers, list) and len(transfers) == 2
    for b in range(2):  # frame 1 is a stop darker: each frame is matched on its own
        d = region_stats_difference(bchw(matched[b:b + 1]), bchw(target), masks[b:b + 1, None], tmask[:, None], "log")
        assert d["mean_abs"] < 0.02
    (limited, _) = _result(ColourMatch().match(crops, target, per_batch=False, source_mask=masks,
                                               target_mask=tmask, limit_to_mask=True))
    off, on = masks == 0, masks > 0.999
    assert torch.equal(limited[off], crops[off]) and not torch.equal(limited[on], crops[on])
    (halfway, _) = _result(ColourMatch().match(crops, target, strength=0.0, source_mask=masks, target_mask=tmask))
    assert torch.equal(halfway, crops)


def test_colour_match_bad_input(aligned, other_crop):
    crops, _, masks = aligned
    target, tmask = other_crop
    out = ColourMatch().match(crops, target, source_mask=torch.zeros_like(masks))
    passed, transfer = _result(out)
    assert torch.equal(passed, crops) and "source_mask is empty" in _text(out)
    assert torch.equal(transfer.matrix, torch.eye(3, dtype=torch.float64))
    with pytest.raises(InputError, match="'target_mask' is 10x10"):
        ColourMatch().match(crops, target, target_mask=torch.ones((1, 10, 10)))
    nan = crops.clone()
    nan[1, 3, 3, 0] = float("nan")
    with pytest.raises(InputError, match="'source' contains NaN"):
        ColourMatch().match(nan, target)
    with pytest.raises(InputError, match=r"one target per source frame \(1\) or a single target, got 2"):
        ColourMatch().match(crops[:1], torch.cat([target] * 2), per_batch=False)


# ------------------------------------------------------------------------------------------ poisson
def _disc(frames, r=60):
    h, w = frames.shape[1:3]
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((yy - h * 0.4) ** 2 + (xx - w * 0.5) ** 2) < r * r).float()[None]


def test_poisson_blend_keeps_the_target_light(frames):
    target = frames[:1]
    mask = _disc(target)
    # a brighter copy of the same frame: its log gradients are the target's, so "log" gives the target back
    (out,) = _result(PoissonBlend().blend(target * 2.0 + 0.0, target, mask, guidance="log", margin=8))
    inside = mask[0] > 0
    assert float((out[0][inside] - target[0][inside]).abs().max()) < 2e-3
    # the mirrored frame, "source" guidance: its detail goes in, the edge takes the target's values
    other = torch.flip(target, dims=[2])
    (mixed,) = _result(PoissonBlend().blend(other, target, mask, guidance="source", margin=8))
    far = torch.ones_like(mask[0], dtype=torch.bool)
    far[int(704 * 0.4) - 90:int(704 * 0.4) + 90, 300 - 90:300 + 90] = False
    assert torch.equal(mixed[0][far], target[0][far])
    assert float((mixed[0][inside] - target[0][inside]).abs().mean()) > 0.01


def test_poisson_blend_bad_input(frames):
    target = frames[:1]
    out = PoissonBlend().blend(target * 3, target, torch.zeros((1,) + tuple(target.shape[1:3])))
    assert torch.equal(_result(out)[0], target) and "mask is empty" in _text(out)
    with pytest.raises(InputError, match="'mask' is 10x12"):
        PoissonBlend().blend(target, target, torch.ones((1, 12, 10)))
    bad = target.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="'source' contains Inf"):
        PoissonBlend().blend(bad, target, _disc(target))
    with pytest.raises(InputError, match="'source' is"):
        PoissonBlend().blend(target[:, :100], target, _disc(target))


# ------------------------------------------------------------------------------------------ paste back
def test_paste_back_round_trip(frames, aligned):
    crops, aligns, masks = aligned
    one = [0]  # only frame 0's crop: frame 1 has none and must pass through
    out = PasteBack().paste(frames, crops[one], [aligns[0]], mode="over", feather_px=0.0, crop_masks=masks[one])
    (pasted,) = _result(out)
    assert torch.equal(pasted[1], frames[1]) and "1 passed through" in _text(out)
    # inside the (warped) mask the frame comes back: crop -> frame resampling only
    again = torch.from_numpy(warp_to_crop(pasted[0].numpy(), aligns[0]))
    inner = masks[0] > 0.999
    assert _psnr(again, crops[0], inner) > 40.0  # crop -> frame -> crop
    changed = (pasted[0] - frames[0]).abs().amax(-1) > 0
    assert 0.02 < float(changed.float().mean()) < 0.5  # only the face's region of the frame was touched
    assert _psnr(pasted[0], frames[0], changed) > 30.0
    # a processed crop lands where it belongs; many faces per frame paste in order
    red = torch.zeros_like(crops[:1])
    red[..., 0] = 1.0
    (painted,) = _result(PasteBack().paste(frames, torch.cat([crops[:1], red]), [aligns[0], aligns[0]],
                                           feather_px=0.0))
    cx, cy = (aligns[0].frame_from_crop @ np.array([128.0, 128.0, 1.0])).astype(int)
    assert painted[0, cy, cx].tolist() == [1.0, 0.0, 0.0]


def test_paste_back_poisson_and_bad_input(frames, aligned):
    crops, aligns, masks = aligned
    (same,) = _result(PasteBack().paste(frames, crops, aligns, mode="poisson", feather_px=4.0, crop_masks=masks))
    assert _psnr(same, frames, torch.ones(same.shape[:3], dtype=torch.bool)) > 40.0
    out = PasteBack().paste(frames, crops, aligns, crop_masks=torch.zeros_like(masks))
    assert torch.equal(_result(out)[0], frames) and "passed through" in _text(out)
    with pytest.raises(InputError, match="crop 0 is 128x128 but its alignment is for 256x256"):
        PasteBack().paste(frames, crops[:, :128, :128], aligns)
    with pytest.raises(InputError, match="1 alignments for 2 crops"):
        PasteBack().paste(frames, crops, aligns[:1])
    with pytest.raises(InputError, match="'crop_masks' is 10x10"):
        PasteBack().paste(frames, crops, aligns, crop_masks=torch.ones((2, 10, 10)))
    nan = crops.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="'crops' contains NaN"):
        PasteBack().paste(frames, nan, aligns)


def test_crops_find_their_frames(aligned):
    _, aligns, _ = aligned
    shifted = [dataclasses.replace(a, frame=a.frame + 1001) for a in aligns]
    assert crop_frame_indices(aligns, 2) == [0, 1]
    assert crop_frame_indices(shifted, 2) == [0, 1]  # every frame has a crop: in order
    seq = types.SimpleNamespace(frames=(1000, 1001, 1002))
    assert crop_frame_indices(shifted[1:], 3, seq) == [2]
    with pytest.raises(InputError, match="cannot be matched"):
        crop_frame_indices(shifted[1:], 3)
    with pytest.raises(InputError, match="does not hold"):
        crop_frame_indices(shifted, 3, types.SimpleNamespace(frames=(1, 2, 3)))


# ------------------------------------------------------------------------------------------ graph
def test_the_chain_as_a_graph(data, mirror):
    still = str(data / "stills" / "s33.jpg")
    graph = {
        "1": {"class_type": "FacegraphLoadImage", "inputs": {"path": still}},
        "2": {"class_type": "FacegraphDetectFaces", "inputs": {"images": ["1", 0], "max_faces": 1}},
        "3": {"class_type": "FacegraphAlignFaces", "inputs": {"images": ["1", 0], "faces": ["2", 0],
                                                              "template": "ffhq_512", "size": 128}},
        "4": {"class_type": "FacegraphColourMatch", "inputs": {"source": ["3", 0], "target": ["1", 0],
                                                               "source_mask": ["3", 2], "strength": 0.5,
                                                               "method": "histogram", "space": "log"}},
        "5": {"class_type": "FacegraphPasteBack", "inputs": {"frames": ["1", 0], "crops": ["4", 0],
                                                             "alignments": ["3", 1], "crop_masks": ["3", 2],
                                                             "mode": "over", "feather_px": 4.0}},
        "6": {"class_type": "FacegraphPoissonBlend", "inputs": {"source": ["5", 0], "target": ["1", 0],
                                                                "mask": ["1", 1], "guidance": "mixed",
                                                                "margin": 4}},
    }
    run = Runner({**NODE_CLASSES, **{k: v[0] for k, v in NODES.items()}}).run(graph)
    assert run.order[-1] == "6" and tuple(run.outputs["6"][0].shape) == (1, 512, 512, 3)
    assert "histogram in log" in run.ui["4"]["text"][0] and "1 crop(s) pasted" in run.ui["5"]["text"][0]
    assert bool(torch.isfinite(run.outputs["6"][0]).all())
