"""Streamed sequence nodes (nodes/stream.py, core/io/stream.py): lazy, chunked, the same pixels as the IMAGE
nodes, and the real analyse-shot chain on a real plate through them."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.stream import Chunk
from facegraph.nodes.io import LoadImageSequence, SaveEXRSequence
from facegraph.nodes.stream import (OpenSequence, SaveFrameStream, SaveStreamContactSheet, StreamDrawLandmarks,
                                    StreamToImages, StreamTrackCrops)


def _out(r):
    return r["result"] if isinstance(r, dict) else r


@pytest.fixture
def plate(tmp_path):
    for f in range(1, 8):
        px = np.concatenate([np.random.default_rng(f).random((4, 6, 3), np.float32) * f,
                             np.full((4, 6, 1), 0.25, np.float32)], -1)
        write_image(tmp_path / f"p.{f:04d}.exr", px, data_window=(2, 1), display_window=(0, 0, 10, 8),
                    pixel_type="float")
    return str(tmp_path / "p.####.exr")


def _counting(stream):
    """The stream with a decode hook that records which frames were decoded."""
    seen: list[int] = []

    def decode(frame):
        seen.append(frame.number)
        return frame.pixels
    return dataclasses.replace(stream, decode=decode), seen


def test_open_is_lazy_and_take_equals_the_image_loader(plate):
    stream, info = _out(OpenSequence().open(plate, frames="2-6"))
    assert stream.frames == (2, 3, 4, 5, 6) and info.data_window == (2, 1, 6, 4) and stream.channels == 4
    stream, seen = _counting(stream)
    assert seen == []
    images, alpha, seq = StreamToImages().take(stream, first=1, count=3)
    ref_images, ref_alpha, ref_seq = LoadImageSequence().load(plate, frames="2-6", first=1, count=3)
    assert seen == [3, 4, 5] and seq.frames == ref_seq.frames == (3, 4, 5)
    assert torch.equal(images, ref_images) and torch.equal(alpha, ref_alpha)
    with pytest.raises(InputError, match="past the"):
        StreamToImages().take(stream, first=9)


def test_chunks_bound_memory_and_steps_see_every_frame_once(plate):
    stream, _ = _out(OpenSequence().open(plate))
    sizes, numbers = [], []

    def step(chunk: Chunk) -> Chunk:
        sizes.append(len(chunk))
        numbers.extend(chunk.numbers)
        assert chunk.offsets == ((2, 1),) * len(chunk)  # data window (2, 1) inside display window (0, 0)
        return dataclasses.replace(chunk, images=chunk.images * 2)

    doubled = stream.then("double", step)
    got = [c for c in doubled.chunks(3)]
    assert sizes == [3, 3, 1] and numbers == list(range(1, 8))
    ref, _ = read_image(plate.replace("####", "0005"))
    assert np.array_equal(got[1].images[1].permute(1, 2, 0).numpy(), ref * 2)
    with pytest.raises(InputError, match="chunk size"):
        next(stream.chunks(0))

    def bad(chunk: Chunk) -> Chunk:
        return dataclasses.replace(chunk, numbers=chunk.numbers[:1], images=chunk.images[:1])
    with pytest.raises(InputError, match="changed the chunk"):
        next(stream.then("bad", bad).chunks(2))


def test_save_stream_matches_the_image_writer(plate, tmp_path):
    stream, info = _out(OpenSequence().open(plate, frames="1-5"))
    res = SaveFrameStream().save(stream, str(tmp_path / "s" / "s.####.exr"), pixel_type="float", chunk=2)
    assert len(res["result"][0].splitlines()) == 5
    images, alpha, seq = LoadImageSequence().load(plate, frames="1-5")
    SaveEXRSequence().save(images, str(tmp_path / "i" / "i.####.exr"), pixel_type="float", alpha=alpha, sequence=seq)
    for n in range(1, 6):
        a, ia = read_image(tmp_path / "s" / f"s.{n:04d}.exr")
        b, ib = read_image(tmp_path / "i" / f"i.{n:04d}.exr")
        assert np.array_equal(a, b) and ia.channels == ib.channels == ("R", "G", "B", "A")
        assert ia.data_window == ib.data_window == (2, 1, 6, 4)
    # one mask for every frame, as an extra layer; a mismatched count is refused before anything is written
    mask = torch.full((1, 4, 6), 0.5)
    SaveFrameStream().save(stream, str(tmp_path / "m" / "m.####.exr"), extra_mask=mask)
    px, info = read_image(tmp_path / "m" / "m.0003.exr", channels=["R", "G", "B", "A", "facegraph_mask.Y"])
    assert info.channels[-1] == "facegraph_mask.Y" and float(px[0, 0, -1]) == 0.5
    with pytest.raises(InputError, match="3 masks for 5 frames"):
        SaveFrameStream().save(stream, str(tmp_path / "x" / "x.####.exr"), extra_mask=torch.zeros(3, 4, 6))
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


def test_save_stream_refuses_to_write_over_its_own_input(plate):
    stream, _ = _out(OpenSequence().open(plate, frames="1-3"))
    with pytest.raises(Exception, match="input"):
        SaveFrameStream().save(stream, plate, mode="overwrite")
    assert read_image(plate.replace("####", "0001"))[0].shape == (4, 6, 4)


def test_contact_sheet_reads_only_the_frames_it_shows(plate, tmp_path):
    stream, _ = _out(OpenSequence().open(plate))
    stream, seen = _counting(stream)
    res = SaveStreamContactSheet().save(stream, str(tmp_path / "sheet.png"), count=3, tile_width=32)
    assert sorted(seen) == [1, 4, 7]
    assert (tmp_path / "sheet.png").stat().st_size > 100 and res["ui"]["images"]


def test_bad_inputs_are_refused(plate):
    with pytest.raises(InputError, match="frame stream"):
        SaveFrameStream().save(torch.zeros(1, 4, 4, 3), "x.####.exr")
    stream, _ = _out(OpenSequence().open(plate))
    previews = _out(StreamDrawLandmarks().draw(stream, []))[0]
    with pytest.raises(InputError, match="scene-linear"):
        StreamDrawLandmarks().draw(previews, [])


@pytest.mark.shared
def test_streamed_crops_and_previews_equal_the_image_nodes_on_a_real_plate(tmp_path):
    """The real chain (Analyse Shot with the real models) on the demo plate (a real photo moved by known
    motion): streamed Track Crops / Draw Landmarks give the IMAGE nodes' pixels."""
    from facegraph.nodes.analysis import DrawLandmarks
    from facegraph.nodes.temporal import AnalyseShot, TrackCrops
    from facegraph.plugin.demo import write_sample_plate

    pattern = str(tmp_path / "plate" / "plate.####.exr")
    write_sample_plate(pattern, 4)
    faces, tracks, seq, _ = _out(AnalyseShot().analyse(pattern, cache=False))
    stream, _ = _out(OpenSequence().open(pattern))
    crops, aligns, mask, cseq = StreamTrackCrops().crops(stream, tracks, size=128)
    images, _, iseq = StreamToImages().take(crops)
    plate_images, _, pseq = LoadImageSequence().load(pattern)
    ref, ref_aligns, ref_masks, ref_seq = TrackCrops().crops(plate_images, pseq, tracks, size=128)
    assert iseq.frames == ref_seq.frames == cseq.frames and len(aligns) == len(ref_aligns) == 4
    # same cubic cv2 warp; the batched path's float32 matrices differ from the float64 ones in the last bits
    assert torch.allclose(images, ref, rtol=1e-5, atol=1e-4), float((images - ref).abs().max())
    assert torch.equal(mask[0], ref_masks[0])
    (previews,) = StreamDrawLandmarks().draw(stream, faces)
    shown, _, _ = StreamToImages().take(previews)
    (ref_shown,) = _out(DrawLandmarks().draw(plate_images, faces, preview_count=0))
    assert torch.equal(shown, ref_shown)
    res = SaveFrameStream().save(crops, str(tmp_path / "crops" / "c.####.exr"), extra_mask=mask)
    assert len(res["result"][0].splitlines()) == 4


