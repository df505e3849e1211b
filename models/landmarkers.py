"""Landmark models: crop -> run -> map back, for every registered landmark family.

Batched entry point ``predict_frames(views, index, rois)``: a :class:`~facegraph.core.colour.FrameViews` of linear
frames (B, C, H, W) on any device, and for each of N faces (over all frames of the batch) its frame index and
square crop region (:class:`~facegraph.core.landmarks.Roi`, frame pixels). All N crops are cut from the linear
frames by ONE batched warp (:func:`crop_frames`, ``core.warp.warp_affine`` with (N, 2, 3) matrices), toned into
the networks' view at crop size, and run through the network as a batch. ``predict(view, rois)`` (one
display-referred numpy view, ``core.colour.network_view`` of a plate) runs the same code. Outputs are
:class:`LandmarkResult` in frame pixels (pixel-area convention). Each family knows its own crop convention (how
a face box becomes the region it was trained on) in :meth:`roi_for`; the maths lives in ``core``.
"""
from __future__ import annotations

import dataclasses
import logging
import zipfile
from typing import Sequence

import math

import numpy as np
import torch

from ..core.colour import FrameViews
from .threads import small_stage
from ..core.errors import InputError, ModelError
from ..core.warp import SUPPORT_PX, warp_affine
from ..core.landmarks import (EYE_CORNERS_LEFT, EYE_CORNERS_RIGHT, Roi, blaze_box_from_keypoints, decode_heatmaps, project_points,
                              roi_from_box, roi_from_points, roi_from_segment, rotation_of)
from ..core.morphable import frame_camera, reconstruct
from ..core.pose import fit_rigid_3d, rigid_residual, rotation_from_scaled
from .loader import PRECISIONS
from .registry import ModelSpec
from .store import ResolvedModel

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LandmarkResult:
    """points (K, 3) float32 frame pixels (z: relative depth in pixels, smaller = nearer the camera);
    presence: probability that a face is in the crop; confidence: (K,) or None; rotation: 3x3 model ->
    camera rotation (core.pose frames) or None; extras: model-specific (blendshapes, 3DMM parameters)."""

    points: np.ndarray
    scheme: str
    presence: float
    roi: Roi
    confidence: np.ndarray | None = None
    rotation: np.ndarray | None = None
    blendshapes: tuple[tuple[str, ...], np.ndarray] | None = None
    extras: dict = dataclasses.field(default_factory=dict)


#: source pixels kept around each crop's footprint when its patch is cut from a frame: the linear
#: interpolation's reach (core.warp.SUPPORT_PX) plus one for rounding of the footprint
_PATCH_MARGIN = SUPPORT_PX["linear"] + 1.0


def crop_frames(views: FrameViews, index: Sequence[int], rois: Sequence[Roi], size: int,
                border: str = "constant") -> tuple[torch.Tensor, np.ndarray]:
    """Cut N square crops from a batch of linear frames with ONE batched warp, then tone them.

    Convention:
        views: FrameViews of B linear frames (C, H, W), C = 3 or 4, any device. index: (N,) frame of each
        crop. rois: N crop regions in frame pixels. size: crop side in pixels. border: "constant" (0 outside
        the frame) or "replicate".
        Returns (crops, crop_from_frame): crops (N, 3, size, size) float32 on the frames' device,
        display-referred RGB in [0, 1] (the view's tone mapping applied at crop size, channels-last in
        memory on the CPU path); crop_from_frame (N, 2, 3) float64, frame -> crop pixels (pixel-area).
    How: each crop's source footprint (plus the interpolation's reach) is cut as a patch; patches are padded
    to one size (zeros, or replicated edges for "replicate", so the border behaves as the frame's) and the
    matrices shifted by the patch origins; one ``warp_affine`` over the (N, C, h, w) patches follows.
    Bilinear interpolation, as before the batching. Always patches, even for crops of one frame: a crop's
    bits then depend only on its own frame and region, never on which crops share the call (warping the
    whole frame instead rounds the sampling positions differently, by about 1e-3 px in the landmarks: a
    chunk of a shot whose last batch held one frame merged 4.9e-4 px off the single run, issue 13).
    """
    mats = np.stack([r.crop_from_frame(size) for r in rois]).astype(np.float64)
    index = [int(i) for i in index]
    src, src_mats = _crop_sources(views, index, mats, size, border)
    linear = warp_affine(src, torch.from_numpy(src_mats), (size, size), border=border)
    return views.tone(linear, index), mats


