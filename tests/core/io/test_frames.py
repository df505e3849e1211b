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


def test_chunks_of_one_output_write_at_once_but_one_chunk_has_one_writer(tmp_path):
    """Inside a frame window the output lock covers the chunk's frames: two chunks of a shot (two farm tasks,
    two Ray actors) write the same sequence at the same time; a second writer of the same chunk is refused,
    and a chunk's clean-up never touches another chunk's temp files."""
    import numpy as np
    import pytest

    from facegraph.core.errors import ImageIOError
    from facegraph.core.frame_window import frame_window
    from facegraph.core.io.frames import SequenceWriter

    px = np.zeros((2, 2, 3), np.float32)
    pattern = str(tmp_path / "o.####.exr")
    other_tmp = tmp_path / ".o.0007.exr.tmp-x"  # an in-flight frame of the second chunk
    with frame_window(1, 5, handles=2):
        a = SequenceWriter(pattern, mode="overwrite")
        a.write(1, px)
        with frame_window(6, 10):  # the other chunk (another process in real life: flock is per open file)
            b = SequenceWriter(pattern, mode="overwrite")
            b.write(8, px)
            other_tmp.write_bytes(b"x")
            b.close()
        a._clean_temps()
        assert other_tmp.exists()
        a.close()
    import subprocess
    import sys

    lock = tmp_path / ".o.####.exr.1-5.facegraph-lock"  # another process writing chunk 1-5 right now
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(30)"), str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with frame_window(1, 5), pytest.raises(ImageIOError, match="another writer"):
            SequenceWriter(pattern, mode="overwrite").write(2, px)
        with frame_window(11, 15):  # a third chunk is not held up
            with SequenceWriter(pattern, mode="overwrite") as w:
                w.write(12, px)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.glob("o.*.exr")) == ["o.0001.exr", "o.0008.exr", "o.0012.exr"]
