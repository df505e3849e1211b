"""`facegraph analyse` on a 300-frame EXR shot at 512 x 512 and at 1920 x 1080 (issue 11): frames per second of
the whole command (process start, model loads, per-frame analysis, tracking, the export, 300 stabilised crops;
no overlay movie or sheet: --no-preview), beside a bare OpenImageIO read of the same frames in the same run, and
each command's peak RSS. A fresh shot cache each time (the models run on every frame). The default analysis
(keyframes every 8th frame, LiteRT on the CPU) and, for comparison, ``--detect-every 1``.

The shot: frames 1001-1300 of ../shared/data/video/d10.mp4 (a real talking head, 512 x 512), written as half
float EXR by ``facegraph convert``; the 1080p shot places those frames in a black 1920 x 1080 plate.

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python -c "import bench.analyse_fps as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import DATA, ROOT, SHARED, machine, table


def _run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one facegraph command in a child process."""
    exe = str(Path(sys.executable).with_name("facegraph"))
    t = time.perf_counter()
    proc = subprocess.Popen([exe, "-q", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"facegraph {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def _bare_read(pattern: Path, frames: range) -> float:
    import OpenImageIO as oiio

    t = time.perf_counter()
    for f in frames:
        inp = oiio.ImageInput.open(str(pattern).replace("####", str(f)))
        px = inp.read_image(format=oiio.FLOAT)
        inp.close()
        assert px is not None
    return time.perf_counter() - t


def main(argv: list[str]) -> str:
    from facegraph.core.io.images import read_image, write_image

    ap = argparse.ArgumentParser(prog="bench.analyse_fps")
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args(argv)
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    os.environ.setdefault("FACEGRAPH_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="bench_analyse_fps_"))
    frames = range(1001, 1001 + args.frames)
    rows = []
    try:
        p512 = work / "p512" / "p.####.exr"
        _run(["convert", str(DATA / "video" / "d10.mp4"), str(p512), "--frames", f"{frames[0]}-{frames[-1]}"])
        p1080 = work / "p1080" / "p.####.exr"
        for f in frames:
            px, _ = read_image(str(p512).replace("####", str(f)))
            plate = np.zeros((1080, 1920, 3), np.float32)
            plate[284:284 + px.shape[0], 704:704 + px.shape[1]] = px[..., :3]
            write_image(str(p1080).replace("####", str(f)), plate, pixel_type="half")
        for name, pattern in (("512 x 512", p512), ("1920 x 1080", p1080)):
            read_s = _bare_read(pattern, frames)
            for every in (8, 1):
                os.environ["FACEGRAPH_SHOT_CACHE"] = str(work / f"cache_{name[:4]}_{every}")
                out = work / f"out_{name[:4]}_{every}"
                wall, rss = _run(["analyse", str(pattern), "--out", str(out), "--no-preview",
                                  "--detect-every", str(every)])
                crops = len(list((out / "crops").glob("*.exr")))
                rows.append([name, f"{every}{' (default)' if every == 8 else ''}", f"{wall:.1f}",
                             f"{args.frames / wall:.1f}", f"{args.frames / read_s:.0f}", f"{read_s / wall:.3f}",
                             f"{rss:.0f}", crops])
    finally:
        os.environ.pop("FACEGRAPH_SHOT_CACHE", None)
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join([f"## `facegraph analyse`, {args.frames} EXR frames of d10.mp4", "",
                      f"{machine()}; load average {os.getloadavg()[0]:.1f} at the end", "",
                      table(["shot", "detect every", "wall s", "frames/s", "bare OIIO read, frames/s",
                             "read / analyse time", "peak RSS MB", "crops written"], rows)])
