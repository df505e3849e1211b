"""A lazy frame stream: a shot's frames, read on demand in chunks, through a chain of per-frame steps.

A :class:`FrameStream` is what a graph passes instead of the whole plate (ComfyUI's IMAGE batch holds every
frame at once: 5.3 GB for 300 frames at 512x512 in a real ComfyUI). It is a small frozen record: the planned
read (:class:`~facegraph.core.io.source.Source`), the frames it yields, and the steps to apply to each chunk.
Nothing is decoded until a sink (a writer, a contact sheet) iterates it with :meth:`FrameStream.chunks`, so
peak memory is one chunk of frames whatever the shot length, and a sink that needs only some frames (a contact
sheet's eight) reads only those.

Convention:
    A chunk's images are (B, C, H, W) float32 torch tensors on ``device``: scene-linear premultiplied for a
    ``"scene"`` stream (C = 3, or 4 with alpha), display-referred in [0, 1] for a ``"display"`` stream (previews).
    ``offsets`` are each frame's (dx, dy) from its array's pixels (the data window) to display-window pixels,
    the coordinates every facegraph record uses (core/conventions.py); a step that resamples into a new
    raster (a crop) returns zero offsets.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import torch

from .. import progress
from ..errors import InputError
from .frames import Frame, SequenceInfo
from .source import Source

Referred = Literal["scene", "display"]
#: frames decoded per chunk by default: bounds memory (8 x 1080p RGBA float32 = 265 MB) and batches models
DEFAULT_CHUNK = 8


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Consecutive frames of a stream: their numbers, pixels (B, C, H, W), data-window offsets and which of
    them the missing-frame policy filled."""

    numbers: tuple[int, ...]
    images: torch.Tensor
    offsets: tuple[tuple[int, int], ...]
    filled: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, indices: Sequence[int]) -> "Chunk":
        """The chunk's frames at ``indices`` (in that order)."""
        idx = list(indices)
        return Chunk(numbers=tuple(self.numbers[i] for i in idx), images=self.images[idx],
                     offsets=tuple(self.offsets[i] for i in idx), filled=tuple(self.filled[i] for i in idx))


#: a per-chunk step: a chunk in, a chunk of the same frames out (never modifying the input tensor)
Step = Callable[[Chunk], Chunk]


def frame_offset(frame: Frame) -> tuple[int, int]:
    """(dx, dy) from a frame's data-window array to display-window pixels (0, 0 without a header)."""
    if frame.info is None:
        return (0, 0)
    dw, fw = frame.info.data_window, frame.info.display_window
    return (dw[0] - fw[0], dw[1] - fw[1])


@dataclasses.dataclass(frozen=True)
class FrameStream:
    """A lazy, re-iterable sequence of frames (graph type FACEGRAPH_FRAMES).

    source: the planned read; frames: the frame numbers this stream yields, in the source's order (a step can
    narrow them, e.g. crops exist only where a track does); steps: (name, step) applied to every chunk in order;
    info: windows, attributes and frame numbers for a writer (what the steps' output looks like);
    referred: "scene" (linear) or "display" (previews); decode: per-frame (H, W, C) numpy -> numpy applied at
    read time (e.g. a colourspace reinterpretation), or None; channels: C of the chunks the steps produce (3, or
    4 with alpha); device: where chunks are put.
    """

    source: Source
    frames: tuple[int, ...]
    info: SequenceInfo
    steps: tuple[tuple[str, Step], ...] = ()
    referred: Referred = "scene"
    channels: int = 3
    decode: Callable[[Frame], np.ndarray] | None = None
    device: str = "cpu"

    def __len__(self) -> int:
        return len(self.frames)

    def then(self, name: str, step: Step, *, frames: Sequence[int] | None = None, info: SequenceInfo | None = None,
             referred: Referred | None = None, channels: int | None = None) -> "FrameStream":
        """A new stream with ``step`` appended; ``frames`` narrows the frames (kept in this stream's order),
        ``info`` / ``referred`` / ``channels`` describe the step's output where it changes them."""
        keep = self.frames if frames is None else self._narrow(frames)
        info = info if info is not None else self.info
        return dataclasses.replace(self, frames=keep, steps=self.steps + ((name, step),),
                                   info=dataclasses.replace(info, frames=keep), referred=referred or self.referred,
                                   channels=channels or self.channels)

    def select(self, frames: Sequence[int]) -> "FrameStream":
        """The same stream restricted to ``frames`` (those it has, in its order)."""
        keep = self._narrow(frames)
        return dataclasses.replace(self, frames=keep, info=dataclasses.replace(self.info, frames=keep))

    def _narrow(self, frames: Sequence[int]) -> tuple[int, ...]:
        want = set(int(f) for f in frames)
        return tuple(f for f in self.frames if f in want)

    def describe(self) -> str:
        span = f"{self.frames[0]}-{self.frames[-1]}" if self.frames else "no frames"
        steps = " -> ".join(n for n, _ in self.steps) or "read"
        return f"{len(self.frames)} frames ({span}) of {self.source.path}: {steps} [{self.referred}]"

    def chunks(self, size: int = DEFAULT_CHUNK) -> Iterator[Chunk]:
        """Decode the stream's frames ``size`` at a time and run every step on each chunk.

        Frames of different sizes (a sequence whose resolution changes) never share a chunk. Memory: one chunk
        of decoded frames plus what the steps make of it, whatever the stream's length.
        """
        if size < 1:
            raise InputError(f"chunk size must be at least 1, got {size}")
        if not self.frames:
            return
        src = self.source.subset(self.frames)
        pending: list[tuple[Frame, np.ndarray]] = []
        for frame in src.frames_iter():
            px = self.decode(frame) if self.decode is not None else frame.pixels
            if pending and pending[0][1].shape != px.shape:
                yield self._run(pending)
                pending = []
            pending.append((frame, px))
            if len(pending) == size:
                yield self._run(pending)
                pending = []
        if pending:
            yield self._run(pending)

    def _run(self, pending: list[tuple[Frame, np.ndarray]]) -> Chunk:
        arr = np.stack([px for _, px in pending]).astype(np.float32, copy=False)
        images = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if self.device != "cpu":
            images = images.to(self.device)
        chunk = Chunk(numbers=tuple(f.number for f, _ in pending), images=images,
                      offsets=tuple(frame_offset(f) for f, _ in pending),
                      filled=tuple(f.filled for f, _ in pending))
        for name, step in self.steps:
            out = step(chunk)
            if out.numbers != chunk.numbers or out.images.shape[0] != len(chunk):
                raise InputError(f"stream step {name!r} changed the chunk's frames", hint="a step maps frames 1:1")
            progress.current().check_interrupt()
            chunk = out
        return chunk


def open_stream(source: Source, info: SequenceInfo, *, channels: int = 3,
                decode: Callable[[Frame], np.ndarray] | None = None, device: str = "cpu") -> FrameStream:
    """A stream of every frame ``source`` plans, scene-linear, as read (``channels``: what the reader gives)."""
    return FrameStream(source=source, frames=tuple(source.frames),
                       info=dataclasses.replace(info, frames=tuple(source.frames)), channels=channels, decode=decode,
                       device=device)

