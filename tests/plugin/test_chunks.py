"""Chunks with handles: the frame window (core/frame_window.py) as every reader and writer sees it, plan_chunks,
run_chunk's per-shot output names, merge's checks; on real data (12 frames, about 30 s): a shot rendered in chunks equals a
single run."""
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from facegraph.core.errors import InputError
from facegraph.core.frame_window import FrameWindow, frame_window
from facegraph.core.io.frames import SequenceWriter, iter_frames
from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.source import open_source
from facegraph.plugin.chunks import chunk_name, merge, plan_chunks, run_chunk, run_graph


@pytest.fixture
def plate(tmp_path):
    rng = np.random.default_rng(1)
    for f in range(1001, 1011):
        write_image(tmp_path / "in" / f"p.{f:04d}.exr", rng.random((6, 8, 3)).astype(np.float32), pixel_type="float")
    return tmp_path / "in" / "p.####.exr"


def _copy_graph(tmp_path, plate, out):
    g = {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": str(plate), "missing": "hold"}},
         "2": {"class_type": "FacegraphSaveEXRSequence",
               "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": str(out), "pixel_type": "float",
                          "mode": "resume"}}}
    p = tmp_path / "g.json"
    p.write_text(json.dumps(g))
    return str(p)


def test_plan_chunks_covers_the_range_in_order():
    assert plan_chunks((1001, 1010), 4) == [(1001, 1004), (1005, 1008), (1009, 1010)]
    assert plan_chunks((5, 5), 10) == [(5, 5)]
    with pytest.raises(InputError, match="at least 1"):
        plan_chunks((1, 10), 0)
    with pytest.raises(InputError, match="before the first"):
        plan_chunks((10, 1), 2)


def test_window_reads_handles_clipped_to_the_shot_and_writes_only_the_chunk(plate, tmp_path):
    with frame_window(1001, 1003, 2):
        src = open_source(plate)
        assert src.frames == tuple(range(1001, 1006))  # 999, 1000 are not in the shot: clipped
        assert [f.number for f in iter_frames(plate)] == list(range(1001, 1006))
        w = SequenceWriter(tmp_path / "o" / "o.####.exr", mode="overwrite", pixel_type="float")
        with w:
            for f in range(1001, 1006):
                w.write(f, np.zeros((2, 2, 3), np.float32))
        assert w.outside == [1004, 1005] and len(w.written) == 3
    assert open_source(plate).frames == tuple(range(1001, 1011))  # outside the block: the whole shot
    with frame_window(2000, 2010), pytest.raises(InputError, match="outside the input's frames 1001-1010"):
        open_source(plate)
    with pytest.raises(InputError):
        FrameWindow(5, 4)


def test_a_window_of_a_known_shot_clips_handles_to_it_and_remembers_the_whole_shot(plate):
    with frame_window(1005, 1006, 3, shot=(1003, 1008)):
        src = open_source(plate)
        assert src.frames == tuple(range(1003, 1009))  # handles 1002 and 1009 are outside the shot
        assert src.whole() is None  # it reads the whole shot already
    with frame_window(1005, 1006, 1, shot=(1001, 1010)):
        src = open_source(plate)
        assert src.frames == (1004, 1005, 1006, 1007) and src.whole().frames == tuple(range(1001, 1011))
        assert src.subset([1005]).whole().frames == tuple(range(1001, 1011))  # a subset keeps it
    with frame_window(1005, 1006, 1):
        assert open_source(plate).whole() is None  # the shot is not known: no whole shot
    assert open_source(plate).whole() is None
    with pytest.raises(InputError, match="not inside the shot"):
        FrameWindow(1001, 1005, shot=(1002, 1010))


