"""ONNX export of every network facegraph runs in torch, so TensorRT (and any ONNX runtime) can take them.

Which networks: every registry model whose ``runtime`` is ``tflite`` (MediaPipe graphs ported to torch by
:mod:`.tflite_torch`) or ``torch`` (a state dict loaded into a torch module), and whose family facegraph can
run (:data:`.loader.WRAPPERS`); read from the registry, never listed here. A registry file that is a
MediaPipe ``.task`` bundle holds more than one network: its mesh (part ``""``) and its blendshape head (part
``"blendshapes"``); :func:`parts` says which parts a model id has.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the default and maintained path
of torch 2.13. Measured on these graphs it gives clean ONNX: Conv / PRelu / Transpose / Pad / MaxPool and a
few Reshapes (BlazeFace full: 322 nodes), where the deprecated TorchScript exporter (``dynamo=False``) left the
SAME-padding arithmetic in the graph as Shape / Gather / Cast / Constant chains (BlazeFace full: 1262 nodes)
and failed outright on BlazeFace short (its max-pool padding is computed from traced sizes). The dynamo
exporter's lowest implemented opset is 18 (asking 17 makes it convert down, and onnx has no Pad adapter to
17), so the default opset is 18 (onnxruntime >= 1.14 and TensorRT >= 8.6 read it).

Layout: a TFLite network keeps TFLite's layout, NHWC float32 (what :class:`.tflite_torch.TFLiteModule`
takes), with batch generalised from 1 to B; the 3DDFA_V2 network takes NCHW. Axis 0 of every input and
output is the dynamic ``batch`` axis. Each file carries metadata (``metadata_props``): the model id, part,
layout, the registry's input contract and the sha256 of the source weights.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.errors import InputError, ModelError, ModelNotFoundError
from .registry import ModelSpec, registry

log = logging.getLogger(__name__)

#: the dynamo exporter's lowest opset (torch/onnx/_internal/exporter/_compat.py warns and converts below it)
DEFAULT_OPSET = 18

#: runtimes whose networks run in torch (registry.yaml "runtime": tflite = ported to torch, torch = state dict)
TORCH_RUNTIMES = ("tflite", "torch")

#: .task bundle members, by part name; the member names are MediaPipe's (face_landmarker.task, the same names
#: models/landmarkers.py MediaPipeMesh loads)
TASK_PARTS = {"": "face_landmarks_detector.tflite", "blendshapes": "face_blendshapes.tflite"}

#: the largest batch the dynamic axis declares (a bound for torch.export; ONNX itself keeps it symbolic)
MAX_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class Network:
    """One exportable torch network: ``module(x) -> tuple of tensors``; ``item_shape`` is the input shape
    without the batch axis; names are the ONNX input / output names."""

    model_id: str
    part: str
    module: torch.nn.Module
    item_shape: tuple[int, ...]
    layout: str
    input_name: str
    output_names: tuple[str, ...]
    source_sha256: str


def exportable_ids() -> list[str]:
    """Registry ids of the networks that run in torch (runtime tflite / torch, a family facegraph runs)."""
    from .loader import WRAPPERS

    return [s.id for s in registry() if s.runtime in TORCH_RUNTIMES and s.family in WRAPPERS]


def _spec(model_id: str) -> ModelSpec:
    if model_id not in exportable_ids():
        raise InputError(f"model_id {model_id!r} is not a torch-ported network",
                         hint=f"export one of {exportable_ids()}; ONNX models are already ONNX files")
    return registry().get(model_id)


def parts(model_id: str) -> tuple[str, ...]:
    """The parts (networks) of a model id: ``("",)``, or ``("", "blendshapes")`` for a ``.task`` bundle."""
    spec = _spec(model_id)
    return tuple(TASK_PARTS) if spec.files[0].path.endswith(".task") else ("",)


def _names(raw: Sequence[str]) -> tuple[str, ...]:
    """ONNX output names ``out<i>_<TFLite tensor name>`` ([A-Za-z0-9_]): the index keeps them unique and
    apart from the exporter's own value names (a bare TFLite name such as ``conv2d_31`` collides with them)."""
    return tuple(f"out{i}_" + (re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "tensor")
                 for i, name in enumerate(raw))


