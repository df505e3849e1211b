"""Run TFLite graphs as torch modules: MediaPipe's face models ported to torch from their flatbuffers.

Tensors keep TFLite's semantics (NHWC shapes, numpy broadcasting), so elementwise ops need no layout
bookkeeping. Spatial ops (convolutions, pooling, resizing) see NCHW *views* of the NHWC tensors
(``permute`` without a copy; torch runs them as channels-last), with TensorFlow's SAME padding reproduced
exactly (extra pixel at the bottom/right). Constant subgraphs (float16 DEQUANTIZE, DENSIFY of sparse weights)
are folded once at load. Weights become buffers, so ``.to(device)`` moves the whole model.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ModelError
from . import tflite

log = logging.getLogger(__name__)

_ACT = {0: None, 1: F.relu, 2: lambda x: torch.clamp(x, -1, 1), 3: lambda x: torch.clamp(x, 0, 6), 4: torch.tanh}


def _act(x: torch.Tensor, code: int) -> torch.Tensor:
    if code not in _ACT:
        raise ModelError(f"unsupported fused activation {code}")
    f = _ACT[code]
    return x if f is None else f(x)


def _same_pad(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """TensorFlow SAME padding: out = ceil(size / stride), the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dil + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _pad_spatial(x: torch.Tensor, k: tuple[int, int], stride: tuple[int, int], dil: tuple[int, int],
                 same: bool, value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """x NCHW -> (x padded where SAME padding is asymmetric, symmetric padding left for the op itself)."""
    if not same:
        return x, (0, 0)
    ph = _same_pad(x.shape[2], k[0], stride[0], dil[0])
    pw = _same_pad(x.shape[3], k[1], stride[1], dil[1])
    if ph[0] == ph[1] and pw[0] == pw[1]:
        return x, (ph[0], pw[0])  # the convolution pads symmetrically without a copy
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=value), (0, 0)


