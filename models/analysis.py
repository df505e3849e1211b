"""The analysis chain: views -> detected faces -> landmarks -> refined landmarks, as typed records.

Orchestration only: it feeds models (``detectors``, ``landmarkers``) with the regions ``core`` computes and
turns their results into :class:`~facegraph.core.types.FrameFaces`. Nodes and the command line call these.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import progress
from ..core.detection import Detections, DetectOptions
from ..core.errors import InputError
from ..core.landmarks import five_from_ibug68, five_from_mesh, mesh_to_ibug68
from ..core.pose import angles_from_rotation
from ..core.refine import (RefineOptions, apply_eye_patch, eye_gate, fuse_by_pose, patch_shift)
from ..core.types import Blendshapes, Face, FrameFaces, HeadPose, Landmarks, MorphableParams
from .landmarkers import IrisModel, LandmarkModel, LandmarkResult


def faces_from_detections(det: Detections, frame: int, size: tuple[int, int], detector_id: str) -> FrameFaces:
    faces = []
    for i in range(len(det)):
        kps = det.keypoints[i] if det.keypoints is not None and det.scheme == "five" else None
        lm = None
        if det.keypoints is not None and det.scheme == "blaze6":
            lm = Landmarks(points=det.keypoints[i], scheme="blaze6")
        faces.append(Face(box=det.boxes[i], score=float(det.scores[i]), keypoints=kps, landmarks=lm,
                          detector=detector_id))
    return FrameFaces(frame=frame, size=size, faces=tuple(faces))


def detect_frames(detector, views: Sequence[np.ndarray], frames: Sequence[int],
                  options: DetectOptions = DetectOptions()) -> list[FrameFaces]:
    """Detect faces in same-size views; one FrameFaces per view, faces best first."""
    dets = detector.detect(list(views), options)
    return [faces_from_detections(d, f, (v.shape[1], v.shape[0]), detector.spec.id)
            for d, f, v in zip(dets, frames, views)]


def _pose(result: LandmarkResult, method: str) -> HeadPose | None:
    if result.rotation is None:
        return None
    yaw, pitch, roll = angles_from_rotation(result.rotation)
    m = np.eye(4)
    m[:3, :3] = result.rotation
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll, matrix=m, method=method,
                    residual=float(result.extras.get("shape_residual", 0.0)))


def apply_result(face: Face, result: LandmarkResult, model_id: str, provenance: str | None = None,
                 notes: Sequence[str] = (), note_model: bool = True) -> Face:
    """A new Face carrying ``result`` (landmarks, pose, blendshapes, 3DMM parameters; keypoints derived from
    the landmarks when the detector gave none)."""
    conf = result.confidence if result.confidence is not None else np.full(len(result.points), result.presence)
    lm = Landmarks(points=result.points, scheme=result.scheme, confidence=np.clip(conf, 0, 1))
    changes = {"landmarks": lm,
               "notes": tuple(face.notes) + tuple(notes) + ((f"landmarks={model_id}",) if note_model else ())}
    pose = _pose(result, model_id)
    if pose is not None:
        changes["pose"] = pose
    if result.blendshapes is not None:
        changes["blendshapes"] = Blendshapes(names=result.blendshapes[0], values=result.blendshapes[1])
    if "params" in result.extras:
        from .morphable import bfm_coefficients_from_tddfa

        p = result.extras["params"]
        # one meaning for MorphableParams(model="bfm_3ddfa") everywhere: the model's N(0, 1) coefficients
        # (what Fit Face Model writes and core.morphable fits), not 3DDFA_V2's raw de-whitened ones
        shape, expression = bfm_coefficients_from_tddfa(p[12:52], p[52:62])
        changes["morphable"] = MorphableParams(model="bfm_3ddfa", shape=shape.astype(np.float32),
                                               expression=expression.astype(np.float32),
                                               camera=result.extras.get("camera"))
    if face.keypoints is None:
        five = five_from_mesh(result.points) if result.scheme.startswith("mediapipe") else (
            five_from_ibug68(result.points) if result.scheme == "ibug68" else None)
        if five is not None:
            changes["keypoints"] = five
    if provenance:
        changes["provenance"] = provenance
    return face.replace(**changes)


def landmark_frames(model: LandmarkModel, views: Sequence[np.ndarray], frames: Sequence[FrameFaces], *,
                    recrop: int = 0) -> list[FrameFaces]:
    """Run a landmark model on every face (crop from its box and keypoints), then ``recrop`` passes on the
    crop the previous landmarks define."""
    out = []
    with progress.task(sum(len(f) for f in frames), f"landmarks ({model.spec.id})") as bar:
        for view, ff in zip(views, frames):
            faces = []
            for face in ff.faces:
                rois = [model.roi_for(face.box, face.keypoints)]
                res = model.predict(view, rois)[0]
                for _ in range(recrop):
                    res = model.predict(view, [model.roi_for(face.box, points=res.points, scheme=res.scheme)])[0]
                notes = (f"recrop={recrop}",) if recrop else ()
                faces.append(apply_result(face, res, model.spec.id, notes=notes))
                bar.advance()
            out.append(ff.replace(faces=tuple(faces)))
    return out


def eye_mode_for(model: LandmarkModel | None, mode: str) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return getattr(model, "scheme", "") == "mediapipe468"  # v2's attention heads already refine the eyes


def refine_frames(views: Sequence[np.ndarray], frames: Sequence[FrameFaces], *, mesh: LandmarkModel | None,
                  iris: IrisModel | None, options: RefineOptions = RefineOptions()) -> list[FrameFaces]:
    """Stage 2 of the cascade on faces that carry a MediaPipe mesh: re-crop passes of ``mesh`` on its own
    alignment, then eye patches through ``iris`` where the gates allow. Each decision is noted on the face."""
    out = []
    for view, ff in zip(views, frames):
        h, w = view.shape[:2]
        faces = []
        for face in ff.faces:
            lm = face.landmarks
            if lm is None or not lm.scheme.startswith("mediapipe"):
                faces.append(face.replace(notes=face.notes + ("refine=skipped:no-mesh",)))
                continue
            presence = float(np.mean(lm.confidence)) if lm.confidence is not None else 1.0
            if presence < options.min_presence:
                faces.append(face.replace(notes=face.notes + ("refine=skipped:low-presence",)))
                continue
            notes: list[str] = []
            pts = np.array(lm.points)
            if mesh is not None and options.recrop > 0:
                res = None
                for _ in range(options.recrop):
                    res = mesh.predict(view, [mesh.roi_for(face.box, points=pts, scheme=lm.scheme)])[0]
                    pts = res.points
                face = apply_result(face, res, mesh.spec.id, note_model=False)
                notes.append(f"refine.recrop={options.recrop}")
            if iris is not None and eye_mode_for(mesh, options.eyes):
                rois = iris.eye_rois(pts)
                sides = ("left", "right")
                gates = [eye_gate(pts, s, r, (w, h), options, presence) for s, (r, _) in zip(sides, rois)]
                todo = [(s, e) for s, e, g in zip(sides, rois, gates) if g is None]
                results = dict(zip([s for s, _ in todo], iris.predict(view, [e for _, e in todo])))
                for side, gate in zip(sides, gates):
                    if gate is not None:
                        notes.append(f"refine.eye.{side}=skipped:{gate}")
                        continue
                    eye = results[side]
                    shift = patch_shift(pts, eye.contour, side)
                    if shift > options.max_patch_shift:
                        notes.append(f"refine.eye.{side}=rejected:shift={shift:.2f}")
                        continue
                    pts = apply_eye_patch(pts, eye.contour, eye.iris, side)
                    notes.append(f"refine.eye.{side}=applied")
            elif iris is not None:
                notes.append("refine.eyes=off:mesh-has-attention-eyes" if options.eyes == "auto" else "refine.eyes=off")
            conf = np.full(len(pts), presence, np.float32)
            scheme = "mediapipe478" if len(pts) == 478 else lm.scheme
            face = face.replace(landmarks=Landmarks(points=pts, scheme=scheme, confidence=conf),
                                provenance="refined", notes=face.notes + tuple(notes))
            faces.append(face)
        out.append(ff.replace(faces=tuple(faces)))
    return out


def fuse_faces(face_3d: Face, face_2d: Face, gate: tuple[float, float] = (30.0, 60.0)) -> Face:
    """Pose-gated fusion of a 3D-model face (e.g. 3DDFA_V2, with pose) and a 2D-model face into 68 points."""
    if face_3d.pose is None or face_3d.landmarks is None or face_2d.landmarks is None:
        raise InputError("fusion needs landmarks on both faces and a head pose on the 3D one")
    def to68(lm):
        return mesh_to_ibug68(lm.xy) if lm.scheme.startswith("mediapipe") else np.asarray(lm.xy)
    pts, w3 = fuse_by_pose(to68(face_3d.landmarks), to68(face_2d.landmarks), face_3d.pose.yaw, gate)
    return face_3d.replace(landmarks=Landmarks(points=pts, scheme="ibug68"), provenance="refined",
                           notes=face_3d.notes + (f"fuse.weight3d={w3:.2f}",))


def match_faces(a: FrameFaces, b: FrameFaces, min_iou: float = 0.3) -> list[tuple[int, int]]:
    """Pairs (i, j) of faces in two results for the same frame, by box IoU (greedy, best first)."""
    from ..core.detection import box_iou

    if not len(a) or not len(b):
        return []
    iou = box_iou(np.stack([f.box for f in a.faces]), np.stack([f.box for f in b.faces]))
    pairs = []
    while iou.size and iou.max() >= min_iou:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        pairs.append((int(i), int(j)))
        iou[i, :] = -1
        iou[:, j] = -1
    return pairs