class _TFLiteNet(torch.nn.Module):
    """A :class:`TFLiteModule` with one input and tuple outputs. Where the TFLite graph ends in a
    STRIDED_SLICE that drops axis 0 of a batch-1 tensor (the blendshape head: (1, 52) -> (52,)), that last
    slice keeps axis 0 instead, so the network batches: (B, 52). Every other axis is sliced as TFLite does."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module
        self._keep: dict[int, tuple[int, tuple]] = {}  # output tensor -> (input tensor, slices of axes 1..)
        producers = {op.outputs[0]: (op, k) for k, op in enumerate(module.graph.operators)}
        for out in module.graph.outputs:
            op, _ = producers.get(out, (None, None))
            if op is None or op.op != "STRIDED_SLICE":
                continue
            o = op.options
            bm, em, elm, nam, sam = (o.scalar(i, "i") for i in range(5))
            src_shape = module.graph.tensors[op.inputs[0]].shape
            if elm or nam or not sam & 1 or not src_shape or src_shape[0] != 1:
                continue
            begin, end, strides = (module._c(i).numpy().astype(int) for i in op.inputs[1:4])
            idx: list[Any] = [slice(None)]
            for d in range(1, len(begin)):
                if sam >> d & 1:
                    idx.append(int(begin[d]))
                else:
                    idx.append(slice(None if bm >> d & 1 else int(begin[d]),
                                     None if em >> d & 1 else int(end[d]), int(strides[d])))
            self._keep[out] = (op.inputs[0], tuple(idx))
        last = {producers[o][1] for o in self._keep}
        self._steps = [s for k, s in enumerate(module._steps) if k not in last]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.module
        env: dict[int, torch.Tensor] = {m.graph.inputs[0]: x}
        for fn, ins, outs in self._steps:
            args = [None if i < 0 else (env[i] if i in env else m._c(i)) for i in ins]
            while args and args[-1] is None:
                args.pop()
            env[outs[0]] = fn(*args)
        res = []
        for o in m.graph.outputs:
            if o in self._keep:
                src, idx = self._keep[o]
                res.append(env[src][idx])
            else:
                res.append(env[o] if o in env else m._c(o))
        return tuple(res)


class _TDDFANet(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params, lm = self.net(x)
        return params, lm


def _resolve(spec: ModelSpec, store):
    from .store import default_store

    return (store if store is not None else default_store()).resolve(spec)


def torch_network(model_id: str, part: str = "", *, store=None) -> Network:
    """The torch network of ``model_id`` (and ``part``, see :func:`parts`), loaded from verified files, in
    eval mode on the CPU, as it is exported.

    Convention: TFLite networks take NHWC float32 in their registry input range; 3DDFA_V2 takes NCHW
    float32 BGR (x - 127.5) / 128, 120 x 120. Outputs are a tuple in the source graph's order."""
    spec = _spec(model_id)
    if part not in parts(model_id):
        raise InputError(f"part {part!r} is not a part of {model_id}", hint=f"use one of {parts(model_id)}")
    resolved = _resolve(spec, store)
    primary = spec.files[0]
    sha = (resolved.spec.files[0].sha256 or "")
    if spec.runtime == "tflite":
        from .tflite_torch import TFLiteModule

        path = resolved.path(Path(primary.path).suffix)
        member = TASK_PARTS[part] if path.suffix == ".task" else None
        if member is not None:
            with zipfile.ZipFile(path) as z:
                if member not in z.namelist():
                    raise ModelError(f"{path.name} has no member {member}", model=model_id)
        mod = TFLiteModule.from_file(path, member)
        g = mod.graph
        if len(g.inputs) != 1:
            raise ModelError(f"{model_id}: exporting networks with {len(g.inputs)} inputs is not supported",
                             model=model_id)
        outs = _names([g.tensors[i].name for i in g.outputs])
        return Network(model_id, part, _TFLiteNet(mod).eval(), tuple(mod.input_shapes[0][1:]), "NHWC",
                       "input", outs, sha)
    if spec.family == "tddfa":
        from .tddfa_net import MobileNetV1

        net = MobileNetV1.from_checkpoint(resolved.path(".pth"))
        size = int(spec.contract("size", [120, 120])[0])
        return Network(model_id, part, _TDDFANet(net).eval(), (3, size, size), "NCHW", "input",
                       ("out0_params", "out1_landmarks"), sha)
    raise ModelError(f"no torch network builder for family {spec.family!r}", model=model_id)


