"""Transcode between sequences, stills and movies, streamed frame by frame.

EXR -> EXR keeps data window, display window and metadata. Display outputs (PNG/JPEG/TIFF sequences, mp4/mov)
go through the view transform; EXR outputs stay linear.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from .. import progress
from ..colour import ViewOptions, apply_view
from ..errors import InputError
from ..fsutil import check_disjoint, fingerprint
from ..shotcache import stable_hash
from .frames import SequenceWriter
from .images import STILL_FORMATS
from .sequence import SequencePattern
from .source import Source, classify, open_source
from .video import MOVIE_EXTENSIONS, VideoWriter


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    pixel_type: str = "half"
    compression: str = "zip"
    mode: str = "error"            # error | overwrite | resume (sequences); movies: error | overwrite
    view: ViewOptions = ViewOptions(exposure="none")
    fps: float | None = None
    codec: str = "h264"
    bit_depth: int = 8
    half_overflow: str = "error"   # values beyond half's range: error | clamp | float (see write_image)


@dataclasses.dataclass(frozen=True)
class ConvertReport:
    written: int
    kept: int
    output: str
    frames: tuple[int, ...]
    replaced: int = 0   # resumed frames that another graph had written, re-rendered


def convert(src: Source | str, output: str, options: ConvertOptions = ConvertOptions(),
            frames: Sequence[int] | None = None, missing: str = "error") -> ConvertReport:
    """Stream ``src`` into ``output`` (pattern, still or movie path)."""
    if not isinstance(src, Source):
        src = open_source(src, frames, missing=missing)
    ext = os.path.splitext(output)[1].lower()
    out_kind = classify(output)
    if out_kind == "movie":
        return _to_movie(src, output, options)
    if ext != ".exr" and ext not in STILL_FORMATS:
        raise InputError(f"cannot write {ext!r}", hint="outputs: .exr, .png, .jpg, .tif sequences or stills, "
                                                       f"or movies {MOVIE_EXTENSIONS}")
    pattern = SequencePattern.parse(output)
    if pattern.is_still and len(src.frames) > 1:
        raise InputError(f"{len(src.frames)} frames cannot go to one still {output!r}",
                         hint="use a frame pattern such as out.####.exr")
    display = ext != ".exr"
    inputs = src.input_files()
    numbers = [None] if pattern.is_still else list(src.frames)
    check_disjoint([pattern.path(f) for f in numbers], inputs, what="output of convert")
    # what a resumed frame must match: the input, its frames and every option that changes the pixels
    opts = dataclasses.asdict(options)
    opts.pop("mode")
    graph_hash = stable_hash({"convert": src.path, "read": src._read, "options": opts,
                              "inputs": fingerprint(inputs)}, 16)
    writer = None
    try:
        with progress.task(len(src.frames), f"convert -> {os.path.basename(output)}") as bar:
            for frame in src.frames_iter():
                if writer is None:
                    info = frame.info
                    keep = info is not None and ext == ".exr" and src.kind != "movie"
                    writer = SequenceWriter(
                        pattern, mode=options.mode, pixel_type=options.pixel_type, compression=options.compression,
                        attributes=info.attributes if keep else (),
                        data_window=info.data_window if keep else None,
                        display_window=info.display_window if keep else None, bit_depth=options.bit_depth,
                        encoded=display, graph_hash=graph_hash, half_overflow=options.half_overflow,
                        protect=inputs)
                px = frame.pixels
                if display:
                    px = _display(px, options.view)
                writer.write(frame.number if not pattern.is_still else None, px)
                bar.advance()
    finally:
        if writer is not None:
            writer.close()
    return ConvertReport(written=len(writer.written), kept=len(writer.skipped), output=output, frames=src.frames,
                         replaced=len(writer.replaced))


def _display(px: np.ndarray, view: ViewOptions) -> np.ndarray:
    """Display-referred RGB in [0, 1]: a preview shows the premultiplied picture over black (alpha dropped)."""
    rgb = px[..., :3] * np.float32(2.0 ** view.stops)
    return np.clip(apply_view(rgb, view), 0, 1)


def _to_movie(src: Source, output: str, options: ConvertOptions) -> ConvertReport:
    check_disjoint([output], src.input_files(), what="output of convert")
    fps = options.fps or src.fps or 24.0
    n = 0
    with VideoWriter(output, fps, codec=options.codec, view=options.view, overwrite=options.mode == "overwrite") as w:
        with progress.task(len(src.frames), f"encode {os.path.basename(output)}") as bar:
            for frame in src.frames_iter():
                w.write(frame.pixels)
                n += 1
                bar.advance()
    return ConvertReport(written=n, kept=0, output=output, frames=src.frames)