@pytest.mark.shared
def test_analyse_frames_streamed_finds_the_face_in_every_frame_without_tracking(tmp_path):
    """Per-frame analysis of a stream (the landmark-preview template's): the real chain on the demo plate."""
    from facegraph.nodes.stream import StreamAnalyseFrames
    from facegraph.plugin.demo import write_sample_plate

    pattern = str(tmp_path / "plate" / "plate.####.exr")
    write_sample_plate(pattern, 3)
    stream, _ = _out(OpenSequence().open(pattern))
    faces, text = _out(StreamAnalyseFrames().analyse(stream, cache=False, max_faces=1))
    assert [ff.frame for ff in faces] == list(stream.frames) and "3 face(s) in 3 frames" in text
    for ff in faces:
        (face,) = ff.faces
        assert face.landmarks.points.shape[0] == 478 and face.provenance != "smoothed"
    (previews,) = StreamDrawLandmarks().draw(stream, faces)
    with pytest.raises(InputError, match="as they are read"):
        StreamAnalyseFrames().analyse(previews)


def test_contact_sheet_never_writes_over_a_frame_it_reads(tmp_path):
    """A still's stream: the sheet's path is the still itself, refused before anything is written."""
    from facegraph.core.io.images import write_image as write

    still = tmp_path / "still.png"
    write(still, np.full((8, 8, 3), 0.5, np.float32))
    before = still.read_bytes()
    stream, _ = _out(OpenSequence().open(str(still)))
    with pytest.raises(Exception, match="input"):
        SaveStreamContactSheet().save(stream, str(still), count=1, tile_width=32)
    assert still.read_bytes() == before
