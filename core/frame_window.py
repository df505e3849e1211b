"""The frame window of a run: which frames a chunk of a shot reads and which it writes.

A shot rendered on a farm runs as chunks: frames ``first..last`` of the shot, plus ``handles`` frames each side
that temporal filters (smoothing, 3DMM shot fits) need to see but nobody writes. The window is context-local
(a contextvar, set by the headless runner for the run, see plugin/chunks.py): every reader that plans its frames
through :func:`facegraph.core.io.source.open_source` or iterates with :func:`facegraph.core.io.frames.iter_frames`
reads only ``first - handles .. last + handles`` (clipped to the frames the reader would read anyway, and to
the shot's frames when the run names them),
and every :class:`facegraph.core.io.frames.SequenceWriter` writes only ``first..last``; so every node honours a
chunk without knowing about it. Outside a window (the default, and inside ComfyUI) nothing changes.

Convention: frame numbers are the plate's integers (a movie's count from its start frame); ranges are inclusive.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Iterator, Sequence

from .errors import InputError


@dataclasses.dataclass(frozen=True)
class FrameWindow:
    """Frames ``first..last`` (inclusive) are this run's own; ``handles`` more each side are read, not written."""

    first: int
    last: int
    handles: int = 0
    #: the whole shot's frames (first, last) this chunk belongs to, when the run knows them (a chunked run:
    #: ``--shot``, or the engine's whole range); readers then never read past them, and the shot-level pass
    #: (models/shot.py ``analyse_shot``) runs over the whole shot from the shot cache when every frame is in it
    shot: tuple[int, int] | None = None
    #: the first pass of a chunked render: only the nodes that decide shot-level state run (plugin/chunks.py),
    #: filling the shot cache with this chunk's frames; the shot-level pass does not look for the whole shot
    analysis_pass: bool = False

    def __post_init__(self) -> None:
        for name in ("first", "last", "handles"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise InputError(f"frame window {name} must be an integer, got {getattr(self, name)!r}")
        if self.last < self.first:
            raise InputError(f"frame window {self.first}-{self.last}: the last frame is before the first",
                             hint="give frames as FIRST-LAST with FIRST <= LAST")
        if self.handles < 0:
            raise InputError(f"handles must be >= 0, got {self.handles}")
        if self.shot is not None:
            a, b = (int(v) for v in self.shot)
            if b < a or self.first < a or self.last > b:
                raise InputError(f"frame window {self.first}-{self.last} is not inside the shot {a}-{b}",
                                 hint="the chunk's frames must be frames of the shot")
            object.__setattr__(self, "shot", (a, b))

    @property
    def read_range(self) -> tuple[int, int]:
        """(first - handles, last + handles), clipped to the shot when it is known: what readers read (before
        clipping to the frames the reader has)."""
        lo, hi = self.first - self.handles, self.last + self.handles
        if self.shot is not None:
            lo, hi = max(lo, self.shot[0]), min(hi, self.shot[1])
        return (lo, hi)

    def shot_frames(self, frames: Sequence[int]) -> tuple[int, ...] | None:
        """``frames`` (a reader's, in its order) clipped to the shot; None when the shot is not known."""
        if self.shot is None:
            return None
        return tuple(f for f in frames if self.shot[0] <= f <= self.shot[1])

    def reads(self, frame: int) -> bool:
        lo, hi = self.read_range
        return lo <= frame <= hi

    def writes(self, frame: int | None) -> bool:
        """Whether a writer writes ``frame`` (None: a still, which a window never suppresses)."""
        return frame is None or self.first <= frame <= self.last

    def read_frames(self, frames: Sequence[int], where: str = "") -> tuple[int, ...]:
        """``frames`` (the shot, in its order) clipped to the read range; InputError when none is left."""
        kept = tuple(f for f in frames if self.reads(f))
        if frames and not kept:
            lo, hi = self.read_range
            raise InputError(f"the chunk's frames {lo}-{hi} (frames {self.first}-{self.last}, handles "
                             f"{self.handles}) are outside the input's frames {min(frames)}-{max(frames)}",
                             file=where or None, hint="give --frames inside the shot's frame range")
        return kept

    def label(self) -> str:
        return f"{self.first}-{self.last}"


_window: contextvars.ContextVar[FrameWindow | None] = contextvars.ContextVar("facegraph_frame_window", default=None)


def current() -> FrameWindow | None:
    """The window of the enclosing :func:`frame_window` block, or None (read and write every frame)."""
    return _window.get()


@contextlib.contextmanager
def frame_window(first: int, last: int, handles: int = 0, shot: tuple[int, int] | None = None,
                 analysis_pass: bool = False) -> Iterator[FrameWindow]:
    """Run the enclosed block as the chunk ``first..last`` with ``handles`` of the shot ``shot`` (see the
    module docstring and :class:`FrameWindow`)."""
    win = FrameWindow(int(first), int(last), int(handles), tuple(shot) if shot is not None else None,
                      bool(analysis_pass))
    token = _window.set(win)
    try:
        yield win
    finally:
        _window.reset(token)


@contextlib.contextmanager
def no_window() -> Iterator[None]:
    """Read and write every frame inside the block, whatever window encloses it."""
    token = _window.set(None)
    try:
        yield
    finally:
        _window.reset(token)
