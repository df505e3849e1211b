import numpy as np
import pytest

from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.io.images import read_image, write_image
from facegraph.nodes.io import LoadImageSequence, LoadVideo, SaveEXRSequence, ViewTransform
from facegraph.plugin.runner import Runner


@pytest.fixture
def plate(tmp_path):
    for f in (1, 2, 3, 5):
        px = np.concatenate([np.full((4, 6, 3), f * 0.5, np.float32), np.full((4, 6, 1), 0.25, np.float32)], -1)
        write_image(tmp_path / f"p.{f:04d}.exr", px, data_window=(2, 1), display_window=(0, 0, 10, 8))
    return str(tmp_path / "p.####.exr")


def test_load_chunks_and_alpha(plate):
    images, alpha, seq = LoadImageSequence().load(plate, frames="1-3", first=1, count=2)
    assert tuple(images.shape) == (2, 4, 6, 3) and images.dtype.is_floating_point
    assert seq.frames == (2, 3) and seq.data_window == (2, 1, 6, 4)
    assert float(alpha[0, 0, 0]) == 0.25 and float(images[1, 0, 0, 0]) == 1.5
    with pytest.raises(InputError, match="past the"):
        LoadImageSequence().load(plate, frames="1-3", first=5)


def test_load_missing_policy(plate):
    with pytest.raises(ImageIOError, match="missing frame"):
        LoadImageSequence().load(plate, frames="1-5")
    images, _, seq = LoadImageSequence().load(plate, frames="1-5", missing="hold")
    assert seq.filled == (4,) and float(images[3, 0, 0, 0]) == 1.5


def test_save_round_trip_keeps_windows_and_tags_graph_hash(plate, tmp_path):
    images, alpha, seq = LoadImageSequence().load(plate, frames="1-3")
    out = str(tmp_path / "out" / "o.####.exr")
    res = SaveEXRSequence().save(images, out, alpha=alpha, sequence=seq, prompt={"1": {"x": 1}})
    assert len(res["result"][0].splitlines()) == 3
    px, info = read_image(tmp_path / "out" / "o.0002.exr")
    assert info.data_window == (2, 1, 6, 4) and info.display_window == (0, 0, 10, 8)
    assert px.shape[-1] == 4 and info.attribute("facegraph:graph_hash")
    with pytest.raises(InputError, match="does not match"):
        SaveEXRSequence().save(images, out, alpha=alpha[:1], mode="overwrite")


def test_graph_hash_comes_from_the_runner(plate, tmp_path):
    g = {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": plate, "frames": "1-2"}},
         "2": {"class_type": "FacegraphSaveEXRSequence",
               "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": str(tmp_path / "g.####.exr")}}}
    Runner().run(g)
    h1 = read_image(tmp_path / "g.0001.exr")[1].attribute("facegraph:graph_hash")
    g["2"]["inputs"]["compression"] = "piz"
    g["2"]["inputs"]["mode"] = "overwrite"
    Runner().run(g)
    h2 = read_image(tmp_path / "g.0001.exr")[1].attribute("facegraph:graph_hash")
    assert h1 and h2 and h1 != h2


def test_view_transform_node():
    import torch

    x = torch.full((1, 2, 2, 3), 0.18)
    (srgb,) = ViewTransform().apply(x, "srgb", 0.0)
    assert float(srgb[0, 0, 0, 0]) == pytest.approx(0.4613, abs=1e-3)
    (brighter,) = ViewTransform().apply(x, "linear", 1.0)
    assert float(brighter[0, 0, 0, 0]) == pytest.approx(0.36, abs=1e-6)


@pytest.mark.shared
def test_load_video_node(data):
    images, seq = LoadVideo().load(str(data / "video" / "d10.mp4"), frames="1001-1010", first=2, count=3)
    assert tuple(images.shape) == (3, 512, 512, 3) and seq.frames == (1003, 1004, 1005)
    assert seq.fps == pytest.approx(30.0)


def test_extra_layer_and_load_image(plate, tmp_path):
    import torch

    from facegraph.nodes.io import LoadImage

    images, alpha, seq = LoadImageSequence().load(plate, frames="1")
    matte = torch.full((1, 4, 6), 0.75)
    SaveEXRSequence().save(images, str(tmp_path / "m.####.exr"), alpha=alpha, sequence=seq, extra_mask=matte,
                           extra_layer="face")
    px, info = read_image(tmp_path / "m.0001.exr", channels=["R", "G", "B", "A", "face.Y"])
    assert info.channels == ("R", "G", "B", "A", "face.Y") and float(px[0, 0, 4]) == 0.75
    image, a = LoadImage().load(str(tmp_path / "m.0001.exr"))
    assert tuple(image.shape) == (1, 4, 6, 3) and float(a[0, 0, 0]) == 0.25


def test_ls_lists_sequences(plate, capsys):
    import os

    from facegraph.plugin.cli import main

    assert main(["ls", os.path.dirname(plate)]) == 0
    assert "p.1-3,5####.exr" in capsys.readouterr().out
