"""IO nodes: load frame sequences / stills, save EXR sequences. Thin: all work is in core.io."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from ..core import progress
from ..core.colour import VIEW_TRANSFORMS, ViewOptions, apply_view, reinterpret_decoded
from ..core.errors import InputError
from ..core.io.source import open_source
from ..core.io.video import TRANSFERS
from ..core.io.frames import WRITE_MODES, SequenceInfo, SequenceWriter, iter_frames, sequence_info
from ..core.fsutil import fingerprint, pattern_files
from ..core.io.images import EXR_COMPRESSIONS, HALF_OVERFLOW_POLICIES, NONFINITE_POLICIES, PIXEL_TYPES
from ..core.io.sequence import MISSING_POLICIES, SequencePattern, parse_frames, plan_frames
from ..core.paths import INPUT_TIP, OUTPUT_TIP
from .types import (CATEGORY, FLOAT, IMAGE, INT, MASK, SEQUENCE, STRING, image_to_numpy, in_path, mask_to_numpy, out_path,
                    numpy_to_image, numpy_to_mask, widget)

CHANNEL_CHOICES = ("auto", "RGB", "RGBA")
#: how a loader interprets the file's values: auto = by file type (EXR/HDR/float and files tagged linear:
#: linear; 8/16-bit stills: sRGB-encoded), or forced (a linear 16-bit TIFF, an sRGB-encoded EXR, ...)
FILE_COLOURSPACES: tuple[str, ...] = ("auto", "linear", "srgb", "rec709")
_COLOURSPACE_TIP = ("how the file's values are encoded: auto (EXR/float: linear, 8/16-bit stills: sRGB), or "
                    "force linear / srgb / rec709 (e.g. a linear 16-bit TIFF, an sRGB-encoded EXR); the output "
                    "is scene-linear either way")


def _check_file_colourspace(colourspace: str) -> str:
    if colourspace not in FILE_COLOURSPACES:
        raise InputError(f"colourspace must be one of {FILE_COLOURSPACES}, got {colourspace!r}")
    return colourspace


def _as_file_colourspace(pixels: np.ndarray, decoded_as: str, colourspace: str) -> np.ndarray:
    """Pixels decoded by the reader as ``decoded_as`` (its ImageInfo.encoding), re-read as ``colourspace``."""
    if colourspace == "auto" or colourspace == decoded_as:
        return pixels
    return reinterpret_decoded(pixels, decoded_as, colourspace)


class LoadImageSequence:
    DESCRIPTION = ("Load an EXR/PNG/JPEG/TIFF frame sequence or a still as scene-linear float (stills are "
                   "sRGB-decoded unless colourspace says how the files are encoded). Use frames/first/count to "
                   "take one chunk of a long sequence.")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "load"
    RETURN_TYPES = (IMAGE, MASK, SEQUENCE)
    RETURN_NAMES = ("images", "alpha", "sequence")
    OUTPUT_TOOLTIPS = ("frames, float32 linear premultiplied [B,H,W,C]", "alpha (1 where the file has none)",
                       "frame numbers, windows and metadata, for Save EXR Sequence")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "path": widget(STRING, "file or pattern: plate.####.exr, plate.%04d.exr, plate.$F4.exr, "
                                       "plate.1001-1100####.exr, or a single image" + INPUT_TIP, default=""),
                "frames": widget(STRING, "frame range, e.g. 1001-1100, 1-99x2, 1-10,20 (empty: all on disk)",
                                 default=""),
                "first": widget(INT, "index of the first frame of the range to load (for chunks)", default=0,
                                min=0, max=1 << 30),
                "count": widget(INT, "how many frames to load from 'first' (0: all)", default=0, min=0,
                                max=1 << 30),
                "missing": widget(MISSING_POLICIES, "what to do with frames missing from the range",
                                  default="error"),
            },
            "optional": {
                "channels": widget(CHANNEL_CHOICES, "channels to read (auto: RGB plus alpha when present)",
                                   default="auto"),
                "layer": widget(STRING, "EXR layer holding the channels (e.g. 'beauty'); empty: the main one",
                                default=""),
                "nonfinite": widget(NONFINITE_POLICIES, "NaN/Inf pixels: raise an error, or replace with 0",
                                    default="error"),
                "colourspace": widget(FILE_COLOURSPACES, _COLOURSPACE_TIP, default="auto"),
            },
        }

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def load(self, path, frames="", first=0, count=0, missing="error", channels="auto", layer="",
             nonfinite="error", colourspace="auto"):
        _check_file_colourspace(colourspace)
        pattern = SequencePattern.parse(in_path(path))
        plan = plan_frames(pattern, parse_frames(frames), missing)
        stop = len(plan.frames) if count <= 0 else min(len(plan.frames), first + count)
        if first >= len(plan.frames):
            raise InputError(f"first={first} is past the {len(plan.frames)} frames of the range",
                             file=pattern.display())
        plan = type(plan)(frames=plan.frames[first:stop], sources=plan.sources[first:stop], missing=plan.missing)
        batch = []
        with progress.task(len(plan.frames), "load frames") as bar:
            for frame in iter_frames(pattern, plan=plan, channels=None if channels == "auto" else channels,
                                     layer=layer, nonfinite=nonfinite):
                batch.append(frame)
                bar.advance()
        # black fills (info None) are 0 in every encoding
        pixels = np.stack([f.pixels if f.info is None else
                           _as_file_colourspace(f.pixels, f.info.encoding, colourspace) for f in batch])
        if pixels.shape[-1] == 4:
            alpha, rgb = pixels[..., 3], pixels[..., :3]
        else:
            alpha, rgb = np.ones(pixels.shape[:3], np.float32), pixels[..., :3]
        info = sequence_info(pattern, batch)
        if colourspace != "auto":
            info = dataclasses.replace(info, encoding=colourspace)
        return (numpy_to_image(rgb), numpy_to_mask(alpha), info)


def exr_output_inputs() -> dict:
    """The EXR writers' required widgets after their frames input: path, pixel type, compression, mode."""
    return {"path": widget(STRING, "output pattern, e.g. out/plate.####.exr" + OUTPUT_TIP,
                           default="facegraph/facegraph.####.exr"),
            "pixel_type": widget(PIXEL_TYPES, "half (16-bit float) or float (32-bit)", default="half"),
            "compression": widget(EXR_COMPRESSIONS, "OpenEXR compression", default="zip"),
            "mode": widget(WRITE_MODES, "existing frames: error, overwrite, or resume (keep them)", default="error")}


