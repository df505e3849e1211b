"""Analysis nodes: model loaders, detect, landmarks, refine, fuse, align, select, draw, info, converters.

Thin: unpack inputs, wrap the linear IMAGE batch (a BCHW view, no copy) in the networks' view record
(``core.colour.frame_views``: exposure measured once per frame per graph, each network's view made at its own
input size), call the batched ``models.analysis`` stages / ``core``, pack outputs. FACEGRAPH_FACES is a list of FrameFaces, one per image.
"""
from __future__ import annotations

import json

import numpy as np

from ..core import progress
from ..core.align import POINT_SOURCES, AlignOptions, align, crop_mask, warp_to_crop
from ..core.colour import EXPOSURE_MODES, ViewOptions, frame_views
from ..core.detection import DetectOptions
from ..core.errors import EstimationError, InputError
from ..core.preview import POINT_SETS, draw_faces, to_display
from ..core.refine import EYE_MODES, RefineOptions
from ..core.selection import SELECT_MODES, select
from ..core.templates import TEMPLATE_NAMES
from ..core.tensors import bchw
from ..core.types import Face, FrameFaces, Landmarks
from ..models.analysis import detect_frames, fuse_faces, landmark_frames, match_faces, refine_frames
from ..models.devices import DEVICE_CHOICES
from ..models.loader import PRECISIONS, ModelHandle, licence_note, runnable_ids
from ..models.registry import registry
from .types import (in_path, ALIGN, BOOLEAN, CATEGORY, FACES, FLOAT, IMAGE, INT, MASK, MODEL, SEQUENCE, STRING,
                    image_to_numpy, numpy_to_image, numpy_to_mask, widget)

PREVIEW_COUNT = 16  # pictures a preview node shows by default: a glance, not a flipbook (each is a PNG write)
ROTATION_CHOICES = {"none": (), "90 and 270": (90, 270), "all": (90, 180, 270)}


#: frames per model batch in the per-frame nodes: progress and interruption between batches (ComfyUI's bar moves
#: and stop works within a batch's time) while the models still see batches
CHUNK = 8


def _frames(images):
    """The host IMAGE (B, H, W, C) as (B, C, H, W) float32 torch on its own device: a permuted view, no copy
    (numpy input, as headless callers may pass, is wrapped without a copy too)."""
    import torch

    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(image_to_numpy(images))
    if x.ndim == 3:
        x = x[None]
    if x.dtype != torch.float32:
        x = x.float()
    if x.shape[-1] not in (3, 4):
        x = x[..., :3]
    return bchw(x)


def _in_chunks(label: str, images, exposure: str, stops: float, run) -> list:
    """``run(views, s)`` over the frames in batches of CHUNK (``views`` a FrameViews of the batch's linear
    frames, ``s`` its slice of the frame list), with one progress step per frame and an interruption check
    before each batch. No full-resolution view is made: each network tones its own input (see
    core.colour.FrameViews), and the exposure of each frame is measured once per graph, shared by Detect,
    Landmarks and Refine through core.colour.frame_views' cache (keyed by the IMAGE's identity)."""
    views = frame_views(_frames(images), ViewOptions(exposure=exposure, stops=stops))
    n = len(views)
    out: list = []
    with progress.task(n, label) as bar:
        for i in range(0, n, CHUNK):
            bar.check_interrupt()
            s = slice(i, min(n, i + CHUNK))
            out += run(views.subset(s), s)
            bar.advance(s.stop - s.start)
    return out


def _frame_numbers(n: int, sequence) -> list[int]:
    if sequence is not None and len(sequence.frames) == n:
        return list(sequence.frames)
    return list(range(n))


def _check_faces(faces, n: int) -> list[FrameFaces]:
    if not isinstance(faces, list) or len(faces) != n:
        raise InputError(f"faces hold {len(faces) if isinstance(faces, list) else '?'} frames for {n} images",
                         hint="connect the faces made from these same images")
    return faces


def _handle(model: ModelHandle | None, task: str) -> ModelHandle:
    return model if model is not None else ModelHandle(registry().default(task).id)


