"""One entry point for every input kind: a still, a frame sequence or a movie, streamed as :class:`Frame`.

Movie frames are numbered from ``start_frame`` (default 1001, the plate convention), so ``--frames`` means the
same thing for movies and sequences.

Inside a frame window (core.frame_window: one chunk of a shot, with handles) a sequence or movie source plans only
the window's read range, clipped to the frames it would read without one: the missing-frame policy is decided on
the whole range first, so a chunk holds the same frame as a single run. A still is never clipped.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Literal, Sequence

from .. import frame_window
from ..errors import ImageIOError
from .frames import Frame, check_headers, iter_frames
from .images import read_header, read_image
from .sequence import FramePlan, SequencePattern, plan_frames
from .video import MOVIE_EXTENSIONS, iter_video, probe_video

SourceKind = Literal["still", "sequence", "movie"]
MOVIE_START_FRAME = 1001


def classify(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    if os.path.splitext(text)[1].lower() in MOVIE_EXTENSIONS:
        return "movie"
    return "still" if SequencePattern.parse(text).is_still else "sequence"


@dataclasses.dataclass
class Source:
    """A planned read. ``frames`` are the output frame numbers; iterate with :meth:`frames_iter`."""

    path: str
    kind: str
    frames: tuple[int, ...]
    fps: float | None = None
    missing: tuple[int, ...] = ()
    _plan: FramePlan | None = None
    _pattern: SequencePattern | None = None
    _read: dict = dataclasses.field(default_factory=dict)
    #: the same read over the whole shot, when a frame window (a chunk of a known shot) clipped this one
    _whole: "Source | None" = dataclasses.field(default=None, repr=False, compare=False)

    def windowed(self) -> "Source":
        """This source clipped to the current frame window's read range (itself without a window or for a
        still). InputError when the window holds none of its frames. When the window names its shot, the
        result remembers the read over the whole shot (:meth:`whole`)."""
        win = frame_window.current()
        if win is None or self.kind == "still":
            return self
        kept = win.read_frames(self.frames, where=self.path)
        shot = win.shot_frames(self.frames)
        whole = self.subset(shot) if shot is not None and shot != kept else None
        sub = self if len(kept) == len(self.frames) else self.subset(kept)
        if whole is not None:
            sub = dataclasses.replace(sub, _whole=whole)
        return sub

    def whole(self) -> "Source | None":
        """The read over the whole shot this chunk's source belongs to (frames outside the chunk's window
        included; read them inside :func:`facegraph.core.frame_window.no_window`), or None when this source
        is not a clipped chunk of a known shot."""
        return self._whole

    def subset(self, frames) -> "Source":
        """The same read restricted to ``frames`` (kept in this source's order), the missing-frame policy's
        choice of source file kept for each."""
        want = set(frames)
        sub = dataclasses.replace(self, frames=tuple(f for f in self.frames if f in want))
        if self._plan is not None:
            keep = [i for i, f in enumerate(self._plan.frames) if f in want]
            sub._plan = dataclasses.replace(self._plan, frames=tuple(self._plan.frames[i] for i in keep),
                                            sources=tuple(self._plan.sources[i] for i in keep))
        return sub

    def input_files(self) -> list[str]:
        """Every file this source reads (the planned frames' files), for the output guard."""
        if self.kind in ("movie", "still"):
            return [self.path]
        return [self._pattern.path(s) for s in dict.fromkeys(self._plan.sources) if s is not None]

    def frames_iter(self, window: int = 2) -> Iterator[Frame]:
        if self.kind == "movie":
            first = self._read["start_frame"]
            yield from iter_video(self.path, [f - first for f in self.frames], first_frame=first,
                                  transfer=self._read["transfer"], matrix=self._read["matrix"],
                                  colour_range=self._read["colour_range"])
        elif self.kind == "still":
            px, info = read_image(self.path, channels=self._read["channels"], layer=self._read["layer"],
                                  nonfinite=self._read["nonfinite"])
            yield Frame(number=self.frames[0], pixels=px, info=info, source=self.frames[0])
        else:
            yield from iter_frames(self._pattern, plan=self._plan, channels=self._read["channels"],
                                   layer=self._read["layer"], nonfinite=self._read["nonfinite"], window=window)


def open_source(path: str | os.PathLike, frames: Sequence[int] | None = None, *, missing: str = "error",
                channels=None, layer: str = "", nonfinite: str = "error", start_frame: int = MOVIE_START_FRAME,
                transfer: str = "srgb", matrix: str = "auto", colour_range: str = "auto", check: bool = True) -> Source:
    """Plan a read of a still, sequence or movie (nothing is decoded until iteration). ``check``: open every
    planned frame's header first (cheap), so a bad frame fails before any work (see check_headers)."""
    text = os.fspath(path)
    kind = classify(text)
    read = dict(channels=channels, layer=layer, nonfinite=nonfinite, start_frame=start_frame, transfer=transfer,
                matrix=matrix, colour_range=colour_range)
    if kind == "movie":
        info = probe_video(text)
        all_frames = tuple(range(start_frame, start_frame + info.frame_count))
        wanted = tuple(frames) if frames is not None else all_frames
        bad = [f for f in wanted if f < start_frame or (info.frame_count and f >= start_frame + info.frame_count)]
        if bad:
            raise ImageIOError(f"frames {bad[:5]} are outside the movie's {start_frame}-"
                               f"{start_frame + info.frame_count - 1}", file=text)
        return Source(path=text, kind=kind, frames=wanted, fps=info.fps, _read=read).windowed()
    pattern = SequencePattern.parse(text)
    if kind == "still":
        if not os.path.isfile(text):
            raise ImageIOError("file not found", file=text)
        if check:
            read_header(text)
        number = frames[0] if frames else 0
        return Source(path=text, kind=kind, frames=(number,), _pattern=pattern, _read=read)
    plan = plan_frames(pattern, frames, missing)
    src = Source(path=text, kind=kind, frames=plan.frames, missing=plan.missing, _plan=plan, _pattern=pattern,
                 _read=read).windowed()
    if check:
        check_headers(pattern, src._plan)
    return src
