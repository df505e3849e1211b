"""Chunks with handles vs one run: the analyse-shot template (example_workflows/analyse_shot.json) over a real
shot, once in one piece and once as N chunks with K handles (plugin/chunks.run_chunk, one after the other in this
process, each with its own models and an empty shot cache of the job), then the chunks' tracking exports merged
(facegraph merge) through that cache; and the job as ``facegraph run --chunk N`` runs it (plugin/ray_engine.py
run_local: the analysis pass over every chunk into a fresh shot cache, then the chunks). Baseline: the single
run, measured in the same run.

The shot: frames 1001.. of ../shared/data/video/d10.mp4 (448 frames, 512 x 512), streamed to an EXR sequence by
``facegraph convert`` (never held whole).

    .venv/bin/python -c "import bench.chunks as b; print(b.main([]))"                # 300 frames, 4 chunks
    .venv/bin/python -c "import bench.chunks as b; print(b.main(['--frames', '60']))"
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import DATA, SHARED, machine, table

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "example_workflows" / "analyse_shot.json"


def _sets(plate: Path, out: str) -> dict:
    return {"input": str(plate), "output": f"{out}/crops/crop.####.exr", "tracking": f"{out}/tracking",
            "contact_sheet": f"{out}/sheet.png"}


def _landmarks(doc: dict, lo: int, hi: int) -> dict:
    return {(fr["frame"], i): np.asarray(f["landmarks"]["points"], np.float64)[:, :2]
            for fr in doc["frames"] if lo <= fr["frame"] <= hi for i, f in enumerate(fr["faces"]) if f.get("landmarks")}


def main(argv: list[str]) -> str:
    from facegraph.core.io.images import read_image
    from facegraph.plugin.chunks import merge, plan_chunks, run_chunk, run_graph
    from facegraph.plugin.cli import main as cli
    from facegraph.plugin.ray_engine import run_local

    ap = argparse.ArgumentParser(prog="bench.chunks")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--handles", type=int, default=10)
    ap.add_argument("--video", default=str(DATA / "video" / "d10.mp4"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    os.environ.setdefault("FACEGRAPH_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="bench_chunks_"))
    try:
        plate = work / "plate" / "plate.####.exr"
        shot = (1001, 1000 + args.frames)
        t = time.perf_counter()
        if cli(["-q", "convert", args.video, str(plate), "--frames", f"{shot[0]}-{shot[1]}"]) != 0:
            raise RuntimeError("convert failed")
        convert_s = time.perf_counter() - t

        t = time.perf_counter()
        run_graph(str(TEMPLATE), _sets(plate, "single"), output_dir=str(work), cache_dir=str(work / "cache_single"))
        single_s = time.perf_counter() - t

        size = -(-args.frames // args.chunks)
        spans = plan_chunks(shot, size)
        per_chunk = []
        t = time.perf_counter()
        for span in spans:
            s = run_chunk(str(TEMPLATE), _sets(plate, "chunked"), span, args.handles, output_dir=str(work),
                          cache_dir=str(work / "cache_job"))
            per_chunk.append(s["seconds"])
        chunks_s = time.perf_counter() - t
        folders = [str(work / f"chunked/tracking.chunk_{a}-{b}") for a, b in spans]
        t = time.perf_counter()
        merge(work / "merged", folders)
        merge_s = time.perf_counter() - t
        # the job as `facegraph run --chunk N` runs it: the analysis pass over every chunk, then the chunks
        t = time.perf_counter()
        job = run_local(str(TEMPLATE), _sets(plate, "twopass"), shot, chunk=size, handles=args.handles,
                        output_dir=str(work), cache_dir=str(work / "cache_twopass"))
        twopass_s = time.perf_counter() - t

        single = json.loads((work / "single/tracking/tracking.json").read_text())
        merged = json.loads((work / "merged/tracking.json").read_text())
        ref = _landmarks(single, *shot)
        got = _landmarks(merged, *shot)
        merged_diff = max((float(np.abs(ref[k] - got[k]).max()) for k in ref if k in got), default=float("nan"))
        chunk_diff = 0.0
        for (a, b), folder in zip(spans, folders):
            doc = json.loads((Path(folder) / "tracking.json").read_text())
            mine = _landmarks(doc, a, b)
            for k, v in mine.items():
                if k in ref:
                    d = float(np.abs(ref[k] - v).max())
                    chunk_diff = max(chunk_diff, d)
        two_diff = 0.0
        for a, b in spans:
            doc = json.loads((work / f"twopass/tracking.chunk_{a}-{b}" / "tracking.json").read_text())
            for k, v in _landmarks(doc, a, b).items():
                if k in ref:
                    two_diff = max(two_diff, float(np.abs(ref[k] - v).max()))

        def crop_diff(name: str) -> float:
            worst = 0.0
            for f in range(shot[0], shot[1] + 1):
                p, q = work / f"single/crops/crop.{f}.exr", work / f"{name}/crops/crop.{f}.exr"
                if p.exists() and q.exists():
                    worst = max(worst, float(np.abs(read_image(p)[0] - read_image(q)[0]).max()))
            return worst

        crop, two_crop = crop_diff("chunked"), crop_diff("twopass")
        rows = [["single run (baseline)", f"{single_s:.1f}", "1.00", "-", "-"],
                [f"{len(spans)} chunks x {size} frames, handles {args.handles}, no analysis pass", f"{chunks_s:.1f}",
                 f"{chunks_s / single_s:.2f}", f"{chunk_diff:.3f}", f"{crop:.4f}"],
                [f"analysis pass + {len(spans)} chunks (`run --chunk {size}`): pass {job['analysis_s']:.1f} s",
                 f"{twopass_s:.1f}", f"{twopass_s / single_s:.2f}", f"{two_diff:.3g}", f"{two_crop:.3g}"],
                ["merge of the chunks' exports (shared cache)", f"{merge_s:.1f}", f"{merge_s / single_s:.3f}",
                 f"{merged_diff:.3g} (tracking.json {'identical' if merged == single else 'DIFFERS'})", "-"]]
        out = [f"## Chunks with handles vs a single run ({args.frames} frames of {Path(args.video).name}, "
               f"analyse-shot template)", "", machine(), "",
               table(["run", "wall s", "ratio", "max landmark diff (px, own frames)", "max crop diff (linear)"], rows),
               "", f"Per chunk: {', '.join(f'{s:.1f}' for s in per_chunk)} s (each loads its models); convert of the "
               f"shot to EXR {convert_s:.1f} s (not counted). Without the analysis pass a chunk whose shot is not all "
               "in the cache yet smooths over its frames and handles only, so its frames differ from the single "
               "run's; after the pass every chunk tracks and smooths the whole shot from the cache and equals the "
               "single run; the merged export is the single run's either way."]
        return "\n".join(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
