"""Face replace beside busy processes: the template (example_workflows/face_replace.json) on the demo's plate
(24 frames, 640 x 480) in a fresh process per setting, with OpenMP's default (spinning) wait policy, as inside
ComfyUI, and with OMP_WAIT_POLICY=PASSIVE, as the command line sets it; quiet and beside 2 busy-looping
processes. Face replace renders each frame in the thread policy's small stage (models/threads.py: one thread
where OpenMP spins). Reports each node's seconds (1 Analyse Shot, 2 Export Tracking, 3 Face Replace, 4 Export
Face Fit), cached analysis after a warm-up run.

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python -c "import bench.synthesis_threads as b; print(b.main([]))"
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, SHARED, machine, table

CHILD = """
import json, sys
from facegraph.plugin.chunks import run_graph
d = sys.argv[1]
s = run_graph(sys.argv[2], {"input": d + "/plate/plate.####.exr", "source": d + "/source/source.exr",
              "output": d + "/o_" + sys.argv[3] + "/r.####.exr", "preview": "", "tracking": d + "/o_" + sys.argv[3]
              + "/tracking", "face3d": d + "/o_" + sys.argv[3] + "/face3d"}, cache_dir=d + "/cache")
print("RESULT " + json.dumps(s["node_seconds"]))
"""


def _child(work: Path, tag: str, policy: str | None, busy: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.3)
        r = subprocess.run([sys.executable, "-c", CHILD, str(work), str(ROOT / "example_workflows" /
                           "face_replace.json"), tag], env=env, capture_output=True, text=True, cwd=str(ROOT))
    finally:
        for p in loops:
            p.kill()
            p.wait()
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(line[7:])


def main(argv: list[str]) -> str:
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    work = Path(tempfile.mkdtemp(prefix="bench_synth_threads_"))
    exe = str(Path(sys.executable).with_name("facegraph"))
    subprocess.run([exe, "-q", "demo", "--out", str(work)], check=True, capture_output=True)
    _child(work, "warm", "PASSIVE", 0)
    rows = []
    for busy in (0, 2):
        for policy in (None, "PASSIVE"):
            t = _child(work, f"{busy}{policy}", policy, busy)
            rows.append([f"{busy} busy", policy or "default (spins)", *(f"{t[k]:.2f}" for k in ("1", "2", "3", "4"))])
    return "\n".join(["## Face replace beside busy processes (demo plate, 24 frames)", "", machine(), "",
                      table(["load", "OMP_WAIT_POLICY", "1 analyse s", "2 export s", "3 face replace s",
                             "4 face fit export s"], rows)])
