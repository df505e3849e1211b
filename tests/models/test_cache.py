import gc
import threading
import time
import types
import weakref

import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.models.cache import CacheKey, ModelCache, model_bytes, parse_bytes, tensor_bytes, torch_modules


ops = torch.nn  # layers through a namespace, as the ported networks build theirs (README: comfy-test)


class _Closable:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_bounded_lru_and_release():
    cache = ModelCache(max_entries=2)
    objs = {}
    for name in "abc":
        objs[name] = cache.get(CacheKey(name), _Closable)
    assert [k.model_id for k in cache.keys()] == ["b", "c"]
    assert objs["a"].closed and not objs["b"].closed
    cache.get(CacheKey("b"), _Closable)  # touch b: c becomes the oldest
    cache.get(CacheKey("d"), _Closable)
    assert [k.model_id for k in cache.keys()] == ["b", "d"]


def test_key_includes_device_precision_runtime():
    cache = ModelCache(max_entries=8)
    a = cache.get(CacheKey("m", "cpu", "fp32", "onnx"), object)
    b = cache.get(CacheKey("m", "cuda:0", "fp32", "onnx"), object)
    c = cache.get(CacheKey("m", "cpu", "fp16", "onnx"), object)
    assert len({id(a), id(b), id(c)}) == 3
    assert cache.get(CacheKey("m", "cpu", "fp32", "onnx"), object) is a


def test_explicit_unload():
    cache = ModelCache(max_entries=8)
    x = cache.get(CacheKey("m", "cpu"), _Closable)
    cache.get(CacheKey("m", "cuda:0"), _Closable)
    cache.get(CacheKey("n"), _Closable)
    assert cache.unload("m") == 2 and x.closed
    assert [k.model_id for k in cache.keys()] == ["n"]
    assert cache.unload() == 1 and len(cache) == 0


def test_concurrent_gets_load_once():
    cache = ModelCache()
    calls = []

    def loader():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(CacheKey("m"), loader))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


# ------------------------------------------------------------------------------------------ memory budget
MIB = 1024 ** 2


class _Sized(_Closable):
    def __init__(self, nbytes):
        super().__init__()
        self.nbytes = nbytes

    def memory_bytes(self):
        return self.nbytes


def test_parse_bytes_reads_binary_multiples_and_refuses_nonsense():
    assert parse_bytes("2G") == 2 * 1024 ** 3 and parse_bytes("512M") == 512 * MIB
    assert parse_bytes("1.5g") == int(1.5 * 1024 ** 3) and parse_bytes("2GiB") == 2 * 1024 ** 3
    assert parse_bytes("800KB") == 800 * 1024 and parse_bytes(" 1048576 ") == MIB and parse_bytes(4096) == 4096
    assert parse_bytes(None) is None and parse_bytes("") is None and parse_bytes("0") is None
    for bad in ("lots", "2X", "-1G", "1G2"):
        with pytest.raises(InputError, match="FACEGRAPH_MODEL_MEMORY"):
            parse_bytes(bad)


def test_budget_evicts_least_recently_used_first():
    cache = ModelCache(max_entries=8, max_bytes="10M")
    a = cache.get(CacheKey("a"), lambda: _Sized(4 * MIB))
    cache.get(CacheKey("b"), lambda: _Sized(4 * MIB))
    cache.get(CacheKey("a"), lambda: _Sized(4 * MIB))  # touch a: b is now the oldest
    cache.get(CacheKey("c"), lambda: _Sized(4 * MIB))  # 12 MiB > 10 MiB: b goes
    assert [k.model_id for k in cache.keys()] == ["a", "c"] and cache.total_bytes == 8 * MIB
    assert not a.closed
    cache.get(CacheKey("d"), lambda: _Sized(7 * MIB))  # a and c go (oldest first) until 7 MiB fits
    assert [k.model_id for k in cache.keys()] == ["d"] and a.closed


