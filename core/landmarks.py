"""Landmark maths: crop regions, point schemes and their mappings, heatmap decoding, error metrics.

Conventions: pixel-area coordinates (core.conventions); ``Roi.crop_from_frame`` maps frame pixels to model
input pixels; networks' outputs are mapped back with its inverse.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np

from .errors import EstimationError, InputError
from .geometry import invert_affine, transform_points


# --------------------------------------------------------------------------------------------- regions
@dataclasses.dataclass(frozen=True)
class Roi:
    """A square crop region in frame pixels: centre (x, y), side length, and rotation ``angle`` (radians)
    of the crop's x axis in the frame (x right, y down: positive turns clockwise on screen)."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def crop_from_frame(self, out_size: int | tuple[int, int]) -> np.ndarray:
        """2x3 affine frame -> crop pixels for a crop of ``out_size`` (w, h) (or a square side)."""
        ow, oh = (out_size, out_size) if isinstance(out_size, int) else out_size
        if self.size <= 0:
            raise EstimationError(f"empty crop region (size {self.size})")
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = np.array([ow, oh], np.float64) / self.size
        rot = np.array([[c, s], [-s, c]])  # frame -> roi axes: rotation by -angle
        a = rot * k[:, None]
        t = np.array([ow / 2, oh / 2]) - a @ np.array([self.cx, self.cy])
        return np.concatenate([a, t[:, None]], axis=1)

    def frame_from_crop(self, out_size: int | tuple[int, int]) -> np.ndarray:
        return invert_affine(self.crop_from_frame(out_size))

    def scaled(self, factor: float) -> "Roi":
        return dataclasses.replace(self, size=self.size * factor)


def rotation_of(p0: np.ndarray, p1: np.ndarray) -> float:
    """Angle (radians) of the vector p0 -> p1 in frame axes (0 when p1 is straight right of p0)."""
    d = np.asarray(p1, np.float64) - np.asarray(p0, np.float64)
    return float(np.arctan2(d[1], d[0]))


