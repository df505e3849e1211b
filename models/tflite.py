"""Read TFLite flatbuffers into plain numpy data, without TensorFlow.

A minimal FlatBuffers table reader plus the slice of the TFLite schema (tensorflow/lite/schema/schema.fbs)
that the MediaPipe face models use: Model, SubGraph, Tensor (with float16 buffers and block-sparse weights),
Operator with its builtin options, and Buffer. Field numbers follow the schema's declaration order; a union
takes two slots (its type, then its value). Only parsing happens here; execution is ``tflite_torch``.
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from ..core.errors import ModelError

# BuiltinOperator codes (schema.fbs enum BuiltinOperator)
OPS = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM",
    34: "PAD", 36: "GATHER", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE",
    45: "STRIDED_SLICE", 47: "EXP", 53: "CAST", 54: "PRELU", 55: "MAXIMUM", 57: "MINIMUM", 59: "NEG",
    60: "PADV2", 65: "SLICE", 67: "TRANSPOSE_CONV", 70: "EXPAND_DIMS", 74: "SUM", 75: "SQRT", 76: "RSQRT",
    83: "PACK", 92: "SQUARE", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE",
    117: "HARD_SWISH", 124: "DENSIFY", 126: "BATCH_MATMUL",
}
# TensorType (schema.fbs enum TensorType)
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
          9: np.int8, 10: np.float64}


class _Table:
    """A FlatBuffers table: a vtable of field offsets, read lazily."""

    __slots__ = ("buf", "pos", "vt", "vlen")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vlen = struct.unpack_from("<H", buf, self.vt)[0]

    def _off(self, field: int) -> int:
        o = 4 + 2 * field
        return 0 if o >= self.vlen else struct.unpack_from("<H", self.buf, self.vt + o)[0]

    def scalar(self, field: int, fmt: str, default=0):
        o = self._off(field)
        return default if not o else struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0]

    def table(self, field: int) -> "_Table | None":
        o = self._off(field)
        if not o:
            return None
        p = self.pos + o
        return _Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0])

    def _vector(self, field: int) -> tuple[int, int] | None:
        o = self._off(field)
        if not o:
            return None
        p = self.pos + o
        p += struct.unpack_from("<I", self.buf, p)[0]
        return p + 4, struct.unpack_from("<I", self.buf, p)[0]

    def tables(self, field: int) -> list["_Table"]:
        v = self._vector(field)
        if v is None:
            return []
        start, n = v
        return [_Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0])
                for i in range(n)]

    def array(self, field: int, dtype) -> np.ndarray | None:
        v = self._vector(field)
        if v is None:
            return None
        start, n = v
        return np.frombuffer(self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=start)

    def string(self, field: int) -> str | None:
        v = self._vector(field)
        return None if v is None else bytes(self.buf[v[0]: v[0] + v[1]]).decode("utf-8", "replace")


@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    data: np.ndarray | None          # constant data (dense, in its stored dtype), else None
    sparsity: dict | None = None     # block-sparse constants: traversal order, block map, dim metadata


@dataclasses.dataclass
class Operator:
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: _Table | None
    custom: str | None = None


@dataclasses.dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


def _sparsity(t: _Table) -> dict:
    dims = []
    for d in t.tables(2):
        fmt = d.scalar(0, "b")
        entry = {"format": "dense" if fmt == 0 else "csr", "dense_size": d.scalar(1, "i")}
        if fmt != 0:
            for name, type_field, value_field in (("segments", 2, 3), ("indices", 4, 5)):
                kind = d.scalar(type_field, "B")
                vec = d.table(value_field)
                dt = {1: np.int32, 2: np.uint16, 3: np.uint8}.get(kind)
                if vec is None or dt is None:
                    raise ModelError(f"unsupported sparse index vector type {kind}")
                entry[name] = vec.array(0, dt).astype(np.int64)
        dims.append(entry)
    return {"traversal_order": t.array(0, np.int32).tolist(),
            "block_map": (t.array(1, np.int32) if t.array(1, np.int32) is not None else np.zeros(0)).tolist(),
            "dim_metadata": dims}


def parse(data: bytes, where: str = "") -> Graph:
    """Parse a TFLite flatbuffer (main subgraph)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (no TFL3 identifier)", file=where or None)
    model = _Table(data, struct.unpack_from("<I", data, 0)[0])
    codes = []
    for oc in model.tables(1):
        code = max(oc.scalar(0, "b"), oc.scalar(3, "i"))  # deprecated_builtin_code / builtin_code
        codes.append((code, oc.string(1)))
    buffers = model.tables(4)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ModelError("TFLite model has no subgraph", file=where or None)
    sg = subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tables(0)):
        shape = tuple(int(v) for v in (t.array(0, np.int32) if t.array(0, np.int32) is not None else []))
        ttype = t.scalar(1, "b")
        dtype = DTYPES.get(ttype)
        if dtype is None:
            raise ModelError(f"tensor {t.string(3)!r} has unsupported type {ttype}", file=where or None)
        bidx = t.scalar(2, "I")
        const = None
        if 0 < bidx < len(buffers):
            raw = buffers[bidx].array(0, np.uint8)
            if raw is not None and raw.size:
                const = np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<"))
        sp = t.table(6)
        sparsity = _sparsity(sp) if sp is not None else None
        if const is not None and sparsity is None:
            const = const.reshape(shape) if shape else const.reshape(())
        tensors.append(Tensor(i, t.string(3) or f"t{i}", shape, dtype, const, sparsity))
    ops = []
    for op in sg.tables(3):
        code, custom = codes[op.scalar(0, "I")]
        name = OPS.get(code)
        if name is None:
            raise ModelError(f"unsupported TFLite builtin operator {code}", file=where or None)
        ins = tuple(int(v) for v in op.array(1, np.int32))
        outs = tuple(int(v) for v in op.array(2, np.int32))
        ops.append(Operator(name, ins, outs, op.table(4), custom))
    return Graph(tensors=tensors, operators=ops, inputs=tuple(int(v) for v in sg.array(1, np.int32)),
                 outputs=tuple(int(v) for v in sg.array(2, np.int32)), description=model.string(3) or "")


