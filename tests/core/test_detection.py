import numpy as np
import pytest

from facegraph.core.detection import (Detections, DetectOptions, blazeface_anchors, box_iou, decode_blazeface,
                                      decode_retinaface, decode_scrfd, decode_ultraface, decode_yolo5face,
                                      decode_yunet, dynamic_input_size, finalize, fit_input, map_to_frame, nms,
                                      retinaface_priors, rotation_about_centre, tiles, weighted_nms)
from facegraph.core.errors import InputError
from facegraph.core.geometry import transform_points


def test_yunet_decodes_a_known_cell():
    w, h = 64, 64
    out = {}
    for s in (8, 16, 32):
        n = (w // s) * (h // s)
        out[f"cls_{s}"] = np.zeros((n, 1))
        out[f"obj_{s}"] = np.zeros((n, 1))
        out[f"bbox_{s}"] = np.zeros((n, 4))
        out[f"kps_{s}"] = np.zeros((n, 10))
    # stride 16, cell (c=2, r=1): index r * 4 + c = 6
    out["cls_16"][6], out["obj_16"][6] = 0.81, 1.0
    out["bbox_16"][6] = [0.5, 0.25, np.log(2.0), np.log(3.0)]
    out["kps_16"][6, :2] = [0.1, 0.2]
    det = decode_yunet(out, (w, h))
    i = int(np.argmax(det.scores))
    assert det.scores[i] == pytest.approx(0.9)
    cx, cy = (2 + 0.5) * 16, (1 + 0.25) * 16
    assert np.allclose(det.boxes[i], [cx - 16, cy - 24, cx + 16, cy + 24])
    assert np.allclose(det.keypoints[i, 0], [(2 + 0.1) * 16, (1 + 0.2) * 16])


def test_scrfd_distances_and_two_anchors_per_cell():
    w = h = 32
    out = {f"score_{s}": np.zeros(((w // s) * (h // s) * 2, 1)) for s in (8, 16, 32)}
    out.update({f"bbox_{s}": np.zeros(((w // s) * (h // s) * 2, 4)) for s in (8, 16, 32)})
    out.update({f"kps_{s}": np.zeros(((w // s) * (h // s) * 2, 10)) for s in (8, 16, 32)})
    k = (1 * 4 + 3) * 2 + 1  # stride 8, cell (x=3, y=1), second anchor
    out["score_8"][k] = 0.9
    out["bbox_8"][k] = [1, 2, 3, 4]
    det = decode_scrfd(out, (w, h))
    i = int(np.argmax(det.scores))
    assert np.allclose(det.boxes[i], [24 - 8, 8 - 16, 24 + 24, 8 + 32])
    assert np.allclose(det.keypoints[i], [[24, 8]] * 5)


def test_retinaface_priors_and_decoding():
    p = retinaface_priors((64, 32))
    assert len(p) == (8 * 4 + 4 * 2 + 2 * 1) * 2
    assert np.allclose(p[0], [4 / 64, 4 / 32, 16 / 64, 16 / 32])
    loc = np.zeros((len(p), 4))
    conf = np.tile([1.0, 0.0], (len(p), 1))
    conf[1] = [0.1, 0.9]
    det = decode_retinaface(loc, conf, np.zeros((len(p), 10)), (64, 32))
    assert det.scores[1] == pytest.approx(0.9)
    assert np.allclose(det.boxes[1], [4 - 16, 4 - 16, 4 + 16, 4 + 16])  # second prior: min size 32 at (4, 4)


def test_yolo5face_and_ultraface():
    row = np.zeros((1, 16))
    row[0, :5] = [50, 40, 20, 30, 0.5]
    row[0, 15] = 0.8
    row[0, 5:15] = np.arange(10)
    d = decode_yolo5face(row)
    assert np.allclose(d.boxes[0], [40, 25, 60, 55]) and d.scores[0] == pytest.approx(0.4)
    assert np.allclose(d.keypoints[0, 2], [4, 5])
    u = decode_ultraface(np.array([[0.3, 0.7]]), np.array([[0.1, 0.2, 0.5, 0.6]]), (320, 240))
    assert np.allclose(u.boxes[0], [32, 48, 160, 144]) and u.keypoints is None


def test_blazeface_anchor_counts_and_decoding():
    assert len(blazeface_anchors(128, (8, 16), (2, 6))) == 896
    assert len(blazeface_anchors(192, (4,), (1,))) == 2304
    a = blazeface_anchors(128, (8, 16), (2, 6))
    raw = np.zeros((896, 16))
    raw[10, :4] = [12.8, -6.4, 32, 64]
    logits = np.full(896, -50.0)
    logits[10] = 2.0
    d = decode_blazeface(raw, logits, a, 128)
    cx, cy = a[10] * 128 + [12.8, -6.4]
    assert np.allclose(d.boxes[10], [cx - 16, cy - 32, cx + 16, cy + 32], atol=1e-4)
    assert d.scores[10] == pytest.approx(1 / (1 + np.exp(-2)))
    assert d.keypoints.shape == (896, 6, 2) and d.scheme == "blaze6"


def test_nms_and_weighted_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    scores = np.array([0.8, 0.9, 0.7])
    assert list(nms(boxes, scores, 0.4)) == [1, 2]
    w = weighted_nms(Detections(boxes.astype(np.float32), scores.astype(np.float32)), 0.3)
    assert len(w) == 2
    assert np.allclose(w.boxes[0], (boxes[0] * 0.8 + boxes[1] * 0.9) / 1.7, atol=1e-5)
    assert box_iou(boxes[:1], boxes[:1])[0, 0] == pytest.approx(1.0)


def test_letterbox_and_dynamic_sizes():
    assert dynamic_input_size((1920, 1080), 640) == (640, 384)
    m = fit_input((1920, 1080), (320, 320))
    assert np.allclose(transform_points(m, [[1920, 1080]]), [[320, 180]])


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_rotations_round_trip(turns):
    m, size = rotation_about_centre((40, 30), turns)
    assert size == ((40, 30) if turns % 2 == 0 else (30, 40))
    corners = np.array([[0, 0], [40, 30]], float)
    mapped = transform_points(m, corners)
    assert mapped.min() >= 0 and np.all(mapped.max(0) <= size)
    d = Detections(np.array([[5, 6, 15, 20]], np.float32), np.array([0.9], np.float32),
                   np.array([[[7, 8]] * 5], np.float32))
    back = map_to_frame(d.transformed(m), m)
    assert np.allclose(back.boxes, d.boxes, atol=1e-4) and np.allclose(back.keypoints, d.keypoints, atol=1e-4)


def test_tiles_cover_the_frame_with_overlap():
    t = tiles((1000, 600), 512, 0.25)
    cover = np.zeros((600, 1000), bool)
    for x0, y0, x1, y1 in t:
        assert x1 - x0 <= 512 and y1 - y0 <= 512
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert tiles((300, 200), 512) == [(0, 0, 300, 200)]


def test_finalize_thresholds_sorts_clips_and_limits():
    d = Detections(np.array([[-5, 0, 10, 10], [0, 0, 4, 4], [20, 20, 90, 90]], np.float32),
                   np.array([0.9, 0.95, 0.7], np.float32), None, "none")
    out = finalize(d, DetectOptions(score_threshold=0.8, min_size=8), (50, 50))
    assert len(out) == 1 and np.allclose(out.boxes[0], [0, 0, 10, 10])
    out = finalize(d, DetectOptions(score_threshold=0.5, max_faces=2), (100, 100))
    assert list(out.scores) == pytest.approx([0.95, 0.9])


def test_options_are_validated():
    with pytest.raises(InputError):
        DetectOptions(score_threshold=1.5)
    with pytest.raises(InputError):
        DetectOptions(rotations=(45,))