def _view_inputs():
    return {
        "exposure": widget(EXPOSURE_MODES, "how the linear frames are exposed for the networks (auto_frame: "
                                           "median to middle grey; none: as they are)", default="auto_frame"),
        "stops": widget(FLOAT, "extra exposure for the networks' view, in stops", default=0.0, min=-16.0,
                        max=16.0, step=0.25),
    }


# -------------------------------------------------------------------------------------------- loaders
def _licence_lines(ids: list[str]) -> str:
    """Each choice with its licence, restricted ones flagged (shown where a user picks a model)."""
    reg = registry()
    return "; ".join(f"{i}: {reg.get(i).licence_flag or 'permissive'} ({reg.get(i).licence})" for i in ids)


def _loader(task: str, label: str):
    ids_now = runnable_ids(task)

    class Loader:
        DESCRIPTION = (f"Choose a {label} model and device. The model is resolved, verified (sha256) and "
                       "loaded once per process, and shared by every node that uses it. Models flagged "
                       "NON-COMMERCIAL / GPL / LICENCE UNKNOWN are not for commercial use. Licences: "
                       + _licence_lines(ids_now) + ".")
        CATEGORY = f"{CATEGORY}/models"
        FUNCTION = "load"
        RETURN_TYPES = (MODEL,)
        RETURN_NAMES = ("model",)
        OUTPUT_TOOLTIPS = (f"a cached {label} model handle",)

        @classmethod
        def INPUT_TYPES(cls):
            ids = runnable_ids(task)
            reg = registry()
            flagged = ", ".join(f"{i} ({reg.get(i).licence_flag})" for i in ids if reg.get(i).restricted)
            return {"required": {
                "model": widget(ids, "registered model (flagged NON-COMMERCIAL / GPL / LICENCE UNKNOWN ones "
                                     "are not for commercial use" + (f"; flagged here: {flagged}" if flagged else "")
                                + ")", default=ids[0]),
                "device": widget(DEVICE_CHOICES, "where to run it (auto: the host's device)", default="auto"),
            }, "optional": {
                "path": widget(STRING, "use this local file instead of the model store (still verified)",
                               default=""),
                **({"precision": widget(list(PRECISIONS), "fp16 / bf16: the MediaPipe graphs in half precision "
                                        "(for GPUs: fp16 keeps the landmarks within 0.004 NME points of fp32; on a "
                                        "CPU it is emulated and slower)", default="fp32")}
                   if task != "detect" else {}),
            }}

        def load(self, model, device="auto", path="", precision="fp32"):
            handle = ModelHandle(model, device=device, path=in_path(path) if path.strip() else "",
                                 precision=precision)
            handle.get()  # load now: errors belong to this node
            return progress.ui_result((handle,), text=[licence_note(handle.spec)])

    Loader.__name__ = Loader.__qualname__ = f"Load{task.capitalize()}Model"
    return Loader


LoadDetector = _loader("detect", "face detector")
LoadLandmarker = _loader("landmarks", "landmark")
LoadRefiner = _loader("refine", "refinement (eye patch)")