def _crop_sources(views: FrameViews, index: list[int], mats: np.ndarray, size: int,
                  border: str) -> tuple[torch.Tensor, np.ndarray]:
    """(N, C, h, w) source images for a batched warp and their (N, 2, 3) patch -> crop matrices."""
    frames = views.frames
    n = len(index)
    w, h = views.size
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    boxes = []
    for m in mats:
        a = m[:, :2]
        q = (corners - m[:, 2]) @ np.linalg.inv(a).T  # crop corners in frame pixels
        x0 = math.floor(q[:, 0].min() - _PATCH_MARGIN)
        y0 = math.floor(q[:, 1].min() - _PATCH_MARGIN)
        x1 = math.ceil(q[:, 0].max() + _PATCH_MARGIN)
        y1 = math.ceil(q[:, 1].max() + _PATCH_MARGIN)
        # keep at least the nearest edge pixel: a crop wholly outside the frame still replicates its edge
        x0, y0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
        boxes.append((x0, y0, max(min(x1, w), x0 + 1), max(min(y1, h), y0 + 1)))
    ph = max(b[3] - b[1] for b in boxes)
    pw = max(b[2] - b[0] for b in boxes)
    c = views.channels
    dev = views.device
    canvas = torch.zeros((n, ph, pw, c), dtype=torch.float32, device=dev).permute(0, 3, 1, 2)
    shifted = mats.copy()
    for k, (fi, (x0, y0, x1, y1)) in enumerate(zip(index, boxes)):
        patch = frames[fi][:, y0:y1, x0:x1]
        if border == "replicate" and (patch.shape[1] != ph or patch.shape[2] != pw):
            patch = torch.nn.functional.pad(patch[None], (0, pw - patch.shape[2], 0, ph - patch.shape[1]),
                                            mode="replicate")[0]
        canvas[k, :, :patch.shape[1], :patch.shape[2]] = patch
        shifted[k, :, 2] += mats[k, :, :2] @ np.array([x0, y0], np.float64)  # crop_from_patch
    return canvas, shifted


def _display_views(view: np.ndarray, n: int) -> tuple[FrameViews, list[int]]:
    """One display-referred numpy view as FrameViews, and the index of n crops from it."""
    return FrameViews.from_display([view]), [0] * n


