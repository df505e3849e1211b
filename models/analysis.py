"""The analysis chain: views -> detected faces -> landmarks -> refined landmarks, as typed records.

Orchestration only: it feeds models (``detectors``, ``landmarkers``) with the regions ``core`` computes and
turns their results into :class:`~facegraph.core.types.FrameFaces`. Nodes and the command line call these.

One frame path: the stages take a :class:`~facegraph.core.colour.FrameViews` of linear frames (B, C, H, W) torch
tensors on any device, and each network sees the view made at its own input resolution (detector input, face
crop, eye crop) from the frames' shared exposure statistics. Every stage is batched: detection over all
frames, landmark and iris models over all faces (eyes) of all frames, crops cut by one batched warp. The
stages still accept display-referred numpy views (H, W, 3) in [0, 1] (``core.colour.network_view``) and run
the same code on them.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..core import progress
from ..core.colour import FrameViews
from ..core.detection import Detections, DetectOptions
from ..core.errors import EstimationError, InputError
from ..core.geometry import estimate_similarity, transform_points
from ..core.landmarks import Roi, five_from_ibug68, five_from_mesh, mesh_to_ibug68
from ..core.pose import angles_from_rotation
from ..core.refine import (RefineOptions, apply_eye_patch, eye_gate, fuse_by_pose, patch_shift)
from ..core.types import Blendshapes, Face, FrameFaces, HeadPose, Landmarks, MorphableParams
from .landmarkers import IrisModel, LandmarkModel, LandmarkResult, MediaPipeMesh


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


#: faces per landmark-model call in the batched stages: bounds the crops in memory (64 crops of 256 x 256 RGB
#: float32: 50 MB) however many faces a batch of frames holds
FACE_CHUNK = 64


def as_views(views) -> FrameViews:
    """A FrameViews as it is, or a sequence of display-referred numpy views (H, W, 3) in [0, 1] of one size
    (``core.colour.network_view`` outputs, the stage functions' older input) as one."""
    if isinstance(views, FrameViews):
        return views
    views = list(views)
    if not views:
        raise InputError("no frames to analyse")
    return FrameViews.from_display(views)


def detect_frames(detector, views, frames: Sequence[int],
                  options: DetectOptions = DetectOptions()) -> list[FrameFaces]:
    """Detect faces in a batch of frames; one FrameFaces per frame, faces best first.

    Convention: views: a :class:`~facegraph.core.colour.FrameViews` of B linear frames (any device; the
    detector's input is made at its own resolution), or B display-referred numpy views (H, W, 3) in [0, 1];
    frames: B frame numbers. Boxes and keypoints in frame pixels (pixel-area convention)."""
    fv = as_views(views)
    if len(frames) != len(fv):
        raise InputError(f"{len(frames)} frame numbers for {len(fv)} frames")
    dets = detector.detect_views(fv, options)
    return [faces_from_detections(d, f, fv.size, detector.spec.id) for d, f in zip(dets, frames)]


def _predict(model: LandmarkModel, fv: FrameViews, index: list[int], rois: list, extras: bool = True) -> list:
    """model.predict_frames over N faces in chunks of FACE_CHUNK (one batched warp and network batch each)."""
    out: list = []
    for start in range(0, len(rois), FACE_CHUNK):
        sl = slice(start, start + FACE_CHUNK)
        if isinstance(model, MediaPipeMesh):
            out += model.predict_frames(fv, index[sl], rois[sl], extras=extras)
        else:
            out += model.predict_frames(fv, index[sl], rois[sl])
    return out


def _faces_of(frames: Sequence[FrameFaces]) -> list[tuple[int, int, Face]]:
    return [(fi, j, face) for fi, ff in enumerate(frames) for j, face in enumerate(ff.faces)]


def _with_faces(frames: Sequence[FrameFaces], faces: dict[tuple[int, int], Face]) -> list[FrameFaces]:
    return [ff.replace(faces=tuple(faces.get((fi, j), f) for j, f in enumerate(ff.faces)))
            for fi, ff in enumerate(frames)]


def landmark_results(model: LandmarkModel, views, frames: Sequence[FrameFaces], *, recrop: int = 0,
                     extras: bool = True) -> list[LandmarkResult]:
    """The landmark model's results for every face of every frame (in frame, then face order): one batched
    pass over all faces (crops from box and keypoints), then ``recrop`` batched passes on the crops the
    previous landmarks define. extras=False leaves MediaPipe v2's pose and blendshapes out (see
    ``MediaPipeMesh.add_extras``)."""
    fv = as_views(views)
    faces = _faces_of(frames)
    index = [fi for fi, _, _ in faces]
    res = _predict(model, fv, index, [model.roi_for(f.box, f.keypoints) for _, _, f in faces],
                   extras=extras and recrop == 0)
    for p in range(recrop):
        rois = [model.roi_for(f.box, points=r.points, scheme=r.scheme) for (_, _, f), r in zip(faces, res)]
        res = _predict(model, fv, index, rois, extras=extras and p == recrop - 1)
    return res


def landmark_frames(model: LandmarkModel, views, frames: Sequence[FrameFaces], *,
                    recrop: int = 0) -> list[FrameFaces]:
    """Run a landmark model on every face (crop from its box and keypoints), then ``recrop`` passes on the
    crop the previous landmarks define; all faces of all frames in one batch per pass.

    Convention: views: FrameViews of the linear frames (any device) or display-referred numpy views (see
    :func:`detect_frames`); frames: one FrameFaces per frame. Returns the frames with landmarks (frame
    pixels), pose and blendshapes where the model gives them."""
    fv = as_views(views)
    faces = _faces_of(frames)
    with progress.task(len(faces), f"landmarks ({model.spec.id})") as bar:
        res = landmark_results(model, fv, frames, recrop=recrop)
        notes = (f"recrop={recrop}",) if recrop else ()
        new = {(fi, j): apply_result(f, r, model.spec.id, notes=notes) for (fi, j, f), r in zip(faces, res)}
        bar.advance(len(faces))
    return _with_faces(frames, new)


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


def eye_mode_for(model: LandmarkModel | None, mode: str) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return getattr(model, "scheme", "") == "mediapipe468"  # v2's attention heads already refine the eyes


def refine_frames(views, frames: Sequence[FrameFaces], *, mesh: LandmarkModel | None,
                  iris: IrisModel | None, options: RefineOptions = RefineOptions()) -> list[FrameFaces]:
    """Stage 2 of the cascade on faces that carry a MediaPipe mesh: re-crop passes of ``mesh`` on its own
    alignment, then eye patches through ``iris`` where the gates allow. Each decision is noted on the face.

    Batched: each re-crop pass runs over every eligible face of every frame at once, and the iris model over
    every eye that passes its gates. Convention as :func:`landmark_frames`."""
    fv = as_views(views)
    size = fv.size
    done: dict[tuple[int, int], Face] = {}
    todo: list[tuple[int, int, Face, float]] = []
    for fi, j, face in _faces_of(frames):
        lm = face.landmarks
        if lm is None or not lm.scheme.startswith("mediapipe"):
            done[(fi, j)] = face.replace(notes=face.notes + ("refine=skipped:no-mesh",))
            continue
        presence = float(np.mean(lm.confidence)) if lm.confidence is not None else 1.0
        if presence < options.min_presence:
            done[(fi, j)] = face.replace(notes=face.notes + ("refine=skipped:low-presence",))
            continue
        todo.append((fi, j, face, presence))
    if not todo:
        return _with_faces(frames, done)
    index = [fi for fi, _, _, _ in todo]
    faces = [f for _, _, f, _ in todo]
    pts = [np.array(f.landmarks.points) for f in faces]
    notes: list[list[str]] = [[] for _ in todo]
    if mesh is not None and options.recrop > 0:
        res = None
        for p in range(options.recrop):
            rois = [mesh.roi_for(f.box, points=q, scheme=f.landmarks.scheme) for f, q in zip(faces, pts)]
            res = _predict(mesh, fv, index, rois, extras=p == options.recrop - 1)
            pts = [r.points for r in res]
        faces = [apply_result(f, r, mesh.spec.id, note_model=False) for f, r in zip(faces, res)]
        for n in notes:
            n.append(f"refine.recrop={options.recrop}")
    if iris is not None and eye_mode_for(mesh, options.eyes):
        sides = ("left", "right")
        eyes, eye_index, plans = [], [], []
        for k, (fi, _, _, presence) in enumerate(todo):
            rois = iris.eye_rois(pts[k])
            gates = [eye_gate(pts[k], s, r, size, options, presence) for s, (r, _) in zip(sides, rois)]
            slots = {}
            for side, eye, gate in zip(sides, rois, gates):
                if gate is None:
                    slots[side] = len(eyes)
                    eyes.append(eye)
                    eye_index.append(fi)
            plans.append((gates, slots))
        results = iris.predict_frames(fv, eye_index, eyes) if eyes else []
        for k, (gates, slots) in enumerate(plans):
            for side, gate in zip(sides, gates):
                if gate is not None:
                    notes[k].append(f"refine.eye.{side}=skipped:{gate}")
                    continue
                eye = results[slots[side]]
                shift = patch_shift(pts[k], eye.contour, side)
                if shift > options.max_patch_shift:
                    notes[k].append(f"refine.eye.{side}=rejected:shift={shift:.2f}")
                    continue
                pts[k] = apply_eye_patch(pts[k], eye.contour, eye.iris, side)
                notes[k].append(f"refine.eye.{side}=applied")
    elif iris is not None:
        for n in notes:
            n.append("refine.eyes=off:mesh-has-attention-eyes" if options.eyes == "auto" else "refine.eyes=off")
    for k, (fi, j, _, presence) in enumerate(todo):
        face, q = faces[k], pts[k]
        conf = np.full(len(q), presence, np.float32)
        scheme = "mediapipe478" if len(q) == 478 else face.landmarks.scheme
        done[(fi, j)] = face.replace(landmarks=Landmarks(points=q, scheme=scheme, confidence=conf),
                                     provenance="refined", notes=face.notes + tuple(notes[k]))
    return _with_faces(frames, done)


def analyse_views(views, frames: Sequence[int], *, detector, mesh: LandmarkModel, iris: IrisModel | None,
                  detect: DetectOptions = DetectOptions(),
                  refine: RefineOptions = RefineOptions()) -> list[FrameFaces]:
    """The default chain over a batch of frames: detect -> landmarks -> refine (re-crop passes, eye patches),
    each stage batched over all frames and faces; the same faces as running the three stage functions in
    turn. MediaPipe v2's pose and blendshapes are computed once, on the landmarks that are kept (they are
    functions of the points), not on a first pass that a re-crop replaces.

    Convention: views: FrameViews of B linear frames (any device) or B display-referred numpy views;
    frames: B frame numbers. Returns B FrameFaces, frame pixels."""
    fv = as_views(views)
    found = detect_frames(detector, fv, frames, detect)
    faces = _faces_of(found)
    lazy = isinstance(mesh, MediaPipeMesh) and refine.recrop > 0
    res = landmark_results(mesh, fv, found, extras=not lazy)
    marked: dict[tuple[int, int], Face] = {}
    for (fi, j, f), r in zip(faces, res):
        face = apply_result(f, r, mesh.spec.id)
        if lazy and float(np.mean(face.landmarks.confidence)) < refine.min_presence:  # refine keeps this pass
            mesh.add_extras([r])
            face = apply_result(f, r, mesh.spec.id)
        marked[(fi, j)] = face
    return refine_frames(fv, _with_faces(found, marked), mesh=mesh, iris=iris, options=refine)


#: the note a face found by the track step carries (see :func:`track_views`)
TRACKED_NOTE = "roi=tracked"


def _presence(face: Face) -> float:
    """The presence refine_frames gates on: the mean per-point confidence (the mesh's presence, for MediaPipe)."""
    lm = face.landmarks
    return float(np.mean(lm.confidence)) if lm is not None and lm.confidence is not None else 1.0


def tracked_roi(mesh: LandmarkModel, face: Face, size: tuple[int, int],
                options: RefineOptions = RefineOptions()) -> Roi | None:
    """The mesh's crop region for ``face`` in the next frame: the region its final landmarks define (the same
    :meth:`~facegraph.models.landmarkers.MediaPipeMesh.roi_for` the re-crop pass uses), or None when the face
    cannot be followed: no MediaPipe mesh, presence below ``options.min_presence``, or the region's centre
    outside the frame (``size`` = (w, h) pixels; pixel-area convention)."""
    lm = face.landmarks
    if lm is None or not lm.scheme.startswith("mediapipe") or len(lm.points) < 468:
        return None
    if _presence(face) < options.min_presence:
        return None
    roi = mesh.roi_for(face.box, points=lm.points, scheme=lm.scheme)
    if not (0.0 <= roi.cx <= size[0] and 0.0 <= roi.cy <= size[1]) or not roi.size > 0:
        return None
    return roi


def _followed(face: Face, result: LandmarkResult) -> Face | None:
    """A new Face for ``result`` (the mesh on the region ``face``'s landmarks define): the detector's box and
    keypoints of ``face`` carried along by the similarity (fp64 Umeyama over the 468 mesh points) that moves
    its landmarks onto the new ones, its score and detector kept, no landmarks yet (apply_result adds them).
    None when the similarity is degenerate."""
    n = min(len(face.landmarks.points), len(result.points), 468)
    try:
        m = estimate_similarity(face.landmarks.points[:n, :2], result.points[:n, :2]).matrix
    except EstimationError:
        return None
    s = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    x0, y0, x1, y1 = (float(v) for v in face.box)
    cx, cy = transform_points(m, np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]))[0]
    hw, hh = (x1 - x0) * s / 2, (y1 - y0) * s / 2
    if not (np.isfinite([cx, cy, hw, hh]).all() and hw >= 0 and hh >= 0):
        return None
    kps = None if face.keypoints is None else transform_points(m, np.asarray(face.keypoints, np.float64))
    return Face(box=np.array([cx - hw, cy - hh, cx + hw, cy + hh]), score=face.score, keypoints=kps,
                detector=face.detector, notes=(TRACKED_NOTE,))


