"""Peak memory while streaming a 300-frame 1080p sequence through load -> save (``facegraph convert``).

The plate is one real-looking 1080p RGB half frame hard-linked 300 times (the reader decodes every frame; the
links only save disk). Baseline: the same process doing nothing but start up (``facegraph --version``), so the
difference is what streaming costs. A whole-sequence load would need 300 x 1920 x 1080 x 3 x 4 bytes.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facegraph.core.io.images import write_image

from .common import machine, table
from .io_throughput import plate


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of a child process."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:  # ru_maxrss is the max over all children so far: run the cheap baseline first
        raise RuntimeError("measure the larger process after the smaller one")
    return after / 1024.0, time.perf_counter() - t0


def main(argv=None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("facegraph"))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src" / "plate.####.exr"
        first = write_image(str(src).replace("####", "1001"), plate(1920, 1080)[..., :3], compression="zip")
        for f in range(1002, 1001 + args.frames):
            os.link(first, str(src).replace("####", str(f)))
        base, _ = peak_rss_mb([exe, "--version"])
        peak, secs = peak_rss_mb([exe, "-q", "convert", str(src), str(Path(d) / "out" / "o.####.exr"),
                                  "--compression", "zip"])
        n_out = len(os.listdir(Path(d) / "out"))
    whole = args.frames * 1920 * 1080 * 3 * 4 / 2**20
    rows = [["process start-up only (baseline)", f"{base:.0f}", ""],
            [f"convert {args.frames} x 1080p RGB half, zip -> zip", f"{peak:.0f}",
             f"{secs:.1f} s, {secs / args.frames * 1e3:.0f} ms/frame, {n_out} frames written"],
            ["the whole sequence as float32 in memory (not done)", f"{whole:.0f}", "for comparison"]]
    return f"{machine()}\n\n" + table(["run", "peak RSS MB", "notes"], rows) + \
        f"\n\nstreaming cost over start-up: {peak - base:.0f} MB ({(peak - base) / whole * 100:.1f} % of the whole sequence)"


if __name__ == "__main__":
    print(main())