#: precisions of the torch-ported TFLite graphs (``load_model(..., precision=)``): weights and activations in
#: that dtype, outputs returned as float32; LiteRT runs the graphs in float32 only, so another precision runs the
#: torch port on any device (bench/precision.py measures what each costs in landmark NME)
PRECISION_DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.float16, torch.bfloat16)))


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name (models.loader.PRECISIONS); InputError naming the choices otherwise."""
    if precision not in PRECISION_DTYPES:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return PRECISION_DTYPES[precision]


def _module_dtype(module) -> torch.dtype:
    return next((b.dtype for b in module.buffers() if b.is_floating_point()), torch.float32)


def _run_chunks(module, x: torch.Tensor, max_batch: int, fast=None) -> list[np.ndarray]:
    """Run a TFLite-ported module over x (N, ...) in chunks of at most ``max_batch`` (chunks padded to a
    power of two, so a traced graph exists for few batch sizes); outputs concatenated as numpy float32.
    fast: the model's :class:`~facegraph.models.litert_runtime.CpuFastPath`; where it is active for the
    module's device (the CPU, see ``litert_runtime.use_litert``) LiteRT runs the same graph instead, one
    item per invocation, with the same outputs in the same order."""
    dev = next(iter(module.buffers())).device
    if fast is not None and fast.active(dev):
        return fast.run(x.detach().cpu().numpy())
    x = x.to(dev, dtype=_module_dtype(module))
    outs: list[list[np.ndarray]] = []
    with small_stage(dev):  # per-face networks: small tensors, single-threaded where threads would spin
        for start in range(0, x.shape[0], max_batch):
            chunk = x[start:start + max_batch]
            k = chunk.shape[0]
            padded = 1 << (k - 1).bit_length()
            if padded != k:
                chunk = torch.cat([chunk, chunk.new_zeros((padded - k,) + tuple(chunk.shape[1:]))])
            outs.append([o[:k].float().cpu().numpy() for o in module.run(chunk.contiguous())])
    return [np.concatenate(parts) for parts in zip(*outs)]


def _batch_limit(device: str) -> int:
    """Faces per network call: 1 on the CPU, 32 on accelerators.

    On the CPU one face per call keeps every face's landmarks independent of which other faces share its
    call: oneDNN picks its convolution algorithm by batch size, so a face's last bits depend on its batch
    (measured: a 300-frame shot rendered in 4 chunks with 8 faces per call merged to tracking data 4.6e-4 px
    off the single run's; one per call merges bit-identically, issue 13). Batching is faster on a quiet CPU
    (bench/onnx_export.py, torch traced: mesh v2 14.1 ms per face at 8 per call, 37.6 ms one at a time), so
    a deterministic batched path (a fixed padded batch size) is the way to have both.
    """
    return 1 if str(device).startswith("cpu") else 32


def _onnx(resolved: ResolvedModel, device: str, threads: int):
    """(session, input name) for a single-input ONNX model file."""
    from .onnx_runtime import create_session

    session = create_session(resolved.path(".onnx"), device=device, threads=threads or None)
    return session, session.get_inputs()[0].name


def _rgb01_batch(views: FrameViews, index, rois: Sequence[Roi], size: int) -> np.ndarray:
    """(B, 3, size, size) float32 RGB in [0, 1] at 8-bit steps (what the ONNX 2D landmarkers trained on)."""
    crops, _ = crop_frames(views, index, rois, size)
    x = torch.round(crops * 255) / 255
    return np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -60, 60))))


class LandmarkModel:
    """Base: ``predict(view, rois)``; ``roi_for(box, keypoints, points)`` gives the region a model expects."""

    task = "landmarks"
    scheme = ""
    input_size = 0

    def __init__(self, spec: ModelSpec, resolved: ResolvedModel, *, device: str = "cpu", threads: int = 0):
        self.spec = spec
        self.device = device

    def roi_for(self, box: Sequence[float], keypoints: np.ndarray | None = None,
                points: np.ndarray | None = None, scheme: str = "") -> Roi:
        raise NotImplementedError

    def predict(self, view: np.ndarray, rois: Sequence[Roi]) -> list[LandmarkResult]:
        """Landmarks for ``rois`` in one display-referred view (H, W, 3) float32 in [0, 1] (a numpy
        ``network_view`` output): the same code as :meth:`predict_frames`."""
        if not rois:
            return []
        views, index = _display_views(view, len(rois))
        return self.predict_frames(views, index, rois)

    def predict_frames(self, views: FrameViews, index: Sequence[int], rois: Sequence[Roi]) -> list[LandmarkResult]:
        """Landmarks for N faces over a batch of frames, one network batch.

        Convention: views: FrameViews of the linear frames (any device); index: (N,) frame of each face;
        rois: N crop regions (frame pixels). Returns N results, points in frame pixels (pixel-area)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------- MediaPipe
#: MediaPipe blendshape model input: 146 of the 478 points (face_blendshapes_graph.cc kLandmarksSubsetIdxs)
BLENDSHAPE_SUBSET = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70,
    78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149,
    150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195,
    197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300,
    308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375,
    377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477)
