"""Read pickled numpy arrays without executing arbitrary code, in bounded memory and time.

The 3DDFA configs ship as Python pickles. They are read only after their sha256 has been verified, and only
through an unpickler that runs nothing from the file: the globals a numpy pickle names (``_reconstruct``,
``ndarray``, ``dtype``, ``scalar``, ``OrderedDict``, ``_codecs.encode``) resolve to inert placeholders that
merely record their arguments. Only after the whole file has been read are those records checked and turned
into real arrays. Every failure raises :class:`~facegraph.core.errors.ModelError` naming the file.

Bounds (:class:`PickleLimits`), each checked before the work it guards:

* the file size, before it is read;
* the opcode stream, scanned with :func:`pickletools.genops` before anything is built: at most
  ``max_opcodes`` opcodes, memo indices no larger than the opcode count (CPython's unpickler sizes its memo
  table from the index it is given: a 9-byte pickle ``PROTO 2, NONE, LONG_BINPUT 0xFFFFFFFF, STOP`` asks it to
  allocate and clear 64 GiB), and none of the opcodes numpy never writes (persistent ids, extension codes,
  INST / OBJ / NEWOBJ, out-of-band buffers);
* the containers: at most ``max_depth`` levels and ``max_nodes`` visits, walked with a memo on ``id()`` so a
  shared sub-list is checked once (a 197-byte DAG of lists, each holding the previous one 50 times, is
  linear work, not 50**depth); a container inside itself is refused;
* every array: numeric, boolean or string dtype only (no object, void or structured dtypes), at most
  ``max_elements`` elements, and exactly ``elements * itemsize`` bytes of data present in the file.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelError

# Opcodes numpy's and the standard pickler's output of arrays, scalars and plain containers never contain.
_REFUSED_OPCODES = frozenset({
    "PERSID", "BINPERSID",                 # persistent ids: references to objects outside the file
    "EXT1", "EXT2", "EXT4",                # copyreg extension codes
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",  # class instantiation (numpy uses REDUCE)
    "NEXT_BUFFER", "READONLY_BUFFER",      # out-of-band buffers (protocol 5)
})
_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})

# dtype kinds an array from a model file may have: bool, signed / unsigned int, float, complex, bytes, str.
_ARRAY_KINDS = "biufcSU"


@dataclasses.dataclass(frozen=True)
class PickleLimits:
    """Bounds on one :func:`load_arrays` call.

    max_bytes: file size. The largest pickle facegraph loads, 3DDFA's tri.pkl, is 0.9 MB; 64 MiB leaves room.
    max_opcodes: opcodes in the stream; a numpy array costs about 20 (tri.pkl has 63), so 200 000 admits
        dicts of thousands of arrays while the scan stays under about 0.1 s (pickletools: ~0.5 us an opcode).
    max_depth: nesting of lists / tuples / dicts (the 3DDFA files have 1).
    max_nodes: container / value visits while checking.
    max_elements: elements of one array (2**26: a 64-megapixel float plane; also bounds zero-size dtypes,
        whose data length cannot).
    """

    max_bytes: int = 64 * 2**20
    max_opcodes: int = 200_000
    max_depth: int = 64
    max_nodes: int = 1_000_000
    max_elements: int = 2**26


# ------------------------------------------------------------------------------------------ placeholders
class _Global:
    """What an allowed global resolves to: a callable that builds an inert record. Its ``__setstate__``
    refuses, so a BUILD opcode cannot set attributes on it (and so on what later loads see)."""

    __slots__ = ("_name", "_build")

    def __init__(self, name: str, build: Any) -> None:
        self._name, self._build = name, build

    def __call__(self, *args: Any) -> Any:
        if self._build is None:
            raise ModelError(f"{self._name} may not be called in a pickle of arrays")
        return self._build(*args)

    def __setstate__(self, state: Any) -> None:
        raise ModelError(f"{self._name} cannot be given a state")

    def __repr__(self) -> str:
        return self._name


class _Pending:
    """Base of the inert records the unpickler builds; ``state`` is what BUILD passed to ``__setstate__``."""

    kind = "object"

    def __init__(self, args: tuple) -> None:
        self.args = args
        self.state: Any = None
        self.has_state = False

    def __setstate__(self, state: Any) -> None:
        if self.has_state:
            raise ModelError(f"a numpy {self.kind} is given its state twice")
        self.state, self.has_state = state, True


class _PendingDtype(_Pending):
    kind = "dtype"


class _PendingArray(_Pending):
    kind = "array"


class _PendingScalar(_Pending):
    kind = "scalar"


class _PendingBuffer(_Pending):
    kind = "array"  # protocol 5: _frombuffer(buffer, dtype, shape, order)


_NDARRAY = _Global("numpy.ndarray", None)  # only usable as _reconstruct's first argument, never called


def _reconstruct(subtype: Any = None, shape: Any = None, dtype: Any = None, *extra: Any) -> _PendingArray:
    if subtype is not _NDARRAY or extra:
        raise ModelError("numpy _reconstruct is only allowed to build a plain numpy.ndarray")
    return _PendingArray((shape, dtype))


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args:  # the pickler writes OrderedDict() and then its items
        raise ModelError("OrderedDict must be rebuilt from its items, not from constructor arguments")
    return collections.OrderedDict()


def _encode(text: Any = None, encoding: Any = None, *extra: Any) -> bytes:
    """Python 3's protocol-2 spelling of bytes: ``_codecs.encode(str, 'latin1')`` (same length as the text)."""
    if not isinstance(text, str) or encoding != "latin1" or extra:
        raise ModelError("_codecs.encode is only allowed as encode(text, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """Python 3's protocol-2 spelling of ``b''``: ``bytes()``."""
    if args:
        raise ModelError("bytes() is only allowed without arguments")
    return b""


_RECONSTRUCT = _Global("numpy _reconstruct", _reconstruct)
_FROMBUFFER = _Global("numpy _frombuffer", lambda *args: _PendingBuffer(args))
_BYTES = _Global("bytes", _empty_bytes)
_SCALAR = _Global("numpy scalar", lambda *args: _PendingScalar(args))
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Global("numpy.dtype", lambda *args: _PendingDtype(args)),
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("collections", "OrderedDict"): _Global("collections.OrderedDict", _ordered_dict),
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): _Global("_codecs.encode", _encode),
    ("builtins", "bytes"): _BYTES,
    ("__builtin__", "bytes"): _BYTES,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise ModelError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise ModelError("refusing a persistent id in a pickle of arrays")


