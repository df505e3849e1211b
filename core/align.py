"""Align faces to template crops and paste results back.

A face's points (5 keypoints, or 68 / mesh landmarks mapped to the template's scheme) are fitted to the template
by a weighted least-squares similarity in fp64 (``core.geometry.estimate_similarity``: rotation, uniform scale,
translation, never a reflection), optionally with RANSAC. The result is an :class:`~facegraph.core.types.Alignment`
holding ``crop_from_frame``; warps use the float frame as it is (no 8-bit), and paste-back uses the inverse.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import EstimationError, InputError
from .geometry import estimate_similarity, warp_affine
from .landmarks import five_from_ibug68, five_from_mesh, mesh_to_ibug68
from .templates import get_template, template_points
from .types import Alignment, Face

POINT_SOURCES: tuple[str, ...] = ("auto", "keypoints", "landmarks")


@dataclasses.dataclass(frozen=True)
class AlignOptions:
    """template: a name from core.templates; size: crop (w, h) (0 = the template's default); margin: extra
    room around the face (0.5 = the face 1/1.5 as large); points: which of the face's points to fit (auto:
    landmarks when their scheme matches or maps, else the 5 keypoints); ransac: inlier threshold in crop
    pixels (0 = off); max_rms: a fit worse than this (crop pixels) raises EstimationError (0 = never)."""

    template: str = "ffhq_512"
    size: tuple[int, int] = (0, 0)
    margin: float = 0.0
    points: str = "auto"
    ransac: float = 0.0
    max_rms: float = 0.0

    def __post_init__(self) -> None:
        get_template(self.template)
        if self.points not in POINT_SOURCES:
            raise InputError(f"points must be one of {POINT_SOURCES}, got {self.points!r}")
        if self.margin < 0 or self.margin > 4:
            raise InputError(f"margin must be in [0, 4], got {self.margin}")

    def crop_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.size) if min(self.size) > 0 else get_template(self.template).default_size


def face_points(face: Face, scheme: str, source: str = "auto") -> np.ndarray:
    """The face's points in ``scheme`` ("five" or "ibug68") frame pixels."""
    lm = face.landmarks
    if source in ("auto", "landmarks") and lm is not None:
        if lm.scheme.startswith("mediapipe"):
            p68 = mesh_to_ibug68(lm.xy)
            return five_from_mesh(lm.xy) if scheme == "five" else p68
        if lm.scheme == "ibug68":
            return five_from_ibug68(lm.xy) if scheme == "five" else np.asarray(lm.xy)
    if source == "landmarks":
        raise InputError(f"the face has no landmarks that map to {scheme}",
                         hint="run Face Landmarks first or align on keypoints")
    if scheme == "ibug68":
        raise InputError("a 68-point template needs 68-point or mesh landmarks on the face")
    if face.keypoints is None:
        raise InputError("the face has neither keypoints nor landmarks to align",
                         hint="use a detector with keypoints (YuNet, SCRFD, RetinaFace) or add landmarks")
    return np.asarray(face.keypoints, np.float64)


def align(face: Face, options: AlignOptions = AlignOptions(), *, frame: int = 0, face_index: int = -1) -> Alignment:
    """Fit the face to the template: returns the Alignment (crop_from_frame, crop size, template, rms).
    Raises EstimationError when the fit is degenerate or worse than ``max_rms``."""
    t = get_template(options.template)
    size = options.crop_size()
    dst = template_points(options.template, size, options.margin)
    src = face_points(face, t.scheme, options.points)
    fit = estimate_similarity(src, dst, ransac_threshold=options.ransac or None)
    if options.max_rms and fit.rms > options.max_rms:
        raise EstimationError(f"alignment residual {fit.rms:.2f} px exceeds {options.max_rms} px",
                              frame=frame, hint="the points do not look like a face in this template's layout")
    return Alignment(crop_from_frame=fit.matrix, crop_size=size, template=options.template, frame=frame,
                     face_index=face_index, rms=fit.rms)


def warp_to_crop(image: np.ndarray, alignment: Alignment, *, border: str = "constant",
                 interpolation: str = "cubic") -> np.ndarray:
    """The aligned crop of a float frame (H, W, C) -> (h, w, C), values unchanged (linear stays linear)."""
    return warp_affine(image, alignment.crop_from_frame, alignment.crop_size, border=border,
                       interpolation=interpolation)


def crop_step(where, size: tuple[int, int]):
    """A frame-stream step (core.io.stream) cutting each frame's aligned crop: ``where`` maps frame number ->
    Alignment whose ``crop_from_frame`` is in display-window pixels and sized for ``size`` (w, h).

    Convention: chunk images (B, C, H, W) float32 linear on any device (the frames' data windows, offset by the
    chunk's ``offsets``) -> (B, C, h, w) crops, bicubic, zero outside the frame, offsets (0, 0). One batched warp
    per chunk (core.warp: cv2 on the CPU, torch elsewhere); the same pixels as :func:`warp_to_crop` to float32
    rounding of the matrices.
    """
    import torch

    from .warp import warp_affine as warp_batch

    def step(chunk):
        # crop_from_frame maps display-window pixels; a frame's array is its data window, offset by (dx, dy)
        mats = np.stack([where[n].crop_from_frame @ np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)
                         for n, (dx, dy) in zip(chunk.numbers, chunk.offsets)])
        m = torch.from_numpy(mats).to(device=chunk.images.device, dtype=chunk.images.dtype)
        out = warp_batch(chunk.images, m, tuple(int(v) for v in size), interpolation="cubic", border="constant")
        return dataclasses.replace(chunk, images=out, offsets=((0, 0),) * len(chunk))
    return step


def crop_mask(size: tuple[int, int], feather: float = 0.1) -> np.ndarray:
    """A soft rectangle (h, w) float32 in [0, 1]: 1 inside, falling to 0 over ``feather`` of the short side."""
    w, h = size
    f = max(1.0, feather * min(w, h))
    x = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / f
    y = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / f
    return np.clip(np.minimum(y[:, None], x[None, :]), 0, 1).astype(np.float32)