# -------------------------------------------------------------------------------------------- detect
class DetectFaces:
    DESCRIPTION = ("Find faces in every frame: box, score and 5 keypoints, in frame pixels. Frames stay linear; "
                   "the detector sees an exposure-normalised 8-bit view.")
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "detect"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("faces per frame, best first",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "score_threshold": widget(FLOAT, "minimum detector confidence", default=0.6, min=0.0, max=1.0,
                                      step=0.01),
            "max_faces": widget(INT, "keep the best N faces per frame (0: all)", default=0, min=0, max=256),
            "min_size": widget(INT, "ignore faces smaller than this (pixels, long side)", default=0, min=0,
                               max=8192),
        }, "optional": {
            "detector": widget(MODEL, "detector from Load Detector Model (default: YuNet)"),
            "input_size": widget(INT, "longest side the detector sees (0: its default); larger finds smaller "
                                      "faces, slower", default=0, min=0, max=4096, step=32),
            "tile": widget(INT, "tile size in frame pixels for small faces in large frames (0: off)", default=0,
                           min=0, max=8192, step=64),
            "rotations": widget(list(ROTATION_CHOICES), "extra passes on rotated frames for rolled heads",
                                default="none"),
            "iou_threshold": widget(FLOAT, "overlap above which duplicate boxes are merged", default=0.4,
                                    min=0.05, max=1.0, step=0.05),
            "sequence": widget(SEQUENCE, "frame numbers for the records"),
            **_view_inputs(),
        }}

    def detect(self, images, score_threshold=0.6, max_faces=0, min_size=0, detector=None, input_size=0, tile=0,
               rotations="none", iou_threshold=0.4, sequence=None, exposure="auto_frame", stops=0.0):
        opts = DetectOptions(score_threshold=score_threshold, iou_threshold=iou_threshold, max_faces=max_faces,
                             min_size=min_size, input_size=input_size, tile=tile,
                             rotations=ROTATION_CHOICES[rotations])
        model = _handle(detector, "detect").get()
        numbers = _frame_numbers(_frames(images).shape[0], sequence)
        return (_in_chunks("detect faces", images, exposure, stops,
                           lambda views, s: detect_frames(model, views, numbers[s], opts)),)


# ----------------------------------------------------------------------------------------- landmarks
class FaceLandmarks:
    DESCRIPTION = ("Landmarks for every detected face (default: MediaPipe Face Landmarker v2, 478 points with "
                   "iris, blendshapes and head pose), in frame pixels.")
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "landmarks"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("the faces with landmarks, pose and (for MediaPipe v2) blendshapes",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces from Detect Faces"),
            "recrop": widget(INT, "extra passes on the crop the landmarks themselves define", default=1, min=0,
                             max=3),
        }, "optional": {
            "model": widget(MODEL, "landmark model from Load Landmark Model (default: MediaPipe v2)"),
            **_view_inputs(),
        }}

    def landmarks(self, images, faces, recrop=1, model=None, exposure="auto_frame", stops=0.0):
        m = _handle(model, "landmarks").get()
        faces = _check_faces(faces, _frames(images).shape[0])
        return (_in_chunks("face landmarks", images, exposure, stops,
                           lambda views, s: landmark_frames(m, views, faces[s], recrop=recrop)),)


class RefineLandmarks:
    DESCRIPTION = ("Stage 2 of the cascade on MediaPipe meshes: re-crop passes on the mesh's own alignment, "
                   "then eye patches through the iris model where the gates allow (closed, far or "
                   "out-of-frame eyes are skipped). Each decision is recorded in the face's notes.")
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "refine"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("refined faces (provenance 'refined')",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces with a MediaPipe mesh"),
            "recrop": widget(INT, "re-crop passes of the mesh", default=1, min=0, max=3),
            "eyes": widget(EYE_MODES, "eye patches: auto (meshes without attention eyes), on, off",
                           default="auto"),
        }, "optional": {
            "mesh_model": widget(MODEL, "the mesh model for re-crop passes (default: the faces' own)"),
            "eye_model": widget(MODEL, "the eye patch model (default: MediaPipe iris)"),
            "min_eye_openness": widget(FLOAT, "eyelid gap / eye width below which an eye counts as closed",
                                       default=0.1, min=0.0, max=1.0, step=0.01),
            **_view_inputs(),
        }}

    def refine(self, images, faces, recrop=1, eyes="auto", mesh_model=None, eye_model=None, min_eye_openness=0.1,
               exposure="auto_frame", stops=0.0):
        faces = _check_faces(faces, _frames(images).shape[0])
        if mesh_model is None:
            used = next((n.split("=", 1)[1] for ff in faces for f in ff.faces for n in reversed(f.notes)
                         if n.startswith("landmarks=")), None)
            mesh_model = ModelHandle(used) if used and registry().get(used).family == "mediapipe_mesh" else \
                ModelHandle(registry().default("landmarks").id)
        opts = RefineOptions(recrop=recrop, eyes=eyes, min_eye_openness=min_eye_openness)
        mesh, iris = mesh_model.get(), _handle(eye_model, "refine").get()
        return (_in_chunks("refine landmarks", images, exposure, stops,
                           lambda views, s: refine_frames(views, faces[s], mesh=mesh, iris=iris, options=opts)),)


