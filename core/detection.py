"""Face detection maths: input geometry, per-family decoders, NMS, tiling and rotated passes.

Each decoder turns one image's raw network outputs into :class:`Detections` in *network input pixels*
(conventions: pixel-area coordinates, boxes x0, y0, x1, y1). The wrapper then maps them back to the frame with
the inverse of the ``net_from_frame`` affine it used to build the input, so letterboxing, tiling and
rotated passes all share one code path.

Keypoint order (5): subject's right eye, left eye, nose tip, right mouth corner, left mouth corner (the
insightface / YuNet / RetinaFace / YOLOv5-face order). BlazeFace gives 6 other points (eyes, nose, mouth
centre, ears), kept as ``blaze6``.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .errors import InputError
from .geometry import as_affine, invert_affine, transform_points


@dataclasses.dataclass(frozen=True)
class Detections:
    """Candidate faces of one image. boxes (N, 4) float32 x0, y0, x1, y1; scores (N,) in [0, 1];
    keypoints (N, K, 2) float32 or None; ``scheme`` names the keypoint set (``five``, ``blaze6``)."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None
    scheme: str = "five"

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, idx: np.ndarray) -> "Detections":
        return Detections(self.boxes[idx], self.scores[idx],
                          None if self.keypoints is None else self.keypoints[idx], self.scheme)

    @staticmethod
    def empty(scheme: str = "five", k: int | None = 5) -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          None if k is None else np.zeros((0, k, 2), np.float32), scheme)

    def transformed(self, m: np.ndarray) -> "Detections":
        """Map through a 2x3 affine; boxes become the axis-aligned bounds of their mapped corners."""
        if len(self) == 0:
            return self
        x0, y0, x1, y1 = self.boxes.T
        corners = np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x1, y1], -1),
                            np.stack([x0, y1], -1)], 1)
        c = transform_points(m, corners)
        boxes = np.concatenate([c.min(1), c.max(1)], -1).astype(np.float32)
        kps = None if self.keypoints is None else transform_points(m, self.keypoints).astype(np.float32)
        return Detections(boxes, self.scores, kps, self.scheme)

    @staticmethod
    def concat(items: Sequence["Detections"]) -> "Detections":
        items = [d for d in items if len(d)]
        if not items:
            return Detections.empty()
        kps = None if any(d.keypoints is None for d in items) else np.concatenate([d.keypoints for d in items])
        return Detections(np.concatenate([d.boxes for d in items]), np.concatenate([d.scores for d in items]),
                          kps, items[0].scheme)


# ----------------------------------------------------------------------------------------------- geometry
def fit_input(frame_size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """Letterbox: the ``net_from_frame`` affine that scales a (w, h) frame uniformly to fit ``target`` (w, h),
    anchored top-left (padding goes right/bottom, so no offset needs undoing)."""
    w, h = frame_size
    s = min(target[0] / w, target[1] / h)
    return np.array([[s, 0, 0], [0, s, 0]], dtype=np.float64)


def stretch_input(frame_size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """The affine of a plain resize to ``target`` (aspect not kept), for models trained that way."""
    return np.array([[target[0] / frame_size[0], 0, 0], [0, target[1] / frame_size[1], 0]], dtype=np.float64)


def dynamic_input_size(frame_size: tuple[int, int], longest: int, stride: int = 32) -> tuple[int, int]:
    """Input (w, h) for a fully convolutional model: longest side ``longest``, both sides multiples of
    ``stride`` (rounded up), aspect kept."""
    w, h = frame_size
    s = longest / max(w, h)
    return (max(stride, int(np.ceil(w * s / stride)) * stride), max(stride, int(np.ceil(h * s / stride)) * stride))


def rotation_about_centre(frame_size: tuple[int, int], quarter_turns: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(rotated_from_frame affine, rotated size) for a clockwise rotation by 90 degrees x ``quarter_turns``."""
    w, h = frame_size
    k = quarter_turns % 4
    if k == 0:
        return np.array([[1, 0, 0], [0, 1, 0]], np.float64), (w, h)
    if k == 1:  # (x, y) -> (h - y, x)
        return np.array([[0, -1, h], [1, 0, 0]], np.float64), (h, w)
    if k == 2:
        return np.array([[-1, 0, w], [0, -1, h]], np.float64), (w, h)
    return np.array([[0, 1, 0], [-1, 0, w]], np.float64), (h, w)


def tiles(frame_size: tuple[int, int], tile: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x0, y0, x1, y1) covering the frame; a face smaller than ``overlap * tile``
    lies wholly inside at least one tile."""
    w, h = frame_size
    if tile <= 0 or (w <= tile and h <= tile):
        return [(0, 0, w, h)]
    step = max(1, int(tile * (1 - overlap)))

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, step)) + [n - tile]
        return sorted(set(s))

    return [(x, y, min(w, x + tile), min(h, y + tile)) for y in starts(h) for x in starts(w)]


# -------------------------------------------------------------------------------------------------- NMS
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x0, y0, x1, y1 boxes."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    boxes = np.asarray(boxes, np.float64)
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def weighted_nms(det: Detections, iou_threshold: float = 0.3) -> Detections:
    """MediaPipe's blending suppression: each kept face is the score-weighted mean of its overlapping
    candidates (steadier boxes and keypoints than greedy NMS)."""
    if len(det) == 0:
        return det
    order = np.argsort(-det.scores, kind="stable")
    boxes, kps, scores = [], [], []
    remaining = order
    while remaining.size:
        i = remaining[0]
        ious = box_iou(det.boxes[i:i + 1], det.boxes[remaining])[0]
        group = remaining[ious > iou_threshold]
        w = det.scores[group].astype(np.float64)
        w = w / w.sum()
        boxes.append((det.boxes[group] * w[:, None]).sum(0))
        if det.keypoints is not None:
            kps.append((det.keypoints[group] * w[:, None, None]).sum(0))
        scores.append(det.scores[i])
        remaining = remaining[ious <= iou_threshold]
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      np.asarray(kps, np.float32) if det.keypoints is not None else None, det.scheme)