def test_a_chunks_part_of_a_shot_result_keeps_the_whole_shots_ids_and_main_track():
    from facegraph.core.shot import ShotResult, SmoothedTrack

    def track(tid, frames, area):
        face = type("F", (), {"area": area})()
        return SmoothedTrack(tid, tuple(frames), (face,) * len(frames), (None,) * len(frames), (False,) * len(frames))

    ff = [type("FF", (), {"frame": f})() for f in range(1, 11)]
    whole = ShotResult(frames=ff, tracks=[track(0, range(1, 11), 1.0), track(1, range(6, 11), 5.0)], fps=24,
                       template="t")
    part = whole.within(range(6, 11))
    assert [f.frame for f in part.frames] == [6, 7, 8, 9, 10] and [len(t.frames) for t in part.tracks] == [5, 5]
    assert part.main_track().track_id == 0  # the whole shot's main track, not the chunk's larger face
    assert part.whole is whole and part.within([7]).whole is whole
    assert [t.track_id for t in whole.within([1, 2]).tracks] == [0]  # a track the chunk does not see is dropped


def test_hold_policy_is_decided_on_the_whole_shot(plate, tmp_path):
    (tmp_path / "in" / "p.1005.exr").unlink()
    with frame_window(1005, 1006, 0):
        src = open_source(plate, range(1001, 1011), missing="hold")
    assert src.frames == (1005, 1006) and src._plan.sources == (1004, 1006)


def test_chunks_equal_a_single_run_and_run_chunk_is_picklable(plate, tmp_path):
    graph = _copy_graph(tmp_path, plate, tmp_path / "out" / "o.####.exr")
    job = pickle.loads(pickle.dumps(run_chunk))
    summaries = [job(graph, {}, c, 2) for c in plan_chunks((1001, 1010), 4)]
    assert [s["written"] for s in summaries] == [4, 4, 2] and json.dumps(summaries)
    for f in range(1001, 1011):
        a, _ = read_image(str(plate).replace("####", str(f)))
        b, _ = read_image(tmp_path / "out" / f"o.{f}.exr")
        assert np.array_equal(a, b)
    # the graph hash in each frame is the single run's (the window is not part of the graph): a single run
    # resumes every frame the chunks wrote
    again = run_graph(graph, {})
    assert again["kept"] == 10 and again["written"] == 0


def test_chunk_names_of_per_shot_outputs():
    assert chunk_name("facegraph/tracking", (1001, 1050)) == "facegraph/tracking.chunk_1001-1050"
    assert chunk_name("sheet.png", (1, 2)) == "sheet.chunk_1-2.png"
    assert chunk_name("facegraph/tracking [output]", (1, 2)) == "facegraph/tracking.chunk_1-2 [output]"


def test_merge_refuses_what_is_not_one_shot(tmp_path):
    with pytest.raises(InputError, match="not a chunk's output folder"):
        merge(tmp_path / "out", [str(tmp_path)])
    for name, frames in (("a", [1, 4]), ("b", [7, 9])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "facegraph_chunk.json").write_text(json.dumps(
            {"schema": "facegraph.chunk", "version": 1, "output": "2.folder", "template": "t.json",
             "assignments": {}, "frames": frames, "handles": 2, "cache_dir": "", "graph_hash": "x"}))
    with pytest.raises(InputError, match="frames 5-6 are in no chunk"):
        merge(tmp_path / "out", [str(tmp_path / "a"), str(tmp_path / "b")])
    before = (tmp_path / "b" / "facegraph_chunk.json").read_bytes()
    with pytest.raises(InputError, match="is one of the chunk folders it reads"):
        merge(tmp_path / "b", [str(tmp_path / "a"), str(tmp_path / "b")])
    assert (tmp_path / "b" / "facegraph_chunk.json").read_bytes() == before  # nothing written over


# ------------------------------------------------------------------- real data (12 frames: the shipped templates)
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
WF = ROOT / "example_workflows"
SHOT = (1001, 1012)
#: landmarks of a chunk's own frames vs the single run (pixels of a 512 px plate), handles 3, RTS smoothing:
#: measured 0.2-0.9 px on d10.mp4 (the smoother sees a shorter shot); the merged export is exact
LANDMARK_TOLERANCE_PX = 1.5