class FuseLandmarks:
    DESCRIPTION = ("Pose-gated fusion into 68 points: a 3D-model estimate (e.g. 3DDFA_V2, which holds up to "
                   "profile) weighted by smoothstep(|yaw|) against a 2D-model estimate (better frontal detail).")
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "fuse"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("fused faces (68 points)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces_3d": widget(FACES, "faces from a 3D-model landmarker (needs head pose)"),
            "faces_2d": widget(FACES, "faces from a 2D landmarker, same frames"),
            "yaw_from": widget(FLOAT, "below this |yaw| the 2D estimate is used alone", default=30.0, min=0.0,
                               max=90.0),
            "yaw_to": widget(FLOAT, "above this |yaw| the 3D estimate is used alone", default=60.0, min=0.0,
                             max=90.0),
        }}

    def fuse(self, faces_3d, faces_2d, yaw_from=30.0, yaw_to=60.0):
        if yaw_to <= yaw_from:
            raise InputError(f"yaw_to ({yaw_to}) must be above yaw_from ({yaw_from})")
        out = []
        for a, b in zip(faces_3d, _check_faces(faces_2d, len(faces_3d))):
            fused = [fuse_faces(a.faces[i], b.faces[j], (yaw_from, yaw_to)) for i, j in match_faces(a, b)]
            out.append(a.replace(faces=tuple(fused)))
        return (out,)


# --------------------------------------------------------------------------------------------- align
class AlignFaces:
    DESCRIPTION = ("Similarity-align every face to a template crop (fp64 least squares, no reflection). "
                   "Crops stay linear float; FACEGRAPH_ALIGN keeps crop_from_frame for paste-back.")
    CATEGORY = f"{CATEGORY}/align"
    FUNCTION = "align"
    RETURN_TYPES = (IMAGE, ALIGN, MASK)
    RETURN_NAMES = ("crops", "alignments", "crop_masks")
    OUTPUT_TOOLTIPS = ("one crop per face (all frames, in order)", "the transforms, one per crop",
                       "a feathered mask per crop, for paste-back")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces (keypoints or landmarks)"),
            "template": widget(list(TEMPLATE_NAMES), "target layout", default="ffhq_512"),
            "size": widget(INT, "crop size in pixels (0: the template's own)", default=512, min=0, max=8192,
                           step=8),
            "margin": widget(FLOAT, "extra room around the face (0.5: face 1/1.5 as large)", default=0.0,
                             min=0.0, max=4.0, step=0.05),
        }, "optional": {
            "points": widget(list(POINT_SOURCES), "which points to fit", default="auto"),
            "ransac": widget(FLOAT, "RANSAC inlier threshold in crop pixels (0: off)", default=0.0, min=0.0,
                             max=100.0),
            "max_rms": widget(FLOAT, "fail when the fit residual exceeds this (crop pixels; 0: never)",
                              default=0.0, min=0.0, max=1000.0),
            "feather": widget(FLOAT, "mask edge softness, fraction of the crop", default=0.1, min=0.0, max=0.5,
                              step=0.01),
        }}

    def align(self, images, faces, template="ffhq_512", size=512, margin=0.0, points="auto", ransac=0.0,
              max_rms=0.0, feather=0.1):
        frames = image_to_numpy(images)
        faces = _check_faces(faces, len(frames))
        opts = AlignOptions(template=template, size=(size, size), margin=margin, points=points, ransac=ransac,
                            max_rms=max_rms)
        crops, aligns = [], []
        with progress.task(len(frames), "align faces") as bar:
            for img, ff in zip(frames, faces):
                for i, face in enumerate(ff.faces):
                    try:
                        a = align(face, opts, frame=ff.frame, face_index=i)
                    except EstimationError as exc:
                        raise exc.with_context(frame=ff.frame, face=i)
                    aligns.append(a)
                    crops.append(warp_to_crop(img, a))
                bar.advance()
        if not crops:
            raise InputError("no faces to align in any frame", hint="check Detect Faces' threshold and input")
        mask = crop_mask(aligns[0].crop_size, feather)
        return (numpy_to_image(np.stack(crops)), aligns, numpy_to_mask(np.stack([mask] * len(crops))))


