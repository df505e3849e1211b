"""Per-face MediaPipe mesh time, quiet and beside a competing load, under each thread policy.

Each policy runs in a fresh process (the OpenMP wait policy is read when torch is imported, so it cannot be
changed inside one process). The process loads the torch port of the Face Landmarker v2 mesh (256 x 256,
the traced ``run_numpy`` path that ``MediaPipeMesh.predict`` uses), times it quiet, then the bench starts
``--busy`` busy-looping processes and it times it again, alternating with a 1-thread run in the same process
(so drift in other load hits both alike). Baseline for ratios: the quiet 1-thread policy, same run.

    .venv/bin/python -c "import bench.threads as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from .common import SHARED, machine, table

MODEL = SHARED / "models" / "mediapipe" / "face_landmarker.task"
POLICY_VARS = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "FACEGRAPH_THREADS")

POLICIES = {  # name -> what the child does before / after importing torch
    "default: 2 threads, spin-wait": "spin2",
    "1 thread": "one",
    "OMP_WAIT_POLICY=PASSIVE, 2 threads": "passive2",
    "facegraph CLI: configure_process(2)": "cli",
    "facegraph in a host: host_policy() + small_stage()": "host",
}

CHILD = r"""
import contextlib, os, statistics, sys, time
mode, model, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
from facegraph.models import threads as th
if mode == "passive2":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
if mode == "cli":
    th.configure_process(2)
import numpy as np
import torch
if mode != "cli":
    torch.set_num_threads(1 if mode == "one" else 2)
if mode == "host":
    th.host_policy()
stage = th.small_stage if mode in ("cli", "host") else contextlib.nullcontext
one = lambda: th.torch_threads(1)
from facegraph.models.tflite_torch import TFLiteModule
mesh = TFLiteModule.from_file(model, "face_landmarks_detector.tflite")
x = np.random.default_rng(0).random((batch, 256, 256, 3), dtype=np.float32)
def once(ctx):
    t0 = time.perf_counter()
    with ctx():
        mesh.run_numpy(x)
    return (time.perf_counter() - t0) * 1e3 / batch
for _ in range(3):
    once(stage)
    once(one)
def runs(ctxs, n, budget):
    out, end = {c: [] for c in ctxs}, time.perf_counter() + budget
    while len(out[ctxs[0]]) < n and (len(out[ctxs[0]]) < 3 or time.perf_counter() < end):
        for c in ctxs:
            out[c].append(once(c))
    return [statistics.median(out[c]) for c in ctxs]
print("quiet", *runs([stage], 15, 3.0), flush=True)
sys.stdin.readline()
print("loaded", *runs([stage, one], 15, 6.0), flush=True)
"""


def measure(mode: str, batch: int, busy: int) -> tuple[float, float, float]:
    """(quiet, loaded, loaded on 1 thread in the same process) ms per face for one policy, fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(MODEL), str(batch)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    loops = []
    try:
        quiet = float(child.stdout.readline().split()[1])
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        time.sleep(0.3)
        child.stdin.write("go\n")
        child.stdin.flush()
        loaded, loaded_1 = map(float, child.stdout.readline().split()[1:])
        child.wait(60)
        return quiet, loaded, loaded_1
    finally:
        for p in loops:
            p.kill()
            p.wait()
        if child.poll() is None:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--busy", type=int, default=2, help="busy-looping processes started as the load")
    ap.add_argument("--batches", default="1", help="faces per call, comma-separated (e.g. 1,8)")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    text = [f"{machine()}\n\nMediaPipe Face Landmarker v2 mesh (torch port, traced), ms per face, median; load: "
            f"{a.busy} busy-looping processes; each policy in a fresh process. Ratios against the quiet "
            "1-thread policy of the same run; the last column against 1 thread under the same load, in the same "
            "process (alternated)."]
    for batch in (int(b) for b in a.batches.split(",")):
        res = {name: measure(mode, batch, a.busy) for name, mode in POLICIES.items()}
        base = res["1 thread"][0]
        rows = [[name, f"{q:.1f}", f"{l:.1f}", f"{q / base:.2f}", f"{l / base:.1f}", f"{l / l1:.2f}"]
                for name, (q, l, l1) in res.items()]
        text.append(f"\n\n{batch} face{'s' if batch > 1 else ''} per call\n\n" + table(
            ["policy", "quiet ms", "loaded ms", "quiet / 1t quiet", "loaded / 1t quiet", "loaded / 1t loaded"], rows))
    text.append(f"\n\nBackground load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} "
                f"(other work on the machine, besides the busy loops)")
    return "".join(text)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