class TFLiteModule(torch.nn.Module):
    """A TFLite graph as a torch module: ``forward(x NHWC float) -> list of outputs`` (TFLite shapes, batch
    generalised from 1 to B)."""

    def __init__(self, graph: tflite.Graph, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.graph = graph
        self._consts: dict[int, torch.Tensor] = {}
        self._steps: list[tuple[Callable, tuple[int, ...], tuple[int, ...]]] = []
        self._traces: dict[tuple, Any] = {}
        self.input_shapes = [graph.tensors[i].shape for i in graph.inputs]
        self.output_shapes = [graph.tensors[i].shape for i in graph.outputs]
        for t in graph.tensors:
            if t.data is not None:
                data = t.data
                if t.sparsity is not None:
                    data = tflite.densify(np.asarray(data), t.shape, t.sparsity)
                self._consts[t.index] = torch.from_numpy(np.array(data))
        for op in graph.operators:
            if all(i < 0 or i in self._consts for i in op.inputs) and op.op in ("DEQUANTIZE", "DENSIFY"):
                self._consts[op.outputs[0]] = self._fold(op)
                continue
            self._steps.append((self._build(op), op.inputs, op.outputs))
        for idx, value in list(self._consts.items()):
            if value.dtype == torch.float16:
                value = value.float()
            self.register_buffer(f"c{idx}", value, persistent=False)
            self._consts[idx] = None  # resolved through the buffer, so .to() is honoured

    @classmethod
    def from_file(cls, path: str | Path, member: str | None = None, *, device: str = "cpu") -> "TFLiteModule":
        graph = tflite.read(path, member)
        mod = cls(graph, name=f"{Path(path).name}{':' + member if member else ''}").eval()
        return mod.to(device)

    def _c(self, idx: int) -> torch.Tensor:
        return getattr(self, f"c{idx}")

    def _fold(self, op: tflite.Operator) -> torch.Tensor:
        src = self._consts[op.inputs[0]]
        if op.op == "DENSIFY":
            return src  # sparse constants were densified when the tensors were read
        return src.float()

    # ---------------------------------------------------------------------------------------- builders
    def _build(self, op: tflite.Operator) -> Callable:
        b = getattr(self, f"_op_{op.op.lower()}", None)
        if b is None:
            raise ModelError(f"TFLite operator {op.op} ({op.custom or 'builtin'}) is not supported",
                             file=self.name or None)
        return b(op)

    def _const_np(self, idx: int) -> np.ndarray:
        v = self._consts.get(idx)
        if v is None:
            raise ModelError(f"operator needs a constant input (tensor {idx})", file=self.name or None)
        return v.numpy()

    def _op_conv_2d(self, op):
        o = op.options
        same, sw, sh, act = o.scalar(0, "b") == 0, o.scalar(1, "i"), o.scalar(2, "i"), o.scalar(3, "b")
        dw, dh = o.scalar(4, "i", 1), o.scalar(5, "i", 1)
        widx = op.inputs[1]
        # OHWI -> OIHW, stored channels-last (which is OHWI in memory: oneDNN takes it without a reorder)
        self._consts[widx] = self._consts[widx].float().permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)
        k = tuple(self._consts[widx].shape[2:])

        def run(x, w, bias=None):
            xp, pad = _pad_spatial(_nchw(x), k, (sh, sw), (dh, dw), same)
            return _act(_nhwc(F.conv2d(xp, w, bias, (sh, sw), pad, (dh, dw))), act)
        return run

    def _op_depthwise_conv_2d(self, op):
        o = op.options
        same, sw, sh, act = o.scalar(0, "b") == 0, o.scalar(1, "i"), o.scalar(2, "i"), o.scalar(4, "b")
        dw, dh = o.scalar(5, "i", 1), o.scalar(6, "i", 1)
        widx = op.inputs[1]
        w = self._consts[widx].float()                   # [1, H, W, C * mult]
        self._consts[widx] = w.permute(3, 0, 1, 2).contiguous(memory_format=torch.channels_last)
        k = tuple(w.shape[1:3])

        def run(x, w, bias=None):
            xp, pad = _pad_spatial(_nchw(x), k, (sh, sw), (dh, dw), same)
            return _act(_nhwc(F.conv2d(xp, w, bias, (sh, sw), pad, (dh, dw), groups=x.shape[3])), act)
        return run

    def _pool(self, op, kind):
        o = op.options
        same, sw, sh = o.scalar(0, "b") == 0, o.scalar(1, "i"), o.scalar(2, "i")
        fw, fh, act = o.scalar(3, "i"), o.scalar(4, "i"), o.scalar(5, "b")

        def run(x):
            xin = _nchw(x)
            if kind == "max":
                xp, pad = _pad_spatial(xin, (fh, fw), (sh, sw), (1, 1), same, value=float("-inf"))
                y = F.max_pool2d(xp, (fh, fw), (sh, sw), pad)
            else:  # TF average pooling excludes the padding from the count
                xp, pad = _pad_spatial(xin, (fh, fw), (sh, sw), (1, 1), same)
                ones, _ = _pad_spatial(torch.ones_like(xin[:, :1]), (fh, fw), (sh, sw), (1, 1), same)
                y = (F.avg_pool2d(xp, (fh, fw), (sh, sw), pad, count_include_pad=False) if xp is xin else
                     F.avg_pool2d(xp, (fh, fw), (sh, sw)) / F.avg_pool2d(ones, (fh, fw), (sh, sw)))
            return _act(_nhwc(y), act)
        return run

    def _op_max_pool_2d(self, op):
        return self._pool(op, "max")

    def _op_average_pool_2d(self, op):
        return self._pool(op, "avg")

    def _binary(self, op, f):
        act = op.options.scalar(0, "b") if op.options is not None else 0
        return lambda a, b: _act(f(a, b), act)

    def _op_add(self, op):
        return self._binary(op, torch.add)

    def _op_sub(self, op):
        return self._binary(op, torch.sub)

    def _op_mul(self, op):
        return self._binary(op, torch.mul)

    def _op_div(self, op):
        return self._binary(op, torch.div)

    def _op_maximum(self, op):
        return torch.maximum

    def _op_minimum(self, op):
        return torch.minimum

    def _op_squared_difference(self, op):
        return lambda a, b: (a - b) ** 2

    def _op_prelu(self, op):
        alpha = self._consts.get(op.inputs[1])
        if alpha is not None and alpha.numel() == alpha.shape[-1]:  # one slope per channel: fused kernel
            self._consts[op.inputs[1]] = alpha.float().reshape(-1)
            return lambda x, a: _nhwc(F.prelu(_nchw(x), a)) if x.dim() == 4 else F.prelu(x.movedim(-1, 1), a).movedim(1, -1)
        return lambda x, a: torch.where(x >= 0, x, x * a)

    def _op_relu(self, op):
        return F.relu

    def _op_relu6(self, op):
        return lambda x: torch.clamp(x, 0, 6)

    def _op_logistic(self, op):
        return torch.sigmoid

    def _op_tanh(self, op):
        return torch.tanh

    def _op_hard_swish(self, op):
        return lambda x: x * torch.clamp(x + 3, 0, 6) / 6

    def _op_leaky_relu(self, op):
        alpha = op.options.scalar(0, "f")
        return lambda x: F.leaky_relu(x, alpha)

    def _op_neg(self, op):
        return torch.neg

    def _op_sqrt(self, op):
        return torch.sqrt

    def _op_rsqrt(self, op):
        return torch.rsqrt

    def _op_exp(self, op):
        return torch.exp

    def _op_square(self, op):
        return torch.square

    def _op_pad(self, op):
        pads = self._const_np(op.inputs[1]).astype(int)
        flat = [int(v) for pair in pads[::-1] for v in pair]
        return lambda x, _p=None, _v=None: F.pad(x, flat)

    _op_padv2 = _op_pad

    def _op_reshape(self, op):
        if len(op.inputs) > 1 and op.inputs[1] in self._consts:
            shape = [int(v) for v in self._const_np(op.inputs[1])]
        else:
            shape = [int(v) for v in op.options.array(0, np.int32)]

        def run(x, _s=None):
            target = list(shape)
            if x.shape[0] != 1 and target and target[0] == 1:
                target[0] = x.shape[0]  # generalise the batch dimension
            return x.reshape(target)
        return run

    def _op_squeeze(self, op):
        dims = op.options.array(0, np.int32) if op.options is not None else None
        return lambda x: x.squeeze(tuple(int(d) for d in dims)) if dims is not None and len(dims) else x.squeeze()

    def _op_expand_dims(self, op):
        axis = int(self._const_np(op.inputs[1]).reshape(-1)[0])
        return lambda x, _a=None: x.unsqueeze(axis)

    def _op_concatenation(self, op):
        axis, act = op.options.scalar(0, "i"), op.options.scalar(1, "b")

        def run(*xs):
            rank = max(x.dim() for x in xs)
            batch = max(x.shape[0] for x in xs)
            xs = [x.expand(batch, *x.shape[1:]) if x.dim() == rank and x.shape[0] == 1 else x for x in xs]
            return _act(torch.cat(xs, axis), act)
        return run

    def _op_resize_bilinear(self, op):
        o = op.options
        align, half = (bool(o.scalar(2, "?")), bool(o.scalar(3, "?"))) if o is not None else (False, False)
        size = tuple(int(v) for v in self._const_np(op.inputs[1]))
        if not align and not half:
            raise ModelError("legacy (asymmetric) bilinear resize is not supported", file=self.name or None)
        return lambda x, _s=None: _nhwc(F.interpolate(_nchw(x), size=size, mode="bilinear", align_corners=align))

    def _op_depth_to_space(self, op):
        bs = op.options.scalar(0, "i")

        def run(x):
            n, h, w, c = x.shape
            return x.reshape(n, h, w, bs, bs, c // (bs * bs)).permute(0, 1, 3, 2, 4, 5).reshape(
                n, h * bs, w * bs, c // (bs * bs))
        return run

    def _op_fully_connected(self, op):
        o = op.options
        act = o.scalar(0, "b") if o is not None else 0
        keep = o.scalar(2, "?") if o is not None else False

        def run(x, w, b=None):
            y = x.reshape(-1, w.shape[1]) @ w.t()
            if b is not None:
                y = y + b
            if keep:
                y = y.reshape(*x.shape[:-1], w.shape[0])
            return _act(y, act)
        return run

    def _reduce(self, op, f):
        keep = op.options.scalar(0, "?") if op.options is not None else False
        axes = tuple(int(a) for a in self._const_np(op.inputs[1]).reshape(-1))
        return lambda x, _a=None: f(x, dim=axes, keepdim=keep)

    def _op_mean(self, op):
        return self._reduce(op, torch.mean)

    def _op_sum(self, op):
        return self._reduce(op, torch.sum)

    def _op_transpose(self, op):
        perm = tuple(int(v) for v in self._const_np(op.inputs[1]))
        return lambda x, _p=None: x.permute(perm)

    def _op_softmax(self, op):
        beta = op.options.scalar(0, "f", 1.0)
        return lambda x: torch.softmax(x * beta, dim=-1)

    def _op_strided_slice(self, op):
        o = op.options
        bm, em, elm, nam, sam = (o.scalar(i, "i") for i in range(5))
        if elm or nam:
            raise ModelError("strided slice with ellipsis/new-axis masks is not supported", file=self.name or None)
        begin, end, strides = (self._const_np(i).astype(int) for i in op.inputs[1:4])

        def run(x, *_):
            idx = []
            for d in range(len(begin)):
                if sam >> d & 1:
                    idx.append(int(begin[d]))
                    continue
                s = int(strides[d])
                b = None if bm >> d & 1 else int(begin[d])
                e = None if em >> d & 1 else int(end[d])
                idx.append(slice(b, e, s))
            return x[tuple(idx)]
        return run

    def _op_gather(self, op):
        axis = op.options.scalar(0, "i") if op.options is not None else 0
        return lambda x, i: torch.index_select(x, axis, i.long().reshape(-1)).reshape(
            *x.shape[:axis], *i.shape, *x.shape[axis + 1:])

    def _op_batch_matmul(self, op):
        o = op.options
        ax, ay = (o.scalar(0, "?"), o.scalar(1, "?")) if o is not None else (False, False)
        return lambda a, b: torch.matmul(a.transpose(-1, -2) if ax else a, b.transpose(-1, -2) if ay else b)

    def _op_cast(self, op):
        return lambda x: x.float()

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        env: dict[int, torch.Tensor] = dict(zip(self.graph.inputs, inputs))
        for fn, ins, outs in self._steps:
            args = [None if i < 0 else (env[i] if i in env else self._c(i)) for i in ins]
            while args and args[-1] is None:
                args.pop()
            env[outs[0]] = fn(*args)
        return [env[i] if i in env else self._c(i) for i in self.graph.outputs]

    @torch.inference_mode()
    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Forward through a frozen TorchScript trace made once per input shape (no Python per operator:
        2-3x faster on the CPU), falling back to eager execution if tracing fails."""
        key = tuple(tuple(x.shape) for x in inputs) + (str(inputs[0].device), str(inputs[0].dtype))
        traced = self._traces.get(key)
        if traced is None and key not in self._traces:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.freeze(torch.jit.trace(self, inputs, check_trace=False, strict=False).eval())
            except Exception as exc:  # pragma: no cover - depends on the torch build
                log.warning("tracing %s failed (%s); running eagerly", self.name, exc)
                traced = None
            self._traces[key] = traced
        return list(traced(*inputs) if traced is not None else self(*inputs))

    def run_numpy(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Run on numpy NHWC float32 inputs (cast to the weights' dtype: a module moved to fp16 / bf16 runs in
        it); returns numpy float32 outputs."""
        dev = next(iter(self.buffers())).device
        dt = next((b.dtype for b in self.buffers() if b.is_floating_point()), torch.float32)
        ts = [torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(dev, dtype=dt) for x in inputs]
        return [o.float().cpu().numpy() for o in self.run(*ts)]


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """A torch checkpoint read safely (``weights_only``): tensors and plain containers, no code."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load torch weights: {exc}", file=str(path)) from None