def _real_shot(data, tmp_path_factory):
    """12 frames of a real talking-head clip as an EXR sequence (streamed by facegraph convert) and the
    single run of the analyse-shot template over it (whose per-frame analysis fills the shared cache)."""
    from facegraph.plugin.cli import main

    root = tmp_path_factory.getbasetemp() / "h4_real_shot"
    plate = root / "plate" / "plate.####.exr"
    if not (root / "single" / "tracking" / "tracking.json").exists():
        assert main(["-q", "convert", str(data / "video" / "d10.mp4"), str(plate), "--frames",
                     f"{SHOT[0]}-{SHOT[1]}"]) == 0
        run_graph(str(WF / "analyse_shot.json"), _sets(plate, "single"), output_dir=str(root),
                  cache_dir=str(root / "cache"))
    return root, plate


def _sets(plate, out):
    return {"input": str(plate), "output": f"{out}/crops/crop.####.exr", "tracking": f"{out}/tracking",
            "contact_sheet": f"{out}/sheet.png"}


@pytest.fixture(scope="module")
def real(data, mirror, tmp_path_factory):
    return _real_shot(data, tmp_path_factory)


@pytest.mark.shared
def test_analyse_shot_in_chunks_merges_to_the_single_run(real, tmp_path, caplog):
    """Chunks without an analysis pass, on a fresh cache: a chunk whose shot is not yet all in the cache smooths
    over its own frames and handles, within LANDMARK_TOLERANCE_PX of the single run, and says so; the merge is
    exact."""
    root, plate = real
    cache = tmp_path / "cache"
    folders = []
    for chunk in plan_chunks(SHOT, 5):
        with caplog.at_level(logging.WARNING, logger="facegraph.models.shot"):
            s = run_chunk(str(WF / "analyse_shot.json"), _sets(plate, "chunked"), chunk, 3, output_dir=str(tmp_path),
                          cache_dir=str(cache), shot=SHOT)
        assert s["written"] == chunk[1] - chunk[0] + 1
        folders.append(str(tmp_path / f"chunked/tracking.chunk_{chunk[0]}-{chunk[1]}"))
        assert (tmp_path / f"chunked/sheet.chunk_{chunk[0]}-{chunk[1]}.png").is_file()
    # only the first chunk lacks frames: by the second, the first chunk and the handles have cached the shot
    assert sum("does not hold every frame of the shot" in r.getMessage() for r in caplog.records) == 1
    single = json.loads((root / "single/tracking/tracking.json").read_text())
    for folder in folders:  # a chunk's own frames are within the tolerance of the single run's
        doc = json.loads((Path(folder) / "tracking.json").read_text())
        lo, hi = json.loads((Path(folder) / "facegraph_chunk.json").read_text())["frames"]
        ref = {f["frame"]: f for f in single["frames"]}
        for fr in doc["frames"]:
            if lo <= fr["frame"] <= hi:
                for a, b in zip(fr["faces"], ref[fr["frame"]]["faces"]):
                    d = np.abs(np.array(a["landmarks"]["points"])[:, :2] - np.array(b["landmarks"]["points"])[:, :2])
                    assert d.max() < LANDMARK_TOLERANCE_PX and a["track_id"] == b["track_id"]
    merge(tmp_path / "merged", folders)
    assert json.loads((tmp_path / "merged/tracking.json").read_text()) == single  # exact, track ids included
    for name in sorted(p.name for p in (root / "single/tracking").iterdir() if p.suffix == ".chan"):
        assert (tmp_path / "merged" / name).read_bytes() == (root / "single/tracking" / name).read_bytes()


