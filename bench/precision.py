"""fp32 vs fp16 vs bf16 for the torch-ported MediaPipe graphs (issue 11: "fp16 / bf16 where accuracy holds"):
landmark NME on the AFLW2000-3D dev set (200 faces, the protocol of plugin/evaluate.py: the set's boxes, the
mean of the three yaw bins) for the 478-point mesh alone and for the default chain (mesh, re-crop, iris patches),
each precision through the same torch port (``load_model(..., precision=)``). Run on this CPU, where half
precision is emulated and slow: the figure is the accuracy, which is a property of the weights and the dtype (a
GPU's fp16 kernels accumulate differently, so expect small differences there; no GPU was lent to measure them).

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python -c "import bench.precision as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from .common import DATA, SHARED, machine, table

PRECISIONS = ("fp32", "fp16", "bf16")


def main(argv: list[str]) -> str:
    from facegraph.plugin.evaluate import evaluate_landmarks

    ap = argparse.ArgumentParser(prog="bench.precision")
    ap.add_argument("--limit", type=int, default=0, help="only the first N faces (0: all 200)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    os.environ["FACEGRAPH_TFLITE_RUNTIME"] = "torch"  # fp32 through the same port as the half precisions
    rows = []
    for model, boxes in (("mediapipe_landmarker_v2", "given"), ("default-chain", "given")):
        ref = None
        for p in PRECISIONS:
            t = time.perf_counter()
            r = evaluate_landmarks(DATA / "aflw2000_dev", model, boxes, precision=p, limit=args.limit)
            s = time.perf_counter() - t
            m = r["mean_of_bins"] * 100
            ref = m if p == "fp32" else ref
            rows.append([model, p, f"{r['yaw_0_30'] * 100:.3f}", f"{r['yaw_30_60'] * 100:.3f}",
                         f"{r['yaw_60_90'] * 100:.3f}", f"**{m:.3f}**", f"{m - ref:+.3f}",
                         f"{r['failure_rate'] * 100:.1f} %", f"{s:.0f}"])
    return "\n".join(["## Precision of the torch-ported graphs: landmark NME, AFLW2000-3D dev set", "", machine(), "",
                      table(["model", "precision", "0-30 %", "30-60 %", "60-90 %", "mean of bins %",
                             "vs fp32 (NME % points)", "failures (> 8 %)", "s (CPU)"], rows)])
