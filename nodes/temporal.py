"""Temporal nodes: analyse a shot (cached), track/smooth faces in a graph, stabilised crops, export/import.

FACEGRAPH_TRACKS carries a core.shot.ShotResult: tracks with per-frame alignments (unit crop), fps, settings.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..core import progress
from ..core.align import crop_mask, warp_to_crop
from ..core.errors import InputError
from ..core.io.frames import SequenceInfo
from ..core.io.images import write_display_png
from ..core.io.sequence import MISSING_POLICIES, parse_frames
from ..core.io.source import open_source
from ..core.paths import INPUT_TIP, OUTPUT_TIP
from ..core.preview import contact_sheet
from ..core.refine import EYE_MODES
from ..core.shot import ShotResult, SmoothOptions, gate_frame, process_shot, read_export, scaled_alignment, write_export
from ..core.temporal import SMOOTH_METHODS
from ..models.registry import registry
from ..models.shot import AnalysisOptions
from ..models.store import shot_cache_dir
from .io import files_changed
from .types import (in_path, out_path, ALIGN, BOOLEAN, CATEGORY, FACES, FLOAT, IMAGE, INT, MASK, MODEL, SEQUENCE, STRING, TRACKS,
                    image_to_numpy, numpy_to_image, numpy_to_mask, widget)


def _smooth_inputs():
    return {
        "smoothing": widget(SMOOTH_METHODS, "rts: offline, no lag (best for shots); one-euro / kalman: online "
                                            "(live); none", default="rts"),
        "strength": widget(FLOAT, "scales the smoothing (process noise / 1 + strength): 0 = the calibrated "
                                  "defaults, > 0 smoother, < 0 follows faster", default=0.0, min=-0.9, max=20.0,
                           step=0.1),
    }


TRACK_COLOURS = ((0, 200, 255), (255, 160, 0), (120, 255, 80), (255, 80, 200), (255, 255, 80), (160, 120, 255))
TRACK_PICTURE_WIDTH = 512  # pixels: a node-sized overview, not a plate-sized picture


def track_picture(result: ShotResult, width: int = TRACK_PICTURE_WIDTH) -> np.ndarray:
    """An overview of the tracks for people: each track's face-centre path over the shot, on a dark frame.

    Convention: pixel-area coordinates of the analysed frames (core.conventions), scaled so the frame is
    ``width`` pixels wide; a dot marks each track's first frame, its id is written there. Returns (H, W, 3)
    uint8 RGB (display-referred; never for maths).
    """
    import cv2

    w, h = result.frames[0].size if result.frames else (width, width * 9 // 16)
    scale = width / max(1, w)
    pic = np.full((max(1, int(round(h * scale))), width, 3), 24, np.uint8)
    cv2.rectangle(pic, (0, 0), (pic.shape[1] - 1, pic.shape[0] - 1), (80, 80, 80), 1)
    sub = 16  # cv2 shift=4: coordinates in 1/16 px
    for k, t in enumerate(result.tracks):
        colour = TRACK_COLOURS[k % len(TRACK_COLOURS)]
        centres = np.array([[(f.box[0] + f.box[2]) * 0.5, (f.box[1] + f.box[3]) * 0.5] for f in t.faces],
                           np.float64) * scale
        if not len(centres):
            continue
        # pixel-area centre c -> cv2's pixel-index coordinates c - 0.5 (core.conventions)
        pts = np.round((centres - 0.5) * sub).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(pic, [pts.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA, shift=4)
        cv2.circle(pic, tuple(int(v) for v in pts[0]), 3 * sub, colour, -1, cv2.LINE_AA, shift=4)
        x, y = (int(v) for v in centres[0])
        cv2.putText(pic, str(t.track_id), (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return pic


def smooth_options(method: str, strength: float, fps: float) -> SmoothOptions:
    return SmoothOptions(method=method, fps=fps).with_strength(strength)


#: Analyse Shot's keyframe interval default: the analysis options' own (models/shot.py)
_DETECT_EVERY = next(f.default for f in dataclasses.fields(AnalysisOptions) if f.name == "detect_every")
def analysis_model_inputs() -> dict:
    """The model inputs of the analysing nodes (Analyse Shot, Analyse Frames (streamed)): one declaration."""
    return {
        "detector": widget(MODEL, "detector (default YuNet)"),
        "landmarks": widget(MODEL, "landmark model (default MediaPipe v2)"),
        "recrop": widget(INT, "mesh re-crop passes", default=1, min=0, max=3),
        "eyes": widget(EYE_MODES, "eye patches", default="auto"),
    }


#: the shot cache switch of the analysing nodes (one declaration)
CACHE_INPUT = widget(BOOLEAN, "keep per-frame results on disk and reuse them", default=True)
#: the shot cache folder input of the analysing nodes (one declaration)
CACHE_FOLDER_INPUT = widget(STRING, "the shot cache folder (empty: $FACEGRAPH_SHOT_CACHE or the user cache); the "
                                    "machines rendering one shot share it on shared storage", default="")


def analysis_options(detector, landmarks, recrop: int, eyes: str, cache: bool, cache_folder: str = "",
                     detect_every: int | None = None, **detect):
    """(AnalysisOptions, shot-cache root or None) for a node's model handles (None: the registry's defaults),
    re-crop passes, eye mode, cache switch and folder (models.store.shot_cache_dir) and DetectOptions fields;
    the device follows the detector handle."""
    from ..core.detection import DetectOptions

    opts = AnalysisOptions(
        detector=(detector.model_id if detector else registry().default("detect").id),
        landmarks=(landmarks.model_id if landmarks else registry().default("landmarks").id),
        recrop=recrop, eyes=eyes, detect=DetectOptions(**detect), device=(detector.device if detector else "auto"),
        precision=(landmarks.precision if landmarks else "fp32"),
        **({} if detect_every is None else {"detect_every": int(detect_every)}))
    return opts, (shot_cache_dir((cache_folder or "").strip() or None) if cache else None)


class AnalyseShot:
    DESCRIPTION = ("Analyse a whole shot from disk (EXR/PNG sequence, movie or still), streamed: detect, "
                   "landmarks, refine per frame, cached on disk (a re-run or a later graph reads the cache; a "
                   "changed frame or setting invalidates it); then track, gate unusable frames, fill, smooth.")
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "analyse"
    #: decides shot-level state (tracks, smoothing): a chunked render's analysis pass runs it (plugin/chunks.py)
    SHOT_ANALYSIS = True
    RETURN_TYPES = (FACES, TRACKS, SEQUENCE, STRING)
    RETURN_NAMES = ("faces", "tracks", "sequence", "summary")
    OUTPUT_TOOLTIPS = ("smoothed faces per frame", "tracks with per-frame alignments",
                       "the analysed frame numbers", "what was found, filled and cached")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": widget(STRING, "plate.####.exr, a movie, or a still" + INPUT_TIP, default=""),
            "frames": widget(STRING, "frame range (empty: all)", default=""),
            "missing": widget(MISSING_POLICIES, "frames missing from the range", default="error"),
            **_smooth_inputs(),
            "cache": CACHE_INPUT,
        }, "optional": {
            **analysis_model_inputs(),
            "start_frame": widget(INT, "frame number of a movie's first frame", default=1001, min=-(1 << 30),
                                  max=1 << 30),
            "fps": widget(FLOAT, "frame rate when the input has none (sequences)", default=24.0, min=1.0,
                          max=240.0),
            "cache_folder": CACHE_FOLDER_INPUT,
            "detect_every": widget(INT, "run the detector on every N-th frame (keyframes) and follow the landmarks "
                                        "between them (MediaPipe's video mode, 2x faster); a face entering between "
                                        "keyframes is found at the next one; 1: every frame",
                                   default=_DETECT_EVERY, min=1, max=64),
        }}

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def analyse(self, path, frames="", missing="error", smoothing="rts", strength=0.0, cache=True, detector=None,
                landmarks=None, recrop=1, eyes="auto", start_frame=1001, fps=24.0, cache_folder="",
                detect_every=None):
        from ..models.shot import analyse_shot

        src = open_source(in_path(path), parse_frames(frames), missing=missing, start_frame=start_frame)
        if src.fps is None:
            src.fps = fps
        opts, root = analysis_options(detector, landmarks, recrop, eyes, cache, cache_folder, detect_every)
        result = analyse_shot(src, opts, smooth_options(smoothing, strength, src.fps), cache_root=root)
        first = result.frames[0]
        info = SequenceInfo(pattern=src.path, frames=tuple(src.frames), filled=tuple(src.missing),
                            data_window=(0, 0, *first.size), display_window=(0, 0, *first.size), fps=src.fps)
        filled = sum(sum(t.filled) for t in result.tracks)
        text = (f"{len(result.frames)} frames, {len(result.tracks)} track(s), {filled} filled frame(s), "
                f"smoothing {smoothing}" + (f", cache {root}" if root else ""))
        return {"ui": {"text": [text]}, "result": (result.frames, result, info, text)}


class TrackFaces:
    DESCRIPTION = ("Track faces across the frames of a batch, gate unusable ones (profile, low confidence, "
                   "implausible shape, dark or clipped), fill them from neighbours and smooth without lag.")
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "track"
    RETURN_TYPES = (FACES, TRACKS)
    RETURN_NAMES = ("faces", "tracks")
    OUTPUT_TOOLTIPS = ("smoothed / filled faces per frame", "tracks with per-frame alignments")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "the frames the faces came from (for the exposure gate)"),
            "faces": widget(FACES, "faces with landmarks, one entry per frame, in order"),
            **_smooth_inputs(),
            "fps": widget(FLOAT, "frame rate", default=24.0, min=1.0, max=240.0),
        }}

    def track(self, images, faces, smoothing="rts", strength=0.0, fps=24.0):
        frames = image_to_numpy(images)
        if len(faces) != len(frames):
            raise InputError(f"faces hold {len(faces)} frames for {len(frames)} images")
        gated = []
        with progress.task(len(frames), "exposure gate") as bar:
            for img, ff in zip(frames, faces):
                gated.append(gate_frame(ff, img))
                bar.advance()
        result = process_shot(gated, smooth_options(smoothing, strength, fps))
        return (result.frames, result)


class TrackCrops:
    DESCRIPTION = ("Stabilised face crops of one track for the frames of a batch, through the track's smoothed "
                   "alignment: linear float crops, the transforms for paste-back, and feathered masks.")
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "crops"
    RETURN_TYPES = (IMAGE, ALIGN, MASK, SEQUENCE)
    RETURN_NAMES = ("crops", "alignments", "crop_masks", "sequence")
    OUTPUT_TOOLTIPS = ("one crop per frame where the track exists", "crop_from_frame per crop",
                       "feathered masks", "the crops' frame numbers")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "sequence": widget(SEQUENCE, "their frame numbers (from the loader)"),
            "tracks": widget(TRACKS, "tracks from Analyse Shot / Track Faces"),
            "track_id": widget(INT, "which track (-1: the one seen in most frames)", default=-1, min=-1,
                               max=1 << 16),
            "size": widget(INT, "crop size in pixels", default=512, min=8, max=8192, step=8),
            "feather": widget(FLOAT, "mask edge softness", default=0.1, min=0.0, max=0.5, step=0.01),
        }}

    def crops(self, images, sequence, tracks: ShotResult, track_id=-1, size=512, feather=0.1):
        frames = image_to_numpy(images)
        if len(sequence.frames) != len(frames):
            raise InputError(f"sequence has {len(sequence.frames)} frame numbers for {len(frames)} images")
        t = tracks.main_track() if track_id < 0 else tracks.track(track_id)
        where = dict(zip(t.frames, t.alignments))
        crops, aligns, numbers = [], [], []
        with progress.task(len(frames), "track crops") as bar:
            for number, img in zip(sequence.frames, frames):
                a = where.get(number)
                if a is not None:
                    a = scaled_alignment(a, (size, size))
                    aligns.append(a)
                    crops.append(warp_to_crop(img, a))
                    numbers.append(number)
                bar.advance()
        if not crops:
            raise InputError(f"track {t.track_id} is not in frames {sequence.frames[0]}-{sequence.frames[-1]}")
        masks = np.stack([crop_mask((size, size), feather)] * len(crops))
        info = dataclasses.replace(sequence, frames=tuple(numbers), filled=(), data_window=(0, 0, size, size),
                                   display_window=(0, 0, size, size), attributes=())
        return (numpy_to_image(np.stack(crops)), aligns, numpy_to_mask(masks), info)


class SelectTrack:
    DESCRIPTION = "Keep only one track's faces in every frame."
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "select"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("faces of that track only",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"faces": widget(FACES, "faces per frame"), "tracks": widget(TRACKS, "tracks"),
                             "track_id": widget(INT, "-1: the one seen in most frames", default=-1, min=-1,
                                                max=1 << 16)}}

    def select(self, faces, tracks: ShotResult, track_id=-1):
        tid = (tracks.main_track() if track_id < 0 else tracks.track(track_id)).track_id
        return ([ff.replace(faces=tuple(f for f in ff.faces if f.track_id == tid)) for ff in faces],)


class ExportTracking:
    DESCRIPTION = ("Write the tracking data: tracking.json (versioned schema: faces, landmarks, pose, "
                   "blendshapes, per-frame crop_from_frame), per-frame .npz, and per track a .chan for Nuke / "
                   "Blender (Axis/Camera import) and a .transform.chan for a 2D Transform.")
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "export"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("where the files went",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tracks": widget(TRACKS, "tracks from Analyse Shot / Track Faces"),
            "folder": widget(STRING, "output folder" + OUTPUT_TIP, default="facegraph/tracking"),
            "crop_size": widget(INT, "crop size the exported transforms are for", default=512, min=8,
                                max=8192, step=8),
            "overwrite": widget(BOOLEAN, "replace an existing export", default=True),
        }}

    def export(self, tracks: ShotResult, folder="facegraph/tracking", crop_size=512, overwrite=True):
        from ..models.morphable import canonical_head

        folder = out_path(folder)
        files = write_export(tracks, folder, crop_size=(crop_size, crop_size), overwrite=overwrite,
                             head=canonical_head())
        text = f"{len(files)} files in {folder}: {len(tracks.tracks)} track(s) over {len(tracks.frames)} frame(s)"
        return {"ui": {"text": [text], "images": progress.ui_images([track_picture(tracks)], "tracking")},
                "result": (str(Path(folder)),)}


class ImportTracking:
    DESCRIPTION = "Read a tracking export (tracking.json) back into faces and tracks."
    CATEGORY = f"{CATEGORY}/temporal"
    FUNCTION = "load"
    RETURN_TYPES = (FACES, TRACKS)
    RETURN_NAMES = ("faces", "tracks")
    OUTPUT_TOOLTIPS = ("faces per frame", "tracks")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": widget(STRING, "tracking.json or its folder" + INPUT_TIP,
                                            default="facegraph/tracking [output]")}}

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def load(self, path):
        result = read_export(in_path(path))
        return (result.frames, result)


def sheet_inputs() -> dict:
    """The contact-sheet widgets every sheet node shares (path, count, columns, tile width)."""
    return {"path": widget(STRING, "PNG to write (replaced if it exists)" + OUTPUT_TIP,
                           default="facegraph/contact_sheet.png"),
            "count": widget(INT, "how many frames, evenly spaced", default=8, min=1, max=64),
            "columns": widget(INT, "tiles per row", default=4, min=1, max=16),
            "tile_width": widget(INT, "tile width in pixels", default=320, min=32, max=2048)}


def save_sheet(path: str, tiles, labels, columns: int, tile_width: int, reads=()) -> dict:
    """Write the tiles (uint8 (H, W, 3) display pictures) as one labelled PNG at ``path`` (already resolved;
    refused when it is one of ``reads``, the files the node read); the node's return value, the sheet shown
    on the node."""
    from ..core.fsutil import check_disjoint

    check_disjoint([path], reads)
    sheet = contact_sheet(tiles, columns=columns, labels=labels, tile_width=tile_width)
    write_display_png(path, sheet)
    return {"ui": {"text": [path], "images": progress.ui_images([sheet], "contact_sheet")}, "result": (path,)}


class SaveContactSheet:
    DESCRIPTION = "Save a contact sheet PNG of display-referred previews (e.g. Draw Landmarks), labelled by frame."
    CATEGORY = f"{CATEGORY}/preview"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("the PNG written",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"previews": widget(IMAGE, "display-referred pictures in [0, 1]"), **sheet_inputs()},
                "optional": {"sequence": widget(SEQUENCE, "frame numbers for the labels")}}

    def save(self, previews, path="facegraph/contact_sheet.png", count=8, columns=4, tile_width=320, sequence=None):
        path = out_path(path)
        frames = image_to_numpy(previews)
        picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
        tiles = [(np.clip(frames[i, ..., :3], 0, 1) * 255 + 0.5).astype(np.uint8) for i in picks]
        numbers = sequence.frames if sequence is not None and len(sequence.frames) == len(frames) else range(len(frames))
        return save_sheet(path, tiles, [str(numbers[i]) for i in picks], columns, tile_width)


NODES = {
    "FacegraphAnalyseShot": (AnalyseShot, "Analyse Shot (facegraph)"),
    "FacegraphTrackFaces": (TrackFaces, "Track and Smooth Faces (facegraph)"),
    "FacegraphTrackCrops": (TrackCrops, "Track Crops (stabilised) (facegraph)"),
    "FacegraphSelectTrack": (SelectTrack, "Select Track (facegraph)"),
    "FacegraphExportTracking": (ExportTracking, "Export Tracking Data (facegraph)"),
    "FacegraphImportTracking": (ImportTracking, "Import Tracking Data (facegraph)"),
    "FacegraphSaveContactSheet": (SaveContactSheet, "Save Contact Sheet (facegraph)"),
}
