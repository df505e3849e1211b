"""Peak memory of the analyse-shot graph run headless: the graph on IMAGE batches (the whole plate as one batch,
as the template was before it streamed) vs the same graph on streamed frames (nodes/stream.py) and the shipped
template, on one real-photo plate of N frames at 512x512.

The plate is the demo's real portrait photo moved by smooth known motion (plugin/demo.py), rendered at 512x512 and
written as a half EXR sequence. Both graphs run in a fresh `facegraph run` process each (peak RSS of the child),
after a first streamed run has filled the per-frame analysis cache, so both measure the same work: read the
cached faces, track, write the tracking export, stabilised crops and a contact sheet. Baseline: the process
doing nothing but start up (`facegraph --version`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import machine, table

ROOT = Path(__file__).resolve().parents[1]


def streamed_graph() -> dict:
    """The analyse-shot graph on streamed frames (API format)."""
    return {
        "1": {"class_type": "FacegraphAnalyseShot", "inputs": {"path": "${input}", "cache": True}},
        "2": {"class_type": "FacegraphExportTracking", "inputs": {"tracks": ["1", 1], "folder": "${out}/tracking"}},
        "3": {"class_type": "FacegraphOpenSequence", "inputs": {"path": "${input}"}},
        "4": {"class_type": "FacegraphStreamTrackCrops", "inputs": {"frames": ["3", 0], "tracks": ["1", 1]}},
        "5": {"class_type": "FacegraphSaveFrameStream", "inputs": {"frames": ["4", 0], "extra_mask": ["4", 2],
                                                                  "path": "${out}/crops/crop.####.exr"}},
        "6": {"class_type": "FacegraphStreamDrawLandmarks", "inputs": {"frames": ["3", 0], "faces": ["1", 0]}},
        "7": {"class_type": "FacegraphSaveStreamContactSheet", "inputs": {"frames": ["6", 0],
                                                                         "path": "${out}/contact_sheet.png"}},
    }


def image_graph() -> dict:
    """The same graph on IMAGE batches (the analyse-shot template before it streamed): the whole plate loaded
    as one batch, crops and previews as batches too."""
    return {
        "1": {"class_type": "FacegraphAnalyseShot", "inputs": {"path": "${input}", "cache": True}},
        "2": {"class_type": "FacegraphExportTracking", "inputs": {"tracks": ["1", 1], "folder": "${out}/tracking"}},
        "3": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "${input}"}},
        "4": {"class_type": "FacegraphTrackCrops", "inputs": {"images": ["3", 0], "sequence": ["3", 2],
                                                              "tracks": ["1", 1]}},
        "5": {"class_type": "FacegraphSaveEXRSequence", "inputs": {"images": ["4", 0], "sequence": ["4", 3],
                                                                  "path": "${out}/crops/crop.####.exr"}},
        "6": {"class_type": "FacegraphDrawLandmarks", "inputs": {"images": ["3", 0], "faces": ["1", 0]}},
        "7": {"class_type": "FacegraphSaveContactSheet", "inputs": {"previews": ["6", 0], "sequence": ["3", 2],
                                                                   "path": "${out}/contact_sheet.png"}},
    }


def write_plate(pattern: Path, frames: int, size: int) -> None:
    from facegraph.core.io.frames import SequenceWriter
    from facegraph.core.synthetic import render_plate, smooth_motion
    from facegraph.plugin.demo import sample_photo

    photo = sample_photo()
    writer = SequenceWriter(str(pattern), mode="resume", pixel_type="half")
    with writer:
        for n, img in zip(range(1001, 1001 + frames),
                          render_plate(photo, smooth_motion(frames, (photo.shape[1], photo.shape[0]), (size, size)),
                                       (size, size))):
            writer.write(n, img)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("facegraph"))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        env = {**os.environ, "FACEGRAPH_CACHE": str(d / "cache")}
        pattern = d / "plate" / "plate.####.exr"
        write_plate(pattern, args.frames, args.size)
        graph = d / "streamed.json"
        graph.write_text(json.dumps(streamed_graph()))

        def run(cmd: list[str]) -> tuple[float, float]:
            """(peak RSS MB, seconds) of ``cmd``, measured by a fresh parent of its own (ru_maxrss of children
            is a maximum over all of them, so each measurement needs its own parent)."""
            probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, "
                     "text=True); sys.stderr.write(p.stderr[-2000:]); "
                     "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            return int(proc.stdout.split()[-1]) / 1024.0, time.perf_counter() - t0

        base, _ = run([exe, "--version"])
        # fill the analysis cache once (not measured), then measure both graphs on the cached faces
        _, analyse_s = run([exe, "-q", "run", str(graph), "--set", f"input={pattern}", "--set", f"out={d / 'warm'}"])
        streamed, streamed_s = run([exe, "-q", "run", str(graph), "--set", f"input={pattern}",
                                    "--set", f"out={d / 's'}"])
        old = d / "image.json"
        old.write_text(json.dumps(image_graph()))
        image, image_s = run([exe, "-q", "run", str(old), "--set", f"input={pattern}", "--set", f"out={d / 'i'}"])
        shipped, shipped_s = run([exe, "-q", "run", str(ROOT / "example_workflows" / "analyse_shot.json"),
                                  "--set", f"input={pattern}", "--set", f"output={d / 't' / 'crops' / 'c.####.exr'}",
                                  "--set", f"tracking={d / 't' / 'tracking'}",
                                  "--set", f"contact_sheet={d / 't' / 'sheet.png'}"])
        crops = len(list((d / "s" / "crops").glob("*.exr")))
    whole = args.frames * args.size * args.size * 3 * 4 / 2**20
    rows = [["process start-up only (baseline)", f"{base:.0f}", ""],
            ["streamed graph (Open Sequence -> streamed nodes)", f"{streamed:.0f}",
             f"{streamed_s:.1f} s; {crops} crops written"],
            ["the shipped template (example_workflows/analyse_shot.json, streamed)", f"{shipped:.0f}",
             f"{shipped_s:.1f} s"],
            ["the same graph on IMAGE batches (the template before it streamed)", f"{image:.0f}", f"{image_s:.1f} s"],
            ["the plate as one float32 IMAGE batch", f"{whole:.0f}", "for comparison"]]
    return (f"{machine()}\n\n{args.frames} frames {args.size}x{args.size}, half EXR; first (cache-filling) streamed "
            f"run {analyse_s:.1f} s\n\n" + table(["run", "peak RSS MB", "notes"], rows) +
            f"\n\nstreamed / IMAGE-batch peak: {streamed / image:.2f}")


if __name__ == "__main__":
    print(main())
