"""Torch CPU vs onnxruntime CPU on the exported ONNX files, for every torch-ported network: ms per item at
batch 1 and 8, same process, same fixed random input, candidates timed alternately (bench.common.interleaved).

torch: as facegraph runs the network (TFLite ports through a frozen TorchScript trace, TFLiteModule.run's
path; 3DDFA_V2 eagerly, as models/landmarkers.py TDDFA does), under inference_mode; torch eager is shown too.
onnxruntime: models/onnx_runtime.create_session on the CPU (graph optimisation ALL, spinning off). Both at
2 threads. Ratio = onnxruntime / torch as facegraph runs it (below 1: onnxruntime is faster).

    .venv/bin/python -c "import bench.onnx_export as b; print(b.main([]))"
    options: --onnx-dir DIR (reuse / keep exported files), --models ID,ID, --rounds N
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from facegraph.models import onnx_export as oe
from facegraph.models.onnx_runtime import create_session
from facegraph.models.registry import registry

from .common import SHARED, interleaved, machine, table

THREADS = 2
BATCHES = (1, 8)


def _traced(module: torch.nn.Module, x: torch.Tensor):
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(module, (x,), check_trace=False, strict=False).eval())


def main(argv: list[str]) -> str:
    ap = argparse.ArgumentParser(prog="bench.onnx_export")
    ap.add_argument("--onnx-dir", default="", help="where exported files are kept (reused when present)")
    ap.add_argument("--models", default="", help="comma-separated model ids (default: every exportable one)")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    torch.set_num_threads(THREADS)
    ids = [m for m in args.models.split(",") if m] or oe.exportable_ids()
    tmp = None if args.onnx_dir else tempfile.TemporaryDirectory(prefix="facegraph-onnx-bench-")
    out_dir = Path(args.onnx_dir or tmp.name)
    rows, exports = [], []
    for model_id in ids:
        for part in oe.parts(model_id):
            name = oe.file_name(model_id, part)
            path = out_dir / name
            if not path.is_file():
                t0 = time.perf_counter()
                oe.export_onnx(model_id, path, part=part)
                exports.append([name, f"{time.perf_counter() - t0:.1f}"])
            net = oe.torch_network(model_id, part)
            sess = create_session(path, device="cpu", threads=THREADS)
            facegraph_traces = registry().get(model_id).runtime == "tflite"
            for batch in BATCHES:
                x = oe.example_input(net, batch)
                xn = np.ascontiguousarray(x.numpy())
                traced = _traced(net.module, x)

                def eager(x=x):
                    with torch.inference_mode():
                        return net.module(x)

                def trace(x=x, traced=traced):
                    with torch.inference_mode():
                        return traced(x)

                def onnx(xn=xn):
                    return sess.run(None, {net.input_name: xn})

                t = interleaved({"eager": eager, "traced": trace, "ort": onnx}, rounds=args.rounds, warmup=3)
                base = t["traced"] if facegraph_traces else t["eager"]
                ms = {k: v * 1e3 / batch for k, v in t.items()}
                rows.append([name.removesuffix(".onnx"), batch, f"{ms['eager']:.2f}", f"{ms['traced']:.2f}",
                             "traced" if facegraph_traces else "eager", f"{ms['ort']:.2f}",
                             f"{t['ort'] / base:.2f}"])
    if tmp is not None:
        tmp.cleanup()
    report = [f"## ONNX export: torch CPU vs onnxruntime CPU ({THREADS} threads)", "",
              f"Machine: {machine()}", "",
              table(["network", "batch", "torch eager ms/item", "torch traced ms/item", "facegraph runs",
                     "ORT CPU ms/item", "ratio ORT / facegraph torch"], rows)]
    if exports:
        report += ["", "Export time (torch.onnx dynamo exporter, dynamic batch), s:", "",
                   table(["file", "s"], exports)]
    return "\n".join(report)


if __name__ == "__main__":  # pragma: no cover
    print(main([]))