@dataclasses.dataclass(frozen=True)
class DetectOptions:
    """score_threshold: minimum confidence; iou_threshold: NMS overlap; max_faces: keep the best N (0 = all);
    min_size: drop faces whose box is smaller (frame pixels, max side); input_size: longest input side for
    dynamic models (0 = the model's default); tile: tile size in frame pixels for small faces in large
    frames (0 = off); rotations: extra passes at 90/180/270 degrees clockwise for rolled heads."""

    score_threshold: float = 0.6
    iou_threshold: float = 0.4
    max_faces: int = 0
    min_size: float = 0.0
    input_size: int = 0
    tile: int = 0
    tile_overlap: float = 0.25
    rotations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InputError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise InputError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        bad = [r for r in self.rotations if r not in (90, 180, 270)]
        if bad:
            raise InputError(f"rotations must be among 90, 180, 270, got {bad}")


def finalize(det: Detections, options: DetectOptions, frame_size: tuple[int, int]) -> Detections:
    """Threshold, NMS, minimum size, clip to the frame, best-first, max_faces."""
    keep = det.scores >= options.score_threshold
    det = det.take(np.flatnonzero(keep))
    if len(det) == 0:
        return det
    det = det.take(nms(det.boxes, det.scores, options.iou_threshold))
    if options.min_size > 0:
        size = np.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
        det = det.take(np.flatnonzero(size >= options.min_size))
    w, h = frame_size
    boxes = det.boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    det = Detections(boxes, det.scores, det.keypoints, det.scheme)
    if options.max_faces > 0:
        det = det.take(np.arange(min(len(det), options.max_faces)))
    return det


# ---------------------------------------------------------------------------------------------- decoders
def _grid(w: int, h: int, stride: int, repeats: int = 1) -> np.ndarray:
    """(H/s * W/s * repeats, 2) cell origins (x, y) in input pixels, row-major, each repeated ``repeats``."""
    ys, xs = np.mgrid[0: h // stride, 0: w // stride]
    pts = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32) * stride
    return np.repeat(pts, repeats, axis=0) if repeats > 1 else pts


def decode_yunet(outputs: dict[str, np.ndarray], input_size: tuple[int, int],
                 strides: Sequence[int] = (8, 16, 32)) -> Detections:
    """YuNet (libfacedetection.train 2023 heads, as decoded by OpenCV's FaceDetectorYN): per stride s and
    cell (c, r): score = sqrt(cls * obj); centre ((c + dx) s, (r + dy) s); size (exp(dw) s, exp(dh) s);
    keypoint k at ((c + kx) s, (r + ky) s). outputs: {"cls_8": (N, 1), "obj_8", "bbox_8": (N, 4),
    "kps_8": (N, 10), ...} for one image."""
    w, h = input_size
    boxes, scores, kps = [], [], []
    for s in strides:
        cells = _grid(w, h, s)
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
        bb = outputs[f"bbox_{s}"].reshape(-1, 4)
        kp = outputs[f"kps_{s}"].reshape(-1, 5, 2)
        n = min(len(cells), len(cls))
        cells, cls, obj, bb, kp = cells[:n], cls[:n], obj[:n], bb[:n], kp[:n]
        centre = cells + bb[:, :2] * s
        size = np.exp(np.clip(bb[:, 2:], -10, 10)) * s
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], -1))
        scores.append(np.sqrt(cls * obj))
        kps.append(cells[:, None, :] + kp * s)
    return Detections(np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                      np.concatenate(kps).astype(np.float32))


def decode_scrfd(outputs: dict[str, np.ndarray], input_size: tuple[int, int],
                 strides: Sequence[int] = (8, 16, 32), anchors_per_cell: int = 2) -> Detections:
    """SCRFD / insightface RetinaFace heads (insightface ``scrfd.py``): anchor centres at cell origins,
    ``anchors_per_cell`` per cell; box = centre -/+ distances * stride; keypoints = centre + offsets * stride;
    scores already sigmoid. outputs: {"score_8": (N, 1), "bbox_8": (N, 4), "kps_8": (N, 10), ...}."""
    w, h = input_size
    boxes, scores, kps = [], [], []
    for s in strides:
        centres = _grid(w, h, s, anchors_per_cell)
        d = outputs[f"bbox_{s}"].reshape(-1, 4) * s
        boxes.append(np.concatenate([centres - d[:, :2], centres + d[:, 2:]], -1))
        scores.append(outputs[f"score_{s}"].reshape(-1))
        if f"kps_{s}" in outputs:
            kps.append(centres[:, None, :] + outputs[f"kps_{s}"].reshape(-1, 5, 2) * s)
    return Detections(np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                      np.concatenate(kps).astype(np.float32) if kps else None)