@pytest.mark.shared
def test_analyse_shot_after_the_analysis_pass_equals_the_single_run_exactly(real, tmp_path):
    """The local engine's --chunk job: an analysis pass over every chunk into a fresh shot cache (per-frame
    analysis in the chunks' batches), then the chunks, each deciding tracks and smoothing over the whole shot:
    crops bit-identical to the single run's, each chunk's export the single run's frames and tracks exactly."""
    from facegraph.plugin.ray_engine import run_local

    root, plate = real
    out = run_local(str(WF / "analyse_shot.json"), _sets(plate, "c"), SHOT, chunk=5, handles=3,
                    output_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert [c["frames"] for c in out["chunks"]] == [[1001, 1005], [1006, 1010], [1011, 1012]]
    for f in range(SHOT[0], SHOT[1] + 1):
        a, _ = read_image(root / f"single/crops/crop.{f}.exr")
        b, _ = read_image(tmp_path / f"c/crops/crop.{f}.exr")
        assert np.array_equal(a, b), f
    single = json.loads((root / "single/tracking/tracking.json").read_text())
    ref = {f["frame"]: f for f in single["frames"]}
    for lo, hi in plan_chunks(SHOT, 5):
        doc = json.loads((tmp_path / f"c/tracking.chunk_{lo}-{hi}/tracking.json").read_text())
        assert doc["frames"] and all(fr == ref[fr["frame"]] for fr in doc["frames"])
        for t, u in zip(doc["tracks"], single["tracks"]):
            assert t["track_id"] == u["track_id"]
            at = dict(zip(u["frames"], u["alignments"]))
            assert all(at[f] == a for f, a in zip(t["frames"], t["alignments"]))


def _single_and_chunked(root, template: str, sets: dict, size: int, handles: int, name: str, **run):
    """Run ``template`` once over SHOT and again in chunks of ``size`` with ``handles``; yield, per frame,
    the single run's and the chunked run's output pixels (outputs under root/<name>1 and root/<name>2)."""
    run_graph(str(WF / template), {**sets, "output": str(root / f"{name}1/o.####.exr")}, **run)
    for chunk in plan_chunks(SHOT, size):
        run_chunk(str(WF / template), {**sets, "output": str(root / f"{name}2/o.####.exr")}, chunk, handles, **run)
    for f in range(SHOT[0], SHOT[1] + 1):
        yield f, read_image(root / f"{name}1/o.{f}.exr")[0], read_image(root / f"{name}2/o.{f}.exr")[0]


@pytest.mark.shared
def test_stabilise_from_the_export_in_chunks_is_bit_identical(real):
    root, plate = real
    sets = {"tracking": str(root / "single/tracking"), "input": str(plate), "crop_size": 128}
    for f, a, b in _single_and_chunked(root, "stabilise.json", sets, 4, 2, "st"):
        assert np.array_equal(a, b), f


@pytest.mark.shared
def test_unstabilise_in_chunks_is_bit_identical(real):
    """Paste-back from the shot's export is per frame: chunks write exactly the single run's frames."""
    root, plate = real
    sets = {"tracking": str(root / "single/tracking"), "crops": str(root / "single/crops/crop.####.exr"),
            "input": str(plate), "preview": ""}
    for f, a, b in _single_and_chunked(root, "unstabilise.json", sets, 5, 2, "un"):
        assert np.array_equal(a, b), f


@pytest.mark.shared
def test_landmark_preview_in_chunks_is_bit_identical(real):
    """Detect -> landmarks -> refine per frame, no temporal state: chunks equal the single run."""
    root, plate = real
    sets = {"input": str(plate), "contact_sheet": str(root / "lp_sheet.png")}
    for f, a, b in _single_and_chunked(root, "landmark_preview.json", sets, 6, 0, "lp"):
        assert np.array_equal(a, b), f


def _engine_and_single(root, tmp_path, template: str, sets: dict):
    """Run ``template`` once over SHOT and as the local engine's chunked job (analysis pass, then chunks of 6
    with handles 3, a fresh shot cache); yield per frame the single run's and the chunked run's pixels."""
    from facegraph.plugin.ray_engine import run_local

    run_graph(str(WF / template), {**sets, "output": str(tmp_path / "one/o.####.exr")},
              output_dir=str(tmp_path / "one"), cache_dir=str(root / "cache"))
    run_local(str(WF / template), {**sets, "output": str(tmp_path / "two/o.####.exr")}, SHOT, chunk=6, handles=3,
              output_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    for f in range(SHOT[0], SHOT[1] + 1):
        yield f, read_image(tmp_path / f"one/o.{f}.exr")[0], read_image(tmp_path / f"two/o.{f}.exr")[0]


@pytest.mark.shared
def test_face_paint_in_chunks_is_bit_identical(real, tmp_path):
    from facegraph.core.io.images import write_image

    root, plate = real
    decal = np.zeros((256, 256, 4), np.float32)
    decal[100:156, :, :3] = (2.0, 0.1, 0.1)
    decal[100:156, :, 3] = 1.0
    decal[..., :3] *= decal[..., 3:]
    write_image(tmp_path / "decal.exr", decal, pixel_type="float")
    sets = {"input": str(plate), "decal": str(tmp_path / "decal.exr"), "preview": ""}
    for f, a, b in _engine_and_single(root, tmp_path, "face_paint.json", sets):
        plate_px, _ = read_image(str(plate).replace("####", str(f)))
        assert (np.abs(a - plate_px).max(-1) > 1e-3).mean() > 0.001, f  # the decal is there
        assert np.array_equal(a, b), f


@pytest.mark.shared
def test_face_replace_in_chunks_is_bit_identical(real, data, tmp_path):
    """The colour match is fitted once for the shot (keyframes spread over the whole shot, read outside the
    chunk's window) and the track is the whole shot's: every chunk writes the single run's frames."""
    root, plate = real
    sets = {"input": str(plate), "source": str(data / "stills" / "s0.jpg"), "preview": ""}
    for f, a, b in _engine_and_single(root, tmp_path, "face_replace.json", sets):
        plate_px, _ = read_image(str(plate).replace("####", str(f)))
        assert (np.abs(a - plate_px).max(-1) > 1e-3).mean() > 0.005, f  # the face is replaced
        assert np.array_equal(a, b), f
    # the 3D face export (one identity, one texture for the shot) merged from the chunks is the single run's
    chunks = [str(tmp_path / f"facegraph/face3d.chunk_{a}-{b}") for a, b in plan_chunks(SHOT, 6)]
    merge(tmp_path / "face3d_merged", chunks)
    one = tmp_path / "one" / "facegraph" / "face3d"
    names = sorted(str(p.relative_to(one)) for p in one.rglob("*") if p.is_file())
    assert "fit.json" in names and "texture.exr" in names
    merged = tmp_path / "face3d_merged"
    assert names == sorted(str(p.relative_to(merged)) for p in merged.rglob("*") if p.is_file())
    for name in names:
        if name.endswith(".exr"):  # pixels (the header holds the time it was written)
            assert np.array_equal(read_image(one / name)[0], read_image(merged / name)[0]), name
        else:
            assert (one / name).read_bytes() == (merged / name).read_bytes(), name


@pytest.mark.shared
def test_the_cli_analysis_pass_fills_the_shot_cache_and_writes_nothing(real, tmp_path):
    from facegraph.plugin.cli import main

    root, plate = real
    sets = [f"{k}={v}" for k, v in _sets(plate, "ap").items()]
    args = ["-q", "run", str(WF / "analyse_shot.json"), "--frames", "1003-1005", "--handles", "3", "--chunked",
            "--shot", f"{SHOT[0]}-{SHOT[1]}", "--cache", str(tmp_path / "cache"), "--output-dir", str(tmp_path),
            "--analysis-pass", *sum((["--set", a] for a in sets), [])]
    assert main(args) == 0
    assert not (tmp_path / "ap").exists()  # no crops, no export, no sheet
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("frames/*.json"))
    assert cached == [f"{f}.json" for f in (1003, 1004, 1005)]  # the chunk's own frames: no handles
    assert main(["-q", "run", str(_copy_graph(tmp_path, plate, tmp_path / "x.####.exr")), "--frames", "1001-1002",
                 "--analysis-pass"]) == 0  # no Analyse Shot: nothing to do
    assert not list(tmp_path.glob("x.*.exr"))
