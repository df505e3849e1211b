"""The Ray engine on a private local cluster (127.0.0.1, 2 workers, started and stopped here).

The cluster tests run in the default suite (about 45 s: Ray's start-up and each actor's import of torch; the test
extra installs ray); they skip with a reason where ray is not installed.

(a) the same frames as the same job run in this process (a stand-in chunk function, and a real template on a
real clip through plugin.chunks.run_chunk); (b) on the real template, a worker killed in the middle of a chunk
is replaced and the chunk run again, with the same frames; (c) without Ray, a clear message saying how to
install it; a chunk that keeps failing stops the job with its error, a user's error at once.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facegraph.core.errors import GraphError, InputError
from facegraph.plugin import ray_engine


# ------------------------------------------------------------------------------------- without a cluster
def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    with pytest.raises(InputError, match=r"pip install facegraph\[ray\]"):
        ray_engine.import_ray()
    with pytest.raises(InputError, match=r"needs Ray.*pip install facegraph\[ray\]"):
        ray_engine.Engine("ray").run("t.json", {}, (1, 4), chunk=2, handles=0)


def test_engine_arguments():
    p = argparse.ArgumentParser()
    ray_engine.add_engine_arguments(p)
    assert ray_engine.engine_from_args(p.parse_args([])) == ray_engine.Engine("local")
    eng = ray_engine.engine_from_args(p.parse_args(["--engine", "ray", "--address", "10.0.0.1:6379",
                                                    "--workers", "3"]))
    assert eng == ray_engine.Engine("ray", "10.0.0.1:6379", 3)
    assert eng.chunk_for((1001, 1010)) == 4  # 10 frames over 3 workers
    eng = ray_engine.engine_from_args(p.parse_args(["--chunk", "25"]))
    assert eng == ray_engine.Engine("local", chunk=25) and eng.chunk_for((1, 100)) == 25
    assert ray_engine.Engine("local").chunk_for((1001, 1010)) == 10
    with pytest.raises(InputError, match="--chunk"):
        ray_engine.engine_from_args(p.parse_args(["--chunk", "0"]))
    with pytest.raises(InputError, match="--engine ray"):
        ray_engine.engine_from_args(p.parse_args(["--workers", "2"]))
    with pytest.raises(InputError, match="workers"):
        ray_engine.engine_from_args(p.parse_args(["--engine", "ray", "--workers", "0"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--engine", "dask"])


def test_local_engine_runs_the_chunks_in_this_process(tmp_path):
    """Engine("local") through plugin.chunks.run_chunk: a copy graph (no models) over 10 small EXR frames."""
    from facegraph.core.io.images import read_image, write_image

    rng = np.random.default_rng(2)
    for f in range(1001, 1011):
        write_image(tmp_path / "in" / f"p.{f}.exr", rng.random((6, 8, 3)).astype(np.float32), pixel_type="float")
    graph = {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "in/p.####.exr"}},
             "2": {"class_type": "FacegraphSaveEXRSequence",
                   "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": "out/o.####.exr",
                              "pixel_type": "float", "mode": "overwrite"}}}
    (tmp_path / "g.json").write_text(json.dumps(graph))
    seen, depth = [], []

    class Bar:  # the nodes' own tasks nest inside the job's: keep the outermost
        def start(self, total, label):
            depth.append(label)
            if len(depth) == 1:
                seen.append(total)

        def advance(self, n=1):
            if len(depth) == 1:
                seen.append(n)

        def finish(self): depth.pop()
        def check_interrupt(self): pass

    out = ray_engine.Engine("local", chunk=4).run(str(tmp_path / "g.json"), {}, (1001, 1010), handles=2,
                                                  input_dir=str(tmp_path), output_dir=str(tmp_path), progress=Bar())
    assert [c["frames"] for c in out["chunks"]] == [[1001, 1004], [1005, 1008], [1009, 1010]]
    assert [c["summary"]["written"] for c in out["chunks"]] == [4, 4, 2] and seen == [10, 4, 4, 2]
    for f in range(1001, 1011):
        assert np.array_equal(read_image(tmp_path / "out" / f"o.{f}.exr")[0],
                              read_image(tmp_path / "in" / f"p.{f}.exr")[0])
    json.dumps(out)


def test_facegraph_run_splits_frames_into_chunks_on_the_chosen_engine(tmp_path, capsys):
    """`facegraph run G --frames A-B --chunk N [--engine local]`: the same chunks through the command line."""
    from facegraph.core.io.images import read_image, write_image
    from facegraph.plugin.cli import main

    rng = np.random.default_rng(3)
    for f in range(1001, 1007):
        write_image(tmp_path / "in" / f"p.{f}.exr", rng.random((6, 8, 3)).astype(np.float32), pixel_type="float")
    graph = {"1": {"class_type": "FacegraphOpenSequence", "inputs": {"path": "in/p.####.exr"}},
             "2": {"class_type": "FacegraphSaveFrameStream",
                   "inputs": {"frames": ["1", 0], "path": "out/o.####.exr", "pixel_type": "float"}}}
    (tmp_path / "g.json").write_text(json.dumps(graph))
    args = ["-q", "run", str(tmp_path / "g.json"), "--input-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    assert main(args + ["--chunk", "4"]) == 2  # chunks need --frames
    assert main(args + ["--frames", "1001-1006", "--chunk", "4", "--handles", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "local" and [c["frames"] for c in summary["chunks"]] == [[1001, 1004], [1005, 1006]]
    for f in range(1001, 1007):
        assert np.array_equal(read_image(tmp_path / "out" / f"o.{f}.exr")[0],
                              read_image(tmp_path / "in" / f"p.{f}.exr")[0])


# ------------------------------------------------------------------------------------- the chunk function
def _stand_in_plan(frames, chunk):
    a, b = frames
    return [(s, min(s + chunk - 1, b)) for s in range(a, b + 1, chunk)]


def _stand_in_run_chunk(template, assignments, frames, handles, input_dir="", output_dir="", cache_dir="", **extra):
    """Until plugin/chunks.py exists: a temporal filter (centred mean of radius ``assignments["radius"]``) over
    value.<frame>.npy in input_dir, reading the chunk plus its handles, writing the chunk's own frames."""
    a, b = frames
    have = {int(p.name.split(".")[1]): p for p in Path(input_dir).glob("value.*.npy")}
    read = {f: np.load(have[f]) for f in range(a - handles, b + handles + 1) if f in have}
    r = int(assignments["radius"])
    for f in range(a, b + 1):
        win = [read[g] for g in range(f - r, f + r + 1) if g in read]
        np.save(Path(output_dir) / f"out.{f}.npy", np.mean(win, axis=0))
    return {"frames": [a, b], "written": b - a + 1}