def retinaface_priors(input_size: tuple[int, int], steps: Sequence[int] = (8, 16, 32),
                      min_sizes: Sequence[Sequence[int]] = ((16, 32), (64, 128), (256, 512))) -> np.ndarray:
    """SSD priors (cx, cy, w, h) normalised to the input, as in biubug6/Pytorch_Retinaface ``PriorBox``
    (feature maps ceil(size / step), centres at (j + 0.5) step)."""
    w, h = input_size
    out = []
    for step, sizes in zip(steps, min_sizes):
        fh, fw = int(np.ceil(h / step)), int(np.ceil(w / step))
        ys, xs = np.mgrid[0:fh, 0:fw]
        cx = ((xs.ravel() + 0.5) * step / w)[:, None]
        cy = ((ys.ravel() + 0.5) * step / h)[:, None]
        per = [np.concatenate([cx, cy, np.full_like(cx, m / w), np.full_like(cy, m / h)], 1) for m in sizes]
        out.append(np.stack(per, 1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode_retinaface(loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, input_size: tuple[int, int],
                      variance: tuple[float, float] = (0.1, 0.2)) -> Detections:
    """biubug6 RetinaFace: loc (N, 4), conf (N, 2) softmaxed (face = column 1), landmarks (N, 10) encoded
    against :func:`retinaface_priors` with the SSD variances."""
    w, h = input_size
    p = retinaface_priors(input_size)
    n = min(len(p), len(loc))
    p, loc, conf, landmarks = p[:n], loc[:n], conf[:n], landmarks[:n]
    centre = p[:, :2] + loc[:, :2] * variance[0] * p[:, 2:]
    size = p[:, 2:] * np.exp(np.clip(loc[:, 2:] * variance[1], -10, 10))
    scale = np.array([w, h], np.float32)
    boxes = np.concatenate([(centre - size / 2) * scale, (centre + size / 2) * scale], -1)
    kps = (p[:, None, :2] + landmarks.reshape(-1, 5, 2) * variance[0] * p[:, None, 2:]) * scale
    return Detections(boxes.astype(np.float32), conf[:, 1].astype(np.float32), kps.astype(np.float32))


def decode_yolo5face(output: np.ndarray) -> Detections:
    """YOLOv5-face export with decoding inside: rows (cx, cy, w, h, obj, 5 x (x, y), cls) in input pixels;
    score = obj * cls."""
    cx, cy, bw, bh = output[:, 0], output[:, 1], output[:, 2], output[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
    return Detections(boxes.astype(np.float32), (output[:, 4] * output[:, 15]).astype(np.float32),
                      output[:, 5:15].reshape(-1, 5, 2).astype(np.float32))


def decode_ultraface(scores: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int]) -> Detections:
    """Ultra-Light-Fast detector export: scores (N, 2) softmaxed, boxes (N, 4) corners normalised to [0, 1]."""
    w, h = input_size
    return Detections((boxes * np.array([w, h, w, h], np.float32)).astype(np.float32),
                      scores[:, 1].astype(np.float32), None, "none")


def blazeface_anchors(input_size: int, strides: Sequence[int], anchors_per_cell: Sequence[int]) -> np.ndarray:
    """SSD anchor centres (N, 2) normalised to [0, 1], as MediaPipe's SsdAnchorsCalculator makes them with
    fixed_anchor_size and anchor_offset 0.5 (face_detection_short_range: strides 8, 16, 16, 16 with 2 anchors
    per layer merged per feature map; full range: stride 4, 1 anchor)."""
    out = []
    for stride, n in zip(strides, anchors_per_cell):
        fm = int(np.ceil(input_size / stride))
        ys, xs = np.mgrid[0:fm, 0:fm]
        c = np.stack([(xs.ravel() + 0.5) / fm, (ys.ravel() + 0.5) / fm], -1)
        out.append(np.repeat(c, n, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode_blazeface(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int) -> Detections:
    """MediaPipe TensorsToDetections with x/y/w/h scale = input size: centre = raw / size + anchor; size =
    raw / size; 6 keypoints = raw / size + anchor; score = sigmoid(clip(logit, -100, 100)). Returns input
    pixels."""
    r = regressors.reshape(len(anchors), -1).astype(np.float64) / input_size
    centre = r[:, :2] + anchors
    size = r[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1) * input_size
    kps = (r[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * input_size
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    return Detections(boxes.astype(np.float32), scores.astype(np.float32), kps.astype(np.float32), "blaze6")


def map_to_frame(det: Detections, net_from_frame: np.ndarray) -> Detections:
    return det.transformed(invert_affine(as_affine(net_from_frame)))