# ----------------------------------------------------------------------------------------------- loading
def load_arrays(path: Path | str, limits: PickleLimits = PickleLimits()) -> Any:
    """Unpickle ``path`` admitting only numpy arrays, numpy scalars, numbers, strings, bytes, None, and
    dicts / OrderedDicts / lists / tuples of them, within ``limits``.

    Returns fresh containers and arrays (C-contiguous or Fortran as pickled, writeable) equal to what was
    pickled; a sub-container shared by several parents is rebuilt once and stays shared.
    Arrays: dtypes of kind bool, int, uint, float, complex, bytes or str only.
    Raises ModelError (naming the file) for a missing or oversized file, a malformed or truncated pickle,
    a refused global or opcode, a container nested deeper than ``limits.max_depth`` or inside itself, or an
    array that breaks the bounds above; the checks are made before the allocations they guard.
    """
    where = str(path)
    try:
        size = Path(path).stat().st_size
        if size > limits.max_bytes:
            raise ModelError(f"pickle is {size} bytes, more than the {limits.max_bytes} allowed", file=where)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read pickled arrays: {exc.strerror or exc}", file=where) from None
    if len(data) > limits.max_bytes:  # the file grew between stat and read
        raise ModelError(f"pickle is more than the {limits.max_bytes} bytes allowed", file=where)
    try:
        _scan_opcodes(data, limits)
        obj = _ArrayUnpickler(io.BytesIO(data)).load()
        return _Builder(limits).value(obj, 0)
    except ModelError as exc:
        raise exc.with_context(file=where)
    except Exception as exc:  # malformed pickle: anything the stdlib unpickler or numpy raised on it
        raise ModelError(f"cannot read pickled arrays: {type(exc).__name__}: {exc}", file=where) from None


def _scan_opcodes(data: bytes, limits: PickleLimits) -> None:
    """Walk the opcode stream without building anything (pickletools reads each argument from the bytes
    present, so a length field larger than the file fails here)."""
    count = 0
    for op, arg, pos in pickletools.genops(data):
        count += 1
        if count > limits.max_opcodes:
            raise ModelError(f"pickle has more than {limits.max_opcodes} opcodes")
        if op.name in _REFUSED_OPCODES:
            raise ModelError(f"refusing pickle opcode {op.name} at byte {pos}: numpy arrays never use it")
        if op.name in _PUT_OPCODES and not (isinstance(arg, int) and 0 <= arg < count):
            raise ModelError(f"pickle memo index {arg} at byte {pos} is out of range (a memory bomb?)")