class SelectFaces:
    DESCRIPTION = "Keep some faces per frame: all, the largest, by index, the most central, or the most like a reference."
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "select"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("the kept faces per frame",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces": widget(FACES, "faces per frame"),
            "mode": widget(SELECT_MODES, "which faces", default="largest"),
            "index": widget(INT, "face index for mode 'index'", default=0, min=0, max=256),
            "count": widget(INT, "keep at most this many (0: mode default: 1 for ranked modes, all otherwise)",
                            default=0, min=0, max=256),
        }, "optional": {
            "reference": widget(FACES, "for mode 'reference': the first face of the first frame is the reference"),
        }}

    def select(self, faces, mode="largest", index=0, count=0, reference=None):
        ref = None
        if reference is not None:
            ref = next((f for ff in reference for f in ff.faces), None)
            if ref is None:
                raise InputError("the reference holds no face")
        return ([select(ff, mode, index=index, count=count, reference=ref) for ff in faces],)


# ------------------------------------------------------------------------------------------- preview
class DrawLandmarks:
    DESCRIPTION = ("Preview: frames through the sRGB view with boxes, keypoints and landmarks drawn on top; "
                   "shown in the node (evenly spaced frames, like Preview Image) and passed on.")
    CATEGORY = f"{CATEGORY}/preview"
    FUNCTION = "draw"
    OUTPUT_NODE = True
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("preview",)
    OUTPUT_TOOLTIPS = ("display-referred overlay (not for further processing)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces to draw"),
            "point_size": widget(INT, "dot radius in pixels", default=1, min=0, max=16),
            "boxes": widget(BOOLEAN, "draw boxes and scores", default=True),
        }, "optional": {"stops": widget(FLOAT, "exposure for the preview, in stops", default=0.0, min=-16.0,
                                        max=16.0, step=0.25),
                        "points": widget(POINT_SETS, "which points of a dense mesh (auto: the 68 on small faces)",
                                         default="auto"),
                        "preview_count": widget(INT, "frames shown in the node, evenly spaced (0: none)",
                                                default=PREVIEW_COUNT, min=0, max=4096)}}

    def draw(self, images, faces, point_size=1, boxes=True, stops=0.0, points="auto", preview_count=PREVIEW_COUNT):
        frames = image_to_numpy(images)
        faces = _check_faces(faces, len(frames))
        view = ViewOptions(exposure="none", stops=stops)
        out = []
        with progress.task(len(frames), "draw landmarks") as bar:
            for f, ff in zip(frames, faces):
                out.append(draw_faces(to_display(f, view), ff.faces, point_size, boxes, points))
                bar.advance()
        shown = progress.ui_images([out[i] for i in progress.preview_picks(len(out), preview_count)],
                                   "draw_landmarks")
        return progress.ui_result((numpy_to_image(np.stack(out).astype(np.float32) / 255.0),), images=shown)


