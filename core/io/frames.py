"""Streaming frame sequences: read in a bounded window, write atomically with resume.

A sequence is never held whole: :func:`iter_frames` yields one frame at a time, optionally prefetching at
most ``window`` frames on a worker thread so decoding overlaps the caller's compute. :class:`SequenceWriter`
writes each frame atomically (temp file + rename), refuses to overwrite unless asked, and in ``resume`` mode
skips frames already on disk: a killed run only ever leaves complete frames behind, so a re-run picks up at
the first missing one.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from ..errors import ImageIOError, InputError
from ..version import version
from .images import ImageInfo, read_image, write_image
from .sequence import FramePlan, SequencePattern, plan_frames

WriteMode = Literal["error", "overwrite", "resume"]
WRITE_MODES: tuple[str, ...] = ("error", "overwrite", "resume")
FACEGRAPH_VERSION_ATTR = "facegraph:version"
FRAME_ATTR = "facegraph:frame"
GRAPH_HASH_ATTR = "facegraph:graph_hash"


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame. ``number``: the output frame number; ``source``: the file's frame it came from
    (differs under the hold policy; None for a black fill). pixels: (H, W, C) float32 linear premultiplied."""

    number: int
    pixels: np.ndarray
    info: ImageInfo | None
    source: int | None

    @property
    def filled(self) -> bool:
        return self.source != self.number


@dataclasses.dataclass(frozen=True)
class SequenceInfo:
    """What a graph needs to know about a loaded sequence to write it back faithfully (FACEGRAPH_SEQUENCE).

    frames: the frame numbers of the batch, in order; filled: those that came from the missing-frame policy.
    data_window / display_window / attributes / channels: from the first present frame (see ImageInfo).
    """

    pattern: str
    frames: tuple[int, ...]
    filled: tuple[int, ...] = ()
    data_window: tuple[int, int, int, int] = (0, 0, 0, 0)
    display_window: tuple[int, int, int, int] = (0, 0, 0, 0)
    channels: tuple[str, ...] = ()
    attributes: tuple = ()
    encoding: str = "linear"
    fps: float | None = None


def iter_frames(pattern: SequencePattern | str, frames: Sequence[int] | None = None, *, missing: str = "error",
                channels: str | Sequence[str] | None = None, layer: str = "", nonfinite: str = "error",
                window: int = 2, plan: FramePlan | None = None, threads: int = 0) -> Iterator[Frame]:
    """Yield frames in order, reading ahead at most ``window`` frames (0 = no thread). ``threads``: OIIO
    decode threads for this reader (0 = OIIO's default), so parallel readers do not oversubscribe cores.

    A missing frame follows the policy (see :func:`plan_frames`); a frame whose size differs from the first
    raises ImageIOError naming it (a sequence has one resolution).
    """
    if not isinstance(pattern, SequencePattern):
        pattern = SequencePattern.parse(pattern)
    plan = plan or plan_frames(pattern, frames, missing)
    decoded: dict[int, tuple[np.ndarray, ImageInfo]] = {}
    shape: list[tuple[int, ...]] = []

    def load(i: int) -> Frame:
        number, src = plan.frames[i], plan.sources[i]
        if src is None:
            if not shape:
                first = next((s for s in plan.sources if s is not None), None)
                if first is None:
                    raise ImageIOError("no frame to take the size of a black fill from", file=pattern.display())
                px, _ = read_image(pattern.path(first), channels=channels, layer=layer, nonfinite=nonfinite,
                                   frame=first, threads=threads)
                shape.append(px.shape)
            return Frame(number, np.zeros(shape[0], np.float32), None, None)
        if src in decoded:  # held frame: reuse the decode
            px, info = decoded[src]
        else:
            px, info = read_image(pattern.path(src), channels=channels, layer=layer, nonfinite=nonfinite, frame=src,
                                  threads=threads)
            decoded.clear()
            decoded[src] = (px, info)
        if not shape:
            shape.append(px.shape)
        elif px.shape != shape[0]:
            raise ImageIOError(f"frame size {px.shape[1]}x{px.shape[0]}x{px.shape[2]} differs from the "
                               f"sequence's {shape[0][1]}x{shape[0][0]}x{shape[0][2]}", file=pattern.path(src),
                               frame=src)
        return Frame(number, px if src == number else px.copy(), info, src)

    n = len(plan.frames)
    if window <= 0:
        for i in range(n):
            yield load(i)
        return
    yield from _prefetch(load, n, window)


