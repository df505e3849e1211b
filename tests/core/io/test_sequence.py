import os
import time

import fileseq
import pytest

from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.io import sequence
from facegraph.core.io.sequence import (MAX_FRAMES, MAX_FRAMES_ENV, SequencePattern, find_sequences, max_frames,
                                        parse_frames, plan_frames)


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


@pytest.mark.parametrize("text", ["1001-1003", "1-10x3", "-2--1,4", "-3-2", "5,1-3", "1-10,5", "1-10:3", "1-10y3",
                                  " 1 - 5 , 9 ", "1,,2", "0-0x5", "1-10x20", "7", "1-30:7,5,40-45:2", "0-999:5000"])
def test_parse_frames_agrees_with_fileseq(text):
    assert parse_frames(text) == tuple(int(f) for f in fileseq.FrameSet(text))


def test_unparsable_range_is_short_and_gives_examples():
    with pytest.raises(InputError) as exc:
        parse_frames("abc")
    msg = str(exc.value)
    assert msg.startswith("cannot parse frame range 'abc'") and "examples: 1001-1100" in msg
    assert len(msg) < 200 and "(?" not in msg  # was fileseq's whole regular expression
    with pytest.raises(InputError, match=r"cannot parse frame range '1-5,x' at 'x'"):
        parse_frames("1-5,x")
    for bad in (",", "1-", "--5", "1-5x", "1.5-3", "1-10x0", "1-10y1", "9" * 16):
        with pytest.raises(InputError):
            parse_frames(bad)


def test_reverse_range_is_refused_with_the_forward_spelling():
    # fileseq read 1300-1001 as 300 frames backwards
    with pytest.raises(InputError, match=r"runs backwards; reverse ranges are refused.*as 1001-1300"):
        parse_frames("1300-1001")
    with pytest.raises(InputError, match=r"'20-10x2' runs backwards.*as 10-20x2"):
        parse_frames("1-5,20-10x2")
    assert parse_frames("-3-2") == (-3, -2, -1, 0, 1, 2)  # negative frames are not a reverse range
    assert parse_frames("10,5") == (10, 5)  # a list keeps its order


def test_frame_count_is_checked_before_expanding(monkeypatch):
    monkeypatch.delenv(MAX_FRAMES_ENV, raising=False)
    assert max_frames() == MAX_FRAMES == 100_000
    assert len(parse_frames("1-100000")) == 100_000
    for text, counted in (("1-10000000", "10000000"), ("1-10000000:7", "10000000"), ("1-100000,200000", "100001"),
                          ("1-10000000,5", "at least 10000000"), ("1-1000000000000", "1000000000000")):
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=f"has {counted} frames, more than the limit of 100000.*{MAX_FRAMES_ENV}"):
            parse_frames(text)
        assert time.perf_counter() - t0 < 0.5  # was a hang / memory exhaustion downstream
    assert len(parse_frames("1-200000x2")) == 100_000


def test_frame_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv(MAX_FRAMES_ENV, "200000")
    assert len(parse_frames("1-150000")) == 150_000
    monkeypatch.setenv(MAX_FRAMES_ENV, "10")
    with pytest.raises(InputError, match="more than the limit of 10"):
        parse_frames("1-11")
    for bad in ("many", "0", "-5", "1.5"):
        monkeypatch.setenv(MAX_FRAMES_ENV, bad)
        with pytest.raises(InputError, match=MAX_FRAMES_ENV):
            parse_frames("1-3")


def test_pattern_range_is_checked_like_parse_frames(monkeypatch):
    monkeypatch.delenv(MAX_FRAMES_ENV, raising=False)
    t0 = time.perf_counter()
    for text in ("plate.1-10000000####.exr", "plate.1-10000000:7####.exr"):  # the stagger took 24 s in fileseq
        with pytest.raises(InputError, match=r"frame range '1-10000000.*more than the limit of 100000"):
            SequencePattern.parse(text)
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(InputError, match="runs backwards"):
        SequencePattern.parse("plate.1300-1001####.exr")
    with pytest.raises(InputError, match="sub-frame padding"):
        SequencePattern.parse("plate.1-5#.#.exr")
    with pytest.raises(InputError, match="cannot parse sequence pattern"):
        SequencePattern.parse("x.##%d")


def test_pattern_range_without_fileseqs_splitter(monkeypatch):
    monkeypatch.setattr(sequence, "_fileseq_split", None)
    assert SequencePattern.parse("/a/plate.-2-2####.exr").frames == (-2, -1, 0, 1, 2)
    assert SequencePattern.parse("/a/plate.1-3,7%04d.exr").frames == (1, 2, 3, 7)
    assert SequencePattern.parse("/a/plate.####.exr").frames is None
    with pytest.raises(InputError, match="more than the limit"):
        SequencePattern.parse("plate.1-10000000####.exr")


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
