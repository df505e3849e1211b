"""Shot-level processing on face records: integrity gates, per-track alignment series, gap filling,
smoothing, and the tracking export (JSON, per-frame .npz, Nuke/Blender .chan) with its import.

Per track, each frame's face is described by (a) its alignment to a template in a unit crop (the face's
placement: centre in face-size units, log scale, rotation) and (b) its points *in the aligned frame* (landmarks,
keypoints, box corners, free of head motion). Both series are smoothed separately (expressions are not smeared
by head motion, head motion not damped by expression noise, as KeenTools does with per-parameter weights),
then recombined. Gated or missing frames inside a track are filled by interpolation (held at the ends), with
provenance ``filled`` and the reason in the notes.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from . import temporal
from .align import AlignOptions, align
from .colour import luminance
from .errors import EstimationError, ImageIOError, InputError
from .fsutil import atomic_write
from .geometry import decompose_similarity, invert_affine, similarity_matrix, transform_points
from .templates import get_template
from .tracking import TrackOptions, track
from .types import Alignment, Blendshapes, Face, FrameFaces, Landmarks
from .version import version

SCHEMA = "facegraph.tracking"
#: 2 adds the optional "fit" (a facegraph.fit document: the 3DMM identity, expression and camera per frame);
#: version 1 files are read as before
SCHEMA_VERSION = 2


# ------------------------------------------------------------------------------------------------ gate
@dataclasses.dataclass(frozen=True)
class GateOptions:
    """A face is unusable (and filled from its neighbours) when: |yaw| > max_yaw degrees; landmark
    confidence < min_confidence; the landmarks are far from a rigid face (pose residual > max_residual: real
    faces measure 0.03-0.05, p95 < 0.09 on AFLW2000-3D dev; non-faces 0.12-0.6); the face is too dark (median
    linear luminance in its box < dark) or clipped (more than ``clipped`` of its pixels at the plate's clip
    level)."""

    max_yaw: float = 70.0
    min_confidence: float = 0.5
    max_residual: float = 0.12
    dark: float = 1e-4
    clipped: float = 0.5


def exposure_gate(face: Face, frame: np.ndarray, options: GateOptions = GateOptions(), *,
                  peak: float | None = None) -> str | None:
    """'dark:<value>' / 'clipped:<fraction>' from the linear frame (H, W, 3), or None. ``peak``: the frame's
    maximum over its colour channels when the caller has it (:func:`gate_frame` measures it once per frame)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    region = frame[max(0, y0):min(h, max(y1, y0 + 1)), max(0, x0):min(w, max(x1, x0 + 1)), :3]
    if region.size == 0:
        return "dark:empty"
    lum = luminance(region.astype(np.float32))
    med = float(np.median(lum))
    if med < options.dark:
        return f"dark:{med:.2g}"
    top = float(np.max(frame[..., :3])) if peak is None else float(peak)
    if 0.95 <= top <= 1.0 + 1e-6:  # a display-referred source clipped at white: pixels piled at the maximum
        frac = float(np.mean(region.max(-1) >= 0.99 * top))
        if frac > options.clipped:
            return f"clipped:{frac:.2f}"
    return None


def gate_frame(ff: FrameFaces, frame: np.ndarray, options: GateOptions = GateOptions()) -> FrameFaces:
    """``ff`` with the exposure gate's ``gate=<why>`` note on each face it fails (:func:`exposure_gate`), the
    frame's peak measured once for all its faces. frame: (H, W, C >= 3) linear float numpy."""
    if not ff.faces:
        return ff
    peak = float(np.max(frame[..., :3]))
    faces = []
    for f in ff.faces:
        why = exposure_gate(f, frame, options, peak=peak)
        faces.append(f.replace(notes=f.notes + (f"gate={why}",)) if why else f)
    return ff.replace(faces=tuple(faces))


def face_gate(face: Face, options: GateOptions = GateOptions()) -> str | None:
    """The first failed check on the face record itself (exposure is checked on pixels: exposure_gate)."""
    for n in face.notes:
        if n.startswith("gate="):
            return n.split("=", 1)[1]
    if face.pose is not None and abs(face.pose.yaw) > options.max_yaw:
        return f"profile:{face.pose.yaw:.0f}"
    lm = face.landmarks
    if lm is not None and lm.confidence is not None and float(np.mean(lm.confidence)) < options.min_confidence:
        return f"low-confidence:{float(np.mean(lm.confidence)):.2f}"
    if face.pose is not None and face.pose.residual > options.max_residual:
        return f"shape:{face.pose.residual:.2f}"
    return None


# ----------------------------------------------------------------------------------------- the series
def _group(noise: float, accel: float, jump: float, min_cutoff: float, beta: float) -> temporal.FilterOptions:
    return temporal.FilterOptions(min_cutoff=min_cutoff, beta=beta, noise=noise, accel=accel, jump=jump)


