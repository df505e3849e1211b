"""Frame-sequence patterns and frame ranges.

Patterns accepted (parsed by ``fileseq`` with one-digit ``#``, so ``####`` is 4 digits as in Nuke/Houdini):
``plate.####.exr``, ``plate.%04d.exr``, ``plate.$F4.exr``, ``plate.@.exr`` (unpadded), and explicit ranges
``plate.1001-1100####.exr``, steps ``1-100x2``, lists ``1-10,20``, negative frames ``-5-5``.
File names follow printf semantics: the padding width includes the sign (frame -3 with #### is ``-003``),
and frames wider than the padding are written in full (``10000``).

Frame ranges (:func:`parse_frames` and a pattern's explicit range) are parsed here, not by fileseq, so that
their frame count is known before anything is expanded: at most :func:`max_frames` frames (``MAX_FRAMES``,
or the environment variable ``FACEGRAPH_MAX_FRAMES``), forward ranges only (``1300-1001`` is refused rather
than read backwards), whole frame numbers of at most 15 digits.

A path with no frame token is a single still (:attr:`SequencePattern.is_still`).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Literal

import fileseq
import numpy as np

from ..errors import ImageIOError, InputError

try:  # the splitter FileSequence itself uses (fileseq >= 3); it finds a pattern's range without expanding it
    from fileseq.filesequence import parse_sequence_string as _fileseq_split
except ImportError:  # pragma: no cover - older fileseq: _pattern_range falls back to a regular expression
    _fileseq_split = None

MissingPolicy = Literal["error", "hold", "black", "skip"]
MISSING_POLICIES: tuple[str, ...] = ("error", "hold", "black", "skip")

# Default bound on the frames of one range: 100 000 frames is 69 minutes at 24 fps, longer than any shot;
# a typo such as 1-10000000 would otherwise build ten million frame entries before the first read.
MAX_FRAMES = 100_000
MAX_FRAMES_ENV = "FACEGRAPH_MAX_FRAMES"
# 15 digits: every such frame number is exact in float64 and int64 (the npz export stores int64).
_MAX_DIGITS = 15
_RANGE_EXAMPLES = "examples: 1001-1100 (a range), 1-100x2 (every 2nd frame), 1-10,20 (a list), -5-5 (negative frames)"
_RANGE_PART = re.compile(r"(-?\d+)(?:-(-?\d+)(?:([xy:])(\d+))?)?")
_PAD_TOKEN = re.compile(r"#+|@+|%0?\d*d|\$F\d*")
_RANGE_CHARS = re.compile(r"[-0-9,xy:]*\Z")
_RANGE_BEFORE_PAD = re.compile(r"[-0-9,xy:][#@%$]")


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
        """Split ``text`` into head, frame padding and tail (a still when it has no frame token).

        An explicit range (``plate.1001-1100####.exr``) is checked like :func:`parse_frames` (forward, at most
        :func:`max_frames` frames) before it is expanded. Raises InputError for an empty or unparsable
        pattern, an invalid range, or sub-frame padding (``#.#``), which facegraph does not read.
        """
        text = os.fspath(text)
        if not isinstance(text, str):
            raise InputError(f"a path pattern must be text, got {type(text).__name__}")
        if not text:
            raise InputError("empty path pattern")
        base = os.path.basename(text)
        if not any(tok in base for tok in ("#", "@", "%", "$F")):
            return cls(head=text, tail="", pad=None)
        shown = _clip(text)
        frames = None
        span = _pattern_range(text)
        if span:
            frames = _frame_tuple(span, f"the frame range {_clip(span)!r} of pattern {shown!r}")
        try:  # a third-party parser of arbitrary text: whatever it raises means "cannot parse"
            seq = fileseq.FileSequence(text, pad_style=fileseq.PAD_STYLE_HASH1, allow_subframes=False)
            padding, zfill = seq.padding(), seq.zfill()
            head, tail = seq.dirname() + seq.basename(), seq.extension()
        except Exception as exc:
            raise InputError(f"cannot parse sequence pattern {shown!r}: {_clip(str(exc), 120)}",
                             hint="e.g. plate.####.exr, plate.%04d.exr, plate.1001-1100####.exr") from None
        if not padding:
            raise InputError(f"no frame token in {shown!r}", hint="use #### or %04d for the frame number")
        if "." in padding:
            raise InputError(f"sub-frame padding {padding!r} in {shown!r} is not supported",
                             hint="use one frame token, e.g. ####")
        return cls(head=head, tail=tail, pad=max(1, zfill), frames=frames)

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


def max_frames() -> int:
    """The most frames one range may name: ``FACEGRAPH_MAX_FRAMES`` if set (a whole number >= 1), else
    :data:`MAX_FRAMES`."""
    raw = os.environ.get(MAX_FRAMES_ENV, "").strip()
    if not raw:
        return MAX_FRAMES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_FRAMES_ENV}={_clip(raw)!r} is not a whole number of frames >= 1",
                         hint=f"unset it to use the default of {MAX_FRAMES}")
    return value


def parse_frames(text: str | None) -> tuple[int, ...] | None:
    """``"1001-1100"``, ``"1-100x2"``, ``"1-10,20"``, ``"-5-5"`` -> frame tuple; empty/None -> None.

    Parts, comma-separated (whitespace ignored): ``N``; ``A-B`` (A <= B); ``A-BxS`` every S-th frame;
    ``A-ByS`` the frames ``A-BxS`` leaves out; ``A-B:S`` all frames of A-B, ordered x S, then x S-1, ... x 1.
    Frames keep their first appearance, duplicates dropped (fileseq's FrameSet order).
    Raises InputError for anything else, a reverse range (``1300-1001``: write ``1001-1300``), a step < 1,
    a selection of no frames, or more than :func:`max_frames` frames (counted before anything is expanded).
    """
    if text is None or not str(text).strip():
        return None
    return _frame_tuple(str(text), f"frame range {_clip(str(text))!r}")


def _frame_tuple(text: str, what: str) -> tuple[int, ...]:
    """Parse, count, then expand the range ``text``; ``what`` names it in errors."""
    compact = "".join(text.split())
    limit = max_frames()
    parts: list[tuple[int, int, str, int]] = []
    total = 0
    pieces = compact.split(",")
    for i, raw in enumerate(pieces):
        if not raw:
            continue
        m = _RANGE_PART.fullmatch(raw)
        if m is None or any(len(g.lstrip("-")) > _MAX_DIGITS for g in m.groups() if g and g not in "xy:"):
            at = f" at {_clip(raw)!r}" if raw != compact else ""
            raise InputError(f"cannot parse {what}{at}", hint=_RANGE_EXAMPLES)
        a = int(m[1])
        b = int(m[2]) if m[2] is not None else a
        mod, step = m[3] or "", int(m[4]) if m[4] else 1
        if b < a:
            part = "" if raw == compact else f": {raw!r}"
            raise InputError(f"{what}{part} runs backwards; reverse ranges are refused",
                             hint=f"write it forwards, as {b}-{a}{mod}{m[4] or ''} (frames are read in increasing order)")
        if step < 1:
            raise InputError(f"{what}: the step of {raw!r} must be at least 1", hint=_RANGE_EXAMPLES)
        n = b - a + 1
        every = (n - 1) // step + 1  # frames of A-BxS
        total += every if mod == "x" else n - every if mod == "y" else n
        parts.append((a, b, mod, step))
        if total > limit:
            counted = f"{total}" if i == len(pieces) - 1 else f"at least {total}"  # stop counting here
            raise InputError(f"{what} has {counted} frames, more than the limit of {limit}",
                             hint=f"read a shorter range, or raise the limit with the environment variable "
                                  f"{MAX_FRAMES_ENV} (e.g. {MAX_FRAMES_ENV}={max(total, 2 * limit)})")
    if not parts:
        raise InputError(f"cannot parse {what}: it names no frames", hint=_RANGE_EXAMPLES)
    seen: set[int] = set()
    out: list[int] = []

    def add(frames: Iterable[int]) -> None:
        for f in frames:
            if f not in seen:
                seen.add(f)
                out.append(f)

    for a, b, mod, step in parts:
        if mod == "y":
            add(f for f in range(a, b + 1) if (f - a) % step)
        elif mod == ":":
            add(_stagger(a, b, step))
        else:
            add(range(a, b + 1, step))
    if not out:
        raise InputError(f"{what} selects no frames", hint=_RANGE_EXAMPLES)
    return tuple(out)


def _stagger(a: int, b: int, step: int) -> list[int]:
    """fileseq's ``A-B:S``: A-BxS, then the frames A-Bx(S-1) adds, ... down to x1 (every frame of A-B once).

    Frame ``a + j`` first appears in the pass of the largest k <= S dividing j (j = 0: the first pass), so
    the order is by (pass, frame): a sieve and one sort, not S passes over the range (S up to the count).
    """
    n = b - a + 1
    top = min(step, n)  # passes with k >= n add nothing new after the first
    first_pass = np.zeros(n, np.int64)
    first_pass[0] = top
    half = (n - 1) // 2
    for k in range(1, min(top, half) + 1):  # ascending: the largest divisor is written last
        first_pass[k::k] = k
    if top > half:  # a k above (n - 1) / 2 divides no other offset in 1..n-1 than itself
        big = np.arange(half + 1, min(top, n - 1) + 1)
        first_pass[big] = big
    order = np.lexsort((np.arange(n), -first_pass))
    return (order + a).tolist()


def _pattern_range(text: str) -> str:
    """The explicit frame range of a sequence pattern (``"1001-1100"`` of ``plate.1001-1100####.exr``), or ""."""
    if not _RANGE_BEFORE_PAD.search(os.path.basename(text)):
        return ""  # a range sits right before the frame token; none here (fileseq's parser costs ~10 ms)
    if _fileseq_split is not None:
        try:
            return _fileseq_split(text, allow_subframes=False).frame_range or ""
        except Exception:  # FileSequence, called next, reports the parse error
            return ""
    base = os.path.basename(text)
    token = _PAD_TOKEN.search(base)
    return _RANGE_CHARS.search(base[:token.start()]).group() if token else ""


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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
