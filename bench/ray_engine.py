"""The Ray engine on this machine: 2 Ray workers vs the single process, on the 300-frame shot of bench/chunks.py.

Shot: frames 1001-1300 of ../shared/data/video/d10.mp4 (512 x 512, a talking head), written once as an EXR
sequence by ``facegraph convert`` (not timed). Template: example_workflows/analyse_shot.json (Analyse Shot:
YuNet + MediaPipe mesh, RTS smoothing; 512 px stabilised crops as EXR, the tracking export, a contact sheet);
``--template`` / ``--set`` for another (the plate goes to its ``input`` parameter). Every run gets a fresh shot
cache, so none reuses another's analysis.

Runs, same shot, one after another:
- single: the whole range as one run in one process (torch 2 threads, OpenMP waiting passively as in the
  actors: a child process, see PASSIVE_ENV) = the baseline;
- local chunks: the Ray job's chunks and handles, one after another in one process (the same);
- ray: a private local Ray cluster (127.0.0.1) with 2 workers (1 thread each), the same chunks; the cluster's
  start-up, the actors' start-up (process, torch, node classes) and the job are timed apart;
- no-op chunks: 40 chunks that do nothing on the same cluster: Ray's own cost per chunk.
Per-chunk overhead of the real job: a chunk's round trip seen by the driver minus its time inside the actor
(and the part of it from sending the chunk to the actor starting it).
Max difference: largest absolute difference of the crops' linear pixels against the single run (the chunks
smooth over their own frames and handles; 1 vs 2 threads also changes the last bits).

    .venv/bin/python -c "import bench.ray_engine as b; print(b.main([]))"
    .venv/bin/python -c "import bench.ray_engine as b; print(b.main(['--frames', '40', '--chunk', '10']))"
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import DATA, ROOT, SHARED, machine, table

TEMPLATE = ROOT / "example_workflows" / "analyse_shot.json"
FIRST = 1001


def _noop(template, assignments, frames, handles, **folders) -> dict:
    return {"frames": list(frames)}


# The in-process baselines run in a child process whose OpenMP threads wait passively, as the Ray actors' do
# (OMP_WAIT_POLICY must be set before torch loads; with the default spin-wait, 2 threads on a busy 2-core
# machine lose most of their time spinning at barriers: see models/threads.py), so the comparison is of the
# engines, not of the wait policies. ``--spinning`` adds the single run in this process (default policy).
PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def _child_job(spec_json: str) -> None:
    """Entry point of the child: run_local with the spec's arguments, print the seconds as JSON."""
    from facegraph.plugin import ray_engine

    spec = json.loads(spec_json)
    torch.set_num_threads(spec.pop("threads"))
    t0 = time.perf_counter()
    ray_engine.run_local(spec.pop("template"), spec.pop("params"), tuple(spec.pop("span")), **spec)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def _local_in_child(**spec) -> float:
    code = "import sys, bench.ray_engine as b; b._child_job(sys.argv[1])"
    env = {**os.environ, **PASSIVE_ENV}
    done = subprocess.run([sys.executable, "-c", code, json.dumps({"threads": 2, **spec})], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the baseline run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def write_shot(plate: Path, frames: int, video: str) -> Path:
    from facegraph.plugin.cli import main as cli

    if cli(["-q", "convert", str(DATA / "video" / video), str(plate), "--frames",
            f"{FIRST}-{FIRST + frames - 1}"]) != 0:
        raise RuntimeError(f"facegraph convert of {video} failed")
    return plate


def _crops(folder: Path) -> dict[int, np.ndarray]:
    from facegraph.core.io.images import read_image

    return {int(p.name.split(".")[-2]): read_image(p)[0] for p in sorted((folder / "crops").glob("*.exr"))}


def _max_diff(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    if sorted(a) != sorted(b):
        return float("nan")
    return max(float(np.abs(a[f] - b[f]).max()) for f in a)


def main(argv: list[str] | None = None) -> str:
    from facegraph.plugin import ray_engine
    from facegraph.plugin.runner import parse_assignments

    ap = argparse.ArgumentParser(prog="bench.ray_engine")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=75, help="frames per chunk (default: 4 chunks of 300)")
    ap.add_argument("--handles", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--video", default="d10.mp4")
    ap.add_argument("--template", default=str(TEMPLATE), help="a template whose crops go to crops/crop.####.exr")
    ap.add_argument("--set", action="append", metavar="NAME=VALUE")
    ap.add_argument("--noop-chunks", type=int, default=40)
    ap.add_argument("--spinning", action="store_true",
                    help="also the single run in this process with OpenMP's default (spinning) wait policy")
    a = ap.parse_args(argv)
    ray = ray_engine.import_ray()
    torch.set_num_threads(2)
    # every run has its own facegraph cache (fresh shot cache): models come from the mirror, never the network
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    os.environ.setdefault("FACEGRAPH_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="facegraph-bench-ray-"))
    try:
        plate = write_shot(work / "plate" / "plate.####.exr", a.frames, a.video)
        template = a.template
        params = {"input": str(plate), "output": "crops/crop.####.exr", "tracking": "tracking",
                  "contact_sheet": "sheet.png"} if Path(template) == TEMPLATE else {"input": str(plate)}
        params.update(parse_assignments(a.set))
        span = (FIRST, FIRST + a.frames - 1)
        nchunks = len(range(0, a.frames, a.chunk))

        def out(name):
            return dict(output_dir=str(work / name), cache_dir=str(work / f"cache_{name}"))

        job_args = dict(template=template, params=params, span=list(span))
        t_single = _local_in_child(**job_args, chunk=a.frames, handles=0, **out("single"))
        t_local = _local_in_child(**job_args, chunk=a.chunk, handles=a.handles, **out("local"))
        t_spin = None
        if a.spinning:
            t0 = time.perf_counter()
            ray_engine.run_local(template, params, span, chunk=a.frames, handles=0, **out("spinning"))
            t_spin = time.perf_counter() - t0

        t0 = time.perf_counter()
        conn = ray_engine.start_local_cluster(ray, workers=a.workers)
        t_start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            job = ray_engine.run_on_ray(template, params, span, chunk=a.chunk, handles=a.handles,
                                        workers=a.workers, **out("ray"))
            t_ray = time.perf_counter() - t0
            noop = ray_engine.run_on_ray(template, {}, (1, a.noop_chunks), chunk=1, handles=0,
                                         workers=a.workers, chunk_fn=_noop)
        finally:
            t0 = time.perf_counter()
            ray_engine.stop_cluster(ray, conn)
            t_stop = time.perf_counter() - t0

        ref = _crops(work / "single")
        d_local, d_ray = _max_diff(ref, _crops(work / "local")), _max_diff(ref, _crops(work / "ray"))
        d_ray_local = _max_diff(_crops(work / "local"), _crops(work / "ray"))
        overhead = [c["round_trip_s"] - c["seconds"] for c in job["chunks"]]
        noop_rt = [c["round_trip_s"] for c in noop["chunks"]]
        t_actors, t_chunks = job["actors_s"], t_ray - job["actors_s"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    fps = a.frames / t_single
    rows = [
        ["single process (2 threads, passive wait)", f"{t_single:.1f}", "", f"{fps:.2f}", "1.00", "0"],
        [f"local chunks ({nchunks} x {a.chunk}, handles {a.handles}; passive)", f"{t_local:.1f}", "",
         f"{a.frames / t_local:.2f}", f"{t_single / t_local:.2f}", f"{d_local:.2g}"],
        [f"ray, {job['workers']} workers: job", f"{t_ray:.1f}", f"{t_actors:.1f}", f"{a.frames / t_ray:.2f}",
         f"{t_single / t_ray:.2f}", f"{d_ray:.2g}"],
        [f"ray, {job['workers']} workers: job + cluster start-up", f"{t_ray + t_start:.1f}", "",
         f"{a.frames / (t_ray + t_start):.2f}", f"{t_single / (t_ray + t_start):.2f}", ""],
        [f"ray, {job['workers']} workers: chunks only (actors running)", f"{t_chunks:.1f}", "",
         f"{a.frames / t_chunks:.2f}", f"{t_single / t_chunks:.2f}", ""],
    ]
    if t_spin is not None:
        rows.insert(1, ["single process (2 threads, OpenMP default: spinning wait)", f"{t_spin:.1f}", "",
                        f"{a.frames / t_spin:.2f}", f"{t_single / t_spin:.2f}", ""])
    per_chunk = [[f"{c['frames'][0]}-{c['frames'][1]}", c["pid"], f"{c['seconds']:.2f}", f"{c['round_trip_s']:.2f}",
                  f"{(c['round_trip_s'] - c['seconds']) * 1e3:.1f}", f"{c['start_delay_s'] * 1e3:.1f}"]
                 for c in job["chunks"]]
    fixed = [["Ray cluster start-up (ray.init, local, 127.0.0.1)", f"{t_start:.2f}"],
             [f"actors start-up ({job['workers']} at once: process, torch, node classes)", f"{t_actors:.2f}"],
             ["cluster shut-down", f"{t_stop:.2f}"],
             [f"no-op chunk round trip, median of {len(noop_rt)} ({noop['workers']} workers), ms",
              f"{statistics.median(noop_rt) * 1e3:.1f}"],
             ["real chunk overhead (round trip - time in actor), median / max, ms",
              f"{statistics.median(overhead) * 1e3:.1f} / {max(overhead) * 1e3:.1f}"]]
    return (f"{machine()}, ray {ray.__version__}; load average at the end {os.getloadavg()[0]:.1f}\n\n"
            f"{a.frames} frames of {a.video}, {Path(template).name}, "
            f"{nchunks} chunks of {a.chunk}, handles {a.handles}; max diff: crops against the single run "
            f"(ray against local chunks: {d_ray_local:.2g})\n\n"
            + table(["run", "wall s", "of which actors' start-up s", "frames/s", "speed-up vs single", "max diff"],
                    rows)
            + "\n\nFixed costs\n\n" + table(["what", "s"], fixed)
            + "\n\nRay chunks\n\n" + table(["frames", "actor pid", "in actor s", "round trip s", "overhead ms",
                                            "of which sent -> started ms"], per_chunk))


if __name__ == "__main__":
    print(main())