@dataclasses.dataclass(frozen=True)
class SmoothOptions:
    """method: none | one-euro | kalman | rts; fps: frames per second; template: the alignment frame.

    Per-group filters. Units: translation in face sizes, scale as log, rotation in radians, points / depth /
    box in the unit aligned crop, pose in degrees, blendshapes as they are. ``noise`` is about twice the per-frame
    noise measured on the talking-head clips in ../shared/data/video (second-difference estimate: translation
    0.0005, log scale 0.002, rotation 0.002 rad, landmark xy 0.0005-0.0013, pose 0.1-0.6 degrees); ``jump`` is
    about twice the largest frame-to-frame motion seen there (translation 0.04 face sizes, rotation 0.125 rad,
    points 0.07), so only real discontinuities restart a filter; ``accel`` sets how smooth (BENCHMARKS.md
    gives the jitter it buys; tests/core/test_shot.py that steps and fast turns settle within a frame).
    max_fill: longest gap filled in a track."""

    method: str = "rts"
    fps: float = 25.0
    template: str = "ffhq_512"
    translation: temporal.FilterOptions = _group(0.001, 0.3, 0.08, 0.3, 7.0)
    scale: temporal.FilterOptions = _group(0.003, 0.3, 0.1, 0.3, 1.7)
    rotation: temporal.FilterOptions = _group(0.003, 0.6, 0.25, 0.3, 1.7)
    points: temporal.FilterOptions = _group(0.0015, 0.3, 0.08, 0.3, 7.0)
    depth: temporal.FilterOptions = _group(0.004, 0.3, 0.15, 0.3, 1.7)
    box: temporal.FilterOptions = _group(0.004, 0.3, 0.15, 0.3, 1.7)
    pose: temporal.FilterOptions = _group(0.6, 30.0, 20.0, 0.3, 0.1)
    blendshapes: temporal.FilterOptions = _group(0.03, 3.0, 0.5, 1.0, 0.7)
    max_fill: int = 12
    gate: GateOptions = GateOptions()

    def __post_init__(self) -> None:
        if self.method not in temporal.SMOOTH_METHODS:
            raise InputError(f"smoothing must be one of {temporal.SMOOTH_METHODS}, got {self.method!r}")
        get_template(self.template)

    GROUPS = ("translation", "scale", "rotation", "points", "depth", "box", "pose", "blendshapes")

    def with_strength(self, strength: float) -> "SmoothOptions":
        """The same settings with every group's process noise (and One-Euro beta) divided by 1 + strength:
        0 keeps the calibrated defaults, > 0 smooths more, < 0 follows faster."""
        if strength <= -1:
            raise InputError(f"strength must be above -1, got {strength}")
        k = 1.0 / (1.0 + strength)
        return dataclasses.replace(self, **{g: dataclasses.replace(getattr(self, g), accel=getattr(self, g).accel * k,
                                                                   beta=getattr(self, g).beta * k)
                                            for g in self.GROUPS})


def _unit_alignment(face: Face, template: str) -> Alignment:
    return align(face, AlignOptions(template=template, size=(1, 1)))


def _points_of(face: Face) -> np.ndarray:
    """Every point that moves with the face, stacked: box corners (2), keypoints (5), landmarks (K); (N, 3)."""
    parts = [np.array([[face.box[0], face.box[1], 0], [face.box[2], face.box[3], 0]], np.float64)]
    if face.keypoints is not None:
        parts.append(np.concatenate([face.keypoints, np.zeros((5, 1))], 1))
    if face.landmarks is not None:
        p = np.asarray(face.landmarks.points, np.float64)
        parts.append(p if p.shape[1] == 3 else np.concatenate([p, np.zeros((len(p), 1))], 1))
    return np.concatenate(parts)


@dataclasses.dataclass
class SmoothedTrack:
    track_id: int
    frames: tuple[int, ...]
    faces: tuple[Face, ...]
    alignments: tuple[Alignment, ...]     # unit crop (1 x 1) of the template; scale with Alignment helpers
    filled: tuple[bool, ...]


