import os

import numpy as np
import pytest

from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.io.frames import SequenceWriter, iter_frames
from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.sequence import SequencePattern


def _plate(tmp_path, frames, shape=(6, 8, 3)):
    for f in frames:
        px = np.full(shape, f, np.float32)
        write_image(tmp_path / f"p.{f:04d}.exr", px, pixel_type="float")
    return SequencePattern.parse(str(tmp_path / "p.####.exr"))


@pytest.mark.parametrize("window", [0, 1, 3])
def test_frames_stream_in_order(tmp_path, window):
    p = _plate(tmp_path, range(1, 8))
    got = [(f.number, float(f.pixels[0, 0, 0])) for f in iter_frames(p, window=window)]
    assert got == [(f, float(f)) for f in range(1, 8)]


def test_hold_and_black_fill_are_flagged(tmp_path):
    p = _plate(tmp_path, [1, 2, 5])
    held = list(iter_frames(p, range(1, 6), missing="hold"))
    assert [f.pixels[0, 0, 0] for f in held] == [1, 2, 2, 2, 5]
    assert [f.filled for f in held] == [False, False, True, True, False]
    black = list(iter_frames(p, range(1, 6), missing="black"))
    assert [f.pixels[0, 0, 0] for f in black] == [1, 2, 0, 0, 5] and black[2].source is None


def test_a_bad_frame_mid_sequence_is_named(tmp_path):
    p = _plate(tmp_path, range(1, 6))
    (tmp_path / "p.0004.exr").write_bytes(b"broken")
    it = iter_frames(p, window=2)
    assert [next(it).number for _ in range(3)] == [1, 2, 3]
    with pytest.raises(ImageIOError, match=r"p\.0004\.exr, frame=4"):
        next(it)


def test_size_change_is_an_error_naming_the_frame(tmp_path):
    p = _plate(tmp_path, [1, 2])
    write_image(tmp_path / "p.0003.exr", np.zeros((7, 8, 3), np.float32))
    with pytest.raises(ImageIOError, match=r"frame size 8x7x3 differs.*frame=3"):
        list(iter_frames(p, window=0))


def test_resume_after_an_interrupted_write(tmp_path):
    out = tmp_path / "out"
    frames = list(range(1001, 1011))
    w = SequenceWriter(str(out / "o.####.exr"), mode="error")
    for f in frames[:4]:
        w.write(f, np.full((4, 4, 3), f, np.float32))
    # a killed writer leaves only its temp file behind, never a partial frame
    (out / ".o.1005.exr.12345.tmp.exr").write_bytes(b"partial")
    mtimes = {f: os.stat(w.path(f)).st_mtime_ns for f in frames[:4]}
    w2 = SequenceWriter(str(out / "o.####.exr"), mode="resume")
    assert w2.first_missing(frames) == 1005
    for f in frames:
        w2.write(f, np.full((4, 4, 3), f + 0.5, np.float32))
    assert len(w2.skipped) == 4 and len(w2.written) == 6
    assert {f: os.stat(w.path(f)).st_mtime_ns for f in frames[:4]} == mtimes
    assert read_image(w.path(1001))[0][0, 0, 0] == 1001 and read_image(w.path(1010))[0][0, 0, 0] == 1010.5
    assert SequencePattern.parse(str(out / "o.####.exr")).scan() == frames
    assert w2.first_missing(frames) is None


def test_writer_refuses_existing_frames_unless_asked(tmp_path):
    w = SequenceWriter(str(tmp_path / "o.####.exr"))
    w.write(1, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageIOError, match="output frame exists"):
        SequenceWriter(str(tmp_path / "o.####.exr")).write(1, np.ones((2, 2, 3), np.float32))
    SequenceWriter(str(tmp_path / "o.####.exr"), mode="overwrite").write(1, np.ones((2, 2, 3), np.float32))
    assert read_image(w.path(1))[0][0, 0, 0] == 1
    with pytest.raises(InputError, match="write mode"):
        SequenceWriter(str(tmp_path / "o.####.exr"), mode="replace")


def test_writer_tags_frames(tmp_path):
    w = SequenceWriter(str(tmp_path / "o.####.exr"), graph_hash="abc123")
    w.write(-3, np.zeros((2, 2, 3), np.float32))
    _, info = read_image(tmp_path / "o.-003.exr")
    assert info.attribute("facegraph:frame") == -3
    assert info.attribute("facegraph:graph_hash") == "abc123"
    assert info.attribute("facegraph:version")