class _Builder:
    """Checks the unpickled placeholders and containers and builds the real objects."""

    def __init__(self, limits: PickleLimits) -> None:
        self.limits = limits
        self.memo: dict[int, Any] = {}
        self.dtypes: dict[int, np.dtype] = {}
        self.active: set[int] = set()
        self.nodes = 0

    def value(self, obj: Any, depth: int) -> Any:
        """The checked, rebuilt ``obj``; ``depth``: how many containers enclose it."""
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise ModelError(f"pickle holds more than {self.limits.max_nodes} values")
        if obj is None or type(obj) in (bool, int, float, str, bytes):
            return obj
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        if depth >= self.limits.max_depth:
            raise ModelError(f"pickle nests containers deeper than {self.limits.max_depth} levels")
        if key in self.active:
            raise ModelError(f"a {type(obj).__name__} in the pickle contains itself")
        self.active.add(key)
        try:
            out = self._build(obj, depth)
        finally:
            self.active.discard(key)
        self.memo[key] = out
        return out

    def _build(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is _PendingArray:
            return self._array(obj)
        if t is _PendingBuffer:
            return self._from_buffer(obj)
        if t is _PendingScalar:
            return self._scalar(obj)
        if t is list:
            return [self.value(v, depth + 1) for v in obj]
        if t is tuple:
            return tuple(self.value(v, depth + 1) for v in obj)
        if t is dict or t is collections.OrderedDict:
            out = t()
            for k, v in obj.items():
                k = self.value(k, depth + 1)
                try:
                    hash(k)
                except TypeError:
                    raise ModelError(f"a dict key of type {type(k).__name__} in the pickle") from None
                out[k] = self.value(v, depth + 1)
            return out
        name = f"numpy {obj.kind}" if isinstance(obj, _Pending) else repr(obj) if t is _Global else t.__name__
        raise ModelError(f"unexpected object of type {name} in pickle")

    # ------------------------------------------------------------------------------------------ numpy
    def _dtype(self, obj: Any) -> np.dtype:
        if type(obj) is not _PendingDtype:
            raise ModelError(f"an array's dtype is a {type(obj).__name__}, not a numpy dtype")
        key = id(obj)
        if key in self.dtypes:
            return self.dtypes[key]
        args, state = obj.args, obj.state
        if not (1 <= len(args) <= 3 and isinstance(args[0], str) and all(type(a) in (bool, int) for a in args[1:])):
            raise ModelError(f"unexpected numpy dtype arguments {_short(args)}")
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags) for a plain dtype
        # (version 4 adds metadata); anything structured (subarray / names / fields) is refused below.
        if obj.has_state:
            if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                    and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                    and all(type(v) is int for v in state[5:8]) and (len(state) == 8 or state[8] is None)):
                raise ModelError(f"unexpected numpy dtype state {_short(state)} (only plain dtypes are allowed)")
        spec = _short(args[0], 40)
        try:
            dt = np.dtype(args[0], *(bool(a) for a in args[1:]))
            if dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
                raise ModelError(f"refusing numpy dtype {spec}: only numeric, bool and string arrays are allowed")
            if obj.has_state:
                dt.__setstate__(state)
            canon = np.dtype(dt.str)  # a dtype its own string rebuilds: no inconsistent itemsize / order
        except (TypeError, ValueError) as exc:
            raise ModelError(f"bad numpy dtype {spec}: {exc}") from None
        if canon != dt or canon.itemsize != dt.itemsize or canon.kind not in _ARRAY_KINDS:
            raise ModelError(f"inconsistent numpy dtype state for {spec}")
        if canon.itemsize == 0:
            raise ModelError(f"refusing zero-size numpy dtype {spec}")
        self.dtypes[key] = canon
        return canon

    def _array(self, obj: _PendingArray) -> np.ndarray:
        state = obj.state
        if not obj.has_state:
            raise ModelError("a numpy array without its data")
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise ModelError(f"unexpected numpy array state {_short(state)}")
        if len(state) == 5:
            if type(state[0]) is not int:
                raise ModelError(f"unexpected numpy array state version {_short(state[0])}")
            state = state[1:]
        shape, dtype, fortran, data = state
        if type(fortran) not in (bool, int):
            raise ModelError(f"bad numpy array order flag {_short(fortran)}")
        return self._make(shape, dtype, bool(fortran), data)

    def _from_buffer(self, obj: _PendingBuffer) -> np.ndarray:
        if obj.has_state or len(obj.args) != 4 or obj.args[3] not in ("C", "F"):
            raise ModelError(f"unexpected numpy _frombuffer arguments {_short(obj.args)}")
        data, dtype, shape, order = obj.args
        return self._make(shape, dtype, order == "F", bytes(data) if type(data) is bytearray else data)

    def _make(self, shape: Any, dtype: Any, fortran: bool, data: Any) -> np.ndarray:
        if not (isinstance(shape, tuple) and len(shape) <= 64 and all(type(n) is int and n >= 0 for n in shape)):
            raise ModelError(f"bad numpy array shape {_short(shape)}")
        count = math.prod(shape)
        if count > self.limits.max_elements:
            raise ModelError(f"numpy array of shape {shape} has {count} elements, more than the "
                             f"{self.limits.max_elements} allowed")
        dt = self._dtype(dtype)
        if type(data) is not bytes:
            raise ModelError(f"numpy array data is a {type(data).__name__}, not bytes")
        if len(data) != count * dt.itemsize:
            raise ModelError(f"numpy array of shape {shape} and dtype {dt} needs {count * dt.itemsize} bytes, "
                             f"the pickle has {len(data)}")
        flat = np.frombuffer(data, dtype=dt, count=count)
        return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")

    def _scalar(self, obj: _PendingScalar) -> np.generic:
        if obj.has_state or len(obj.args) != 2:
            raise ModelError(f"unexpected numpy scalar arguments {_short(obj.args)}")
        dt = self._dtype(obj.args[0])
        data = obj.args[1]
        if type(data) is not bytes or len(data) != dt.itemsize:
            raise ModelError(f"numpy scalar of dtype {dt} needs {dt.itemsize} bytes of data")
        return np.frombuffer(data, dtype=dt, count=1)[0]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
