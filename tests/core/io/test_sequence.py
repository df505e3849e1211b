import os

import pytest

from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.io.sequence import SequencePattern, find_sequences, parse_frames, plan_frames


@pytest.mark.parametrize("text, pad, frames", [
    ("plate.####.exr", 4, None),
    ("plate.%04d.exr", 4, None),
    ("plate.$F4.exr", 4, None),
    ("plate.@.exr", 1, None),
    ("plate.#.exr", 1, None),
    ("plate.1001-1004####.exr", 4, (1001, 1002, 1003, 1004)),
    ("plate.1-9x4####.exr", 4, (1, 5, 9)),
    ("plate.-2-2####.exr", 4, (-2, -1, 0, 1, 2)),
    ("plate.1-3,7####.exr", 4, (1, 2, 3, 7)),
])
def test_pattern_syntaxes(text, pad, frames):
    p = SequencePattern.parse(text)
    assert (p.head, p.tail, p.pad, p.frames) == ("plate.", ".exr", pad, frames)


def test_frame_names_follow_printf():
    p = SequencePattern.parse("/a/plate.####.exr")
    assert p.path(1001) == "/a/plate.1001.exr"
    assert p.path(7) == "/a/plate.0007.exr"
    assert p.path(-3) == "/a/plate.-003.exr"       # the width includes the sign, as Nuke writes it
    assert p.path(12345) == "/a/plate.12345.exr"   # wider frames are written in full
    assert p.display() == "/a/plate.####.exr"
    assert SequencePattern.parse("x.@.png").path(42) == "x.42.png"


def test_still_has_no_frame_token():
    p = SequencePattern.parse("/a/face.png")
    assert p.is_still and p.path() == "/a/face.png" and p.extension == ".png"


def _touch(d, names):
    for n in names:
        (d / n).write_bytes(b"")


def test_scan_finds_gaps_negatives_and_ignores_other_paddings(tmp_path):
    _touch(tmp_path, ["p.-002.exr", "p.-001.exr", "p.0000.exr", "p.0001.exr", "p.0003.exr", "p.10000.exr",
                      "p.01.exr", "p.0002.exr.tmp", "q.0001.exr", "p.0005.png"])
    p = SequencePattern.parse(str(tmp_path / "p.####.exr"))
    assert p.scan() == [-2, -1, 0, 1, 3, 10000]


def test_missing_frames_error_names_them(tmp_path):
    _touch(tmp_path, [f"p.{f:04d}.exr" for f in (1, 2, 5, 6)])
    p = SequencePattern.parse(str(tmp_path / "p.####.exr"))
    with pytest.raises(ImageIOError, match=r"2 missing frame\(s\): 3-4") as exc:
        plan_frames(p, range(1, 7), "error")
    assert "p.####.exr" in str(exc.value)


def test_missing_policies(tmp_path):
    _touch(tmp_path, [f"p.{f:04d}.exr" for f in (2, 3, 6)])
    p = SequencePattern.parse(str(tmp_path / "p.####.exr"))
    hold = plan_frames(p, range(1, 8), "hold")
    assert hold.frames == (1, 2, 3, 4, 5, 6, 7)
    assert hold.sources == (2, 2, 3, 3, 3, 6, 6)  # leading gap holds the next present frame
    assert hold.missing == (1, 4, 5, 7)
    black = plan_frames(p, range(1, 8), "black")
    assert black.sources == (None, 2, 3, None, None, 6, None)
    skip = plan_frames(p, range(1, 8), "skip")
    assert skip.frames == (2, 3, 6) and skip.sources == (2, 3, 6)


def test_pattern_range_and_disk_defaults(tmp_path):
    _touch(tmp_path, [f"p.{f:04d}.exr" for f in range(1, 6)])
    assert plan_frames(SequencePattern.parse(str(tmp_path / "p.####.exr"))).frames == (1, 2, 3, 4, 5)
    assert plan_frames(SequencePattern.parse(str(tmp_path / "p.2-4####.exr"))).frames == (2, 3, 4)


def test_nothing_found_is_clear(tmp_path):
    with pytest.raises(ImageIOError, match="no frames found"):
        plan_frames(SequencePattern.parse(str(tmp_path / "nope.####.exr")))
    with pytest.raises(ImageIOError, match="none of the 3 requested frames exist"):
        _touch(tmp_path, ["p.0009.exr"])
        plan_frames(SequencePattern.parse(str(tmp_path / "p.####.exr")), [1, 2, 3], "hold")
    with pytest.raises(ImageIOError, match="file not found"):
        plan_frames(SequencePattern.parse(str(tmp_path / "still.exr")))


def test_parse_frames():
    assert parse_frames("1001-1003") == (1001, 1002, 1003)
    assert parse_frames("1-10x3") == (1, 4, 7, 10)
    assert parse_frames("-2--1,4") == (-2, -1, 4)
    assert parse_frames("") is None and parse_frames(None) is None
    with pytest.raises(InputError, match="examples"):
        parse_frames("a-b")


def test_bad_policy_and_pattern():
    with pytest.raises(InputError, match="policy"):
        plan_frames(SequencePattern.parse("x.####.exr"), [1], "guess")
    with pytest.raises(InputError):
        SequencePattern.parse("")


def test_find_sequences_lists_a_folder(tmp_path):
    _touch(tmp_path, [f"a.{f:04d}.exr" for f in (1, 2, 3, 5)] + ["b.0001.png", "still.jpg"])
    found = find_sequences(tmp_path)
    names = [os.path.basename(f) for f in found]
    assert "a.1-3,5####.exr" in names and "b.1####.png" in names and "still.jpg" in names