def track_views(views, frames: Sequence[int], previous: Sequence[FrameFaces], *, mesh: LandmarkModel,
                iris: IrisModel | None, refine: RefineOptions = RefineOptions()) -> list[FrameFaces | None]:
    """The track step of the shot analysis: each frame's faces from the PREVIOUS frame's final landmarks, no
    detection (MediaPipe's video mode: the mesh region of a frame comes from the previous frame's landmarks).

    Per face: the region :func:`tracked_roi` derives from its previous landmarks, ONE batched mesh pass over
    all faces of all frames (with pose and blendshapes; no re-crop), then the same refine step as the full chain
    (:func:`refine_frames` without re-crop passes: eye patches and their gates). The face keeps its
    detector's box, keypoints and score, moved with the landmarks (see :func:`_followed`), and carries the
    note ``roi=tracked``. A frame is LOST (None: the caller runs the full chain on it) when its previous frame
    has no face, or any face cannot be followed (:func:`tracked_roi`), or the mesh's presence on any face falls
    below ``refine.min_presence``. Faces that enter between keyframes are not seen here (only a detection
    finds them).

    Convention: views: FrameViews of B linear frames (any device) or B display-referred numpy views; frames: B
    frame numbers; previous: B FrameFaces of each frame's predecessor in these frames' pixels (pixel-area
    convention). Returns B FrameFaces (frame pixels) or None."""
    fv = as_views(views)
    if len(frames) != len(fv) or len(previous) != len(fv):
        raise InputError(f"{len(frames)} frame numbers and {len(previous)} previous results for {len(fv)} frames")
    if not isinstance(mesh, MediaPipeMesh):
        raise InputError(f"the track step needs a MediaPipe mesh (its presence says when a face is lost), got "
                         f"{mesh.spec.id}", hint="detect every frame (AnalysisOptions(detect_every=1))")
    lost: set[int] = set()
    index, rois, owners = [], [], []
    for fi, prev in enumerate(previous):
        plan = [(face, tracked_roi(mesh, face, fv.size, refine)) for face in prev.faces]
        if not plan or any(roi is None for _, roi in plan):
            lost.add(fi)
            continue
        for face, roi in plan:
            index.append(fi)
            rois.append(roi)
            owners.append((fi, face))
    res = _predict(mesh, fv, index, rois, extras=True)
    found: dict[int, list[Face]] = {}
    for (fi, face), r in zip(owners, res):
        base = _followed(face, r)
        new = None if base is None else apply_result(base, r, mesh.spec.id)
        if new is None or _presence(new) < refine.min_presence:
            lost.add(fi)
            continue
        found.setdefault(fi, []).append(new)
    tracked = [FrameFaces(frame=int(frames[fi]), size=fv.size,
                          faces=() if fi in lost else tuple(found.get(fi, ()))) for fi in range(len(fv))]
    refined = refine_frames(fv, tracked, mesh=mesh, iris=iris, options=dataclasses.replace(refine, recrop=0))
    return [None if fi in lost else ff for fi, ff in enumerate(refined)]


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