_DONE = object()


def _prefetch(load, n: int, window: int) -> Iterator[Frame]:
    q: "queue.Queue[Any]" = queue.Queue(maxsize=window)
    stop = threading.Event()

    def work() -> None:
        try:
            for i in range(n):
                if stop.is_set():
                    return
                item = load(i)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # hand errors to the consumer
            q.put(exc)
            return
        q.put(_DONE)

    t = threading.Thread(target=work, name="facegraph-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def sequence_info(pattern: SequencePattern, frames: Sequence[Frame]) -> SequenceInfo:
    """The FACEGRAPH_SEQUENCE record for a batch of frames read from ``pattern``."""
    first = next((f.info for f in frames if f.info is not None), None)
    if first is None:
        raise InputError("a sequence batch needs at least one real frame")
    return SequenceInfo(pattern=pattern.display(), frames=tuple(f.number for f in frames),
                        filled=tuple(f.number for f in frames if f.filled), data_window=first.data_window,
                        display_window=first.display_window, channels=first.channels,
                        attributes=first.attributes, encoding=first.encoding)


class SequenceWriter:
    """Writes frames of one output pattern. mode: ``error`` (refuse existing files), ``overwrite``, ``resume``
    (keep existing frames, write only missing ones)."""

    def __init__(self, pattern: SequencePattern | str, *, mode: str = "error", pixel_type: str = "half",
                 compression: str = "zip", channels: Sequence[str] | None = None,
                 attributes: Sequence[tuple[str, str, Any]] = (), graph_hash: str = "",
                 data_window: tuple[int, int, int, int] | None = None,
                 display_window: tuple[int, int, int, int] | None = None, nonfinite: str = "error",
                 bit_depth: int = 8, encoded: bool = False, threads: int = 0) -> None:
        if mode not in WRITE_MODES:
            raise InputError(f"write mode must be one of {WRITE_MODES}, got {mode!r}")
        self.pattern = pattern if isinstance(pattern, SequencePattern) else SequencePattern.parse(pattern)
        self.mode = mode
        self.pixel_type = pixel_type
        self.compression = compression
        self.channels = tuple(channels) if channels else None
        self.attributes = tuple(attributes)
        self.graph_hash = graph_hash
        self.data_window = data_window
        self.display_window = display_window
        self.nonfinite = nonfinite
        self.bit_depth = bit_depth
        self.encoded = encoded
        self.threads = threads
        self.written: list[str] = []
        self.skipped: list[str] = []

    def path(self, frame: int | None) -> str:
        return self.pattern.path(frame)

    def exists(self, frame: int | None) -> bool:
        return os.path.exists(self.path(frame))

    def write(self, frame: int | None, pixels: np.ndarray) -> str | None:
        """Write one frame (``None`` for a still pattern); returns its path, or None when resume mode kept an
        existing file."""
        path = self.path(frame)
        if os.path.exists(path):
            if self.mode == "resume":
                self.skipped.append(path)
                return None
            if self.mode == "error":
                raise ImageIOError("output frame exists", file=path, frame=frame,
                                   hint="choose mode 'overwrite' to replace it or 'resume' to keep it")
        attrs = list(self.attributes) + [(FACEGRAPH_VERSION_ATTR, "string", version())]
        if frame is not None:
            attrs.append((FRAME_ATTR, "int", int(frame)))
        if self.graph_hash:
            attrs.append((GRAPH_HASH_ATTR, "string", self.graph_hash))
        origin = self.data_window[:2] if self.data_window else None
        write_image(path, pixels, channels=self.channels, pixel_type=self.pixel_type,
                    compression=self.compression, data_window=origin, display_window=self.display_window,
                    attributes=attrs, overwrite=self.mode != "error", nonfinite=self.nonfinite, frame=frame,
                    bit_depth=self.bit_depth, encoded=self.encoded, threads=self.threads)
        self.written.append(path)
        return path

    def first_missing(self, frames: Sequence[int]) -> int | None:
        """The first of ``frames`` with no file yet (where a resumed run starts), or None if all exist."""
        return next((f for f in frames if not self.exists(f)), None)
