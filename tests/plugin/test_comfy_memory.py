"""facegraph's torch models inside ComfyUI's memory manager, with stand-ins shaped like comfy.model_patcher /
comfy.model_management (tests/plugin/comfy_standins.py).

No GPU here: the stand-in's card is the device ``cpu:0`` and its offload device ``cpu``. torch moves between
them for real (a no-op copy), and they are different devices to torch, ComfyUI and facegraph, so every move,
and where each wrapper thinks its weights are, can be checked.
"""
from __future__ import annotations

import gc
import importlib.util
import sys
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from facegraph.models import devices, loader
from facegraph.models.cache import CacheKey, ModelCache, model_bytes
from facegraph.plugin.comfyui import memory

_spec = importlib.util.spec_from_file_location("facegraph_test_comfy_standins",
                                               Path(__file__).with_name("comfy_standins.py"))
standins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standins)

CARD, OFFLOAD = "cpu:0", "cpu"
MIB = 1024 ** 2
ops = torch.nn  # layers through a namespace, as the ported networks build theirs (README: comfy-test)


class TorchWrapper:
    """Shaped like facegraph's torch wrappers (TDDFA): a module attribute, inputs placed with self.device, a
    TFLiteModule-like per-device trace cache."""

    def __init__(self, spec, resolved, device="cpu", threads=0):
        self.spec, self.device = spec, device
        self.net = ops.Linear(256, 256).to(device)  # 257 KiB of float32
        self.net._traces = {}
        self.closed = False

    def predict(self, x):
        self.net._traces.setdefault(str(self.device), "trace")
        with torch.inference_mode():
            return self.net(torch.as_tensor(x).to(self.device)).cpu()

    def close(self):
        self.closed = True


class SessionWrapper:
    """Shaped like an onnxruntime wrapper: no torch module."""

    def __init__(self, spec, resolved, device="cpu", threads=0):
        self.spec, self.device, self._session = spec, device, object()


class Store:
    def resolve(self, spec, explicit=None):
        return "files"


@pytest.fixture
def host(monkeypatch):
    """ComfyUI's memory manager (stand-ins, an 8 GiB card) with a facegraph cache hooked to it."""
    mm = standins.install(monkeypatch, device=CARD, offload=OFFLOAD)
    fake = types.ModuleType("facegraph.models.fake_memory")
    fake.TorchWrapper, fake.SessionWrapper = TorchWrapper, SessionWrapper
    monkeypatch.setitem(sys.modules, "facegraph.models.fake_memory", fake)
    monkeypatch.setattr(loader, "WRAPPERS", dict(loader.WRAPPERS, tddfa="fake_memory:TorchWrapper",
                                                 pfld="fake_memory:SessionWrapper",
                                                 mediapipe_iris="fake_memory:TorchWrapper"))
    monkeypatch.setattr(loader, "_warned", {"tddfa_v2_mb05", "pfld"})  # no licence warnings here
    monkeypatch.setattr(devices, "host_device_provider", lambda: str(mm.get_torch_device()))  # as install_bridges
    cache = ModelCache(max_entries=8, max_bytes=None)
    assert memory.install(cache) and memory.install(cache)  # idempotent
    ns = types.SimpleNamespace(mm=mm, cache=cache)
    ns.get = lambda mid="tddfa_v2_mb05": loader.load_model(mid, store=Store(), cache=cache)
    try:
        yield ns
    finally:
        memory.uninstall(cache)
        assert cache.on_get is None and cache.on_evict is None and not memory.registered()


def _ours(mm):
    return [lm.model for lm in mm.current_loaded_models if isinstance(lm.model, memory.FacegraphPatcherMixin)]


def _host_model(mm, size):
    """One of ComfyUI's own models, already on the card."""
    m = ops.Linear(4, 4)
    p = standins.ModelPatcher(m, torch.device(CARD), torch.device(OFFLOAD), size=size)
    mm.load_models_gpu([p])
    return p


# ------------------------------------------------------------------------------------------------ tests
def test_nothing_imports_comfy_and_headless_nothing_changes():
    from facegraph.models.cache import default_cache
    from facegraph.plugin import comfyui

    # this module imported memory.py (and the pack: nodes, plugin.comfyui) at collection: no comfy came with it
    assert not [m for m in sys.modules if m == "comfy" or m.startswith("comfy.")]
    hooks = (default_cache().on_get, default_cache().on_evict)
    assert comfyui.install_bridges() is False  # no folder_paths: not inside ComfyUI, nothing installed
    assert (default_cache().on_get, default_cache().on_evict) == hooks
    cache = ModelCache(max_entries=2, max_bytes=None)
    memory.install(cache)  # even hooked, without comfy.model_management a get changes nothing
    try:
        model = cache.get(CacheKey("tddfa_v2_mb05"), lambda: TorchWrapper(None, None))
        assert not memory.registered() and model.device == "cpu" and not model.closed
    finally:
        memory.uninstall(cache)