def test_budget_keeps_the_model_just_loaded_even_when_it_alone_is_over(caplog):
    cache = ModelCache(max_entries=8, max_bytes="1M")
    cache.get(CacheKey("small"), lambda: _Sized(MIB // 2))
    big = cache.get(CacheKey("big"), lambda: _Sized(3 * MIB))
    assert [k.model_id for k in cache.keys()] == ["big"] and not big.closed
    assert any("over the model memory budget" in r.getMessage() for r in caplog.records)


def test_budget_from_the_environment_and_set_budget(monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODEL_MEMORY", "6M")
    cache = ModelCache(max_entries=8)
    assert cache.max_bytes == 6 * MIB
    for name in "abc":
        cache.get(CacheKey(name), lambda: _Sized(2 * MIB))
    assert len(cache) == 3
    assert cache.set_budget("3M") == 2 and [k.model_id for k in cache.keys()] == ["c"]
    assert cache.set_budget(None) == 0 and cache.max_bytes is None
    monkeypatch.setenv("FACEGRAPH_MODEL_MEMORY", "much")
    with pytest.raises(InputError):
        ModelCache()


class _TorchWrapper:
    """Shaped like facegraph's wrappers: torch modules as attributes, a device string."""

    def __init__(self):
        self.device = "cpu"
        self.net = ops.Linear(100, 10)            # 1010 float32 parameters
        self.parts = [ops.Conv2d(3, 8, 3), self.net]  # listed twice: counted once
        self.net.register_buffer("stats", torch.zeros(256))


def test_model_bytes_counts_torch_parameters_and_buffers_once():
    w = _TorchWrapper()
    assert {id(m) for m in torch_modules(w)} == {id(w.net), id(w.parts[0])}
    conv = 8 * 3 * 3 * 3 + 8
    assert model_bytes(w) == 4 * (1010 + 256 + conv) == tensor_bytes([w.net, w.parts[0], w.net])
    assert model_bytes(w.net) == 4 * (1010 + 256)
    tied = ops.Sequential(ops.Linear(4, 4, bias=False), ops.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert model_bytes(tied) == 4 * 16


def test_model_bytes_of_a_session_wrapper_is_its_file_size(tmp_path):
    class Spec:
        size = 12345

    class OrtLike:  # an onnxruntime.InferenceSession keeps the path it was made from in _model_path
        def __init__(self, path):
            self._model_path = str(path)

    f = tmp_path / "m.onnx"
    f.write_bytes(b"x" * 777)
    with_spec = types.SimpleNamespace(spec=Spec(), _session=OrtLike(f))
    without = types.SimpleNamespace(_session=OrtLike(f))
    assert model_bytes(with_spec) == 12345 and model_bytes(without) == 777 and model_bytes(object()) == 0


def test_unload_frees_the_models_and_hooks_see_every_eviction():
    cache = ModelCache(max_entries=2)
    seen, used = [], []
    cache.on_evict = lambda k, v: seen.append(k.model_id)
    cache.on_get = lambda k, v: used.append(k.model_id)
    ref = weakref.ref(cache.get(CacheKey("a"), _TorchWrapper))
    cache.get(CacheKey("a"), _TorchWrapper)
    cache.get(CacheKey("b"), _TorchWrapper)
    cache.get(CacheKey("c"), _TorchWrapper)  # a goes (count bound)
    assert used == ["a", "a", "b", "c"] and seen == ["a"]
    gc.collect()
    assert ref() is None
    kept = cache.get(CacheKey("b"), _TorchWrapper)
    assert cache.discard(CacheKey("b"), value=object()) is False  # not the value it holds: stays
    assert cache.discard(CacheKey("b"), value=kept) is True and seen == ["a", "b"]
    ref = weakref.ref(cache.get(CacheKey("d"), _TorchWrapper))
    assert cache.unload() == 2 and seen == ["a", "b", "c", "d"] and len(cache) == 0 and cache.total_bytes == 0
    assert ref() is None  # unload collected it: nothing of the cache keeps a model alive


def test_a_failing_evict_hook_does_not_keep_the_model(caplog):
    cache = ModelCache(max_entries=1)

    def boom(k, v):
        raise RuntimeError("host gone")

    cache.on_evict = boom
    first = cache.get(CacheKey("a"), _Closable)
    cache.get(CacheKey("b"), _Closable)
    assert first.closed and [k.model_id for k in cache.keys()] == ["b"]
    assert any("evict hook failed" in r.getMessage() for r in caplog.records)
