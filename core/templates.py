"""Alignment templates: where a face's points go in an aligned crop, as normalised data.

Coordinates are fractions of the crop (x / width, y / height), pixel-area convention, so a template serves any
crop size: ``template_points(name, (w, h))``. Each constant cites its source; pixel-index sources are shifted
by half a pixel before normalising.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import InputError

# insightface python-package, utils/face_align.py ``arcface_dst`` for 112 x 112 crops (pixel indices):
# right eye, left eye, nose tip, right mouth corner, left mouth corner.
ARCFACE_112 = (np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]]) + 0.5) / 112.0

# FaceFusion face_helper.py WARP_TEMPLATES["ffhq_512"] (already normalised; FFHQ-style framing: more hair
# and chin than arcface).
FFHQ_512 = np.array([[0.37691676, 0.46864664], [0.62285697, 0.46912813], [0.50123859, 0.61331904],
                     [0.39308822, 0.72541100], [0.61150205, 0.72490465]])

# A frontal 68-point mean shape in the arcface_112 framing, derived from MediaPipe's canonical face mesh
# (Apache-2.0) by tests/golden/make_mean68.py (which regenerates this table).
MEAN68 = np.array([
    (0.10520, 0.48699), (0.10975, 0.57406), (0.11652, 0.66269), (0.14547, 0.80619),
    (0.18019, 0.89178), (0.24475, 0.97752), (0.29730, 1.01915), (0.38818, 1.06916),
    (0.50716, 1.09059), (0.62590, 1.06784), (0.71622, 1.01683), (0.76831, 0.97461),
    (0.83191, 0.88816), (0.87959, 0.75326), (0.89304, 0.65838), (0.89882, 0.56968),
    (0.90240, 0.48256), (0.20876, 0.38914), (0.24644, 0.36072), (0.29780, 0.34463),
    (0.36092, 0.34472), (0.43120, 0.34891), (0.57489, 0.34812), (0.64511, 0.34314),
    (0.70824, 0.34235), (0.75977, 0.35787), (0.79777, 0.38587), (0.50366, 0.45867),
    (0.50408, 0.53477), (0.50437, 0.58770), (0.50461, 0.63036), (0.45117, 0.68223),
    (0.47430, 0.71035), (0.50507, 0.71406), (0.53581, 0.71001), (0.55862, 0.68164),
    (0.27485, 0.47065), (0.31471, 0.45686), (0.36340, 0.45483), (0.40817, 0.47397),
    (0.36359, 0.48809), (0.31487, 0.48607), (0.59930, 0.47291), (0.64386, 0.45327),
    (0.69257, 0.45476), (0.73258, 0.46811), (0.69273, 0.48398), (0.64404, 0.48653),
    (0.37928, 0.83077), (0.43178, 0.78715), (0.46880, 0.77811), (0.50545, 0.78188),
    (0.54205, 0.77771), (0.57917, 0.78633), (0.63216, 0.82937), (0.60051, 0.85457),
    (0.54200, 0.87874), (0.50601, 0.88271), (0.46997, 0.87914), (0.41121, 0.85562),
    (0.39486, 0.82727), (0.47816, 0.81224), (0.50562, 0.81215), (0.53308, 0.81193),
    (0.61654, 0.82604), (0.53579, 0.83893), (0.50577, 0.84036), (0.47574, 0.83927),
])


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    points: np.ndarray   # (N, 2) normalised crop coordinates
    scheme: str          # "five" | "ibug68"
    source: str
    default_size: tuple[int, int]


def _shrink(points: np.ndarray, factor: float) -> np.ndarray:
    """Scale a normalised template about the crop centre (factor < 1 leaves a margin around the face)."""
    return (np.asarray(points) - 0.5) * factor + 0.5


TEMPLATES: dict[str, Template] = {
    "arcface_112": Template("arcface_112", ARCFACE_112, "five", "insightface arcface_dst", (112, 112)),
    "ffhq_512": Template("ffhq_512", FFHQ_512, "five", "FaceFusion WARP_TEMPLATES ffhq_512", (512, 512)),
    "mean68": Template("mean68", MEAN68, "ibug68", "MediaPipe canonical mesh via MESH_TO_IBUG68", (256, 256)),
    # compositing: the ffhq framing with a 1.6x wider view, so hair, ears, jaw line and neck stay in the crop
    # for paste-back and blending
    "compositing": Template("compositing", _shrink(FFHQ_512, 1 / 1.6), "five", "ffhq_512 shrunk 1/1.6",
                            (1024, 1024)),
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(TEMPLATES)


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise InputError(f"unknown template {name!r}", hint=f"templates: {', '.join(TEMPLATES)}") from None


def template_points(name: str, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Template points in pixels of a (w, h) crop; ``margin`` > 0 shrinks the face by 1 / (1 + margin)."""
    t = get_template(name)
    pts = _shrink(t.points, 1.0 / (1.0 + margin)) if margin else t.points
    return pts * np.asarray(size, np.float64)
