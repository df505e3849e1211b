"""Face detectors: preprocess -> run -> decode, for every registered detector family.

Input: a :class:`~facegraph.core.colour.FrameViews` of linear frames (B, C, H, W) on any device (``detect_views``:
each network input is resized from the linear frame and only then toned, so no full-resolution view is made), or
display-referred RGB views (H, W, 3) float32 in [0, 1] (``detect``: ``core.colour.network_view`` outputs), one size
per call. Output: one :class:`~facegraph.core.detection.Detections` per frame in frame pixels.
All the maths (decoding, NMS, geometry) is in ``core.detection``; this module knows each family's input
contract (colour order, scaling, size) and runs the network, batching frames (and tiles) of the same input size.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import cv2
import numpy as np

from ..core import progress
from ..core.colour import FrameViews
from ..core.detection import (Detections, DetectOptions, decode_blazeface, decode_retinaface, decode_scrfd,
                              decode_ultraface, decode_yolo5face, decode_yunet, blazeface_anchors,
                              dynamic_input_size, finalize, fit_input, map_to_frame, rotation_about_centre,
                              stretch_input, tiles, weighted_nms)
from ..core.errors import InputError, ModelError
from .registry import ModelSpec
from .store import ResolvedModel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Family:
    colour: str                       # RGB | BGR
    normalise: Callable               # float 0-255 (N, H, W, 3) torch, in the family's colour order -> network values
    resize: str                       # dynamic | letterbox | stretch
    default_longest: int = 640
    stride: int = 32


def _bgr255(x):
    return x


def _rgb_scrfd(x):
    return (x - 127.5) / 128.0


#: biubug6 RetinaFace BGR means (data/config.py rgb_mean, applied to BGR frames)
_RETINA_BGR_MEANS = (104.0, 117.0, 123.0)


def _bgr_retina(x):
    import torch

    return x - torch.tensor(_RETINA_BGR_MEANS, dtype=x.dtype, device=x.device)


def _rgb01(x):
    return x / 255.0


def _rgb_ultra(x):
    return (x - 127.0) / 128.0


def _rgb_pm1(x):
    return x / 127.5 - 1.0


FAMILIES = {
    "yunet": _Family("BGR", _bgr255, "dynamic"),
    "scrfd": _Family("RGB", _rgb_scrfd, "dynamic"),
    "retinaface": _Family("BGR", _bgr_retina, "dynamic"),
    "yolo5face": _Family("RGB", _rgb01, "letterbox"),
    "ultraface": _Family("RGB", _rgb_ultra, "stretch"),
    "blazeface": _Family("RGB", _rgb_pm1, "letterbox"),
}


def resize_frame(image, size: tuple[int, int], *, shrink: bool, backend: str = "auto"):
    """Resize one linear frame for a detector's input (a frame kernel).

    Convention: image (C, H, W) float32 torch, any device, linear (resized before the view's curve);
    size (w, h); shrink: True for area averaging (cv2 INTER_AREA / torch "area"), False for bilinear
    (half-pixel centres, pixel-area convention). Returns a new (C, h, w) float32 tensor on the same device.
    backend: "auto" (cv2 on CPU tensors, zero-copy where the frame is channels-last in memory; torch
    elsewhere), "cv2" or "torch". The two agree exactly for bilinear and for whole-number shrink factors;
    for other shrink factors torch's "area" (adaptive average pooling) and cv2's exact area weights differ
    by a fraction of the local contrast (tests/models/test_detectors.py)."""
    import torch
    import torch.nn.functional as F

    if backend not in ("auto", "cv2", "torch"):
        raise InputError(f"backend must be auto, cv2 or torch, got {backend!r}")
    w, h = int(size[0]), int(size[1])
    if backend == "cv2" or (backend == "auto" and image.device.type == "cpu"):
        if image.device.type != "cpu":
            raise InputError(f"backend='cv2' needs a CPU tensor, the frame is on {image.device}")
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.float32)
        out = cv2.resize(hwc, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return torch.from_numpy(out.reshape(h, w, -1)).permute(2, 0, 1)
    if shrink:
        return F.interpolate(image[None], size=(h, w), mode="area")[0]
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]


@dataclasses.dataclass(frozen=True)
class _Job:
    image: int
    net_from_frame: np.ndarray
    size: tuple[int, int]
    quarter_turns: int
    crop: tuple[int, int, int, int]   # in the rotated frame
    scale: float | tuple[float, float]


class FaceDetector:
    """A loaded detector. ``detect(views, options)`` -> list of Detections in frame pixels."""

    task = "detect"

    def __init__(self, spec: ModelSpec, resolved: ResolvedModel, *, device: str = "cpu", threads: int = 0,
                 tflite_runtime: str | None = None):
        """tflite_runtime: for TFLite graphs (BlazeFace), "auto" | "litert" | "torch" (None:
        ``$FACEGRAPH_TFLITE_RUNTIME``): on the CPU LiteRT where installed, else the torch port (litert_runtime)."""
        if spec.family not in FAMILIES:
            raise ModelError(f"no detector wrapper for family {spec.family!r}", model=spec.id)
        self.spec = spec
        self.family = FAMILIES[spec.family]
        self.device = device
        size = spec.contract("size", "dynamic")
        self.fixed_size: tuple[int, int] | None = None if size == "dynamic" else (int(size[0]), int(size[1]))
        if spec.runtime == "onnx":
            from .onnx_runtime import create_session

            self._session = create_session(resolved.path(".onnx"), device=device, threads=threads or None)
            self._input_name = self._session.get_inputs()[0].name
            self._output_names = [o.name for o in self._session.get_outputs()]
            first_dim = self._session.get_inputs()[0].shape[0]
            # onnxruntime on the CPU: measured (bench/chain.py) slower per frame at batch 8 than at 1 (the
            # activations of 8 640 x 384 inputs leave the caches), so frames run one by one there
            self._max_batch = 1 if first_dim == 1 or str(device).startswith("cpu") else 16
            out0 = self._session.get_outputs()[0].shape
            if isinstance(out0[0], int) and out0[0] == 1:
                self._max_batch = 1
        elif spec.runtime == "tflite":
            from .litert_runtime import CpuFastPath
            from .tflite_torch import TFLiteModule

            self._module = TFLiteModule.from_file(resolved.path(".tflite"), device=device)
            self._fast = CpuFastPath(resolved.path(".tflite"), outputs=self._module.graph.outputs, threads=threads,
                                     option=tflite_runtime)
            self._max_batch = 16
            if spec.family == "blazeface":
                n = self._module.output_shapes[0][1]
                self._anchors = (blazeface_anchors(128, (8, 16), (2, 6)) if n == 896
                                 else blazeface_anchors(192, (4,), (1,)))
        else:
            raise ModelError(f"detector runtime {spec.runtime!r} is not supported", model=spec.id)

    # -------------------------------------------------------------------------------------------- jobs
    def _jobs(self, index: int, frame_size: tuple[int, int], options: DetectOptions) -> list[_Job]:
        jobs = []
        for turns in (0,) + tuple(r // 90 for r in options.rotations):
            rot, rsize = rotation_about_centre(frame_size, turns)
            for crop in tiles(rsize, options.tile, options.tile_overlap):
                cw, ch = crop[2] - crop[0], crop[3] - crop[1]
                if self.fixed_size is not None:
                    size = self.fixed_size
                    m = stretch_input((cw, ch), size) if self.family.resize == "stretch" else fit_input((cw, ch), size)
                else:
                    size = dynamic_input_size((cw, ch), options.input_size or self.family.default_longest,
                                              self.family.stride)
                    m = fit_input((cw, ch), size)
                shift = np.array([[1, 0, -crop[0]], [0, 1, -crop[1]]], np.float64)
                net_from_frame = m @ np.vstack([shift @ np.vstack([rot, [0, 0, 1]]), [0, 0, 1]])
                jobs.append(_Job(index, net_from_frame[:2], size, turns, crop, (m[0, 0], m[1, 1])))
        return jobs

    def _input(self, views: FrameViews, job: _Job):
        """One job's network input, (h, w, 3) float32 torch (channels-last, 0-255 in the family's colour order): the linear frame turned, cut to the job's tile
        and resized (cv2 on CPU frames: INTER_AREA when shrinking, INTER_LINEAR when growing; torch's
        area / bilinear elsewhere), then the view's tone mapping on the small picture, 8-bit steps, the
        family's colour order (scaling: ``normalise``). The network view is never made at full resolution."""
        import torch

        frame = views.frames[job.image]
        img = torch.rot90(frame, -job.quarter_turns, dims=(1, 2)) if job.quarter_turns else frame  # clockwise
        x0, y0, x1, y1 = job.crop
        img = img[:, y0:y1, x0:x1]
        sx, sy = job.scale
        w, h = job.size
        tw, th = max(1, int(round(img.shape[2] * sx))), max(1, int(round(img.shape[1] * sy)))
        small = resize_frame(img, (min(tw, w), min(th, h)), shrink=sx < 1)[None]
        toned = views.tone(small, [job.image])[0]
        th, tw = toned.shape[1:]
        bgr = self.family.colour == "BGR"
        if toned.device.type == "cpu":  # numpy, channels-last: views and in-place passes, no torch copies
            canvas = np.zeros((h, w, 3), np.float32)
            hwc = toned.permute(1, 2, 0).numpy()
            canvas[:th, :tw] = hwc[..., ::-1] if bgr else hwc
            np.multiply(canvas, 255.0, out=canvas)
            np.round(canvas, out=canvas)  # what the networks were trained on: 8-bit values
            return torch.from_numpy(canvas)
        canvas = torch.zeros((h, w, 3), dtype=torch.float32, device=toned.device)
        canvas[:th, :tw] = toned.permute(1, 2, 0).flip(2) if bgr else toned.permute(1, 2, 0)
        return torch.round(canvas * 255.0)

    # --------------------------------------------------------------------------------------------- run
    def _run(self, batch) -> list[dict[str, np.ndarray]]:
        """batch (B, H, W, 3) torch network values -> per-image dicts of raw outputs (numpy)."""
        if self.spec.runtime == "onnx":  # onnxruntime on the CPU: numpy NCHW
            x = np.ascontiguousarray(batch.detach().cpu().numpy().transpose(0, 3, 1, 2), dtype=np.float32)
            outs = self._session.run(None, {self._input_name: x})
            return [{n: o[i] for n, o in zip(self._output_names, outs)} for i in range(len(batch))]
        dev = next(iter(self._module.buffers())).device
        if self._fast.active(dev):  # LiteRT on the CPU: one image per invocation, the same outputs
            outs = self._fast.run(batch.detach().cpu().numpy())
        else:
            outs = [o.float().cpu().numpy() for o in self._module.run(batch.contiguous().to(dev))]
        return [{str(k): o[i] for k, o in enumerate(outs)} for i in range(len(batch))]

    def _decode(self, raw: dict[str, np.ndarray], size: tuple[int, int]) -> Detections:
        fam = self.spec.family
        if fam == "yunet":
            return decode_yunet(raw, size)
        if fam == "scrfd":
            return decode_scrfd(raw, size)
        if fam == "retinaface":
            return decode_retinaface(raw["loc"], raw["conf"], raw["iou"], size)
        if fam == "yolo5face":
            return decode_yolo5face(raw["output"])
        if fam == "ultraface":
            return decode_ultraface(raw["scores"], raw["boxes"], size)
        if fam == "blazeface":
            return decode_blazeface(raw["0"], raw["1"], self._anchors, size[0])
        raise ModelError(f"no decoder for {fam}", model=self.spec.id)

    def detect(self, views, options: DetectOptions = DetectOptions()) -> list[Detections]:
        """Detect faces in display-referred RGB frames (H, W, 3) float32 in [0, 1] of one size (numpy
        ``network_view`` outputs), or in a :class:`~facegraph.core.colour.FrameViews` of linear frames (then
        as :meth:`detect_views`)."""
        if isinstance(views, FrameViews):
            return self.detect_views(views, options)
        if not len(views):
            return []
        shapes = {np.shape(v) for v in views}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
            raise InputError(f"detect expects frames of one (H, W, 3) shape, got {sorted(shapes)}")
        return self.detect_views(FrameViews.from_display(views), options)

    def detect_views(self, views: FrameViews, options: DetectOptions = DetectOptions()) -> list[Detections]:
        """Detect faces in every frame of a batch; one Detections per frame, in frame pixels.

        Convention:
            views: :class:`~facegraph.core.colour.FrameViews` of B linear frames (B, C, H, W) float32 on any
                device; each network input is resized from the linear frame and toned there (see
                :meth:`_input`). All jobs (frames x rotations x tiles) of one input size run as batches
                of up to the model's batch limit.
            Returns B :class:`~facegraph.core.detection.Detections`: boxes (x0, y0, x1, y1) and keypoints
            in frame pixels (pixel-area convention), best first.
        """
        import torch

        if not isinstance(views, FrameViews):
            raise InputError(f"views must be a FrameViews, got {type(views).__name__}",
                             hint="core.colour.frame_views(images) makes one from a (B, C, H, W) batch")
        if not len(views):
            return []
        w, h = views.size
        jobs = [j for i in range(len(views)) for j in self._jobs(i, (w, h), options)]
        per_image: list[list[Detections]] = [[] for _ in range(len(views))]
        step = max(1, self._max_batch)
        with progress.task(len(jobs), f"detect ({self.spec.id})") as bar:
            for start in range(0, len(jobs), step):
                chunk = jobs[start:start + step]
                groups: dict[tuple[int, int], list[_Job]] = {}
                for j in chunk:
                    groups.setdefault(j.size, []).append(j)
                for size, group in groups.items():
                    batch = self.family.normalise(torch.stack([self._input(views, j) for j in group]))
                    for j, raw in zip(group, self._run(batch)):
                        det = self._decode(raw, size)
                        det = det.take(np.flatnonzero(det.scores >= options.score_threshold * 0.5))
                        per_image[j.image].append(map_to_frame(det, j.net_from_frame))
                bar.advance(len(chunk))
        out = []
        for dets in per_image:
            merged = Detections.concat(dets)
            if self.spec.family == "blazeface":
                merged = merged.take(np.flatnonzero(merged.scores >= options.score_threshold))
                merged = weighted_nms(merged, options.iou_threshold)
            out.append(finalize(merged, options, (w, h)))
        return out

    def close(self) -> None:
        self._session = None