def exr_extra_inputs() -> dict:
    """The EXR writers' optional extra-layer name and half-overflow policy widgets."""
    return {"extra_layer": widget(STRING, "the extra layer's name: written as channel <name>.Y",
                                  default="facegraph_mask"),
            "half_overflow": widget(HALF_OVERFLOW_POLICIES, "values beyond half's range (|x| > 65504): error "
                                    "(write nothing), clamp to 65504, or write that frame as float",
                                    default="error")}


class SaveEXRSequence:
    DESCRIPTION = ("Write frames as an EXR sequence (half or float, any OpenEXR compression), atomically per "
                   "frame. Frame numbers, data/display windows and metadata come from the sequence input.")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING,)
    RETURN_NAMES = ("paths",)
    OUTPUT_TOOLTIPS = ("the files written (newline-separated)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": widget(IMAGE, "frames to write (linear float)"), **exr_output_inputs()},
            "optional": {
                "alpha": widget(MASK, "alpha to write as channel A (the images stay premultiplied)"),
                "sequence": widget(SEQUENCE, "frame numbers, windows and metadata from Load Image Sequence"),
                "start_frame": widget(INT, "frame number of the first image when no sequence is given",
                                      default=1001, min=-(1 << 30), max=1 << 30),
                "extra_mask": widget(MASK, "a mask to write as an extra layer (e.g. a face matte)"),
                **exr_extra_inputs(),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    def save(self, images, path, pixel_type="half", compression="zip", mode="error", alpha=None, sequence=None,
             start_frame=1001, extra_mask=None, extra_layer="facegraph_mask", half_overflow="error", prompt=None,
             unique_id=None):
        pixels = image_to_numpy(images)[..., :3]
        channels = ["R", "G", "B"]
        for mask, name in ((alpha, "A"), (extra_mask, f"{extra_layer.strip() or 'facegraph_mask'}.Y")):
            if mask is None:
                continue
            a = mask_to_numpy(mask)
            if a.shape[0] != pixels.shape[0] or a.shape[1:] != pixels.shape[1:3]:
                raise InputError(f"mask for {name} {a.shape} does not match images {pixels.shape}")
            pixels = np.concatenate([pixels, a[..., None]], axis=-1)
            channels.append(name)
        info: SequenceInfo | None = sequence
        if info is not None and len(info.frames) != pixels.shape[0]:
            raise InputError(f"sequence has {len(info.frames)} frames for {pixels.shape[0]} images")
        frames = info.frames if info is not None else tuple(range(start_frame, start_frame + pixels.shape[0]))
        windows = {}
        if info is not None and info.data_window[2:] == (pixels.shape[2], pixels.shape[1]):
            windows = {"data_window": info.data_window, "display_window": info.display_window}
        writer = sequence_writer(path, frames, mode=mode, pixel_type=pixel_type, compression=compression,
                                 channels=channels, attributes=info.attributes if info is not None else (),
                                 half_overflow=half_overflow, prompt=prompt, unique_id=unique_id, **windows)
        with writer, progress.task(len(frames), "write EXR") as bar:
            for number, px in zip(frames, pixels):
                writer.write(number, px)
                bar.advance()
        return writer_result(writer)


def sequence_writer(path: str, frames, *, prompt=None, unique_id=None, reads=(), **options) -> SequenceWriter:
    """The SequenceWriter a save node uses: ``path`` resolved against the output folder, the prompt's input
    files (and ``reads``: files the node knows it reads) protected and checked against the planned ``frames``,
    the graph hash recorded for resume."""
    inputs = list(dict.fromkeys(prompt_inputs(prompt, unique_id) + list(reads)))
    writer = SequenceWriter(out_path(path), graph_hash=run_hash(prompt, inputs), protect=inputs, **options)
    writer.check_inputs(frames, inputs)
    return writer


def writer_result(writer: SequenceWriter) -> dict:
    """A save node's return value: the files (written and kept), and a line for the node."""
    written = writer.written + writer.skipped
    note = f", {len(writer.replaced)} re-rendered (another graph had written them)" if writer.replaced else ""
    return {"ui": {"text": [f"{len(writer.written)} written, {len(writer.skipped)} kept{note}"]},
            "result": ("\n".join(written),)}


def files_changed(path: str, inputs: dict) -> str:
    """IS_CHANGED for every node that reads files: the content identity of the files ``path`` names (see
    core.fsutil.fingerprint) plus the node's other inputs, so edited frames are read again."""
    return fingerprint(pattern_files(in_path(path)), extra=(path, sorted(inputs.items(), key=str)))


def run_hash(prompt: dict | None, inputs: list[str]) -> str:
    """What a resumed frame must match: the graph with every parameter (the prompt) and the identity of the
    files it reads (core.fsutil.fingerprint: content identity), so frames rendered from an edited plate or
    by another graph are re-rendered, never kept. "" without a prompt."""
    if prompt is None:
        return ""
    text = json.dumps(prompt, sort_keys=True, default=str) + fingerprint(inputs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: the inputs through which facegraph's nodes read files (a Save node's ``path`` is its output: skipped)
READ_INPUTS = ("path", "plate", "source", "crops", "decal")


def prompt_inputs(prompt: dict | None, own_id: str | None = None) -> list[str]:
    """The files that the nodes of this prompt read (their string inputs in READ_INPUTS; Save nodes
    excluded): a writing node never writes over them, whatever its mode. ``own_id`` is accepted for the
    callers' clarity: a node's own read inputs count too."""
    files: list[str] = []
    for nid, node in (prompt or {}).items():
        if not isinstance(node, dict) or "Save" in str(node.get("class_type", "")):
            continue
        for key in READ_INPUTS:
            value = (node.get("inputs") or {}).get(key)
            if isinstance(value, str) and value.strip():
                files += pattern_files(in_path(value))
    return files


class LoadImage:
    DESCRIPTION = ("Load one image (EXR, PNG, JPEG, TIFF, ...) as scene-linear float; 8/16-bit files are "
                   "sRGB-decoded unless colourspace says how the file is encoded.")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "load"
    RETURN_TYPES = (IMAGE, MASK)
    RETURN_NAMES = ("image", "alpha")
    OUTPUT_TOOLTIPS = ("float32 linear premultiplied [1,H,W,3]", "alpha (1 where the file has none)")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": widget(STRING, "an image file" + INPUT_TIP, default="")},
                "optional": {"layer": widget(STRING, "EXR layer (empty: the main one)", default=""),
                             "colourspace": widget(FILE_COLOURSPACES, _COLOURSPACE_TIP, default="auto")}}

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def load(self, path, layer="", colourspace="auto"):
        from ..core.io.images import read_image

        _check_file_colourspace(colourspace)
        px, info = read_image(in_path(path), layer=layer)
        px = _as_file_colourspace(px, info.encoding, colourspace)
        alpha = px[..., 3] if px.shape[-1] == 4 else np.ones(px.shape[:2], np.float32)
        return (numpy_to_image(px[..., :3]), numpy_to_mask(alpha))