def _interp(series: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN rows: linear inside gaps of at most max_gap, held at the ends. Returns (filled, was_filled)."""
    out = series.copy()
    ok = np.isfinite(series).all(1)
    was = np.zeros(len(series), bool)
    idx = np.flatnonzero(ok)
    if not len(idx):
        return out, was
    t = np.arange(len(series))
    for j in range(series.shape[1]):
        out[:, j] = np.interp(t, idx, series[idx, j])
    gap_start = None
    for i in range(len(series) + 1):
        missing = i < len(series) and not ok[i]
        if missing and gap_start is None:
            gap_start = i
        if not missing and gap_start is not None:
            interior = gap_start > 0 and i < len(series)
            if i - gap_start <= max_gap or not interior:
                was[gap_start:i] = True
            else:
                out[gap_start:i] = np.nan
            gap_start = None
    return out, was


def smooth_track(frames: Sequence[int], faces: Sequence[Face | None], options: SmoothOptions = SmoothOptions(),
                 reasons: Sequence[str | None] | None = None) -> SmoothedTrack | None:
    """Smooth (and fill) one track over consecutive ``frames``; ``faces[i]`` is None where the track was not
    seen, and ``reasons[i]`` says why a present face must not be used (a gate), else None."""
    n = len(frames)
    reasons = list(reasons) if reasons is not None else [None] * n
    ref = next((f for f, r in zip(faces, reasons) if f is not None and r is None), None)
    if ref is None:
        return None
    n_pts = len(_points_of(ref))
    n_fixed = 2 + (5 if ref.keypoints is not None else 0)  # box corners and keypoints lead the point stack
    params = np.full((n, 4), np.nan)
    pts = np.full((n, n_pts * 3), np.nan)
    pose = np.full((n, 3), np.nan)
    bsh = np.full((n, len(ref.blendshapes.values) if ref.blendshapes is not None else 0), np.nan)
    for i, (f, r) in enumerate(zip(faces, reasons)):
        if f is None or r is not None:
            continue
        p = _points_of(f)
        if len(p) != n_pts:
            reasons[i] = "inconsistent-points"
            continue
        try:
            a = _unit_alignment(f, options.template)
        except EstimationError:
            reasons[i] = "no-alignment"
            continue
        s, th, _, _ = decompose_similarity(a.frame_from_crop)
        c = transform_points(a.frame_from_crop, [[0.5, 0.5]])[0]
        params[i] = [c[0], c[1], np.log(s), th]
        pts[i] = transform_points(a.crop_from_frame, p).reshape(-1)
        if f.pose is not None:
            pose[i] = [f.pose.yaw, f.pose.pitch, f.pose.roll]
        if f.blendshapes is not None and bsh.shape[1] == len(f.blendshapes.values):
            bsh[i] = f.blendshapes.values
    ok = np.isfinite(params).all(1)
    if not ok.any():
        return None
    params[ok, 3] = np.unwrap(params[ok, 3])
    face_size = float(np.exp(np.median(params[ok, 2])))
    params[:, :2] /= face_size  # translation in face sizes
    series = {name: (_interp(arr, options.max_fill)[0] if arr.shape[1] else arr)
              for name, arr in (("params", params), ("points", pts), ("pose", pose), ("bsh", bsh))}
    rate = options.fps

    def sm(x, o):
        return temporal.smooth(x, rate, options.method, o) if x.shape[1] else x

    p = series["params"]
    sp = np.concatenate([sm(p[:, :2], options.translation), sm(p[:, 2:3], options.scale),
                         sm(p[:, 3:4], options.rotation)], 1)
    pts3 = series["points"].reshape(n, n_pts, 3)
    spts3 = np.empty_like(pts3)
    spts3[:, :n_fixed, :2] = sm(pts3[:, :n_fixed, :2].reshape(n, -1), options.box).reshape(n, n_fixed, 2)
    spts3[:, n_fixed:, :2] = sm(pts3[:, n_fixed:, :2].reshape(n, -1), options.points).reshape(n, -1, 2)
    spts3[:, :n_fixed, 2] = pts3[:, :n_fixed, 2]
    spts3[:, n_fixed:, 2] = sm(pts3[:, n_fixed:, 2], options.depth)
    spts = spts3.reshape(n, -1)
    spose = sm(series["pose"], options.pose)
    sbsh = np.clip(sm(series["bsh"], options.blendshapes), 0, 1) if bsh.shape[1] else series["bsh"]
    out_faces, aligns, filled, out_frames = [], [], [], []
    for i in range(n):
        if not np.isfinite(sp[i]).all() or not np.isfinite(spts[i]).all():
            continue  # a long gap: the track is absent here
        cx, cy = sp[i, 0] * face_size, sp[i, 1] * face_size
        s, th = float(np.exp(sp[i, 2])), float(sp[i, 3])
        m = similarity_matrix(s, th, 0, 0)
        m[:, 2] = [cx, cy] - m[:, :2] @ [0.5, 0.5]
        frame_from_crop = m
        crop_from_frame = invert_affine(m)
        fp = transform_points(frame_from_crop, spts[i].reshape(-1, 3))
        base = faces[i] if faces[i] is not None else ref
        box = np.array([fp[0, 0], fp[0, 1], fp[1, 0], fp[1, 1]])
        box = np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
        k = 2
        kps = None
        if base.keypoints is not None:
            kps, k = fp[k:k + 5, :2], k + 5
        lm = None
        if base.landmarks is not None:
            lmp = fp[k:, :] if base.landmarks.points.shape[1] == 3 else fp[k:, :2]
            lm = Landmarks(points=lmp, scheme=base.landmarks.scheme, confidence=base.landmarks.confidence)
        pose_rec = base.pose
        if pose_rec is not None and np.isfinite(spose[i]).all():
            pose_rec = dataclasses.replace(pose_rec, yaw=float(spose[i, 0]), pitch=float(spose[i, 1]),
                                           roll=float(spose[i, 2]))
        bs = base.blendshapes
        if bs is not None and sbsh.shape[1] and np.isfinite(sbsh[i]).all():
            bs = Blendshapes(names=bs.names, values=sbsh[i])
        is_filled = faces[i] is None or reasons[i] is not None
        notes = tuple(base.notes) if faces[i] is not None else ()
        if is_filled:
            notes += (f"filled:{reasons[i] or 'missing'}",)
        notes += (f"smoothed:{options.method}",)
        out_faces.append(base.replace(box=box, keypoints=kps, landmarks=lm, pose=pose_rec, blendshapes=bs,
                                      provenance="filled" if is_filled else (
                                          "smoothed" if options.method != "none" else base.provenance),
                                      notes=notes, score=base.score if faces[i] is not None else 0.0))
        aligns.append(Alignment(crop_from_frame=crop_from_frame, crop_size=(1, 1), template=options.template,
                                frame=int(frames[i]), face_index=-1))
        filled.append(is_filled)
        out_frames.append(int(frames[i]))
    if not out_faces:
        return None
    tid = next((f.track_id for f in faces if f is not None and f.track_id is not None), 0)
    return SmoothedTrack(tid, tuple(out_frames), tuple(f.replace(track_id=tid) for f in out_faces),
                         tuple(aligns), tuple(filled))


def scaled_alignment(a: Alignment, size: tuple[int, int]) -> Alignment:
    """A unit-crop alignment re-expressed for a crop of ``size`` (w, h) pixels."""
    s = np.diag([float(size[0]), float(size[1])])
    return dataclasses.replace(a, crop_from_frame=np.concatenate([s @ a.crop_from_frame[:, :2],
                                                                  (s @ a.crop_from_frame[:, 2:])], 1),
                               crop_size=tuple(int(v) for v in size))


@dataclasses.dataclass
class ShotResult:
    """Everything the shot analysis produced: per-frame faces (smoothed / filled / untracked), the tracks
    with per-frame alignments (unit crop), and the settings, for export."""

    frames: list[FrameFaces]
    tracks: list[SmoothedTrack]
    fps: float
    template: str
    params: dict = dataclasses.field(default_factory=dict)
    source: dict = dataclasses.field(default_factory=dict)
    fit: dict | None = None   # the facegraph.fit document of a 3DMM fit through the shot (Export Face Fit)
    #: the whole shot's main track, when this result is one chunk's part of a shot (:meth:`within`), so every
    #: chunk picks the track a single run picks
    main_id: int | None = None
    #: the whole shot's result this one was cut from (:meth:`within`), for shot-level fits (a colour match
    #: over keyframes spread across the shot)
    whole: "ShotResult | None" = dataclasses.field(default=None, repr=False, compare=False)

    def within(self, frames) -> "ShotResult":
        """This result restricted to ``frames`` (a chunk's frames and handles): per-frame faces and each
        track's frames there, tracks with none dropped; track ids, smoothing and the main track are the
        whole shot's (a chunk of a shot analysed as a whole)."""
        keep = set(int(f) for f in frames)
        tracks = []
        for t in self.tracks:
            idx = [i for i, f in enumerate(t.frames) if f in keep]
            if idx:
                tracks.append(dataclasses.replace(t, frames=tuple(t.frames[i] for i in idx),
                                                  faces=tuple(t.faces[i] for i in idx),
                                                  alignments=tuple(t.alignments[i] for i in idx),
                                                  filled=tuple(t.filled[i] for i in idx)))
        main = self.main_track().track_id if self.tracks else None
        return dataclasses.replace(self, frames=[ff for ff in self.frames if ff.frame in keep], tracks=tracks,
                                   main_id=main, whole=self.whole or self)

    def track(self, track_id: int) -> SmoothedTrack:
        for t in self.tracks:
            if t.track_id == track_id:
                return t
        raise InputError(f"no track {track_id}", hint=f"tracks: {[t.track_id for t in self.tracks]}")

    def main_track(self) -> SmoothedTrack:
        """The track seen in the most frames (ties: the larger face); for a chunk's part of a shot, the whole
        shot's main track where the chunk sees it."""
        if not self.tracks:
            raise EstimationError("no face was tracked in this shot")
        for t in self.tracks:
            if self.main_id is not None and t.track_id == self.main_id:
                return t
        return max(self.tracks, key=lambda t: (len(t.frames) - sum(t.filled), np.mean([f.area for f in t.faces])))


def process_shot(frames: Sequence[FrameFaces], options: SmoothOptions = SmoothOptions(),
                 track_options: TrackOptions = TrackOptions()) -> ShotResult:
    """Track, gate, fill and smooth a shot's per-frame faces (already carrying landmarks). A still or a shot
    shorter than ``birth_hits`` is valid input: births need at most as many hits as there are frames."""
    if 0 < len(frames) < track_options.birth_hits:
        track_options = dataclasses.replace(track_options, birth_hits=len(frames))
    tracked, tracks = track(list(frames), track_options)
    numbers = [ff.frame for ff in tracked]
    results = []
    for t in tracks:
        lo, hi = numbers.index(t.frames[0]), numbers.index(t.frames[-1])
        span = numbers[lo:hi + 1]
        seen = dict(zip(t.frames, t.faces))
        faces = [seen.get(f) for f in span]
        reasons = [face_gate(f, options.gate) if f is not None else None for f in faces]
        st = smooth_track(span, faces, options, reasons)
        if st is not None:
            results.append(st)
    by_frame: dict[int, list[Face]] = {f: [] for f in numbers}
    for st in results:
        for f, face in zip(st.frames, st.faces):
            by_frame[f].append(face)
    for ff in tracked:
        by_frame[ff.frame] += [f for f in ff.faces if f.track_id is None]
    out = [ff.replace(faces=tuple(by_frame[ff.frame])) for ff in tracked]
    return ShotResult(frames=out, tracks=results, fps=options.fps, template=options.template,
                      params={"smooth": options.method, "fps": options.fps, "template": options.template,
                              "max_fill": options.max_fill, "gate": dataclasses.asdict(options.gate)})


# ---------------------------------------------------------------------------------------------- export
def to_json(result: ShotResult, crop_size: tuple[int, int] = (512, 512)) -> dict:
    """The export document (schema ``facegraph.tracking`` version 2; README 'Tracking export')."""
    doc = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "generator": f"facegraph {version()}",
        "conventions": {"coordinates": "pixel-area, origin top-left, y down", "matrices": "2x3 crop_from_frame"},
        "source": result.source, "fps": result.fps, "params": result.params,
        "template": {"name": result.template, "crop_size": list(crop_size)},
        "frames": [ff.to_dict() for ff in result.frames],
        "tracks": [{"track_id": t.track_id, "frames": list(t.frames), "filled": [bool(v) for v in t.filled],
                    "alignments": [scaled_alignment(a, crop_size).to_dict() for a in t.alignments]}
                   for t in result.tracks],
    }
    if result.fit is not None:
        doc["fit"] = result.fit
    return doc


def chan_rows(alignments: Sequence[Alignment], plate_height: int) -> list[tuple]:
    """(frame, tx, ty, rotate_deg, scale) of each crop_from_frame in Nuke's image coordinates (origin
    bottom-left, y up): a Transform with center (0, 0), these translate / rotate / scale and a crop of the
    alignment's size stabilises the plate onto the face."""
    rows = []
    for a in alignments:
        fp = np.array([[1, 0, 0], [0, -1, plate_height], [0, 0, 1]], np.float64)
        fc = np.array([[1, 0, 0], [0, -1, a.crop_size[1]], [0, 0, 1]], np.float64)
        m = fc @ np.vstack([a.crop_from_frame, [0, 0, 1]]) @ np.linalg.inv(fp)
        s, th, tx, ty = decompose_similarity(m[:2])
        rows.append((a.frame, tx, ty, float(np.rad2deg(th)), s))
    return rows


#: the camera the 3D ``.chan`` head poses are seen through: 35 mm lens on a 36 mm horizontal aperture, so
#: the focal length in pixels is 35 / 36 x the plate width (the same default as core.morphable.fit)
CHAN_FOCAL_MM, CHAN_APERTURE_MM = 35.0, 36.0


def euler_zxy(r: np.ndarray) -> tuple[float, float, float]:
    """(rx, ry, rz) degrees with r = Ry(ry) Rx(rx) Rz(rz): Nuke's default Axis/Camera rotation order ZXY
    (Z applied first)."""
    rx = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    rz = np.arctan2(r[1, 0], r[1, 1])
    ry = np.arctan2(r[0, 2], r[2, 2])
    return tuple(float(np.rad2deg(a)) for a in (rx, ry, rz))


def rotation_zxy(rx: float, ry: float, rz: float) -> np.ndarray:
    """The inverse of :func:`euler_zxy`: Ry Rx Rz from degrees."""
    a, b, c = np.deg2rad([rx, ry, rz])
    mx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    my = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    mz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return my @ mx @ mz


def head_chan_rows(frames: Sequence[int], faces: Sequence[Face], head: np.ndarray,
                   plate_size: tuple[int, int]) -> list[tuple]:
    """(frame, tx, ty, tz, rx, ry, rz) per frame: the real 3D head pose for a Nuke / Blender Axis.

    Convention: ``head`` (V, 3) is the canonical face mesh (MediaPipe's, model units = cm; x right, y up, z
    out of the face: Nuke's axes for a face looking at the camera), the faces carry the 468/478-point mesh
    landmarks (display pixels). The chan camera is a pinhole at the world origin looking down -z, y up, focal
    f = CHAN_FOCAL_MM / CHAN_APERTURE_MM x the plate width in pixels, principal point the plate centre. Per
    frame the mesh's pose is a perspective fit to the landmarks (core.morphable.fit.fit_pose: closed-form
    scaled-orthographic start, lifted to the distance f / s, Gauss-Newton on the reprojection error), then
    re-expressed in Nuke's axes: world = F (R v + t) with F = diag(1, -1, -1). Translation in cm; rotation as
    ZXY Euler degrees (Nuke's default order); a frontal face at the centre has rotation 0. Frames whose face
    has no mesh landmarks, or whose fit fails, are left out."""
    from .errors import FacegraphError
    from .morphable.fit import fit_pose

    w, h = plate_size
    f = CHAN_FOCAL_MM / CHAN_APERTURE_MM * w
    flip = np.diag([1.0, -1.0, -1.0])  # camera axes (x right, y down, z away) -> Nuke's (x right, y up, z back)
    rows = []
    for n, face in zip(frames, faces):
        lm = face.landmarks
        if lm is None or not lm.scheme.startswith("mediapipe") or len(lm.points) < len(head):
            continue
        try:
            pose = fit_pose(head, np.asarray(lm.points[:len(head), :2], np.float64), camera="perspective",
                            focal_px=f, frame_size=(w, h), iterations=10)
        except FacegraphError:
            continue
        t = flip @ pose.translation
        rows.append((n, *t, *euler_zxy(flip @ pose.rotation)))
    return rows


def project_chan(rows: Sequence[tuple], head: np.ndarray, plate_size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Frame -> (V, 2) display pixels of ``head`` posed by each chan row through the chan camera (the round
    trip of :func:`head_chan_rows`, done as Nuke would: world = R v + t, then the pinhole looking down -z)."""
    w, h = plate_size
    f = CHAN_FOCAL_MM / CHAN_APERTURE_MM * w
    out = {}
    for n, tx, ty, tz, rx, ry, rz in rows:
        p = (rotation_zxy(rx, ry, rz) @ np.asarray(head, np.float64).T).T + (tx, ty, tz)
        out[int(n)] = np.stack([w / 2.0 + f * p[:, 0] / -p[:, 2], h / 2.0 - f * p[:, 1] / -p[:, 2]], 1)
    return out


def write_export(result: ShotResult, out_dir: str | Path, *, crop_size: tuple[int, int] = (512, 512),
                 plate_size: tuple[int, int] | None = None, overwrite: bool = True,
                 head: np.ndarray | None = None) -> list[Path]:
    """Write ``tracking.json``, ``npz/frame.<n>.npz``, per track ``track_<id>.transform.chan`` (frame,
    translate x, translate y, rotate, scale: the 2D Transform that stabilises the plate onto the face) and,
    given the canonical ``head`` mesh and mesh landmarks, ``track_<id>.chan``: the real 3D head pose (7
    columns: frame, translate x y z, rotate x y z in degrees, ZXY order) for a Nuke Axis or Blender's chan
    importer, seen through a camera of 35 mm focal length on a 36 mm aperture at the origin (see
    :func:`head_chan_rows`). Atomic per file."""
    out = Path(out_dir)
    if out.exists() and not overwrite and any(out.iterdir()):
        raise ImageIOError("export folder is not empty", file=str(out), hint="allow overwrite or choose another")
    written = []
    doc = to_json(result, crop_size)
    p = out / "tracking.json"
    atomic_write(p, json.dumps(doc, indent=1).encode())
    written.append(p)
    for ff in result.frames:
        p = out / "npz" / f"frame.{ff.frame:04d}.npz"
        atomic_write(p, _npz_bytes(ff, result, crop_size))
        written.append(p)
    size = tuple(plate_size) if plate_size else (tuple(result.frames[0].size) if result.frames else (0, 0))
    for t in result.tracks:
        rows = chan_rows([scaled_alignment(a, crop_size) for a in t.alignments], size[1])
        tr = "\n".join(f"{f} {tx:.6f} {ty:.6f} {r:.6f} {s:.8f}" for f, tx, ty, r, s in rows) + "\n"
        files = [(f"track_{t.track_id}.transform.chan", tr)]
        heads = head_chan_rows(t.frames, t.faces, head, size) if head is not None else []
        if heads:
            files.append((f"track_{t.track_id}.chan", "\n".join(" ".join(
                [str(r[0])] + [f"{v:.6f}" for v in r[1:]]) for r in heads) + "\n"))
        for name, text in files:
            atomic_write(out / name, text.encode())
            written.append(out / name)
    return written


def _npz_bytes(ff: FrameFaces, result: ShotResult, crop_size) -> bytes:
    import io

    n = len(ff.faces)
    aligns = {}
    for t in result.tracks:
        if ff.frame in t.frames:
            aligns[t.track_id] = scaled_alignment(t.alignments[t.frames.index(ff.frame)], crop_size).crop_from_frame
    k = max((len(f.landmarks.points) for f in ff.faces if f.landmarks is not None), default=0)
    lms = np.full((n, k, 3), np.nan, np.float32)
    for i, f in enumerate(ff.faces):
        if f.landmarks is not None:
            p = f.landmarks.points
            lms[i, :len(p), :p.shape[1]] = p
    arrays = {
        "frame": np.int64(ff.frame), "size": np.asarray(ff.size, np.int64),
        "boxes": np.asarray([f.box for f in ff.faces], np.float32).reshape(n, 4),
        "scores": np.asarray([f.score for f in ff.faces], np.float32),
        "track_ids": np.asarray([-1 if f.track_id is None else f.track_id for f in ff.faces], np.int64),
        "provenance": np.asarray([f.provenance for f in ff.faces], dtype="U10"),
        "keypoints": np.asarray([f.keypoints if f.keypoints is not None else np.full((5, 2), np.nan)
                                 for f in ff.faces], np.float32).reshape(n, 5, 2),
        "landmarks": lms,
        "pose": np.asarray([[f.pose.yaw, f.pose.pitch, f.pose.roll] if f.pose is not None else [np.nan] * 3
                            for f in ff.faces], np.float32).reshape(n, 3),
        "crop_from_frame": np.asarray([aligns.get(f.track_id, np.full((2, 3), np.nan)) for f in ff.faces],
                                      np.float64).reshape(n, 2, 3),
    }
    bs = [f.blendshapes for f in ff.faces if f.blendshapes is not None]
    if bs:
        arrays["blendshape_names"] = np.asarray(bs[0].names, dtype="U32")
        arrays["blendshapes"] = np.asarray([f.blendshapes.values if f.blendshapes is not None else
                                            np.full(len(bs[0].names), np.nan) for f in ff.faces], np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read_export(path: str | Path) -> ShotResult:
    """Load a ``tracking.json`` (or its folder) back into a ShotResult (alignments in the unit crop).

    Reads schema ``facegraph.tracking`` up to version :data:`SCHEMA_VERSION` (what :func:`to_json` writes).
    Raises ImageIOError when the file cannot be read, and InputError naming the file, the place in the
    document (``frames[3].faces[0].score``) and what is wrong for anything malformed: not UTF-8 JSON or
    truncated, another schema, a newer version, a missing key, a value of the wrong JSON type, a record that
    does not validate (e.g. a box with x1 < x0), a frame listed twice, or a track whose frames, filled flags
    and alignments disagree or whose face is missing from its frame.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "tracking.json"
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ImageIOError(f"cannot read tracking export: {exc.strerror or exc}", file=str(p)) from None
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise InputError(f"{p.name}: JSON nested too deeply", file=str(p)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InputError(f"{p.name}: not valid JSON ({exc})", file=str(p),
                         hint="the file may be truncated; export the shot again") from None
    where = [""]  # the place in the document being read, for errors raised below it
    try:
        return _export_from_doc(doc, where)
    except InputError as exc:  # the checks below name the place; a record's own validation does not
        at = f"{where[0]}: " if where[0] and not exc.message.startswith(where[0]) else ""
        raise InputError(f"{p.name}: {at}{exc.message}", hint=exc.hint, file=str(p)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as exc:
        # whatever a record's from_dict / numpy raised on a value the checks below let through
        raise InputError(f"{p.name}: {where[0] or 'document'}: malformed ({type(exc).__name__}: {exc})",
                         file=str(p)) from None


_NO_DEFAULT = object()
# JSON value checks for the annotations of the records' scalar fields (core.types) and the export's keys
_JSON_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_ANNOTATION_KINDS = {"float": "number", "int": "integer", "str": "string", "bool": "boolean", "int | None": "integer"}


def _json_kind(v: object) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _JSON_CHECKS[name](v):
            return name
    return "null" if v is None else type(v).__name__


def _export_value(d: dict, key: str, kind: str, where: str, default: object = _NO_DEFAULT) -> object:
    """``d[key]`` if it is a JSON ``kind``; ``default`` when absent (no default: a missing key is an error)."""
    here = f"{where}.{key}" if where else key
    if key not in d:
        if default is _NO_DEFAULT:
            raise InputError(f"{where}: missing key {key!r}" if where else f"missing key {key!r}")
        return default
    v = d[key]
    if not _JSON_CHECKS[kind](v):
        raise InputError(f"{here} must be {_a(kind)}, got {_json_kind(v)}")
    return v


def _check_record_json(d: object, cls: type, where: str) -> None:
    """The JSON of a core.types record: an object of ``cls``'s type whose fields have the right JSON kinds."""
    from . import types as record_types

    if not isinstance(d, dict):
        raise InputError(f"{where} must be an object (a {cls.__name__} record), got {_json_kind(d)}")
    if d.get("type", cls.__name__) != cls.__name__:
        raise InputError(f"{where} is a {d.get('type')!r} record where a {cls.__name__} was expected")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"{where}: missing key {f.name!r}")
            continue
        v, kind, here = d[f.name], f.metadata.get("kind"), f"{where}.{f.name}"
        if v is None:
            if f.default is not None:
                raise InputError(f"{here} must not be null")
        elif kind == "record":
            _check_record_json(v, getattr(record_types, f.metadata["cls"]), here)
        elif kind == "records":
            if not isinstance(v, list):
                raise InputError(f"{here} must be an array, got {_json_kind(v)}")
            for i, x in enumerate(v):
                _check_record_json(x, getattr(record_types, f.metadata["cls"]), f"{here}[{i}]")
        elif kind == "array":
            if not (isinstance(v, list) or _JSON_CHECKS["number"](v)):
                raise InputError(f"{here} must be an array of numbers, got {_json_kind(v)}")
        elif kind == "tuple":
            item = {"size": "integer", "crop_size": "integer", "notes": "string", "names": "string"}.get(f.name)
            if not isinstance(v, list) or (item and not all(_JSON_CHECKS[item](x) for x in v)):
                raise InputError(f"{here} must be an array" + (f" of {item}s" if item else "") +
                                 f", got {_short_json(v)}")
            if f.name == "size" and (len(v) != 2 or min(v) < 0):
                raise InputError(f"{here} must be [width, height] >= 0, got {_short_json(v)}")
        elif f.type in _ANNOTATION_KINDS and not _JSON_CHECKS[_ANNOTATION_KINDS[f.type]](v):
            raise InputError(f"{here} must be {_a(_ANNOTATION_KINDS[f.type])}, got {_json_kind(v)}")


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _short_json(v: object, limit: int = 60) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _export_from_doc(doc: object, where: list[str]) -> ShotResult:
    """The ShotResult of a parsed export document; ``where[0]`` follows the place being read."""
    if not isinstance(doc, dict):
        raise InputError(f"the document must be a JSON object, got {_json_kind(doc)}")
    if doc.get("schema") != SCHEMA:
        raise InputError(f"not a facegraph tracking export (schema {_short_json(doc.get('schema'))})",
                         hint=f"expected schema {SCHEMA!r}")
    version_ = _export_value(doc, "version", "integer", "", SCHEMA_VERSION)
    if version_ > SCHEMA_VERSION:
        raise InputError(f"export version {version_} is newer than this facegraph reads ({SCHEMA_VERSION})",
                         hint="upgrade facegraph")
    if version_ < 1:
        raise InputError(f"unknown export version {version_} (versions start at 1)")
    template = _export_value(doc, "template", "object", "")
    name = _export_value(template, "name", "string", "template")
    fps = float(_export_value(doc, "fps", "number", "", 25.0))
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps}")
    params = _export_value(doc, "params", "object", "", {})
    source = _export_value(doc, "source", "object", "", {})
    fit = _export_value(doc, "fit", "object", "", None) if version_ >= 2 and doc.get("fit") is not None else None
    if fit is not None and (fit.get("schema") != "facegraph.fit" or not isinstance(fit.get("frames"), list)):
        raise InputError("fit: not a facegraph.fit document (schema and frames expected)")
    frames, by_frame = [], {}
    for i, d in enumerate(_export_value(doc, "frames", "array", "")):
        where[0] = f"frames[{i}]"
        _check_record_json(d, FrameFaces, where[0])
        ff = FrameFaces.from_dict(d)
        if ff.frame in by_frame:
            raise InputError(f"frame {ff.frame} is listed twice")
        frames.append(ff)
        by_frame[ff.frame] = ff
    tracks, seen_ids = [], set()
    for i, t in enumerate(_export_value(doc, "tracks", "array", "")):
        where[0] = here = f"tracks[{i}]"
        if not isinstance(t, dict):
            raise InputError(f"a track must be an object, got {_json_kind(t)}")
        tid = _export_value(t, "track_id", "integer", here)
        numbers = _export_value(t, "frames", "array", here)
        filled = _export_value(t, "filled", "array", here)
        aligned = _export_value(t, "alignments", "array", here)
        if tid in seen_ids:
            raise InputError(f"track_id {tid} is used twice")
        seen_ids.add(tid)
        if not all(_JSON_CHECKS["integer"](n) for n in numbers) or not all(isinstance(v, bool) for v in filled):
            raise InputError("frames must be integers and filled booleans")
        if not len(numbers) == len(filled) == len(aligned):
            raise InputError(f"{len(numbers)} frames, {len(filled)} filled flags and {len(aligned)} alignments")
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            raise InputError("frame numbers must increase")
        faces, aligns = [], []
        for k, (fr, d) in enumerate(zip(numbers, aligned)):
            if fr not in by_frame:
                raise InputError(f"frames[{k}]: frame {fr} is not in the document's frames")
            face = next((f for f in by_frame[fr].faces if f.track_id == tid), None)
            if face is None:
                raise InputError(f"frames[{k}]: frame {fr} has no face with track_id {tid}")
            where[0] = f"{here}.alignments[{k}]"
            _check_record_json(d, Alignment, where[0])
            a = Alignment.from_dict(d)
            w, h = a.crop_size
            unit = np.concatenate([np.diag([1 / w, 1 / h]) @ a.crop_from_frame[:, :2],
                                   np.diag([1 / w, 1 / h]) @ a.crop_from_frame[:, 2:]], 1)
            faces.append(face)
            aligns.append(dataclasses.replace(a, crop_from_frame=unit, crop_size=(1, 1)))
            where[0] = here
        tracks.append(SmoothedTrack(tid, tuple(numbers), tuple(faces), tuple(aligns), tuple(filled)))
    where[0] = ""
    return ShotResult(frames=frames, tracks=tracks, fps=fps, template=name, params=params, source=source, fit=fit)
