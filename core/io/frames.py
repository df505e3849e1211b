"""Streaming frame sequences: read in a bounded window, write atomically with resume.

A sequence is never held whole: :func:`iter_frames` yields one frame at a time, optionally prefetching at
most ``window`` frames on a worker thread so decoding overlaps the caller's compute. :class:`SequenceWriter`
writes each frame atomically (temp file + rename), refuses to overwrite unless asked, and in ``resume`` mode
skips frames already on disk: a killed run only ever leaves complete frames behind, so a re-run picks up at
the first missing one.

Inside a frame window (core.frame_window: one chunk of a shot) :func:`iter_frames` reads only the window's read
range (the chunk and its handles) and :class:`SequenceWriter` writes only the chunk's own frames (the others are
listed in :attr:`SequenceWriter.outside`), so every node that streams through here honours a chunk unchanged.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import queue
import threading
from typing import Any, Iterable, Iterator, Literal, Sequence

import numpy as np

from .. import frame_window
from ..errors import ImageIOError, InputError
from ..fsutil import check_disjoint
from ..version import version
from .images import ImageInfo, read_header, read_image, write_image

log = logging.getLogger(__name__)
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
    plan = window_plan(plan or plan_frames(pattern, frames, missing), pattern)
    decoded: dict[int, tuple[np.ndarray, ImageInfo]] = {}
    shape: list[tuple[int, ...]] = []

    def load(i: int) -> Frame:
        number, src = plan.frames[i], plan.sources[i]
        if src is None:
            if not shape:
                first = next((s for s in plan.sources if s is not None), None)
                if first is None:  # a chunk of black fills only (the rest cached): any frame on disk sets the size
                    first = next(iter(pattern.scan()), None)
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


def window_plan(plan: FramePlan, pattern: SequencePattern | None = None) -> FramePlan:
    """``plan`` clipped to the current frame window's read range (the plan itself without a window); each kept
    frame keeps its source (the missing-frame policy's choice on the whole range)."""
    win = frame_window.current()
    if win is None:
        return plan
    keep = [i for i, f in enumerate(plan.frames) if win.reads(f)]
    if len(keep) == len(plan.frames):
        return plan
    win.read_frames(plan.frames, where=pattern.display() if pattern is not None else "")  # raises when empty
    return dataclasses.replace(plan, frames=tuple(plan.frames[i] for i in keep),
                               sources=tuple(plan.sources[i] for i in keep))


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

    ctx = contextvars.copy_context()  # the reader thread notes its inputs in the caller's job
    t = threading.Thread(target=ctx.run, args=(work,), name="facegraph-read", daemon=True)
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


_TALLY: contextvars.ContextVar[dict | None] = contextvars.ContextVar("facegraph_write_tally", default=None)


@contextlib.contextmanager
def tally() -> Iterator[dict]:
    """Count what every SequenceWriter in the block writes: ``{"written": [paths], "kept": [paths]}`` (the
    headless runner's summary and frames-per-second figure)."""
    counts: dict = {"written": [], "kept": []}
    token = _TALLY.set(counts)
    try:
        yield counts
    finally:
        _TALLY.reset(token)


def _count(what: str, path: str) -> None:
    counts = _TALLY.get()
    if counts is not None:
        counts[what].append(path)


#: output locks held by this process (lock path -> writer): a new writer of the same output takes over
_HELD: dict[str, "SequenceWriter"] = {}


def check_headers(pattern: SequencePattern, plan: FramePlan) -> None:
    """Open every planned frame's header (cheap, no pixels) before any work, so a frame that cannot be read
    fails in seconds rather than after hours on the frames before it. Raises one ImageIOError listing every
    bad frame (missing, zero-byte, not an image, over-large) and any frame whose size differs from the first."""
    bad: list[str] = []
    hints: list[str] = []
    size = None
    for src in sorted({s for s in plan.sources if s is not None}):
        path = pattern.path(src)
        try:
            h = read_header(path, frame=src)
        except ImageIOError as exc:
            bad.append(f"frame {src}: {exc.message}")
            if exc.hint and exc.hint not in hints:
                hints.append(exc.hint)
            continue
        if size is None:
            size = (h.width, h.height, src)
        elif (h.width, h.height) != size[:2]:
            bad.append(f"frame {src}: {h.width}x{h.height} differs from frame {size[2]}'s {size[0]}x{size[1]}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ImageIOError(f"{len(bad)} frame(s) cannot be used: " + "; ".join(bad[:5]) + more,
                           file=pattern.display(), hint="; ".join(["nothing was processed", *hints,
                           "fix or remove those frames, or choose a missing-frame policy for frames that are absent"]))


def read_graph_hash(path: str) -> str | None:
    """The ``facegraph:graph_hash`` a frame was written with (header only), or None (absent / unreadable)."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        oiio.geterror()
        return None
    try:
        value = inp.spec().get_string_attribute(GRAPH_HASH_ATTR, "")
    finally:
        inp.close()
    return value or None


class SequenceWriter:
    """Writes frames of one output pattern. mode: ``error`` (refuse existing files), ``overwrite``, ``resume``
    (keep existing frames written by the same graph, i.e. whose ``facegraph:graph_hash`` matches; frames
    from another graph or parameters are re-rendered and listed in :attr:`replaced`).

    One writer per output: the first write takes an exclusive lock beside the frames (a second process
    writing the same pattern fails at once naming it) and removes temp files a killed writer left behind.
    ``protect``: input files this output must never replace (checked per frame, and up front by
    :meth:`check_inputs`). Use as a context manager, or call :meth:`close`, to release the lock.

    Inside a frame window (core.frame_window) only the window's own frames are written: :meth:`write` of a
    frame outside it (a handle) writes nothing, returns None and lists the frame in :attr:`outside`. Every
    frame written or kept is also counted in the enclosing :func:`tally` (the runner's summary).
    """

    def __init__(self, pattern: SequencePattern | str, *, mode: str = "error", pixel_type: str = "half",
                 compression: str = "zip", channels: Sequence[str] | None = None,
                 attributes: Sequence[tuple[str, str, Any]] = (), graph_hash: str = "",
                 data_window: tuple[int, int, int, int] | None = None,
                 display_window: tuple[int, int, int, int] | None = None, nonfinite: str = "error",
                 bit_depth: int = 8, encoded: bool = False, threads: int = 0, half_overflow: str = "error",
                 protect: Iterable[str] = ()) -> None:
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
        self.half_overflow = half_overflow
        self.protect = tuple(os.fspath(p) for p in protect)
        self.written: list[str] = []
        self.skipped: list[str] = []
        self.replaced: list[str] = []
        self.outside: list[int] = []
        self._lock_fh = None

    # ------------------------------------------------------------------------------------ lock + hygiene
    def _lock_path(self) -> str:
        """The lock beside the frames. Inside a frame window (one chunk of a shot) it covers the chunk's own
        frames only (``....A-B.facegraph-lock``): chunks of one shot write disjoint frames of the same output
        at the same time (farm tasks, Ray actors), while a second writer of the same chunk is still refused."""
        head = os.path.basename(self.pattern.head)
        win = frame_window.current()
        span = f".{win.first}-{win.last}" if win is not None and not self.pattern.is_still else ""
        return os.path.join(os.path.dirname(self.pattern.head) or ".",
                            f".{head}{'#' * (self.pattern.pad or 0)}{self.pattern.tail}{span}.facegraph-lock")

    def _acquire(self) -> None:
        if self._lock_fh is not None:
            return
        import fcntl

        self._lock_at = self._lock_path()
        lock = os.path.realpath(self._lock_at)
        previous = _HELD.pop(lock, None)
        if previous is not None:  # a writer of this process that was never closed (an interrupted node)
            previous.close()
        try:
            os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
            fh = open(lock, "a+")
        except OSError as exc:
            raise ImageIOError(f"cannot write here: {exc.strerror or exc}", file=self.pattern.display(),
                               hint="check that the folder exists, is writable and has free space") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ImageIOError("another writer is writing this output right now", file=self.pattern.display(),
                               hint="wait for it to finish, or write to another path") from None
        self._lock_fh = fh
        self._lock_real = lock
        _HELD[lock] = self
        self._clean_temps()

    def _clean_temps(self) -> None:
        """Remove temp files of this pattern that a killed writer left (safe: we hold the lock; inside a frame
        window only the window's own frames, which no other chunk writes)."""
        win = frame_window.current()
        directory = os.path.dirname(self.pattern.head) or "."
        prefix = "." + os.path.basename(self.pattern.head)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and ".tmp" in name and not name.endswith(".facegraph-lock"):
                rest = name[len(prefix):]
                digits = rest.split(".", 1)[0].lstrip("-")
                if self.pattern.is_still or (digits.isdigit() and rest[len(rest.split('.', 1)[0]):].startswith(
                        self.pattern.tail + ".") and (win is None or win.writes(int(rest.split(".", 1)[0])))):
                    try:
                        os.unlink(os.path.join(directory, name))
                        log.info("removed a temp file left by a killed writer: %s", name)
                    except OSError:
                        pass

    def close(self) -> None:
        """Release the output lock (idempotent)."""
        if self._lock_fh is not None:
            if _HELD.get(self._lock_real) is self:
                del _HELD[self._lock_real]
            try:
                os.unlink(self._lock_at)
            except OSError:
                pass
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> "SequenceWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def check_inputs(self, frames: Sequence[int | None], inputs: Iterable[str]) -> None:
        """Before any work: refuse when one of this output's frames would be one of ``inputs``."""
        check_disjoint([self.path(f) for f in frames], inputs)

    def path(self, frame: int | None) -> str:
        return self.pattern.path(frame)

    def exists(self, frame: int | None) -> bool:
        return os.path.exists(self.path(frame))

    def write(self, frame: int | None, pixels: np.ndarray) -> str | None:
        """Write one frame (``None`` for a still pattern); returns its path, or None when resume mode kept an
        existing file."""
        win = frame_window.current()
        if win is not None and not win.writes(frame):
            self.outside.append(int(frame))
            return None
        path = self.path(frame)
        if self.protect:
            check_disjoint([path], self.protect)
        exists = os.path.exists(path)
        if exists and self.mode == "error":
            raise ImageIOError("output frame exists", file=path, frame=frame,
                               hint="choose mode 'overwrite' to replace it or 'resume' to keep it")
        self._acquire()
        if exists and self.mode == "resume":
            found = read_graph_hash(path)
            if (found or "") == (self.graph_hash or ""):
                self.skipped.append(path)
                _count("kept", path)
                return None
            log.warning("resume: %s was written by another graph or other parameters (hash %s, this run %s): "
                        "re-rendering it", path, found or "none", self.graph_hash or "none")
            self.replaced.append(path)
        attrs = list(self.attributes) + [(FACEGRAPH_VERSION_ATTR, "string", version())]
        if frame is not None:
            attrs.append((FRAME_ATTR, "int", int(frame)))
        if self.graph_hash:
            attrs.append((GRAPH_HASH_ATTR, "string", self.graph_hash))
        origin = self.data_window[:2] if self.data_window else None
        write_image(path, pixels, channels=self.channels, pixel_type=self.pixel_type,
                    compression=self.compression, data_window=origin, display_window=self.display_window,
                    attributes=attrs, overwrite=self.mode != "error", nonfinite=self.nonfinite, frame=frame,
                    bit_depth=self.bit_depth, encoded=self.encoded, threads=self.threads,
                    half_overflow=self.half_overflow)
        self.written.append(path)
        _count("written", path)
        return path

    def first_missing(self, frames: Sequence[int]) -> int | None:
        """The first of ``frames`` with no file yet, or written by another graph (where a resumed run
        starts), or None if all are done."""
        return next((f for f in frames if not self.exists(f) or (read_graph_hash(self.path(f)) or "") != (
            self.graph_hash or "")), None)