def roi_from_box(box: Sequence[float], *, scale: float = 1.5, shift: tuple[float, float] = (0.0, 0.0),
                 angle: float = 0.0) -> Roi:
    """Square region around a box (x0, y0, x1, y1): side = long side x ``scale``; centre moved by ``shift``
    (fractions of the side, along the ROI's own axes). MediaPipe: scale 1.5, square_long, rotation from the
    eyes (face_detection_front_detection_to_roi.pbtxt)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * scale
    c, s = np.cos(angle), np.sin(angle)
    cx = (x0 + x1) / 2 + side * (shift[0] * c - shift[1] * s)
    cy = (y0 + y1) / 2 + side * (shift[0] * s + shift[1] * c)
    return Roi(cx, cy, side, angle)


#: A face box in BlazeFace's framing from 5 keypoints: side = 2.48 x the eye-centre -> mouth-centre distance,
#: centre 0.49 of the way from the eye centre to the mouth centre. Calibrated against BlazeFace full-range boxes
#: on 66 unlabelled faces (stills and video frames; sd 0.18 and 0.07) by tests/golden/calibrate_mesh_roi.py.
MESH_BOX_PER_EYE_MOUTH = 2.48
MESH_CENTRE_ALONG = 0.49


def blaze_box_from_keypoints(keypoints: np.ndarray) -> tuple[float, float, float, float]:
    """A BlazeFace-framed square face box (x0, y0, x1, y1) from the 5 keypoints (detector independent)."""
    k = np.asarray(keypoints, np.float64)[:, :2]
    eyes, mouth = (k[0] + k[1]) / 2, (k[3] + k[4]) / 2
    d = float(np.linalg.norm(mouth - eyes))
    if d <= 0:
        raise EstimationError("keypoints are degenerate (eyes on the mouth)")
    c = eyes + MESH_CENTRE_ALONG * (mouth - eyes)
    h = MESH_BOX_PER_EYE_MOUTH * d / 2
    return (c[0] - h, c[1] - h, c[0] + h, c[1] + h)


def roi_from_points(points: np.ndarray, *, scale: float = 1.5, rotate_from: tuple[int, int] | None = None) -> Roi:
    """Square region from the axis-aligned bounds of ``points`` (long side x ``scale``), rotated by the
    vector points[a] -> points[b] when given (MediaPipe face_landmark_landmarks_to_roi: 33 -> 263, 1.5)."""
    p = np.asarray(points, np.float64)[:, :2]
    angle = rotation_of(p[rotate_from[0]], p[rotate_from[1]]) if rotate_from else 0.0
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    return roi_from_box((x0, y0, x1, y1), scale=scale, angle=angle)


def roi_from_segment(p0: np.ndarray, p1: np.ndarray, *, scale: float) -> Roi:
    """Square region centred on a segment, side = its length x ``scale``, x axis along it
    (MediaPipe iris_landmark_landmarks_to_roi: eye corners, scale 2.3)."""
    p0, p1 = np.asarray(p0, np.float64)[:2], np.asarray(p1, np.float64)[:2]
    c = (p0 + p1) / 2
    return Roi(float(c[0]), float(c[1]), float(np.linalg.norm(p1 - p0)) * scale, rotation_of(p0, p1))


def project_points(points: np.ndarray, frame_from_crop: np.ndarray) -> np.ndarray:
    """(K, 2|3) crop-pixel points -> frame pixels; z is scaled by the similarity scale."""
    return transform_points(frame_from_crop, points)


# --------------------------------------------------------------------------------------------- schemes
#: MediaPipe 478-point mesh -> iBUG 68: each iBUG point is one mesh vertex or the mean of two.
#: Source: PeizhiYan/Mediapipe_2_Dlib_Landmarks (mp2dlib.py, 2024), iBUG order 0-67. Its error against
#: human labels is measured by ``facegraph eval landmarks --model mediapipe_landmarker_v2`` (BENCHMARKS.md).
MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),                                   # jaw 0-16
    (70,), (63,), (105,), (66,), (107,),                                          # right brow 17-21
    (336,), (296,), (334,), (293,), (300,),                                       # left brow 22-26
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),         # nose 27-35
    (33,), (160,), (158,), (133,), (153,), (144,),                                # right eye 36-41
    (362,), (385,), (387,), (263,), (373,), (380,),                               # left eye 42-47
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),                            # outer lip, top 48-54
    (321,), (314,), (17,), (84,), (91,),                                          # outer lip, bottom 55-59
    (78,), (82,), (13,), (312,), (308,),                                          # inner lip, top 60-64
    (317,), (14,), (87,),                                                         # inner lip, bottom 65-67
)

#: MediaPipe eye-contour refinement: the iris model's 71 eye points -> mesh vertices, for the eye at mesh
#: vertices 33/133 ("left" in MediaPipe's naming, image left on a frontal face) and at 362/263.
#: Source: mediapipe/modules/face_landmark/tensors_to_face_landmarks_with_attention.pbtxt.
IRIS71_TO_MESH_LEFT: tuple[int, ...] = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
    156, 70, 63, 105, 66, 107, 55, 193)
IRIS71_TO_MESH_RIGHT: tuple[int, ...] = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417)
#: iris centre + 4 edge points in the 478-point mesh (same source)
IRIS5_LEFT: tuple[int, ...] = (468, 469, 470, 471, 472)
IRIS5_RIGHT: tuple[int, ...] = (473, 474, 475, 476, 477)
#: the eye-corner pairs that define each eye's crop (iris_tracking graph: 33/133 and 362/263)
EYE_CORNERS_LEFT = (33, 133)
EYE_CORNERS_RIGHT = (362, 263)
#: iBUG-68 regions (0-based)
IBUG68_REGIONS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)), "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)),
    "eyes": tuple(range(36, 48)), "mouth": tuple(range(48, 68)),
}


def mesh_to_ibug68(points: np.ndarray) -> np.ndarray:
    """(478|468, D) MediaPipe mesh points -> (68, D) iBUG points via :data:`MESH_TO_IBUG68`."""
    p = np.asarray(points)
    if len(p) < 468:
        raise InputError(f"mesh_to_ibug68 needs a 468/478-point mesh, got {len(p)} points")
    return np.stack([p[list(idx)].mean(0) for idx in MESH_TO_IBUG68]).astype(p.dtype)


def five_from_ibug68(points: np.ndarray) -> np.ndarray:
    """(68, 2+) -> (5, 2): eye centres, nose tip, mouth corners (the detectors' 5-point order)."""
    p = np.asarray(points, np.float64)[:, :2]
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


def five_from_mesh(points: np.ndarray) -> np.ndarray:
    """(478|468, 2+) -> (5, 2) via the iBUG-68 mapping."""
    return five_from_ibug68(mesh_to_ibug68(np.asarray(points)[:, :2]))


# -------------------------------------------------------------------------------------------- heatmaps
HeatmapMethod = Literal["soft_argmax", "argmax_quarter"]
HEATMAP_METHODS: tuple[str, ...] = ("soft_argmax", "argmax_quarter")


def decode_heatmaps(heatmaps: np.ndarray, *, method: str = "soft_argmax", temperature: float = 1.0,
                    normalise: str = "linear", window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (..., K, H, W) -> (points (..., K, 2) in heatmap pixels, pixel-area convention, and
    confidence (..., K)).

    soft_argmax: expectation of the pixel-centre grid under a normalised heatmap (integral regression, Sun
    et al. 2018); ``normalise`` = ``softmax`` (of heatmap / temperature: for logit maps), ``sigmoid`` (then
    divided by its sum: for models trained with sigmoid outputs) or ``linear`` (negatives clipped, divided by
    the sum: for Gaussian-target maps such as FAN's); ``window`` > 0 restricts the expectation to a
    (2 window + 1)^2 neighbourhood of the argmax (robust to a second mode and to background noise).
    argmax_quarter: the classic FAN / HRNet decoding: argmax, then a quarter-pixel step towards the larger
    neighbour in x and in y.
    Confidence: the heatmap's maximum (after sigmoid when ``normalise`` is ``sigmoid``).
    """
    hm = np.asarray(heatmaps, np.float64)
    if hm.ndim < 3:
        raise InputError(f"heatmaps must be (..., K, H, W), got {hm.shape}")
    lead, (h, w) = hm.shape[:-2], hm.shape[-2:]
    flat = hm.reshape(-1, h * w)
    idx = flat.argmax(1)
    iy, ix = np.divmod(idx, w)
    if method == "argmax_quarter":
        grid = flat.reshape(-1, h, w)
        n = np.arange(len(grid))
        dx = np.where((ix > 0) & (ix < w - 1),
                      np.sign(grid[n, iy, np.minimum(ix + 1, w - 1)] - grid[n, iy, np.maximum(ix - 1, 0)]), 0)
        dy = np.where((iy > 0) & (iy < h - 1),
                      np.sign(grid[n, np.minimum(iy + 1, h - 1), ix] - grid[n, np.maximum(iy - 1, 0), ix]), 0)
        pts = np.stack([ix + 0.5 + 0.25 * dx, iy + 0.5 + 0.25 * dy], -1)
        conf = flat.max(1)
    elif method == "soft_argmax":
        if normalise == "softmax":
            z = flat / max(temperature, 1e-6)
            p = np.exp(z - z.max(1, keepdims=True))
            conf = flat.max(1)
        elif normalise == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-flat / max(temperature, 1e-6)))
            conf = p.max(1)
        elif normalise == "linear":
            p = np.clip(flat, 0, None)
            conf = flat.max(1)
        else:
            raise InputError(f"normalise must be softmax, sigmoid or linear, got {normalise!r}")
        if window > 0:
            ys, xs = np.divmod(np.arange(h * w), w)
            mask = (np.abs(xs[None] - ix[:, None]) <= window) & (np.abs(ys[None] - iy[:, None]) <= window)
            p = p * mask
        p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
        ys, xs = np.divmod(np.arange(h * w), w)
        pts = np.stack([p @ (xs + 0.5), p @ (ys + 0.5)], -1)
    else:
        raise InputError(f"heatmap method must be one of {HEATMAP_METHODS}, got {method!r}")
    return pts.reshape(*lead, 2).astype(np.float32), conf.reshape(lead).astype(np.float32)


# --------------------------------------------------------------------------------------------- metrics
def nme(pred: np.ndarray, gt: np.ndarray, norm: float, points: Sequence[int] | None = None) -> float:
    """Mean point-to-point distance / ``norm`` (over ``points`` when given)."""
    p, g = np.asarray(pred, np.float64)[:, :2], np.asarray(gt, np.float64)[:, :2]
    if points is not None:
        p, g = p[list(points)], g[list(points)]
    return float(np.linalg.norm(p - g, axis=1).mean() / norm)


def box_norm(gt: np.ndarray) -> float:
    """sqrt(w h) of the box bounding the ground-truth points (the AFLW2000-3D protocol)."""
    g = np.asarray(gt, np.float64)[:, :2]
    w, h = g.max(0) - g.min(0)
    return float(np.sqrt(w * h))


def interocular_norm(gt68: np.ndarray) -> float:
    """Outer eye-corner distance, points 36 and 45 (the 300-W protocol)."""
    g = np.asarray(gt68, np.float64)
    return float(np.linalg.norm(g[36, :2] - g[45, :2]))


def read_pts(path) -> np.ndarray:
    """An iBUG ``.pts`` file -> (N, 2) float64 in the file's own units (0-based pixel indices for the sets
    in ../shared/data: convert with core.conventions.from_index_coords)."""
    lines = open(path).read().split("{", 1)[1].split("}", 1)[0].split()
    return np.asarray(lines, np.float64).reshape(-1, 2)
