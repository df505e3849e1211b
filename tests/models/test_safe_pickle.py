import collections
import os
import pickle
import struct
import time

import numpy as np
import pytest

from facegraph.core.errors import ModelError
from facegraph.models.safe_pickle import PickleLimits, load_arrays

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own _reconstruct, whatever module numpy keeps it in


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Reduce:
    """Pickles as ``fn(*args)`` (then ``__setstate__(state)``): hand-made pickles of numpy's own globals."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _write(tmp_path, data: bytes, name="x.pkl"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _refused(p, match, limits=PickleLimits()):
    """load_arrays(p) raises a ModelError matching ``match`` that names the file, in well under a second."""
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match=match) as exc:
        load_arrays(p, limits)
    assert time.perf_counter() - t0 < 1.0
    assert str(p) in str(exc.value)
    return exc.value


def test_numpy_arrays_load(tmp_path):
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps({"mean": np.arange(3, dtype=np.float32), "n": [np.int64(2)]}))
    d = load_arrays(p)
    assert np.array_equal(d["mean"], [0, 1, 2])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_round_trips(tmp_path, protocol):
    obj = collections.OrderedDict(
        a=np.arange(6, dtype=">f8").reshape(2, 3), f=np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        s=np.array(["ab", "c"]), e=np.zeros((0, 3), np.float32), c=np.complex64(1 + 2j),
        t=(1, 2.5, "x", b"y", b"", None, True))
    back = load_arrays(_write(tmp_path, pickle.dumps(obj, protocol=protocol)))
    assert type(back) is collections.OrderedDict and list(back) == list(obj)
    for k in "afse":
        assert back[k].dtype == obj[k].dtype and np.array_equal(back[k], obj[k])
        assert back[k].flags.f_contiguous == obj[k].flags.f_contiguous and back[k].flags.writeable
    assert back["c"] == obj["c"] and type(back["c"]) is np.complex64 and back["t"] == obj["t"]


def test_code_is_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelError, match="refusing to unpickle posix.system|refusing to unpickle os.system"):
        load_arrays(p)


def test_garbage_is_a_model_error(tmp_path):
    p = tmp_path / "g.pkl"
    p.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ModelError, match="cannot read"):
        load_arrays(p)


def test_missing_file_is_a_model_error(tmp_path):
    _refused(tmp_path / "nope.pkl", "cannot read")


def test_deep_nesting_is_bounded(tmp_path):
    def nested(n):  # n EMPTY_LISTs, then n-1 APPENDs: n lists each inside the previous (pickle.dumps would recurse)
        return b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."

    x = load_arrays(_write(tmp_path, nested(64)))
    for _ in range(63):
        x = x[0]
    assert x == []
    _refused(_write(tmp_path, nested(65)), "deeper than 64")
    _refused(_write(tmp_path, nested(50_000)), "deeper than 64")  # was RecursionError


def test_container_inside_itself_is_refused(tmp_path):
    loop = []
    loop.append(loop)
    _refused(_write(tmp_path, pickle.dumps(loop)), "contains itself")  # was RecursionError
    d = {}
    d["me"] = [d]
    _refused(_write(tmp_path, pickle.dumps(d)), "contains itself")


@pytest.mark.parametrize("fan_out, levels", [(2, 60), (50, 40)])
def test_shared_references_are_checked_once(tmp_path, fan_out, levels):
    x = [np.zeros(2)]
    for _ in range(levels):
        x = [x] * fan_out  # a DAG: fan_out ** levels paths, levels + 1 distinct lists (was an exponential walk)
    t0 = time.perf_counter()
    back = load_arrays(_write(tmp_path, pickle.dumps(x, protocol=4)))
    assert time.perf_counter() - t0 < 1.0
    assert back[0] is back[-1] and len(back) == fan_out  # sharing survives


def test_node_count_is_bounded(tmp_path):
    p = _write(tmp_path, pickle.dumps([[1, 2]] * 3 + [[3, 4]], protocol=4))
    _refused(p, "more than 5 values", PickleLimits(max_nodes=5))


def test_memo_index_bomb_is_refused_before_unpickling(tmp_path):
    # CPython sizes its memo table from the index: this 9-byte pickle made it allocate and clear 1 GiB (2.6 s);
    # with 0xFFFFFFFF it asks for 64 GiB.
    for index in (2**26, 2**32 - 1):
        _refused(_write(tmp_path, b"\x80\x02Nr" + struct.pack("<I", index) + b"."), "memo index")


def test_opcode_count_is_bounded(tmp_path):
    _refused(_write(tmp_path, b"\x80\x02" + b"N" * 1000 + b"."), "more than 100 opcodes", PickleLimits(max_opcodes=100))


def test_file_size_is_bounded(tmp_path):
    p = _write(tmp_path, pickle.dumps(np.zeros(1000)))
    _refused(p, r"bytes, more than the 1000 allowed", PickleLimits(max_bytes=1000))


def test_length_fields_beyond_the_file_are_truncation(tmp_path):
    # BINBYTES8 / BYTEARRAY8 claiming 1 TB: refused by the opcode scan, nothing allocated
    for op in (b"\x8e", b"\x96"):
        _refused(_write(tmp_path, b"\x80\x05" + op + struct.pack("<Q", 2**40) + b"abc."), "cannot read")


def test_array_claiming_a_huge_shape_is_refused(tmp_path):
    # zero-size items: the data length (0) cannot bound the element count; the old loader returned the array
    huge = _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**12,), np.dtype("S0"), False, b""))
    _refused(_write(tmp_path, pickle.dumps(huge)), "zero-size|more than the")
    big = _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype("f8"), False, b"abc"))
    _refused(_write(tmp_path, pickle.dumps(big)), "1000000000 elements, more than the 67108864 allowed")
    short = _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (100,), np.dtype("f8"), False, b"abc"))
    _refused(_write(tmp_path, pickle.dumps(short)), "needs 800 bytes, the pickle has 3")
    # calling numpy.ndarray directly allocated (2**30,) uninitialised bytes and returned them
    _refused(_write(tmp_path, pickle.dumps(_Reduce(np.ndarray, ((2**30,), "u1")))), "numpy.ndarray may not be called")
    # a _reconstruct without its data
    _refused(_write(tmp_path, pickle.dumps(_Reduce(_RECONSTRUCT, (np.ndarray, (2**30,), b"b")))), "without its data")


def test_object_and_structured_arrays_are_refused(tmp_path):
    _refused(_write(tmp_path, pickle.dumps(np.array([1, "a"], dtype=object))), "refusing numpy dtype")
    _refused(_write(tmp_path, pickle.dumps(np.zeros(2, [("x", "f4"), ("y", "i2")]))), "only plain dtypes|refusing")


def test_globals_take_no_state(tmp_path):
    # BUILD on an allowed global would set attributes on what later loads see
    data = b"\x80\x02cnumpy\ndtype\nN}\x8c\x01x\x8c\x01ys\x86b."  # BUILD(dtype, (None, {"x": "y"}))
    _refused(_write(tmp_path, data), "cannot be given a state")
    assert load_arrays(_write(tmp_path, pickle.dumps(np.float32(1.5), protocol=2))) == np.float32(1.5)


@pytest.mark.shared
def test_real_3ddfa_pickles(mirror):
    d = load_arrays(mirror / "3ddfa_v2" / "param_mean_std_62d_120x120.pkl")
    assert d["mean"].shape == (62,) and d["std"].dtype == np.float32
    tri = load_arrays(mirror / "3ddfa_v2" / "tri.pkl")
    assert tri.shape == (3, 76073)
    with open(mirror / "3ddfa_v2" / "tri.pkl", "rb") as f:
        assert np.array_equal(tri, pickle.load(f))  # trusted file: the stdlib unpickler as the reference