def example_input(network: Network, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A fixed random input of ``batch`` items in the network's input range (registry contract): images
    uniform in [0, 1) for "0-1", in [-1, 1) for "-1..1" and (x-127.5)/128; blendshape points (the landmark
    subset in frame pixels) uniform in [0, 256)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *network.item_shape), generator=gen)
    if network.part == "blendshapes":
        return x * 256.0
    rng = str(registry().get(network.model_id).contract("range", "0-1"))
    return x * 2.0 - 1.0 if ("-1" in rng or "127.5" in rng) else x


def _batch_arg(batch: str | int) -> int | None:
    if str(batch) == "dynamic":
        return None
    try:
        n = int(batch)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise InputError(f"batch {batch!r} must be 'dynamic' or a positive integer",
                         hint="batch='dynamic' exports a dynamic axis 0; an integer fixes it (static TensorRT)")
    return n


def export_onnx(model_id: str, out_path: str | Path, *, opset: int = DEFAULT_OPSET, batch: str = "dynamic",
                part: str = "", store=None) -> Path:
    """Export the torch network of ``model_id`` (``part``: see :func:`parts`) to an ONNX file.

    ``batch="dynamic"`` makes axis 0 of the input and of every output a symbolic ``batch`` axis; a positive
    integer (``"8"`` or ``8``) fixes it. ``opset`` >= 18 (the dynamo exporter's lowest). The file is
    self-contained (weights inside), checked with ``onnx.checker``, and carries facegraph metadata. Parent
    folders are created. Needs the ``onnx`` and ``onnxscript`` packages.

    Convention: the ONNX graph takes the same tensor as the torch network (see :func:`torch_network`) and
    returns the same outputs, in order, named after the source graph's tensors."""
    if int(opset) < DEFAULT_OPSET:
        raise InputError(f"opset {opset} is below {DEFAULT_OPSET}, the lowest the torch.onnx (dynamo) exporter "
                         "writes", hint=f"use opset >= {DEFAULT_OPSET}")
    fixed = _batch_arg(batch)
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it; fail here with a clear message)
    except ImportError as exc:
        raise ModelError(f"ONNX export needs the onnx and onnxscript packages ({exc})",
                         hint="pip install 'facegraph[onnx]' (or: pip install onnx onnxscript)") from None
    net = torch_network(model_id, part, store=store)
    x = example_input(net, fixed or 2)
    dynamic = None if fixed else ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")  # its opset / torchvision notices are not the user's concern
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(net.module, (x,), dynamo=True, opset_version=int(opset),
                                     input_names=[net.input_name], output_names=list(net.output_names),
                                     dynamic_shapes=dynamic, optimize=True, verbose=False)
        prog.save(str(out_path), external_data=False)
    except Exception as exc:
        raise ModelError(f"ONNX export of {model_id}{':' + part if part else ''} failed: {exc}",
                         model=model_id) from None
    finally:
        quiet.setLevel(level)
    model = onnx.load(str(out_path))
    spec = registry().get(model_id)
    meta = {"facegraph.model_id": model_id, "facegraph.part": part, "facegraph.layout": net.layout,
            "facegraph.input_contract": repr(dict(spec.input)), "facegraph.source_sha256": net.source_sha256,
            "facegraph.licence": spec.licence}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    log.info("exported %s%s to %s (opset %d, batch %s)", model_id, ":" + part if part else "", out_path,
             opset, batch)
    return out_path


def file_name(model_id: str, part: str = "") -> str:
    """The file name :func:`export_all` gives a network: ``<model_id>[.<part>].onnx``."""
    return f"{model_id}{'.' + part if part else ''}.onnx"


def export_all(out_dir: str | Path, *, opset: int = DEFAULT_OPSET, batch: str = "dynamic",
               store=None) -> list[Path]:
    """Export every part of every torch-ported network (:func:`exportable_ids`) into ``out_dir`` as
    :func:`file_name` files; returns their paths. A model whose files cannot be found is skipped with a
    logged reason; an export failure raises."""
    out: list[Path] = []
    for model_id in exportable_ids():
        for part in parts(model_id):
            try:
                out.append(export_onnx(model_id, Path(out_dir) / file_name(model_id, part), opset=opset,
                                       batch=batch, part=part, store=store))
            except ModelNotFoundError as exc:
                log.warning("skipping %s: %s", model_id, exc)
                break
    return out


def onnx_outputs(network: Network, path: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """Run an exported file on onnxruntime's CPU provider (one thread per core): outputs for input ``x``."""
    from .onnx_runtime import create_session

    sess = create_session(path, device="cpu")
    return sess.run(list(network.output_names), {network.input_name: np.ascontiguousarray(x, np.float32)})
