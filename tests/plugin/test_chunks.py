"""Chunks with handles: the frame window (core/frame_window.py) as every reader and writer sees it, plan_chunks,
run_chunk's per-shot output names, merge's checks; on real data (12 frames, about 30 s): a shot rendered in chunks equals a
single run."""
import json
import pickle

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
def test_analyse_shot_in_chunks_merges_to_the_single_run(real):
    root, plate = real
    folders = []
    for chunk in plan_chunks(SHOT, 5):
        s = run_chunk(str(WF / "analyse_shot.json"), _sets(plate, "chunked"), chunk, 3, output_dir=str(root),
                      cache_dir=str(root / "cache"))
        assert s["written"] == chunk[1] - chunk[0] + 1
        folders.append(str(root / f"chunked/tracking.chunk_{chunk[0]}-{chunk[1]}"))
        assert (root / f"chunked/sheet.chunk_{chunk[0]}-{chunk[1]}.png").is_file()
    single = json.loads((root / "single/tracking/tracking.json").read_text())
    for folder in folders:  # a chunk's own frames are within the tolerance of the single run's
        doc = json.loads((__import__("pathlib").Path(folder) / "tracking.json").read_text())
        lo, hi = json.loads((__import__("pathlib").Path(folder) / "facegraph_chunk.json").read_text())["frames"]
        ref = {f["frame"]: f for f in single["frames"]}
        for fr in doc["frames"]:
            if lo <= fr["frame"] <= hi:
                for a, b in zip(fr["faces"], ref[fr["frame"]]["faces"]):
                    d = np.abs(np.array(a["landmarks"]["points"])[:, :2] - np.array(b["landmarks"]["points"])[:, :2])
                    assert d.max() < LANDMARK_TOLERANCE_PX and a["track_id"] == b["track_id"]
    merge(root / "merged", folders)
    assert json.loads((root / "merged/tracking.json").read_text()) == single  # exact, track ids included
    for name in sorted(p.name for p in (root / "single/tracking").iterdir() if p.suffix == ".chan"):
        assert (root / "merged" / name).read_bytes() == (root / "single/tracking" / name).read_bytes()


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


#: face paint in chunks smooths inside each chunk (+ handles), like analyse shot: the decal moves with the
#: landmarks (within LANDMARK_TOLERANCE_PX), so painted pixels differ only along the decal's edges
PAINT_EDGE_FRACTION = 0.01


@pytest.mark.shared
def test_face_paint_in_chunks_matches_the_single_run_within_tolerance(real, tmp_path):
    from facegraph.core.io.images import write_image

    root, plate = real
    decal = np.zeros((256, 256, 4), np.float32)
    decal[100:156, :, :3] = (2.0, 0.1, 0.1)
    decal[100:156, :, 3] = 1.0
    decal[..., :3] *= decal[..., 3:]
    write_image(tmp_path / "decal.exr", decal, pixel_type="float")
    sets = {"input": str(plate), "decal": str(tmp_path / "decal.exr"), "preview": ""}
    for f, a, b in _single_and_chunked(root, "face_paint.json", sets, 6, 3, "fp", cache_dir=str(root / "cache")):
        plate_px, _ = read_image(str(plate).replace("####", str(f)))
        painted = np.abs(a - plate_px).max(-1) > 1e-3
        assert painted.mean() > 0.001, f  # the decal is there
        differ = np.abs(a - b).max(-1) > 1e-3
        assert differ.mean() <= PAINT_EDGE_FRACTION, (f, float(differ.mean()))
