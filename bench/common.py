from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGRAPH_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"


def machine() -> str:
    import onnxruntime
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call, running the candidates alternately (ABAB...) so drift hits all alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class Timings(dict):
    """``timed(key, fn)``: run fn, append its wall time (ms) to ``self[key]``, return its result."""

    def __call__(self, key: str, fn: Callable[[], object]):
        t0 = time.perf_counter()
        out = fn()
        self.setdefault(key, []).append((time.perf_counter() - t0) * 1e3)
        return out


def run_worker(call: str, path: Sequence[str] = ()) -> tuple[dict | None, str]:
    """Evaluate ``call`` (e.g. ``"bench.chain._worker(2, 12)"``, returning a JSON-able dict) in a fresh Python
    process from the repository root: OMP_WAIT_POLICY=PASSIVE unless set (measure the code, not OpenMP's
    spinning on a shared machine), the model mirror beside the checkout, ``path`` first on PYTHONPATH.
    Returns (the dict, with ``omp_wait_policy``: the worker's, "") or (None, the end of the worker's stderr)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    if path:
        env["PYTHONPATH"] = os.pathsep.join([*path] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    module = call.split("(", 1)[0].rsplit(".", 1)[0]
    code = f"import json, {module}; print('RESULT ' + json.dumps({call}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return None, r.stderr[-3000:]
    return {**json.loads(line[len("RESULT "):]), "omp_wait_policy": env["OMP_WAIT_POLICY"]}, ""