def read(path: str | Path, member: str | None = None) -> Graph:
    """Parse a .tflite file, or ``member`` of a MediaPipe ``.task`` bundle (a zip)."""
    path = Path(path)
    if member is not None:
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                data = z.read(member)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"cannot read {member} from the bundle: {exc}", file=str(path)) from None
        return parse(data, f"{path}:{member}")
    return parse(path.read_bytes(), str(path))


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: dict) -> np.ndarray:
    """Expand a TFLite sparse tensor (CSR levels with optional blocks, as in TFLite's FormatConverter) into a
    dense array of ``shape``. Vectorised over all stored values."""
    order = sparsity["traversal_order"]
    block_map = sparsity["block_map"]
    dims = sparsity["dim_metadata"]
    rank = len(shape)
    block_sizes = [dims[order.index(rank + j)]["dense_size"] for j in range(len(block_map))]
    pos = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for level, meta in enumerate(dims):
        if meta["format"] == "dense":
            n = meta["dense_size"]
            coords = [np.repeat(c, n) for c in coords]
            coords.append(np.tile(np.arange(n, dtype=np.int64), len(pos)))
            pos = (pos[:, None] * n + np.arange(n)[None, :]).ravel()
        else:
            seg, idx = meta["segments"], meta["indices"]
            counts = seg[pos + 1] - seg[pos]
            coords = [np.repeat(c, counts) for c in coords]
            starts = np.repeat(seg[pos], counts)
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = starts + within
            coords.append(idx[pos])
    expanded = [None] * len(order)
    for level, dim in enumerate(order):
        expanded[dim] = coords[level]
    orig = list(expanded[:rank])
    for j, b in enumerate(block_map):
        orig[b] = expanded[b] * block_sizes[j] + expanded[rank + j]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(orig)] = values[pos]
    return dense