def test_a_torch_model_loaded_inside_comfyui_is_visible_to_its_manager(host):
    model = host.get()
    (patcher,) = _ours(host.mm)
    assert model.device == CARD and patcher.fg_wrapper() is model
    assert patcher.load_device == torch.device(CARD) and patcher.offload_device == torch.device(OFFLOAD)
    assert patcher.model_size() == model_bytes(model) == 4 * (256 * 256 + 256)
    assert patcher.loaded_size() == patcher.model_size() and patcher.current_loaded_device() == torch.device(CARD)
    assert patcher in host.mm.loaded_models()
    assert host.mm.get_free_memory(torch.device(CARD)) == host.mm.TOTAL - patcher.model_size()
    assert host.get() is model and host.get() is model  # each use goes through load_models_gpu, nothing moves
    loads = [c for c in host.mm.calls if c[0] == "load_models_gpu"]
    assert len(loads) == 3 and all(c[1] == [patcher] for c in loads)
    assert _ours(host.mm) == [patcher] and len(host.cache) == 1 and model.device == CARD


def test_sessions_are_not_registered(host):
    host.get("pfld")
    assert not _ours(host.mm) and not memory.registered()


def test_comfyui_freeing_part_of_the_card_offloads_it_and_the_next_use_brings_it_back(host):
    model = host.get()
    (patcher,) = _ours(host.mm)
    x = np.ones((1, 256), np.float32)
    expected = model.predict(x)
    host.mm.other_use = host.mm.TOTAL - patcher.model_size()  # the card is full
    host.mm.free_memory(patcher.model_size() // 2, torch.device(CARD))  # less than our model: a partial unload
    assert model.device == OFFLOAD and patcher.loaded_size() == 0  # offloaded, wrapper follows its weights
    assert patcher.current_loaded_device() == torch.device(OFFLOAD) and model.net._traces == {}  # traces dropped
    assert _ours(host.mm) == [patcher] and host.cache.keys()  # still listed, still cached
    assert torch.equal(model.predict(x), expected)  # a node holding it keeps working, where the weights are
    host.mm.other_use = 0
    assert host.get() is model  # next use: back on the card, same object
    assert model.device == CARD and patcher.loaded_size() == patcher.model_size()
    assert torch.equal(model.predict(x), expected)


def test_comfyui_unloading_it_evicts_it_from_our_cache_and_it_comes_back_on_next_use(host):
    model = host.get()
    (patcher,) = _ours(host.mm)
    ref = weakref.ref(model)
    host.mm.unload_all_models()
    assert model.device == OFFLOAD and model.closed  # detached: offloaded, and evicted from facegraph's cache
    assert not _ours(host.mm) and len(host.cache) == 0 and not memory.registered()
    assert len(patcher.model.parts) == 0  # the detached patcher no longer holds the modules
    assert host.mm.get_free_memory(torch.device(CARD)) == host.mm.TOTAL and host.mm.empty_cache_calls == 1
    del model
    gc.collect()
    assert ref() is None  # nothing of facegraph's or ComfyUI's keeps the unloaded wrapper alive
    again = host.get()  # loaded again from disk, registered again
    (patcher2,) = _ours(host.mm)
    assert patcher2 is not patcher and patcher2.fg_wrapper() is again and again.device == CARD
    del patcher
    gc.collect()
    host.get()
    assert not memory._retired  # ComfyUI's walk is over: the detached patcher is let go


def test_comfyui_making_room_for_its_own_model_unloads_ours(host):
    ours = host.get()
    host.mm.TOTAL = 4 * MIB
    big = ops.Linear(4, 4)
    theirs = standins.ModelPatcher(big, torch.device(CARD), torch.device(OFFLOAD), size=3900 * 1024)
    host.mm.load_models_gpu([theirs])  # needs 3.9 MiB + 10 %: ours (257 KiB) must go entirely
    assert [lm.model for lm in host.mm.current_loaded_models] == [theirs]
    assert ours.device == OFFLOAD and len(host.cache) == 0
    host.mm.TOTAL = 8 * standins.GIB
    assert host.get().device == CARD and len(_ours(host.mm)) == 1


def test_facegraph_evictions_leave_comfyuis_ledger_too(host):
    other = _host_model(host.mm, 10 * MIB)
    host.cache.max_entries = 1
    host.get("tddfa_v2_mb05")
    first = _ours(host.mm)
    host.get("mediapipe_iris")  # count bound: tddfa goes, from both
    assert [p.fg_key.model_id for p in _ours(host.mm)] == ["mediapipe_iris"] and first[0] not in _ours(host.mm)
    host.cache.max_entries = 8
    host.get("tddfa_v2_mb05")
    size = _ours(host.mm)[0].model_size()
    assert host.cache.set_budget(size + size // 2) == 1  # budget: the least recently used (iris) goes
    assert [p.fg_key.model_id for p in _ours(host.mm)] == ["tddfa_v2_mb05"]
    assert host.cache.unload() == 1 and not _ours(host.mm) and not memory.registered()
    assert [lm.model for lm in host.mm.current_loaded_models] == [other]  # ComfyUI's own model stays


def test_no_vram_budget_keeps_it_where_comfyui_wants_it(host):
    model = host.get()
    (patcher,) = _ours(host.mm)
    patcher.partially_unload(torch.device(OFFLOAD), 1)
    assert patcher.partially_load(torch.device(CARD), extra_memory=0.1) == 0  # ComfyUI's --novram budget
    assert model.device == OFFLOAD and patcher.loaded_size() == 0
    assert patcher.partially_load(torch.device(CARD), extra_memory=1e32) == patcher.model_size()
    assert model.device == CARD


def test_without_comfys_model_patcher_a_duck_typed_base_is_used(host, monkeypatch):
    monkeypatch.delitem(sys.modules, "comfy.model_patcher")  # the stand-in comfy is no package: import fails
    host.get()
    (patcher,) = _ours(host.mm)
    assert isinstance(patcher, memory._DuckPatcher) and not isinstance(patcher, standins.ModelPatcher)
    host.mm.unload_all_models()
    assert not _ours(host.mm) and len(host.cache) == 0


def test_with_comfys_model_patcher_ours_is_one(host):
    host.get()
    (patcher,) = _ours(host.mm)
    assert isinstance(patcher, standins.ModelPatcher)  # what ComfyUI and other packs may check


def test_install_bridges_hooks_the_process_cache(monkeypatch, tmp_path):
    from facegraph.core import paths, progress
    from facegraph.models import cache as cache_mod
    from facegraph.models.store import default_store
    from facegraph.plugin import comfyui

    standins.install(monkeypatch, device=CARD, offload=OFFLOAD)
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path)
    fp.add_model_folder_path = lambda name, path: None
    fp.get_folder_paths = lambda name: [str(tmp_path / name)]
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    fresh = ModelCache(max_entries=4, max_bytes=None)
    monkeypatch.setattr(cache_mod, "_default_cache", fresh)
    monkeypatch.setattr(default_store(), "host_dirs", default_store().host_dirs)
    monkeypatch.setattr(devices, "host_device_provider", devices.host_device_provider)
    try:
        assert comfyui.install_bridges()
        assert fresh.on_get is not None and fresh.on_evict is not None
        assert devices.resolve_device("auto") == CARD
    finally:
        memory.uninstall(fresh)
        progress.set_fallback(None)
        progress.set_ui_folder(None)
        paths.set_host_folders(None)
    assert fresh.on_get is None


@pytest.mark.shared
def test_a_real_tflite_model_offloads_and_comes_back(mirror, monkeypatch):
    """MediaPipe's iris model (a TFLiteModule: weights as buffers, frozen traces per device) end to end."""
    mm = standins.install(monkeypatch, device=CARD, offload=OFFLOAD)
    monkeypatch.setattr(devices, "host_device_provider", lambda: CARD)
    cache = ModelCache(max_entries=4, max_bytes=None)
    memory.install(cache)
    try:
        iris = loader.load_model("mediapipe_iris", cache=cache)
        (patcher,) = [lm.model for lm in mm.current_loaded_models]
        assert patcher.model_size() == model_bytes(iris) > MIB
        crop = torch.from_numpy(np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32))
        with torch.inference_mode():
            before = iris._module(crop)  # eager: tracing twice would cost seconds on a busy CPU
        iris._module._traces[("frozen", "for", "cpu:0")] = object()  # what run_numpy leaves per shape and device
        patcher.partially_unload(torch.device(OFFLOAD), 1)
        assert not iris._module._traces and next(iris._module.buffers()).device == torch.device(OFFLOAD)
        assert loader.load_model("mediapipe_iris", cache=cache) is iris and patcher.loaded_size() > 0
        with torch.inference_mode():
            for a, b in zip(before, iris._module(crop)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        mm.unload_all_models()
        assert len(cache) == 0 and not mm.current_loaded_models
    finally:
        memory.uninstall(cache)