class LoadVideo:
    DESCRIPTION = ("Load frames of a movie (mp4, mov/ProRes, ...) as scene-linear float, decoded with an "
                   "explicit colour matrix and range (from the stream's tags unless forced).")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "load"
    RETURN_TYPES = (IMAGE, SEQUENCE)
    RETURN_NAMES = ("images", "sequence")
    OUTPUT_TOOLTIPS = ("frames, float32 linear [B,H,W,3]", "frame numbers (from start_frame) and frame rate")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "path": widget(STRING, "movie file" + INPUT_TIP, default=""),
                "frames": widget(STRING, "frame range in start_frame numbering (empty: all)", default=""),
                "first": widget(INT, "index of the first frame of the range to load", default=0, min=0,
                                max=1 << 30),
                "count": widget(INT, "how many frames to load (0: all)", default=0, min=0, max=1 << 30),
                "start_frame": widget(INT, "frame number of the movie's first frame", default=1001,
                                      min=-(1 << 30), max=1 << 30),
            },
            "optional": {
                "transfer": widget(TRANSFERS, "how decoded video becomes linear", default="srgb"),
                "matrix": widget(("auto", "bt709", "bt601"), "Y'CbCr matrix (auto: stream tags)", default="auto"),
                "colour_range": widget(("auto", "limited", "full"), "code range (auto: stream tags)",
                                       default="auto"),
            },
        }

    @classmethod
    def IS_CHANGED(cls, path, **inputs):
        return files_changed(path, inputs)

    def load(self, path, frames="", first=0, count=0, start_frame=1001, transfer="srgb", matrix="auto",
             colour_range="auto"):
        src = open_source(in_path(path), parse_frames(frames), start_frame=start_frame, transfer=transfer,
                          matrix=matrix, colour_range=colour_range)
        numbers = src.frames[first: (first + count) if count > 0 else None]
        if not numbers:
            raise InputError(f"no frames selected (first={first}, count={count})", file=path)
        src.frames = numbers
        batch = []
        with progress.task(len(numbers), "decode movie") as bar:
            for frame in src.frames_iter():
                batch.append(frame.pixels)
                bar.advance()
        h, w = batch[0].shape[:2]
        info = SequenceInfo(pattern=path, frames=tuple(numbers), data_window=(0, 0, w, h),
                            display_window=(0, 0, w, h), channels=("R", "G", "B"), fps=src.fps)
        return (numpy_to_image(np.stack(batch)), info)


