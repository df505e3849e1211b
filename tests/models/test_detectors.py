"""Every registered, mirrored detector on real photos (../shared/data)."""
import numpy as np
import pytest

from facegraph.core.detection import DetectOptions, box_iou
from facegraph.models.loader import load_model, runnable_ids
from facegraph.models.registry import registry
from facegraph.plugin.evaluate import dlib_boxes, view_of

pytestmark = pytest.mark.shared
DETECTORS = [i for i in runnable_ids("detect") if all(f.sha256 for f in registry().get(i).files)]


@pytest.fixture(scope="module")
def group(data):
    """A PASCAL photo with 7 labelled faces."""
    boxes = dlib_boxes(data / "boxes")
    return view_of(data / "boxes" / "2008_004176.jpg"), boxes["2008_004176.jpg"]


SHORT_RANGE = {"blazeface_short"}  # MediaPipe's short-range model is for faces within ~2 m (selfies)


@pytest.mark.parametrize("model_id", [d for d in DETECTORS if d not in SHORT_RANGE])
def test_detector_finds_the_labelled_faces(model_id, group):
    view, gt = group
    found = load_model(model_id).detect([view], DetectOptions(score_threshold=0.5))[0]
    hits = (box_iou(gt, found.boxes).max(1) >= 0.5).sum() if len(found) else 0
    assert hits >= len(gt) - 1, f"{model_id}: {hits}/{len(gt)}"
    assert np.all(found.scores[:-1] >= found.scores[1:])  # best first
    if registry().get(model_id).family in ("yunet", "scrfd", "retinaface", "yolo5face"):
        # keypoints lie in their boxes: right eye left of left eye, eyes above the mouth
        k, b = found.keypoints[0], found.boxes[0]
        assert (k[:, 0] >= b[0] - 2).all() and (k[:, 0] <= b[2] + 2).all()
        assert k[0, 0] < k[1, 0] and k[0, 1] < k[3, 1]


@pytest.mark.parametrize("model_id", sorted(SHORT_RANGE))
def test_short_range_detector_on_a_close_up(model_id, data):
    view = view_of(data / "stills" / "s0.jpg")
    found = load_model(model_id).detect([view], DetectOptions(score_threshold=0.5))[0]
    ref = load_model("yunet_n").detect([view])[0]
    assert len(found) == 1 and box_iou(found.boxes, ref.boxes)[0, 0] > 0.5
    assert found.scheme == "blaze6" and found.keypoints.shape == (1, 6, 2)


def test_batch_equals_single_and_rotated_passes(data):
    det = load_model("yunet_n")
    v = view_of(data / "stills" / "s0.jpg")
    single = det.detect([v])[0]
    batch = det.detect([v, v])
    assert np.allclose(batch[1].boxes, single.boxes, atol=1e-3)
    rolled = np.ascontiguousarray(np.rot90(v, 1))  # the head lies on its side
    plain = det.detect([rolled], DetectOptions(score_threshold=0.7))[0]
    turned = det.detect([rolled], DetectOptions(score_threshold=0.7, rotations=(90, 270)))[0]
    assert len(turned) >= 1 and turned.scores[0] > (plain.scores[0] if len(plain) else 0)


def test_tiling_finds_small_faces_in_a_large_frame(data):
    import cv2

    det = load_model("yunet_n")
    v = view_of(data / "boxes" / "2008_002470.jpg")
    big = np.zeros((1600, 2400, 3), np.float32)
    small = cv2.resize(v, (v.shape[1] // 2, v.shape[0] // 2), interpolation=cv2.INTER_AREA)  # faces ~20 px
    big[700:700 + small.shape[0], 1000:1000 + small.shape[1]] = small
    plain = det.detect([big], DetectOptions(score_threshold=0.5))[0]
    tiled = det.detect([big], DetectOptions(score_threshold=0.5, tile=640))[0]
    assert len(tiled) > len(plain)


def test_detect_views_on_linear_frames_batched_and_as_before(data):
    """The linear frame path: the detector's input is resized from the linear frames and toned at its own
    size; a batch gives each frame's single result, and the faces match the old full-resolution view's."""
    import torch

    from facegraph.core.colour import FrameViews, network_view
    from facegraph.core.io.images import read_image

    det = load_model("yunet_n")
    px, _ = read_image(data / "stills" / "s0.jpg")
    a, b = px[..., :3] * np.float32(0.25), np.ascontiguousarray(px[:, ::-1, :3])
    views = FrameViews([torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)])
    batch = det.detect_views(views)
    for i, x in enumerate((a, b)):
        single = det.detect_views(views.subset([i]))[0]
        assert np.allclose(batch[i].boxes, single.boxes, atol=1e-3)
        old = det.detect([network_view(x)])[0]
        assert len(old) == len(single) == 1
        assert np.abs(old.boxes - single.boxes).max() < 1.0 and abs(old.scores[0] - single.scores[0]) < 0.01


@pytest.mark.parametrize("size, shrink", [((64, 36), True), ((50, 31), True), ((300, 170), False)])
def test_resize_frame_paths_agree(size, shrink, device):
    import torch

    from facegraph.models.detectors import resize_frame

    g = torch.Generator().manual_seed(3)
    img = torch.rand((4, 108, 192), generator=g) * 3
    ref = resize_frame(img.permute(1, 2, 0).contiguous().permute(2, 0, 1), size, shrink=shrink, backend="cv2")
    got = resize_frame(img.to(device), size, shrink=shrink, backend="torch")
    assert got.shape == (4, size[1], size[0]) and got.device == img.to(device).device
    diff = (got.cpu() - ref).abs().max().item()
    # bilinear and whole-number area factors agree; other area factors differ in their weights
    assert diff < (1e-4 if not shrink or 192 % size[0] == 0 else 0.6), diff
