"""Landmark models: crop -> run -> map back, for every registered landmark family.

Inputs are display-referred RGB views in [0, 1] (``core.colour.network_view`` of the plate) and square crop
regions (:class:`~facegraph.core.landmarks.Roi`) in frame pixels; outputs are :class:`LandmarkResult` in frame
pixels (pixel-area convention). Each family knows its own crop convention (how a face box becomes the region
it was trained on) in :meth:`roi_for`; the maths lives in ``core``.
"""
from __future__ import annotations

import dataclasses
import logging
import zipfile
from typing import Sequence

import numpy as np

from ..core.errors import ModelError
from ..core.geometry import warp_affine
from ..core.landmarks import (EYE_CORNERS_LEFT, EYE_CORNERS_RIGHT, Roi, blaze_box_from_keypoints, decode_heatmaps, project_points,
                              roi_from_box, roi_from_points, roi_from_segment, rotation_of)
from ..core.morphable import frame_camera, reconstruct
from ..core.pose import fit_rigid_3d, rigid_residual, rotation_from_scaled
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


def _crops(view: np.ndarray, rois: Sequence[Roi], size: int, border: str = "constant") -> tuple[np.ndarray, list]:
    """Warp each ROI to a (size, size) crop; returns (B, size, size, C) and the crop_from_frame matrices."""
    mats = [r.crop_from_frame(size) for r in rois]
    return np.stack([warp_affine(view, m, (size, size), border=border) for m in mats]), mats


def _onnx(resolved: ResolvedModel, device: str, threads: int):
    """(session, input name) for a single-input ONNX model file."""
    from .onnx_runtime import create_session

    session = create_session(resolved.path(".onnx"), device=device, threads=threads or None)
    return session, session.get_inputs()[0].name


def _rgb01_batch(view: np.ndarray, rois: Sequence[Roi], size: int) -> np.ndarray:
    """(B, 3, size, size) float32 RGB in [0, 1] at 8-bit steps (what the ONNX 2D landmarkers trained on)."""
    crops, _ = _crops(view, rois, size)
    return np.ascontiguousarray((np.round(crops * 255) / 255).astype(np.float32).transpose(0, 3, 1, 2))


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
    """Face Landmarker v2 (478 points, blendshapes, canonical-mesh pose) or Face Mesh v1 (468 points)."""

    def __init__(self, spec: ModelSpec, resolved: ResolvedModel, *, device: str = "cpu", threads: int = 0):
        super().__init__(spec, resolved, device=device)
        from .tflite_torch import TFLiteModule

        path = resolved.path()
        self.canonical = None
        self._blend = None
        if path.suffix == ".task":
            self._mesh = TFLiteModule.from_file(path, "face_landmarks_detector.tflite", device=device)
            self._blend = TFLiteModule.from_file(path, "face_blendshapes.tflite", device=device)
            with zipfile.ZipFile(path) as z:
                self.canonical = read_canonical_mesh(z.read("geometry_pipeline_metadata_landmarks.binarypb"))
            self.scheme, self.n_points = "mediapipe478", 478
        else:
            self._mesh = TFLiteModule.from_file(path, device=device)
            self.scheme, self.n_points = "mediapipe468", 468
        self.input_size = int(self._mesh.input_shapes[0][1])

    def roi_for(self, box, keypoints=None, points=None, scheme=""):
        if points is not None and scheme.startswith("mediapipe") and len(points) >= 468:
            return roi_from_points(points, scale=MESH_ROI_SCALE, rotate_from=MESH_ROTATION_POINTS)
        if keypoints is not None and len(keypoints) == 5:  # BlazeFace framing, whatever the detector
            return roi_from_box(blaze_box_from_keypoints(keypoints), scale=MESH_ROI_SCALE,
                                angle=rotation_of(keypoints[0], keypoints[1]))
        return roi_from_box(box, scale=MESH_ROI_SCALE)

    def predict(self, view, rois):
        if not rois:
            return []
        crops, mats = _crops(view, rois, self.input_size)
        outs = []
        for i in range(len(crops)):  # measured: batch 1 is fastest on the CPU for this graph
            outs.append(self._mesh.run_numpy(crops[i:i + 1]))
        results = []
        for roi, m, o in zip(rois, mats, outs):
            raw = o[0].reshape(-1, 3)[: self.n_points]
            frame_from_crop = roi.frame_from_crop(self.input_size)
            pts = project_points(raw, frame_from_crop).astype(np.float32)
            presence = _sigmoid(float(o[1].reshape(-1)[0]))
            res = LandmarkResult(points=pts, scheme=self.scheme, presence=presence, roi=roi)
            if self.canonical is not None:
                res.rotation, res.extras["shape_residual"] = self.head_rotation(pts)
                if self._blend is not None:
                    res.blendshapes = (BLENDSHAPE_NAMES, self.blendshapes(pts))
            results.append(res)
        return results

    def blendshapes(self, points: np.ndarray) -> np.ndarray:
        """52 coefficients from 478 frame-pixel points (the model normalises position and scale itself)."""
        x = np.asarray(points, np.float32)[list(BLENDSHAPE_SUBSET), :2][None]
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

    def predict(self, view, rois):
        if not rois:
            return []
        x = _rgb01_batch(view, rois, self.input_size)
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
        from .tflite_torch import load_state_dict

        ckpt = load_state_dict(resolved.path(".pth"))
        state = ckpt.get("state_dict", ckpt)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        self.net = MobileNetV1.from_state_dict(state).eval().to(device)
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

    def predict(self, view, rois):
        if not rois:
            return []
        torch = self._torch
        crops, _ = _crops(view, rois, self.input_size)
        bgr = np.round(crops[..., ::-1] * 255.0)
        x = torch.from_numpy(((bgr - 127.5) / 128.0).astype(np.float32).transpose(0, 3, 1, 2)).to(self.device)
        with torch.inference_mode():
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

    def predict(self, view, rois):
        if not rois:
            return []
        x = _rgb01_batch(view, rois, self.input_size)
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

    def __init__(self, spec, resolved, *, device="cpu", threads=0):
        from .tflite_torch import TFLiteModule

        self.spec = spec
        self._module = TFLiteModule.from_file(resolved.path(".tflite"), device=device)

    def eye_rois(self, mesh: np.ndarray) -> list[tuple[Roi, bool]]:
        """(roi, mirrored) for the two eyes of a 468/478-point mesh in frame pixels."""
        left = roi_from_segment(mesh[EYE_CORNERS_LEFT[0]], mesh[EYE_CORNERS_LEFT[1]], scale=IRIS_ROI_SCALE)
        right = roi_from_segment(mesh[EYE_CORNERS_RIGHT[0]], mesh[EYE_CORNERS_RIGHT[1]], scale=IRIS_ROI_SCALE)
        return [(left, False), (right, True)]

    def predict(self, view: np.ndarray, eyes: Sequence[tuple[Roi, bool]]) -> list[EyeResult]:
        if not eyes:
            return []
        s = self.input_size
        crops, _ = _crops(view, [r for r, _ in eyes], s, border="replicate")
        for i, (_, flip) in enumerate(eyes):
            if flip:
                crops[i] = crops[i][:, ::-1]
        contour, iris = self._module.run_numpy(crops)
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
