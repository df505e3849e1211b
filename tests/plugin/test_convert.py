import numpy as np
import pytest

from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.video import probe_video
from facegraph.plugin.cli import main


def _plate(d, frames=range(1001, 1005)):
    y, x = np.mgrid[0:40, 0:60].astype(np.float32)
    for f in frames:
        px = np.stack([x / 60 * 2, y / 40, np.full_like(x, (f - 1000) / 4), np.ones_like(x)], -1)
        write_image(d / f"p.{f:04d}.exr", px.astype(np.float16).astype(np.float32), data_window=(-4, 2),
                    display_window=(0, 0, 52, 40), attributes=[("shot", "string", "sh010")])
    return d / "p.####.exr"


def test_exr_to_exr_keeps_windows_and_metadata(tmp_path):
    src = _plate(tmp_path)
    assert main(["-q", "convert", str(src), str(tmp_path / "o" / "o.####.exr"), "--compression", "piz",
                 "--float"]) == 0
    a, ia = read_image(tmp_path / "p.1002.exr")
    b, ib = read_image(tmp_path / "o" / "o.1002.exr")
    assert np.array_equal(a, b)
    assert ib.data_window == (-4, 2, 60, 40) and ib.display_window == (0, 0, 52, 40)
    assert ib.attribute("shot") == "sh010" and ib.pixel_type == "float"


def test_frames_missing_policy_and_resume(tmp_path):
    src = _plate(tmp_path, [1001, 1002, 1004])
    out = tmp_path / "o" / "o.####.exr"
    assert main(["-q", "convert", str(src), str(out), "--frames", "1001-1004"]) == 2
    assert main(["-q", "convert", str(src), str(out), "--frames", "1001-1004", "--missing", "hold"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [f"o.{f}.exr" for f in range(1001, 1005)]
    assert np.array_equal(read_image(out.parent / "o.1003.exr")[0], read_image(out.parent / "o.1002.exr")[0])
    assert main(["-q", "convert", str(src), str(out), "--missing", "hold"]) == 2  # exists
    assert main(["-q", "convert", str(src), str(out), "--missing", "hold", "--resume"]) == 0


def test_exr_to_preview_movie_and_pngs(tmp_path):
    src = _plate(tmp_path)
    assert main(["-q", "convert", str(src), str(tmp_path / "prev.mp4"), "--view", "srgb"]) == 0
    info = probe_video(tmp_path / "prev.mp4")
    assert info.frame_count == 4 and (info.width, info.height) == (60, 40)
    assert main(["-q", "convert", str(src), str(tmp_path / "png" / "f.####.png"), "--stops", "-1"]) == 0
    px, info = read_image(tmp_path / "png" / "f.1004.png")
    exr, _ = read_image(tmp_path / "p.1004.exr")
    assert info.encoding == "srgb" and px[20, 30, 2] == pytest.approx(exr[20, 30, 2] / 2, abs=0.01)
    assert main(["-q", "convert", str(src), str(tmp_path / "aces.####.png"),
                 "--ocio-config", "ocio://studio-config-latest"]) == 0


@pytest.mark.shared
def test_movie_to_linear_exr_plate(data, tmp_path):
    out = tmp_path / "plate.####.exr"
    assert main(["-q", "convert", str(data / "video" / "d0.mp4"), str(out), "--frames", "1001-1004"]) == 0
    px, info = read_image(tmp_path / "plate.1001.exr")
    assert px.shape == (512, 512, 3) and info.pixel_type == "half"
    assert main(["-q", "convert", str(data / "video" / "d0.mp4"), str(out), "--frames", "990-1001"]) == 2


def test_bad_compression_is_refused_before_writing(tmp_path):
    src = _plate(tmp_path)
    assert main(["-q", "convert", str(src), str(tmp_path / "o.####.exr"), "--compression", "lzw"]) == 2
    assert not list(tmp_path.glob("o.*"))