def _chunks_module():
    try:
        from facegraph.plugin import chunks
    except ImportError:
        return None
    return chunks


@pytest.fixture(scope="module")
def cluster():
    """A private Ray cluster of this test process: 127.0.0.1, 2 CPUs, stopped after the module."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    conn = ray_engine.start_local_cluster(ray, workers=2)
    try:
        yield ray
    finally:
        ray_engine.stop_cluster(ray, conn)


@pytest.fixture
def toy_shot(tmp_path, monkeypatch):
    """12 frames of a toy signal and the stand-in chunk functions (plan_chunks from plugin.chunks if there)."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for f in range(1001, 1013):
        np.save(src / f"value.{f}.npy", rng.normal(size=(4, 4)).astype(np.float32))
    chunks = _chunks_module()
    if chunks is None:
        import types

        fake = types.ModuleType("facegraph.plugin.chunks")
        fake.plan_chunks, fake.run_chunk = _stand_in_plan, _stand_in_run_chunk
        monkeypatch.setitem(sys.modules, "facegraph.plugin.chunks", fake)
    return src


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("out.*.npy"))}


def test_cluster_is_loopback_only(cluster):
    nodes = [n for n in cluster.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert cluster.cluster_resources()["CPU"] == 2


def test_same_output_as_this_process(cluster, toy_shot, tmp_path):
    single, chunked = tmp_path / "single", tmp_path / "ray"
    single.mkdir(), chunked.mkdir()
    params = {"radius": 2}
    _stand_in_run_chunk("toy", params, (1001, 1012), 0, input_dir=str(toy_shot), output_dir=str(single))
    seen = []

    class Bar:
        def start(self, total, label): seen.append(("start", total))
        def advance(self, n=1): seen.append(("advance", n))
        def finish(self): seen.append(("finish",))
        def check_interrupt(self): pass

    out = ray_engine.run_on_ray("toy", params, (1001, 1012), chunk=5, handles=2, workers=2,
                                input_dir=str(toy_shot), output_dir=str(chunked), progress=Bar(),
                                chunk_fn=_stand_in_run_chunk)
    assert _outputs(chunked) == _outputs(single) and len(_outputs(single)) == 12
    assert [c["frames"] for c in out["chunks"]] == [[1001, 1005], [1006, 1010], [1011, 1012]]
    assert out["workers"] == 2 and out["retries"] == 0 and out["resources"] == "cpu"
    assert {c["attempts"] for c in out["chunks"]} == {1}
    assert len({c["pid"] for c in out["chunks"]}) <= 2  # actors live for the job: 3 chunks on 2 processes
    json.dumps(out)
    # one bar across the chunks, counting the chunks' own frames
    assert seen[0] == ("start", 12) and seen[-1] == ("finish",)
    assert sorted(n for _, *n in seen if _ == "advance") == [[2], [5], [5]]


# ------------------------------------------------------------------------------------- a real template
# Analyse Shot (detector + landmarks, RTS smoothing over the chunk and its handles) -> stabilised crops -> EXR:
# models in every actor, a temporal filter across chunk boundaries, frames written per chunk.
REAL_GRAPH = {
    "1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "${input}", "missing": "hold"}},
    "2": {"class_type": "FacegraphAnalyseShot", "inputs": {"path": "${input}", "missing": "hold"}},
    "3": {"class_type": "FacegraphTrackCrops", "inputs": {"images": ["1", 0], "sequence": ["1", 2],
                                                          "tracks": ["2", 1], "size": 96}},
    "4": {"class_type": "FacegraphSaveEXRSequence", "inputs": {"images": ["3", 0], "sequence": ["3", 3],
                                                               "path": "crops/crop.####.exr",
                                                               "pixel_type": "float", "mode": "overwrite"}},
}


@pytest.fixture(scope="module")
def real_plate(data, tmp_path_factory):
    """16 frames (1001-1016) of a real talking-head clip as a half-float EXR sequence."""
    from facegraph.core.io.images import write_image
    from facegraph.core.io.video import iter_video

    d = tmp_path_factory.mktemp("plate")
    for f in iter_video(data / "video" / "d3.mp4", range(16), first_frame=1001):
        write_image(d / f"plate.{f.number}.exr", f.pixels, pixel_type="half")
    return d / "plate.####.exr"


def _frames(folder: Path) -> dict[int, tuple[np.ndarray, str]]:
    from facegraph.core.io.images import read_image

    out = {}
    for p in sorted(folder.glob("crop.*.exr")):
        px, info = read_image(p)
        out[int(p.name.split(".")[1])] = (px, info.attribute("facegraph:graph_hash"))
    return out


@pytest.mark.shared
def test_real_template_with_a_killed_worker_equals_this_process(cluster, real_plate, tmp_path, monkeypatch):
    chunks = _chunks_module()
    if chunks is None:
        pytest.skip("plugin/chunks.py (run_chunk) is not there yet")
    import torch

    template = tmp_path / "crops.json"
    template.write_text(json.dumps(REAL_GRAPH))
    params = {"input": str(real_plate)}
    here, there, marker = tmp_path / "here", tmp_path / "ray", tmp_path / "killed"
    # this process with the actors' thread policy (one thread), so the two runs do the same arithmetic
    monkeypatch.setenv("FACEGRAPH_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = ray_engine.run_local(str(template), params, (1001, 1016), chunk=8, handles=3,
                                     output_dir=str(here), cache_dir=str(tmp_path / "cache_here"))
    finally:
        torch.set_num_threads(threads)
    run_chunk = chunks.run_chunk

    def dies_once(template, assignments, frames, handles, **folders):
        """The second chunk's first attempt: SIGKILL its own process 0.5 s in (models loading or running)."""
        if frames[0] == 1009 and not folders.get("analysis_pass") and not os.path.exists(marker):
            open(marker, "w").close()
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
            run_chunk(template, assignments, frames, handles, **folders)
            threading.Event().wait(60)  # finished before the kill: die anyway
        return run_chunk(template, assignments, frames, handles, **folders)

    out = ray_engine.run_on_ray(str(template), params, (1001, 1016), chunk=8, handles=3, workers=2,
                                output_dir=str(there), cache_dir=str(tmp_path / "cache_ray"), chunk_fn=dies_once,
                                analysis_pass=True)
    assert marker.exists() and out["retries"] == 1
    assert [c["attempts"] for c in out["chunks"]] == [1, 2]
    assert [c["summary"]["written"] for c in out["chunks"]] == [c["summary"]["written"] for c in local["chunks"]]
    a, b = _frames(here / "crops"), _frames(there / "crops")
    assert sorted(a) == list(range(1001, 1017)) and sorted(b) == sorted(a)
    for f in a:
        assert np.array_equal(a[f][0], b[f][0]), f"frame {f}"
        assert a[f][1] == b[f][1]  # the same graph hash in every frame


def test_retries_run_out(cluster, toy_shot, tmp_path):
    def always_fails(template, assignments, frames, handles, **folders):
        raise RuntimeError("disk full")

    with pytest.raises(GraphError, match=r"after 2 attempt.*disk full.*chunk=1001-1012"):
        ray_engine.run_on_ray("toy", {}, (1001, 1012), chunk=20, handles=0, workers=1, retries=1,
                              chunk_fn=always_fails)

    def bad_input(template, assignments, frames, handles, **folders):
        raise InputError("no such parameter 'radius'")

    with pytest.raises(InputError, match=r"radius.*attempts=1"):  # the user's error: no retry
        ray_engine.run_on_ray("toy", {}, (1001, 1012), chunk=20, handles=0, workers=1, chunk_fn=bad_input)