class FaceInfo:
    DESCRIPTION = ("Face data as JSON: boxes, scores, head pose, blendshapes, notes (for inspection or export), "
                   "shown in the node; a graph may end here.")
    CATEGORY = f"{CATEGORY}/analysis"
    FUNCTION = "info"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING, INT)
    RETURN_NAMES = ("json", "face_count")
    OUTPUT_TOOLTIPS = ("per-frame summary as JSON text", "total faces over all frames")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"faces": widget(FACES, "faces per frame"),
                             "landmarks": widget(BOOLEAN, "include landmark coordinates", default=False)}}

    def info(self, faces, landmarks=False):
        doc = []
        for ff in faces:
            rows = []
            for f in ff.faces:
                row = {"box": [round(float(v), 2) for v in f.box], "score": round(f.score, 4),
                       "provenance": f.provenance, "notes": list(f.notes)}
                if f.pose is not None:
                    row["pose"] = {"yaw": round(f.pose.yaw, 2), "pitch": round(f.pose.pitch, 2),
                                   "roll": round(f.pose.roll, 2), "method": f.pose.method}
                if f.blendshapes is not None:
                    row["blendshapes"] = {k: round(v, 4) for k, v in f.blendshapes.as_dict().items()}
                if landmarks and f.landmarks is not None:
                    row["landmarks"] = {"scheme": f.landmarks.scheme, "points": f.landmarks.xy.round(2).tolist()}
                rows.append(row)
            doc.append({"frame": ff.frame, "faces": rows})
        text = json.dumps(doc, indent=1)
        return {"ui": {"text": [text[:2000]]}, "result": (text, sum(len(ff) for ff in faces))}


# ---------------------------------------------------------------------------------------- converters
class ToFaceLandmarks:
    DESCRIPTION = ("Convert to ComfyUI core's FACE_LANDMARKS payload (MediaPipe-style face dicts per frame). "
                   "Faces without a MediaPipe mesh get their own points in landmarks_xy.")
    CATEGORY = f"{CATEGORY}/convert"
    FUNCTION = "convert"
    RETURN_TYPES = ("FACE_LANDMARKS",)
    RETURN_NAMES = ("face_landmarks",)
    OUTPUT_TOOLTIPS = ("for ComfyUI's MediaPipe visualise / mask nodes",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"faces": widget(FACES, "faces per frame")}}

    def convert(self, faces):
        frames = []
        for ff in faces:
            out = []
            for f in ff.faces:
                pts = np.asarray(f.landmarks.points if f.landmarks is not None else
                                 (f.keypoints if f.keypoints is not None else np.zeros((0, 2))), np.float32)
                p3 = pts if pts.shape[1:] == (3,) else np.concatenate([pts, np.zeros((len(pts), 1), np.float32)], 1)
                out.append({"bbox_xyxy": np.asarray(f.box, np.float32), "landmarks_xy": p3[:, :2].copy(),
                            "landmarks_3d": p3, "presence": float(np.mean(f.landmarks.confidence))
                            if f.landmarks is not None and f.landmarks.confidence is not None else 1.0,
                            "score": float(f.score),
                            "blendshapes": f.blendshapes.as_dict() if f.blendshapes is not None else {},
                            "transformation_matrix": np.asarray(f.pose.matrix, np.float32)
                            if f.pose is not None and f.pose.matrix is not None else np.eye(4, dtype=np.float32)})
            frames.append(out)
        h = faces[0].size[1] if faces else 0
        w = faces[0].size[0] if faces else 0
        parts = ("face_oval", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow", "lips", "irises", "nose",
                 "tesselation", "contours", "all")
        return ({"frames": frames, "image_size": (h, w), "connection_sets": {p: frozenset() for p in parts}},)


class FromFaceLandmarks:
    DESCRIPTION = "Convert ComfyUI core's FACE_LANDMARKS (MediaPipe 478 points, pixels) into facegraph faces."
    CATEGORY = f"{CATEGORY}/convert"
    FUNCTION = "convert"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("faces per frame with mediapipe478 landmarks",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"face_landmarks": widget("FACE_LANDMARKS", "from ComfyUI's MediaPipe Face Landmarker")}}

    def convert(self, face_landmarks):
        h, w = face_landmarks.get("image_size", (0, 0))
        out = []
        for i, frame in enumerate(face_landmarks.get("frames", [])):
            faces = []
            for d in frame:
                pts = np.asarray(d.get("landmarks_3d", d.get("landmarks_xy")), np.float32)
                scheme = {478: "mediapipe478", 468: "mediapipe468", 68: "ibug68"}.get(len(pts))
                lm = Landmarks(points=pts, scheme=scheme) if scheme else None
                faces.append(Face(box=np.asarray(d["bbox_xyxy"], np.float32), score=float(d.get("score", 1.0)),
                                  landmarks=lm, detector="comfyui-mediapipe"))
            out.append(FrameFaces(frame=i, size=(int(w), int(h)), faces=tuple(faces)))
        return (out,)


