import numpy as np
import pytest

from facegraph.core.colour import linear_to_srgb
from facegraph.core.errors import ImageIOError
from facegraph.core.io.video import VideoWriter, iter_video, probe_video, rgb_to_ycbcr, ycbcr_to_rgb


@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
def test_matrix_round_trip_and_reference_points(matrix):
    rgb = np.random.default_rng(1).random((16, 16, 3))
    codes = rgb_to_ycbcr(rgb, matrix=matrix)
    back = ycbcr_to_rgb(*codes, matrix=matrix, full_range=False)
    assert np.abs(back - rgb).max() < 1.5 / 219  # one code of quantisation
    white = ycbcr_to_rgb(np.array(235), np.array(128), np.array(128), matrix=matrix, full_range=False)
    black = ycbcr_to_rgb(np.array(16), np.array(128), np.array(128), matrix=matrix, full_range=False)
    assert np.allclose(white, 1, atol=1e-6) and np.allclose(black, 0, atol=1e-6)
    full_white = ycbcr_to_rgb(np.array(255), np.array(128), np.array(128), matrix=matrix, full_range=True)
    assert np.allclose(full_white, 1, atol=1e-6)


def test_709_and_601_differ_on_saturated_colour():
    red709 = ycbcr_to_rgb(*rgb_to_ycbcr(np.array([[[1.0, 0, 0]]]), matrix="bt709"), matrix="bt601",
                          full_range=False)
    assert abs(red709[0, 0, 1]) > 0.05  # decoding with the wrong matrix shifts colour visibly


def test_ten_bit_codes():
    rgb = np.random.default_rng(2).random((4, 4, 3))
    codes = rgb_to_ycbcr(rgb, bits=10)
    assert codes[0].min() >= 64 and codes[0].max() <= 940  # 10-bit limited range
    back = ycbcr_to_rgb(*codes, matrix="bt709", full_range=False, bits=10)
    assert np.abs(back - rgb).max() < 1.5 / (219 * 4)


def test_writer_round_trip_h264_and_tags(tmp_path):
    y, x = np.mgrid[0:64, 0:96]
    frames = [np.stack([(x / 96) ** 2.2, (y / 64) ** 2.2, np.full_like(x, 0.2, float) * (i + 1) / 4], -1)
              .astype(np.float32) for i in range(4)]
    p = tmp_path / "o.mp4"
    with VideoWriter(p, 25) as w:
        for f in frames:
            w.write(f)
    info = probe_video(p)
    assert (info.width, info.height, info.frame_count, info.matrix, info.range, info.tagged) == \
        (96, 64, 4, "bt709", "limited", True)
    back = list(iter_video(p))
    assert [f.number for f in back] == [0, 1, 2, 3]
    err = np.abs(linear_to_srgb(back[2].pixels) - linear_to_srgb(frames[2])).mean()
    assert err < 2.0 / 255
    assert not [q for q in tmp_path.iterdir() if "tmp" in q.name]
    with pytest.raises(ImageIOError, match="file exists"):
        VideoWriter(p, 25)


def test_prores_odd_size(tmp_path):
    with VideoWriter(tmp_path / "o.mov", 24, codec="prores") as w:
        w.write(np.full((33, 47, 3), 0.18, np.float32))
    info = probe_video(tmp_path / "o.mov")
    assert info.codec == "prores" and (info.width, info.height) == (47, 33)
    px = next(iter_video(tmp_path / "o.mov")).pixels
    assert px[16, 20, 1] == pytest.approx(0.18, abs=0.005)


def test_failed_encode_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with VideoWriter(tmp_path / "x.mp4", 25) as w:
            w.write(np.zeros((16, 16, 3), np.float32))
            1 / 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.shared
def test_real_clips_decode_with_their_matrix(data):
    tagged = probe_video(data / "video" / "d10.mp4")
    untagged = probe_video(data / "video" / "d0.mp4")
    assert tagged.tagged and tagged.matrix == "bt709"
    assert not untagged.tagged and untagged.matrix == "bt601"  # ffmpeg's rule for < 720 lines
    frames = list(iter_video(data / "video" / "d0.mp4", [0, 10, 77], first_frame=1001))
    assert [f.number for f in frames] == [1001, 1011, 1078]
    import av

    with av.open(str(data / "video" / "d0.mp4")) as c:
        ref = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)  # swscale, BT.601
    ours = np.clip(linear_to_srgb(frames[0].pixels), 0, 1) * 255
    assert np.abs(ours - ref).mean() < 2.0
    with pytest.raises(ImageIOError, match="has 78 frames"):
        list(iter_video(data / "video" / "d0.mp4", [500]))
