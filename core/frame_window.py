"""The frame window of a run: which frames a chunk of a shot reads and which it writes.

A shot rendered on a farm runs as chunks: frames ``first..last`` of the shot, plus ``handles`` frames each side
that temporal filters (smoothing, 3DMM shot fits) need to see but nobody writes. The window is context-local
(a contextvar, set by the headless runner for the run, see plugin/chunks.py): every reader that plans its frames
through :func:`facegraph.core.io.source.open_source` or iterates with :func:`facegraph.core.io.frames.iter_frames`
reads only ``first - handles .. last + handles`` (clipped to the frames the reader would read anyway: the shot),
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

    def __post_init__(self) -> None:
        for name in ("first", "last", "handles"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise InputError(f"frame window {name} must be an integer, got {getattr(self, name)!r}")
        if self.last < self.first:
            raise InputError(f"frame window {self.first}-{self.last}: the last frame is before the first",
                             hint="give frames as FIRST-LAST with FIRST <= LAST")
        if self.handles < 0:
            raise InputError(f"handles must be >= 0, got {self.handles}")

    @property
    def read_range(self) -> tuple[int, int]:
        """(first - handles, last + handles): what readers read (before clipping to the shot)."""
        return (self.first - self.handles, self.last + self.handles)

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
def frame_window(first: int, last: int, handles: int = 0) -> Iterator[FrameWindow]:
    """Run the enclosed block as the chunk ``first..last`` with ``handles`` (see the module docstring)."""
    win = FrameWindow(int(first), int(last), int(handles))
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