class ToBoundingBox:
    DESCRIPTION = "Convert face boxes to ComfyUI core's BOUNDING_BOX lists (x, y, width, height, label, score)."
    CATEGORY = f"{CATEGORY}/convert"
    FUNCTION = "convert"
    RETURN_TYPES = ("BOUNDING_BOX",)
    RETURN_NAMES = ("bboxes",)
    OUTPUT_TOOLTIPS = ("per frame, one box per face",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"faces": widget(FACES, "faces per frame")}}

    def convert(self, faces):
        return ([[{"x": float(f.box[0]), "y": float(f.box[1]), "width": float(f.width), "height": float(f.height),
                   "label": "face", "score": float(f.score)} for f in ff.faces] for ff in faces],)


class FromBoundingBox:
    DESCRIPTION = "Convert ComfyUI core's BOUNDING_BOX lists into facegraph faces (boxes only: add landmarks next)."
    CATEGORY = f"{CATEGORY}/convert"
    FUNCTION = "convert"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("faces per frame",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"bboxes": widget("BOUNDING_BOX", "boxes per frame"),
                             "images": widget(IMAGE, "the frames the boxes belong to (for their size)")}}

    def convert(self, bboxes, images):
        frames = image_to_numpy(images)
        if bboxes and isinstance(bboxes[0], dict):
            bboxes = [bboxes]  # a single frame's list
        if len(bboxes) != len(frames):
            raise InputError(f"{len(bboxes)} box lists for {len(frames)} images")
        out = []
        for i, (boxes, img) in enumerate(zip(bboxes, frames)):
            faces = tuple(Face(box=[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]],
                               score=float(b.get("score", 1.0)), detector="comfyui-bbox") for b in boxes)
            out.append(FrameFaces(frame=i, size=(img.shape[1], img.shape[0]), faces=faces))
        return (out,)


NODES = {
    "FacegraphLoadDetector": (LoadDetector, "Load Detector Model (facegraph)"),
    "FacegraphLoadLandmarker": (LoadLandmarker, "Load Landmark Model (facegraph)"),
    "FacegraphLoadRefiner": (LoadRefiner, "Load Eye Patch Model (facegraph)"),
    "FacegraphDetectFaces": (DetectFaces, "Detect Faces (facegraph)"),
    "FacegraphFaceLandmarks": (FaceLandmarks, "Face Landmarks (facegraph)"),
    "FacegraphRefineLandmarks": (RefineLandmarks, "Refine Landmarks (facegraph)"),
    "FacegraphFuseLandmarks": (FuseLandmarks, "Fuse Landmarks by Pose (facegraph)"),
    "FacegraphAlignFaces": (AlignFaces, "Align Faces (facegraph)"),
    "FacegraphSelectFaces": (SelectFaces, "Select Faces (facegraph)"),
    "FacegraphDrawLandmarks": (DrawLandmarks, "Draw Landmarks (facegraph)"),
    "FacegraphFaceInfo": (FaceInfo, "Face Info (facegraph)"),
    "FacegraphToFaceLandmarks": (ToFaceLandmarks, "Faces to FACE_LANDMARKS (facegraph)"),
    "FacegraphFromFaceLandmarks": (FromFaceLandmarks, "FACE_LANDMARKS to Faces (facegraph)"),
    "FacegraphToBoundingBox": (ToBoundingBox, "Faces to BOUNDING_BOX (facegraph)"),
    "FacegraphFromBoundingBox": (FromBoundingBox, "BOUNDING_BOX to Faces (facegraph)"),
}
