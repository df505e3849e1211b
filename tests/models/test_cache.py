import threading
import time

from facegraph.models.cache import CacheKey, ModelCache


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