class ViewTransform:
    DESCRIPTION = ("Render linear frames for display through a view transform (sRGB, Rec.709, or an OCIO "
                   "display/view, e.g. ocio://studio-config-latest). Feed the result to a preview node; never "
                   "back into the pipeline.")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "apply"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("display",)
    OUTPUT_TOOLTIPS = ("display-referred frames in [0, 1]",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": widget(IMAGE, "linear frames"),
                "view": widget(VIEW_TRANSFORMS, "view transform", default="srgb"),
                "stops": widget(FLOAT, "exposure trim in stops", default=0.0, min=-20.0, max=20.0, step=0.25),
            },
            "optional": {
                "ocio_config": widget(STRING, "OCIO config path or built-in URI (view = ocio)",
                                      default="ocio://studio-config-latest"),
                "ocio_display": widget(STRING, "OCIO display (empty: default)", default=""),
                "ocio_view": widget(STRING, "OCIO view (empty: default)", default=""),
                "ocio_colourspace": widget(STRING, "colour space of the linear frames (auto: Linear Rec.709 where "
                                           "the config has it, else its scene_linear role)", default="auto"),
            },
        }

    def apply(self, images, view="srgb", stops=0.0, ocio_config="ocio://studio-config-latest", ocio_display="",
              ocio_view="", ocio_colourspace="auto"):
        opts = ViewOptions(exposure="none", stops=stops, view=view, ocio_config=ocio_config if view == "ocio" else "",
                           ocio_display=ocio_display, ocio_view=ocio_view, ocio_colourspace=ocio_colourspace)
        frames = image_to_numpy(images)
        out = np.stack([np.clip(apply_view(f[..., :3] * np.float32(2.0 ** stops), opts), 0, 1) for f in frames])
        return (numpy_to_image(out),)


NODES = {
    "FacegraphLoadImageSequence": (LoadImageSequence, "Load Image Sequence (facegraph)"),
    "FacegraphLoadImage": (LoadImage, "Load Image (facegraph)"),
    "FacegraphLoadVideo": (LoadVideo, "Load Video (facegraph)"),
    "FacegraphSaveEXRSequence": (SaveEXRSequence, "Save EXR Sequence (facegraph)"),
    "FacegraphViewTransform": (ViewTransform, "Preview: View Transform (facegraph)"),
}
