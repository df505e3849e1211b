"""Frame-sequence patterns and frame ranges.

Patterns accepted (parsed by ``fileseq`` with one-digit ``#``, so ``####`` is 4 digits as in Nuke/Houdini):
``plate.####.exr``, ``plate.%04d.exr``, ``plate.$F4.exr``, ``plate.@.exr`` (unpadded), and explicit ranges
``plate.1001-1100####.exr``, steps ``1-100x2``, lists ``1-10,20``, negative frames ``-5-5``.
File names follow printf semantics: the padding width includes the sign (frame -3 with #### is ``-003``),
and frames wider than the padding are written in full (``10000``).

A path with no frame token is a single still (:attr:`SequencePattern.is_still`).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Literal

import fileseq

from ..errors import ImageIOError, InputError

MissingPolicy = Literal["error", "hold", "black", "skip"]
MISSING_POLICIES: tuple[str, ...] = ("error", "hold", "black", "skip")


@dataclasses.dataclass(frozen=True)
class SequencePattern:
    """A frame-numbered file pattern: ``head + frame(padded to pad) + tail``.

    frames: the explicit frame list from the pattern (``plate.1001-1100####.exr``) or None.
    """

    head: str
    tail: str
    pad: int | None           # None: a still (no frame token); 0/1: unpadded
    frames: tuple[int, ...] | None = None

    @property
    def is_still(self) -> bool:
        return self.pad is None

    @classmethod
    def parse(cls, text: str | os.PathLike) -> "SequencePattern":
        text = os.fspath(text)
        if not text:
            raise InputError("empty path pattern")
        base = os.path.basename(text)
        if not any(tok in base for tok in ("#", "@", "%", "$F")):
            return cls(head=text, tail="", pad=None)
        try:
            seq = fileseq.FileSequence(text, pad_style=fileseq.PAD_STYLE_HASH1, allow_subframes=False)
        except fileseq.ParseException as exc:
            raise InputError(f"cannot parse sequence pattern {text!r}: {exc}") from None
        if not seq.padding():
            raise InputError(f"no frame token in {text!r}", hint="use #### or %04d for the frame number")
        fs = seq.frameSet()
        frames = tuple(int(f) for f in fs) if fs is not None else None
        return cls(head=seq.dirname() + seq.basename(), tail=seq.extension(), pad=max(1, seq.zfill()),
                   frames=frames)

    def path(self, frame: int | None = None) -> str:
        """The file name of ``frame`` (printf semantics: the width includes the sign)."""
        if self.pad is None:
            return self.head
        if frame is None:
            raise InputError("a frame number is needed for a sequence pattern")
        return f"{self.head}{int(frame):0{self.pad}d}{self.tail}"

    def display(self) -> str:
        """Nuke-style pattern text, e.g. ``/shots/plate.####.exr``."""
        return self.head if self.pad is None else f"{self.head}{'#' * self.pad}{self.tail}"

    @property
    def extension(self) -> str:
        return os.path.splitext(self.head if self.pad is None else self.tail)[1].lower()

    def scan(self) -> list[int]:
        """Frame numbers present on disk for this pattern, sorted. Empty when the directory is missing."""
        if self.pad is None:
            return [0] if os.path.isfile(self.head) else []
        directory = os.path.dirname(self.head) or "."
        prefix = os.path.basename(self.head)
        rx = re.compile(re.escape(prefix) + r"(-?\d+)" + re.escape(self.tail) + r"\Z")
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            m = rx.match(name)
            if m and self.path(int(m.group(1))) == os.path.join(os.path.dirname(self.head), name):
                out.append(int(m.group(1)))
        return sorted(out)


def parse_frames(text: str | None) -> tuple[int, ...] | None:
    """``"1001-1100"``, ``"1-100x2"``, ``"1-10,20"``, ``"-5-5"`` -> frame tuple; empty/None -> None."""
    if text is None or not str(text).strip():
        return None
    try:
        return tuple(int(f) for f in fileseq.FrameSet(str(text).strip()))
    except (fileseq.ParseException, ValueError) as exc:
        raise InputError(f"cannot parse frame range {text!r}: {exc}",
                         hint="examples: 1001-1100, 1-100x2, 1-10,20, -5-5") from None


@dataclasses.dataclass(frozen=True)
class FramePlan:
    """Which frames to read and what to do for each: ``sources[i]`` is the frame number whose file supplies
    output frame ``frames[i]`` (itself, a held earlier frame, or None for black)."""

    frames: tuple[int, ...]
    sources: tuple[int | None, ...]
    missing: tuple[int, ...]


def plan_frames(pattern: SequencePattern, frames: Iterable[int] | None = None,
                missing: str = "error") -> FramePlan:
    """Decide the frames of a read, applying the missing-frame policy.

    frames: requested frames (None: the pattern's own range, else every frame on disk).
    missing: ``error`` raises naming the missing frames; ``hold`` repeats the previous present frame (the next
    one for leading gaps); ``black`` yields black frames; ``skip`` drops them.
    """
    if missing not in MISSING_POLICIES:
        raise InputError(f"missing-frame policy must be one of {MISSING_POLICIES}, got {missing!r}")
    if pattern.is_still:
        if not os.path.isfile(pattern.head):
            raise ImageIOError("file not found", file=pattern.head)
        return FramePlan(frames=(0,), sources=(0,), missing=())
    on_disk = pattern.scan()
    wanted = tuple(frames) if frames is not None else (pattern.frames or tuple(on_disk))
    if not wanted:
        raise ImageIOError("no frames found for pattern", file=pattern.display(),
                           hint="check the path, the padding (#### = 4 digits) and the frame range")
    present = set(on_disk)
    gaps = tuple(f for f in wanted if f not in present)
    if gaps and missing == "error":
        raise ImageIOError(f"{len(gaps)} missing frame(s): {_ranges(gaps)}", file=pattern.display(),
                           hint="choose a missing-frame policy (hold / black / skip) to continue anyway")
    if len(gaps) == len(wanted) and missing != "black":
        raise ImageIOError(f"none of the {len(wanted)} requested frames exist", file=pattern.display())
    out_frames, sources = [], []
    last: int | None = None
    first_present = next((f for f in wanted if f in present), None)
    for f in wanted:
        if f in present:
            last = f
            out_frames.append(f)
            sources.append(f)
        elif missing == "skip":
            continue
        elif missing == "hold":
            out_frames.append(f)
            sources.append(last if last is not None else first_present)
        else:  # black
            out_frames.append(f)
            sources.append(None)
    return FramePlan(frames=tuple(out_frames), sources=tuple(sources), missing=gaps)


def _ranges(frames: Iterable[int]) -> str:
    return str(fileseq.FrameSet(list(frames)))


def find_sequences(directory: str | os.PathLike) -> list[str]:
    """Sequences and stills in a folder, as Nuke-style patterns with their ranges (``plate.1-10####.exr``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImageIOError("not a directory", file=str(directory))
    found = fileseq.findSequencesOnDisk(str(directory), pad_style=fileseq.PAD_STYLE_HASH1)
    return sorted(str(s) for s in found)
