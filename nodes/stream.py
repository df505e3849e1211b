"""Streamed sequence nodes: a shot flows through the graph as a lazy FACEGRAPH_FRAMES handle, never as one
IMAGE batch, so peak memory is one chunk of frames whatever the shot's length (core/io/stream.py).

Open Sequence plans the read (headers checked, no pixels); Track Crops / Draw Landmarks add per-frame steps;
the sinks (Save EXR Sequence, Save Contact Sheet) decode and process a chunk at a time, and a contact sheet
reads only the frames it shows. Stream to Images turns a range of a stream into an IMAGE batch for core nodes.
Thin: the per-frame work is the same functions the IMAGE nodes call.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..core import progress
from ..core.align import crop_mask, crop_step
from ..core.colour import ViewOptions
from ..core.errors import InputError
from ..core.io.frames import SequenceInfo, sequence_info
from ..core.io.images import NONFINITE_POLICIES
from ..core.io.sequence import MISSING_POLICIES, parse_frames
from ..core.io.source import open_source
from ..core.io.stream import DEFAULT_CHUNK, FrameStream, open_stream
from ..core.paths import INPUT_TIP
from ..core.preview import draw_step, to_display
from ..core.shot import ShotResult, scaled_alignment
from .temporal import CACHE_FOLDER_INPUT, CACHE_INPUT, analysis_model_inputs, analysis_options, save_sheet, sheet_inputs
from .io import (FILE_COLOURSPACES, _COLOURSPACE_TIP, _as_file_colourspace, _check_file_colourspace, exr_extra_inputs,
                 exr_output_inputs, files_changed, sequence_writer, writer_result)
from .types import (ALIGN, BOOLEAN, CATEGORY, FACES, FLOAT, IMAGE, INT, MASK, SEQUENCE, STRING, TRACKS, in_path,
                    mask_to_numpy, numpy_to_mask, out_path, widget)

FRAMES = "FACEGRAPH_FRAMES"  # core.io.stream.FrameStream: a lazy, chunked sequence of frames
STREAM_CATEGORY = f"{CATEGORY}/stream"
_CHUNK_TIP = "frames decoded and processed at once (memory: this many frames)"


def _stream(frames) -> FrameStream:
    if not isinstance(frames, FrameStream):
        raise InputError(f"expected a frame stream (FACEGRAPH_FRAMES), got {type(frames).__name__}",
                         hint="connect Open Sequence (streamed) or a streamed node's output")
    return frames


class OpenSequence:
    DESCRIPTION = ("Open a frame sequence, movie or still as a stream: the frames are checked (every header) "
                   "but not read; streamed nodes downstream read them a chunk at a time, so a shot of any "
                   "length fits in memory. Scene-linear float, alpha kept when present.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "open"
    RETURN_TYPES = (FRAMES, SEQUENCE)
    RETURN_NAMES = ("frames", "sequence")
    OUTPUT_TOOLTIPS = ("the frames, read lazily", "frame numbers, windows and metadata")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": widget(STRING, "plate.####.exr (or %04d, $F4), a movie, or a still" + INPUT_TIP, default=""),
            "frames": widget(STRING, "frame range, e.g. 1001-1100 (empty: all on disk)", default=""),
            "missing": widget(MISSING_POLICIES, "what to do with frames missing from the range", default="error"),
        }, "optional": {
            "layer": widget(STRING, "EXR layer holding the channels (empty: the main one)", default=""),
            "nonfinite": widget(NONFINITE_POLICIES, "NaN/Inf pixels: raise an error, or replace with 0",
                                default="error"),
            "colourspace": widget(FILE_COLOURSPACES, _COLOURSPACE_TIP, default="auto"),
            "start_frame": widget(INT, "frame number of a movie's first frame", default=1001, min=-(1 << 30),
                                  max=1 << 30),
        }}

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def open(self, path, frames="", missing="error", layer="", nonfinite="error", colourspace="auto",
             start_frame=1001):
        _check_file_colourspace(colourspace)
        src = open_source(in_path(path), parse_frames(frames), missing=missing, layer=layer, nonfinite=nonfinite,
                          start_frame=start_frame)
        present = [f for f in src.frames if f not in src.missing]
        if not present:
            raise InputError("every frame of the range is missing: nothing to stream", file=src.path)
        first = next(src.subset(present[:1]).frames_iter())
        info = sequence_info(src._pattern, [first]) if src._pattern is not None else SequenceInfo(
            pattern=src.path, frames=(first.number,), data_window=(0, 0, first.pixels.shape[1], first.pixels.shape[0]),
            display_window=(0, 0, first.pixels.shape[1], first.pixels.shape[0]), fps=src.fps)
        if colourspace != "auto":
            info = dataclasses.replace(info, encoding=colourspace)
        info = dataclasses.replace(info, filled=tuple(src.missing), fps=src.fps)

        def decode(frame):
            if frame.info is None or colourspace == "auto":
                return frame.pixels
            return _as_file_colourspace(frame.pixels, frame.info.encoding, colourspace)

        stream = open_stream(src, info, channels=first.pixels.shape[-1], decode=decode if colourspace != "auto" else None)
        return {"ui": {"text": [stream.describe()]}, "result": (stream, stream.info)}


class StreamTrackCrops:
    DESCRIPTION = ("Stabilised face crops of one track, streamed: each frame where the track exists is warped "
                   "through its smoothed alignment when a sink reads it. Same crops as Track Crops.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "crops"
    RETURN_TYPES = (FRAMES, ALIGN, MASK, SEQUENCE)
    RETURN_NAMES = ("crops", "alignments", "crop_mask", "sequence")
    OUTPUT_TOOLTIPS = ("the crops, read lazily", "crop_from_frame per crop", "the feathered crop mask (one, for "
                       "every crop)", "the crops' frame numbers")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": widget(FRAMES, "linear frames (Open Sequence)"),
            "tracks": widget(TRACKS, "tracks from Analyse Shot / Track Faces"),
            "track_id": widget(INT, "which track (-1: the one seen in most frames)", default=-1, min=-1, max=1 << 16),
            "size": widget(INT, "crop size in pixels", default=512, min=8, max=8192, step=8),
            "feather": widget(FLOAT, "mask edge softness", default=0.1, min=0.0, max=0.5, step=0.01),
        }}

    def crops(self, frames, tracks: ShotResult, track_id=-1, size=512, feather=0.1):
        stream = _stream(frames)
        t = tracks.main_track() if track_id < 0 else tracks.track(track_id)
        where = {f: scaled_alignment(a, (size, size)) for f, a in zip(t.frames, t.alignments)}
        numbers = [f for f in stream.frames if f in where]
        if not numbers:
            raise InputError(f"track {t.track_id} is not in the stream's frames {stream.frames[0]}-{stream.frames[-1]}"
                             if stream.frames else "the stream has no frames")

        step = crop_step(where, (size, size))
        info = dataclasses.replace(stream.info, filled=(), data_window=(0, 0, size, size),
                                   display_window=(0, 0, size, size), attributes=())
        out = stream.then(f"track crops ({t.track_id})", step, frames=numbers, info=info)
        mask = numpy_to_mask(crop_mask((size, size), feather))
        return (out, [where[n] for n in out.frames], mask, out.info)


class StreamDrawLandmarks:
    DESCRIPTION = ("Preview, streamed: frames through the sRGB view with boxes, keypoints and landmarks drawn, "
                   "made when a sink (Save Contact Sheet (streamed)) reads them. Same pictures as Draw Landmarks.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "draw"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("previews",)
    OUTPUT_TOOLTIPS = ("display-referred overlays, read lazily",)

    @classmethod
    def INPUT_TYPES(cls):
        from ..core.preview import POINT_SETS

        return {"required": {
            "frames": widget(FRAMES, "linear frames"),
            "faces": widget(FACES, "faces to draw (matched by frame number)"),
            "point_size": widget(INT, "dot radius in pixels", default=1, min=0, max=16),
            "boxes": widget(BOOLEAN, "draw boxes and scores", default=True),
        }, "optional": {
            "stops": widget(FLOAT, "exposure for the preview, in stops", default=0.0, min=-16.0, max=16.0, step=0.25),
            "points": widget(POINT_SETS, "which points of a dense mesh (auto: the 68 on small faces)", default="auto"),
        }}

    def draw(self, frames, faces, point_size=1, boxes=True, stops=0.0, points="auto"):
        stream = _stream(frames)
        if stream.referred != "scene":
            raise InputError("Draw Landmarks (streamed) needs scene-linear frames, got display-referred ones")
        step = draw_step({ff.frame: ff for ff in faces}, ViewOptions(exposure="none", stops=stops), point_size,
                         boxes, points)
        return (stream.then("draw landmarks", step, referred="display", channels=3),)


class SaveFrameStream:
    DESCRIPTION = ("Write a stream as an EXR sequence, a chunk at a time (half or float, any OpenEXR "
                   "compression), atomically per frame; alpha is written as A when the frames have it.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("paths",)
    OUTPUT_TOOLTIPS = ("the files written (newline-separated)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": widget(FRAMES, "frames to write (linear float)"), **exr_output_inputs()},
                "optional": {
            "extra_mask": widget(MASK, "a mask to write as an extra layer: one per frame, or one for all"),
            **exr_extra_inputs(),
            "chunk": widget(INT, _CHUNK_TIP, default=DEFAULT_CHUNK, min=1, max=256),
        }, "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    def save(self, frames, path, pixel_type="half", compression="zip", mode="error", extra_mask=None,
             extra_layer="facegraph_mask", half_overflow="error", chunk=DEFAULT_CHUNK, prompt=None, unique_id=None):
        stream = _stream(frames)
        if not stream.frames:
            raise InputError("the stream has no frames to write")
        masks = mask_to_numpy(extra_mask) if extra_mask is not None else None
        if masks is not None and len(masks) not in (1, len(stream.frames)):
            raise InputError(f"extra_mask has {len(masks)} masks for {len(stream.frames)} frames",
                             hint="give one mask per frame, or one for all")
        channels = ["R", "G", "B"] + (["A"] if stream.channels == 4 else [])
        if masks is not None:
            channels.append(f"{extra_layer.strip() or 'facegraph_mask'}.Y")
        info = stream.info
        writer = sequence_writer(path, stream.frames, prompt=prompt, unique_id=unique_id,
                                 reads=stream.source.input_files(), mode=mode, pixel_type=pixel_type,
                                 compression=compression, channels=channels, attributes=info.attributes,
                                 half_overflow=half_overflow, data_window=info.data_window,
                                 display_window=info.display_window)
        index = {f: i for i, f in enumerate(stream.frames)}
        with writer, progress.task(len(stream.frames), "write EXR (streamed)") as bar:
            for part in stream.chunks(chunk):
                px = part.images.detach().permute(0, 2, 3, 1).cpu().numpy()
                for n, img in zip(part.numbers, px):
                    img = img[..., :len(channels) - (masks is not None)]
                    if masks is not None:
                        m = masks[0] if len(masks) == 1 else masks[index[n]]
                        if m.shape != img.shape[:2]:
                            raise InputError(f"extra_mask {m.shape} does not match frame {n}'s {img.shape[:2]}")
                        img = np.concatenate([img, m[..., None]], axis=-1)
                    writer.write(n, img)
                    bar.advance()
        return writer_result(writer)


class SaveStreamContactSheet:
    DESCRIPTION = ("Save a contact sheet PNG of evenly spaced frames of a stream (only those frames are read): "
                   "previews as they are, linear frames through the sRGB view; shown on the node.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("the PNG written",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": widget(FRAMES, "previews (Draw Landmarks (streamed)) or linear frames"),
                             **sheet_inputs()}}

    def save(self, frames, path="facegraph/contact_sheet.png", count=8, columns=4, tile_width=320):
        stream = _stream(frames)
        if not stream.frames:
            raise InputError("the stream has no frames to show")
        path = out_path(path)
        picked = stream.select([stream.frames[i] for i in progress.preview_picks(len(stream.frames), count)])
        tiles, labels = [], []
        with progress.task(len(picked.frames), "contact sheet") as bar:
            for part in picked.chunks():
                px = part.images.detach().permute(0, 2, 3, 1).cpu().numpy()
                for n, img in zip(part.numbers, px):
                    tiles.append(to_display(img) if stream.referred == "scene" else
                                 (np.clip(img[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
                    labels.append(str(n))
                    bar.advance()
        return save_sheet(path, tiles, labels, columns, tile_width, reads=stream.source.input_files())


class StreamAnalyseFrames:
    DESCRIPTION = ("Detect, landmarks and refine every frame of a stream with the default chain (as Analyse Shot "
                   "does per frame, batched, cached on disk), without tracking or smoothing: the raw faces of "
                   "each frame, for previews and per-frame work. Reads a chunk at a time.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "analyse"
    RETURN_TYPES = (FACES, STRING)
    RETURN_NAMES = ("faces", "summary")
    OUTPUT_TOOLTIPS = ("faces per frame (the stream's frames, in order)", "how many faces were found")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": widget(FRAMES, "linear frames, as read (Open Sequence)"),
            "cache": CACHE_INPUT,
        }, "optional": {
            **analysis_model_inputs(),
            "score_threshold": widget(FLOAT, "detector score threshold", default=0.6, min=0.0, max=1.0, step=0.01),
            "max_faces": widget(INT, "keep the best N faces per frame (0: all)", default=0, min=0, max=256),
            "cache_folder": CACHE_FOLDER_INPUT,
        }}

    def analyse(self, frames, cache=True, detector=None, landmarks=None, recrop=1, eyes="auto", score_threshold=0.6,
                max_faces=0, cache_folder=""):
        from ..models.shot import ShotAnalyser

        stream = _stream(frames)
        if stream.steps or stream.decode is not None:
            raise InputError("Analyse Frames (streamed) analyses frames as they are read",
                             hint="connect Open Sequence directly (colourspace auto)")
        if not stream.frames:
            raise InputError("the stream has no frames to analyse")
        opts, root = analysis_options(detector, landmarks, recrop, eyes, cache, cache_folder,
                                      score_threshold=score_threshold, max_faces=max_faces)
        opts = dataclasses.replace(opts, detect_every=1)  # every frame on its own: no tracking between frames
        faces = ShotAnalyser(opts).analyse(stream.source.subset(stream.frames), root)
        text = (f"{sum(len(ff) for ff in faces)} face(s) in {len(faces)} frames"
                + (f", cache {root}" if root else ""))
        return {"ui": {"text": [text]}, "result": (faces, text)}


class StreamToImages:
    DESCRIPTION = ("A range of a stream as an IMAGE batch (and alpha, and its sequence), for nodes that take "
                   "IMAGE: every frame of the range is held in memory, so take a chunk of a long shot.")
    CATEGORY = STREAM_CATEGORY
    FUNCTION = "take"
    RETURN_TYPES = (IMAGE, MASK, SEQUENCE)
    RETURN_NAMES = ("images", "alpha", "sequence")
    OUTPUT_TOOLTIPS = ("frames [B,H,W,C] (linear, or display-referred for previews)", "alpha (1 where none)",
                       "their frame numbers and metadata")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": widget(FRAMES, "a stream"),
            "first": widget(INT, "index of the first frame to take", default=0, min=0, max=1 << 30),
            "count": widget(INT, "how many frames (0: all; mind the memory)", default=0, min=0, max=1 << 30),
        }}

    def take(self, frames, first=0, count=0):
        stream = _stream(frames)
        if first >= len(stream.frames):
            raise InputError(f"first={first} is past the stream's {len(stream.frames)} frames")
        stop = len(stream.frames) if count <= 0 else min(len(stream.frames), first + count)
        part = stream.select(stream.frames[first:stop])
        images = []
        with progress.task(len(part.frames), "stream to images") as bar:
            for c in part.chunks():
                if images and c.images.shape[1:] != images[0].shape[1:]:
                    raise InputError("the stream's frames change size: an IMAGE batch needs one size",
                                     hint="take a range of one size")
                images.append(c.images)
                bar.advance(len(c))
        bchw = torch.cat(images)
        rgb = bchw[:, :3].permute(0, 2, 3, 1).contiguous()
        alpha = bchw[:, 3] if bchw.shape[1] == 4 else torch.ones(rgb.shape[:3], dtype=rgb.dtype, device=rgb.device)
        return (rgb, alpha.contiguous(), part.info)


NODES = {
    "FacegraphOpenSequence": (OpenSequence, "Open Sequence (streamed) (facegraph)"),
    "FacegraphStreamTrackCrops": (StreamTrackCrops, "Track Crops (streamed) (facegraph)"),
    "FacegraphStreamDrawLandmarks": (StreamDrawLandmarks, "Draw Landmarks (streamed) (facegraph)"),
    "FacegraphSaveFrameStream": (SaveFrameStream, "Save EXR Sequence (streamed) (facegraph)"),
    "FacegraphSaveStreamContactSheet": (SaveStreamContactSheet, "Save Contact Sheet (streamed) (facegraph)"),
    "FacegraphStreamToImages": (StreamToImages, "Stream to Images (facegraph)"),
    "FacegraphStreamAnalyseFrames": (StreamAnalyseFrames, "Analyse Frames (streamed) (facegraph)"),
}