#: output names in model order (face_blendshapes_graph.cc kBlendshapeNames)
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")
#: MediaPipe's face ROI: detection box x 1.5, square, rotated by the eyes; from landmarks: bounds x 1.5,
#: rotated by 33 -> 263 (face_detection_front_detection_to_roi / face_landmark_landmarks_to_roi)
MESH_ROI_SCALE = 1.5
MESH_ROTATION_POINTS = (33, 263)


def read_canonical_mesh(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (468, 3) cm in the model frame, uvs (468, 2), triangles (T, 3), procrustes weights (468,))
    from MediaPipe's geometry_pipeline_metadata_landmarks.binarypb (GeometryPipelineMetadata: 1 canonical
    mesh {3 vertex_buffer x,y,z,u,v; 4 index_buffer}, 2 procrustes basis {1 landmark id, 2 weight})."""
    import struct

    from .protobuf import fields, packed_floats, packed_varints

    verts: list[float] = []
    idx: list[int] = []
    weights: dict[int, float] = {}
    for num, wt, val in fields(data):
        if num == 1 and wt == 2:
            for n, w, v in fields(val):
                if n == 3:
                    verts.extend(packed_floats(v) if w == 2 else struct.unpack("<f", v))
                elif n == 4:
                    idx.extend(packed_varints(v) if w == 2 else [v])
        elif num == 2 and wt == 2:
            lid, weight = 0, 0.0
            for n, w, v in fields(val):
                if n == 1:
                    lid = v
                elif n == 2:
                    weight = struct.unpack("<f", v)[0]
            weights[lid] = weight
    vb = np.asarray(verts, np.float64).reshape(-1, 5)
    w = np.zeros(len(vb))
    for k, v in weights.items():
        w[k] = v
    return vb[:, :3], vb[:, 3:5], np.asarray(idx, np.int64).reshape(-1, 3), w


class MediaPipeMesh(LandmarkModel):
    """Face Landmarker v2 (478 points, blendshapes, canonical-mesh pose) or Face Mesh v1 (468 points).

    The graphs run on the torch port (``tflite_torch``), or on the CPU on LiteRT where it is installed
    (``litert_runtime``; ``tflite_runtime``: "auto" | "litert" | "torch", None: ``$FACEGRAPH_TFLITE_RUNTIME``),
    chosen at each call by where the torch port's weights are. ``precision`` "fp16" / "bf16" runs the torch
    port in that dtype on any device (for GPUs; LiteRT is float32)."""

    def __init__(self, spec: ModelSpec, resolved: ResolvedModel, *, device: str = "cpu", threads: int = 0,
                 tflite_runtime: str | None = None, precision: str = "fp32"):
        super().__init__(spec, resolved, device=device)
        from .litert_runtime import CpuFastPath
        from .tflite_torch import TFLiteModule

        dtype = precision_dtype(precision)
        if dtype != torch.float32:
            tflite_runtime = "torch"

        path = resolved.path()
        self.canonical = None
        self._blend = None
        self._blend_fast = None
        mesh_member = "face_landmarks_detector.tflite" if path.suffix == ".task" else None
        self._mesh = TFLiteModule.from_file(path, mesh_member, device=device)
        self._mesh_fast = CpuFastPath(path, mesh_member, outputs=self._mesh.graph.outputs, threads=threads,
                                      option=tflite_runtime)
        if path.suffix == ".task":
            self._blend = TFLiteModule.from_file(path, "face_blendshapes.tflite", device=device)
            self._blend_fast = CpuFastPath(path, "face_blendshapes.tflite", outputs=self._blend.graph.outputs,
                                           threads=threads, option=tflite_runtime)
            with zipfile.ZipFile(path) as z:
                self.canonical = read_canonical_mesh(z.read("geometry_pipeline_metadata_landmarks.binarypb"))
            self.scheme, self.n_points = "mediapipe478", 478
        else:
            self.scheme, self.n_points = "mediapipe468", 468
        self.input_size = int(self._mesh.input_shapes[0][1])
        self.max_batch = _batch_limit(device)
        self.precision = precision
        if dtype != torch.float32:
            self._mesh = self._mesh.to(dtype)
            if self._blend is not None:
                self._blend = self._blend.to(dtype)

    def roi_for(self, box, keypoints=None, points=None, scheme=""):
        if points is not None and scheme.startswith("mediapipe") and len(points) >= 468:
            return roi_from_points(points, scale=MESH_ROI_SCALE, rotate_from=MESH_ROTATION_POINTS)
        if keypoints is not None and len(keypoints) == 5:  # BlazeFace framing, whatever the detector
            return roi_from_box(blaze_box_from_keypoints(keypoints), scale=MESH_ROI_SCALE,
                                angle=rotation_of(keypoints[0], keypoints[1]))
        return roi_from_box(box, scale=MESH_ROI_SCALE)

    def predict_frames(self, views, index, rois, *, extras: bool = True):
        """See :meth:`LandmarkModel.predict_frames`. extras: False leaves out head rotation and blendshapes
        (functions of the points only: :meth:`add_extras` adds them later, e.g. after re-crop passes)."""
        if not rois:
            return []
        s = self.input_size
        crops, _ = crop_frames(views, index, rois, s)
        x = crops.permute(0, 2, 3, 1)  # NHWC, what the TFLite graph takes
        raw_pts, raw_presence = _run_chunks(self._mesh, x, self.max_batch, self._mesh_fast)[:2]
        results = []
        for k, roi in enumerate(rois):
            raw = raw_pts[k].reshape(-1, 3)[: self.n_points]
            pts = project_points(raw, roi.frame_from_crop(s)).astype(np.float32)
            presence = _sigmoid(float(raw_presence[k].reshape(-1)[0]))
            results.append(LandmarkResult(points=pts, scheme=self.scheme, presence=presence, roi=roi))
        if extras:
            self.add_extras(results)
        return results

    def add_extras(self, results: Sequence[LandmarkResult]) -> None:
        """Head rotation (with its shape residual) and blendshapes for results of this model, in place
        (v2 only: v1 has no canonical mesh or blendshape model)."""
        if self.canonical is None or not results:
            return
        for res in results:
            res.rotation, res.extras["shape_residual"] = self.head_rotation(res.points)
        if self._blend is not None:
            for res in results:  # one face per call: the graph's output (52,) has no batch dimension
                res.blendshapes = (BLENDSHAPE_NAMES, self.blendshapes(res.points))

    def blendshapes(self, points: np.ndarray) -> np.ndarray:
        """52 coefficients from 478 frame-pixel points (the model normalises position and scale itself)."""
        x = np.ascontiguousarray(np.asarray(points, np.float32)[list(BLENDSHAPE_SUBSET), :2][None])
        if self._blend_fast is not None and self._blend_fast.active(next(iter(self._blend.buffers())).device):
            return np.clip(self._blend_fast.run(x)[0].reshape(-1), 0.0, 1.0)
        return np.clip(self._blend.run_numpy(x)[0].reshape(-1), 0.0, 1.0)

    def head_rotation(self, points: np.ndarray) -> tuple[np.ndarray, float]:
        """(model -> camera rotation, shape residual) by weighted Procrustes of the canonical mesh onto the
        landmarks (x, y and MediaPipe's z, all in pixels) with MediaPipe's Procrustes weights. The residual
        is the fit's rms over the fitted size of the canonical face (unweighted over all 468 vertices): how
        far the landmarks are from a rigid face."""
        verts, _, _, weights = self.canonical
        pts = np.asarray(points, np.float64)[:468, :3]
        fit = fit_rigid_3d(verts, pts, weights)
        return fit.rotation, rigid_residual(verts, pts, fit)


# ------------------------------------------------------------------------------------------------ PFLD
class PFLD(LandmarkModel):
    """PFLD 68-point regressor (cunjian/pytorch_face_landmark): square crop of side 1.1 x the long side of
    a face box (test_camera_pfld_onnx.py), 112 x 112 RGB / 255, output in [0, 1] crop units."""

    scheme = "ibug68"
    input_size = 112
    ROI_SCALE = 1.1

    def __init__(self, spec, resolved, *, device="cpu", threads=0):
        super().__init__(spec, resolved, device=device)
        self._session, self._input = _onnx(resolved, device, threads)

    def roi_for(self, box, keypoints=None, points=None, scheme=""):
        if points is not None:
            x0, y0 = np.min(points[:, :2], 0)
            x1, y1 = np.max(points[:, :2], 0)
            box = (x0, y0, x1, y1)
        return roi_from_box(box, scale=self.ROI_SCALE)

    def predict_frames(self, views, index, rois):
        if not rois:
            return []
        x = _rgb01_batch(views, index, rois, self.input_size)
        out = self._session.run(None, {self._input: x})[0].reshape(len(rois), -1, 2)
        res = []
        for roi, raw in zip(rois, out):
            pts = project_points(raw * self.input_size, roi.frame_from_crop(self.input_size))
            res.append(LandmarkResult(points=np.concatenate([pts, np.zeros((68, 1))], 1).astype(np.float32),
                                      scheme=self.scheme, presence=1.0, roi=roi))
        return res

    def close(self):
        self._session = None


# -------------------------------------------------------------------------------------------- 3DDFA_V2
class TDDFA(LandmarkModel):
    """3DDFA_V2 (MobileNetV1 x0.5, 120 x 120): 62 3DMM parameters (12 pose, 40 shape, 10 expression) and an
    auxiliary 68-point head. Landmarks come from the parameters through the Basel Face Model subset used by
    3DDFA (the ``bfm_3ddfa`` files), as in 3DDFA_V2's ``recon_vers``; the head's output is kept in extras.
    Crop conventions from 3DDFA_V2 utils/functions.py (parse_roi_box_from_bbox / _from_landmark)."""

    scheme = "ibug68"
    input_size = 120

    def __init__(self, spec, resolved, *, device="cpu", threads=0):
        super().__init__(spec, resolved, device=device)
        import torch

        from .loader import resolve_files
        from .safe_pickle import load_arrays
        from .tddfa_net import MobileNetV1

        self.net = MobileNetV1.from_checkpoint(resolved.path(".pth")).to(device)
        stats = load_arrays(resolved.path(".pkl"))
        self.mean, self.std = stats["mean"].astype(np.float64), stats["std"].astype(np.float64)
        bfm = resolve_files("bfm_3ddfa")
        kp = np.load(bfm["bfm/keypoints_sim.npy"]).astype(np.int64)
        u = (np.load(bfm["bfm/u_shp.npy"]) + np.load(bfm["bfm/u_exp.npy"])).reshape(-1)
        self.u_base = u[kp].reshape(-1, 1)
        self.w_shp_base = np.load(bfm["bfm/w_shp_sim.npy"], mmap_mode="r")[kp]
        self.w_exp_base = np.load(bfm["bfm/w_exp_sim.npy"], mmap_mode="r")[kp]
        self._torch = torch

    def roi_for(self, box, keypoints=None, points=None, scheme=""):
        if points is not None:  # parse_roi_box_from_landmark: square of the points' long side, x sqrt(2)
            p = np.asarray(points, np.float64)[:, :2]
            (x0, y0), (x1, y1) = p.min(0), p.max(0)
            side = max(x1 - x0, y1 - y0) * np.sqrt(2)
            return Roi((x0 + x1) / 2, (y0 + y1) / 2, side)
        x0, y0, x1, y1 = (float(v) for v in box)  # parse_roi_box_from_bbox
        old = (x1 - x0 + y1 - y0) / 2
        return Roi((x0 + x1) / 2, (y0 + y1) / 2 + old * 0.14, old * 1.58)

    def predict_frames(self, views, index, rois):
        if not rois:
            return []
        crops, _ = crop_frames(views, index, rois, self.input_size)
        bgr = torch.round(crops.flip(1) * 255.0)  # 3DDFA_V2 reads BGR 8-bit frames
        x = ((bgr - 127.5) / 128.0).contiguous().to(self.device)
        with torch.inference_mode(), small_stage(x):
            params, lms = self.net(x)
        params = params.cpu().numpy().astype(np.float64) * self.std + self.mean
        lms = lms.cpu().numpy().astype(np.float64)
        res = []
        for roi, p, lm in zip(rois, params, lms):
            pts = reconstruct(p, self.u_base, self.w_shp_base, self.w_exp_base, self.input_size)
            frame_from_crop = roi.frame_from_crop(self.input_size)
            frame_pts = project_points(pts, frame_from_crop).astype(np.float32)
            cam = p[:12].reshape(3, 4)
            r = rotation_from_scaled(cam[:, :3])
            rotation = np.diag([1.0, -1.0, -1.0]) @ r       # 3DMM frame (y up) seen through the image y-flip
            res.append(LandmarkResult(points=frame_pts, scheme=self.scheme, presence=1.0, roi=roi,
                                      rotation=rotation, extras={"params": p.astype(np.float32),
                                                                 "camera": frame_camera(p, frame_from_crop,
                                                                                        self.input_size),
                                                                 "head68": self._head(lm, frame_from_crop)}))
        return res

    def _head(self, lm: np.ndarray, frame_from_crop: np.ndarray) -> np.ndarray:
        """The auxiliary head: 68 x then 68 y, in [-1, 1] across the crop (found by fitting one AFLW face:
        1-3 % NME this way, ~100 % for the interleaved or pixel-unit readings)."""
        pts = (lm.reshape(2, -1).T + 1.0) * (self.input_size / 2)
        return project_points(pts, frame_from_crop).astype(np.float32)


# ----------------------------------------------------------------------------------------- FAN heatmaps
class FanHeatmap(LandmarkModel):
    """2DFAN4 as FaceFusion ships it: 256 x 256 RGB / 255 crop scaled so the box's long side is 195 px
    (FaceFusion face_landmarker.detect_with_2dfan4), heatmaps 68 x 64 x 64 decoded by
    ``core.landmarks.decode_heatmaps`` (sub-pixel soft-argmax)."""

    scheme = "ibug68"
    input_size = 256
    ROI_SCALE = 256 / 195

    def __init__(self, spec, resolved, *, device="cpu", threads=0, method="soft_argmax"):
        super().__init__(spec, resolved, device=device)
        self._session, self._input = _onnx(resolved, device, threads)
        self.method = method

    def roi_for(self, box, keypoints=None, points=None, scheme=""):
        return roi_from_box(box, scale=self.ROI_SCALE)

    def predict_frames(self, views, index, rois):
        if not rois:
            return []
        x = _rgb01_batch(views, index, rois, self.input_size)
        outs = self._session.run(None, {self._input: x})
        heat = next((o for o in outs if o.ndim == 4), None)
        if heat is None:
            raise ModelError("2DFAN4 export has no heatmap output", model=self.spec.id)
        pts, conf = decode_heatmaps(heat, method=self.method)
        res = []
        scale = self.input_size / heat.shape[-1]
        for roi, p, c in zip(rois, pts, conf):
            frame = project_points(p * scale, roi.frame_from_crop(self.input_size))
            res.append(LandmarkResult(points=np.concatenate([frame, np.zeros((68, 1))], 1).astype(np.float32),
                                      scheme=self.scheme, presence=float(np.mean(c)), roi=roi, confidence=c))
        return res


# ---------------------------------------------------------------------------------------- iris (refine)
#: iris crop: eye corners distance x 2.3 (iris_landmark_landmarks_to_roi.pbtxt)
IRIS_ROI_SCALE = 2.3


@dataclasses.dataclass
class EyeResult:
    contour: np.ndarray   # (71, 3) frame pixels, in IRIS71_TO_MESH_* order
    iris: np.ndarray      # (5, 3) frame pixels: centre, then 4 edge points
    roi: Roi
    flipped: bool


class IrisModel:
    """MediaPipe's iris landmark model: 64 x 64 eye crop -> 71 eye-contour/brow points + 5 iris points. Trained
    on one eye side: the eye at mesh vertices 362/263 is mirrored in, and its points mirrored back."""

    task = "refine"
    input_size = 64

    def __init__(self, spec, resolved, *, device="cpu", threads=0, tflite_runtime: str | None = None,
                 precision: str = "fp32"):
        from .litert_runtime import CpuFastPath
        from .tflite_torch import TFLiteModule

        dtype = precision_dtype(precision)
        if dtype != torch.float32:
            tflite_runtime = "torch"  # LiteRT runs the graph in float32 only
        self.spec = spec
        self.precision = precision
        self._module = TFLiteModule.from_file(resolved.path(".tflite"), device=device).to(dtype)
        # on the CPU LiteRT where installed (see MediaPipeMesh)
        self._fast = CpuFastPath(resolved.path(".tflite"), outputs=self._module.graph.outputs, threads=threads,
                                 option=tflite_runtime)
        # all eyes in one call: the old path ran every eye of a frame as one batch on the CPU too
        self.max_batch = 64

    def eye_rois(self, mesh: np.ndarray) -> list[tuple[Roi, bool]]:
        """(roi, mirrored) for the two eyes of a 468/478-point mesh in frame pixels."""
        left = roi_from_segment(mesh[EYE_CORNERS_LEFT[0]], mesh[EYE_CORNERS_LEFT[1]], scale=IRIS_ROI_SCALE)
        right = roi_from_segment(mesh[EYE_CORNERS_RIGHT[0]], mesh[EYE_CORNERS_RIGHT[1]], scale=IRIS_ROI_SCALE)
        return [(left, False), (right, True)]

    def predict(self, view: np.ndarray, eyes: Sequence[tuple[Roi, bool]]) -> list[EyeResult]:
        """Eye results for ``eyes`` (roi, mirrored) in one display-referred numpy view (H, W, 3) in [0, 1]:
        the same code as :meth:`predict_frames`."""
        if not eyes:
            return []
        views, index = _display_views(view, len(eyes))
        return self.predict_frames(views, index, eyes)

    def predict_frames(self, views: FrameViews, index: Sequence[int],
                       eyes: Sequence[tuple[Roi, bool]]) -> list[EyeResult]:
        """Eye results for N eyes over a batch of frames (all eyes of all faces at once).

        Convention: views: FrameViews of the linear frames (any device); index: (N,) frame of each eye;
        eyes: N (roi, mirrored) from :meth:`eye_rois`. Crops are cut by one batched warp with replicated
        borders; mirrored eyes are flipped in and their points flipped back. Points in frame pixels."""
        if not eyes:
            return []
        s = self.input_size
        crops, _ = crop_frames(views, index, [r for r, _ in eyes], s, border="replicate")
        x = crops.permute(0, 2, 3, 1).contiguous()  # NHWC
        flips = [i for i, (_, flip) in enumerate(eyes) if flip]
        if flips:
            sel = torch.tensor(flips, device=x.device)
            x[sel] = x[sel].flip(2)
        contour, iris = _run_chunks(self._module, x, self.max_batch, self._fast)
        out = []
        for i, (roi, flip) in enumerate(eyes):
            c = contour[i].reshape(-1, 3).astype(np.float64)
            p = iris[i].reshape(-1, 3).astype(np.float64)
            if flip:
                c[:, 0] = s - c[:, 0]
                p[:, 0] = s - p[:, 0]
            m = roi.frame_from_crop(s)
            out.append(EyeResult(contour=project_points(c, m).astype(np.float32),
                                 iris=project_points(p, m).astype(np.float32), roi=roi, flipped=flip))
        return out

    def close(self):
        pass
