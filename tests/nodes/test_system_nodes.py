"""Unload Models (facegraph): empties facegraph's model cache (all, or one model id), says what it freed, and
inside ComfyUI (stand-ins: tests/plugin/comfy_standins.py) takes the models out of ComfyUI's manager too."""
from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from facegraph.models import cache as cache_mod
from facegraph.models import devices, loader
from facegraph.models.cache import CacheKey, ModelCache
from facegraph.nodes.system import NODES, UnloadModels, unload_choices

MIB = 1024 ** 2
ops = torch.nn  # layers through a namespace, as the ported networks build theirs (README: comfy-test)


class _Model:
    def __init__(self, nbytes):
        self.nbytes, self.closed = nbytes, False

    def memory_bytes(self):
        return self.nbytes

    def close(self):
        self.closed = True


@pytest.fixture
def cache(monkeypatch):
    fresh = ModelCache(max_entries=8, max_bytes=None)
    monkeypatch.setattr(cache_mod, "_default_cache", fresh)
    return fresh


def test_node_shape():
    (node_id, (cls, name)), = NODES.items()
    assert node_id == "FacegraphUnloadModels" and cls is UnloadModels and name == "Unload Models (facegraph)"
    assert cls.CATEGORY == "facegraph/models" and cls.OUTPUT_NODE and cls.RETURN_TYPES == ("STRING",)
    spec = cls.INPUT_TYPES()
    choices, opts = spec["required"]["model"]
    assert choices == unload_choices() and choices[0] == "all" and opts["default"] == "all" and opts["tooltip"]
    assert "mediapipe_landmarker_v2" in choices and "tddfa_v2_mb05" in choices and choices[1:] == sorted(choices[1:])
    assert set(spec) == {"required"}  # no wildcard passthrough: ComfyUI versions disagree on "*" inputs
    assert math.isnan(cls.IS_CHANGED(model="all"))  # never equal to itself: runs on every queue


def test_unload_all_empties_the_cache_and_says_what_it_freed(cache):
    a = cache.get(CacheKey("mediapipe_landmarker_v2", "cuda:0"), lambda: _Model(13 * MIB))
    cache.get(CacheKey("mediapipe_iris", "cpu"), lambda: _Model(MIB // 2))
    out = UnloadModels().unload("all")
    (text,) = out["result"]
    assert out["ui"] == {"text": [text]} and len(cache) == 0 and a.closed
    assert text.splitlines() == ["unloaded 2 models (13.5 MiB):", "  mediapipe_landmarker_v2 on cuda:0 (13.0 MiB)",
                                 "  mediapipe_iris on cpu (512.0 KiB)"]
    assert UnloadModels().unload("all")["result"] == ("no facegraph models loaded: nothing to unload",)


def test_unload_one_model_id_keeps_the_others(cache):
    cache.get(CacheKey("tddfa_v2_mb05", "cpu"), lambda: _Model(4 * MIB))
    cache.get(CacheKey("tddfa_v2_mb05", "cpu", "fp16"), lambda: _Model(2 * MIB))
    kept = cache.get(CacheKey("mediapipe_iris", "cpu"), lambda: _Model(MIB))
    (text,) = UnloadModels().unload("tddfa_v2_mb05")["result"]
    assert [k.model_id for k in cache.keys()] == ["mediapipe_iris"] and not kept.closed
    assert text.startswith("unloaded 2 models (6.0 MiB):") and text.endswith("still loaded: mediapipe_iris (1.0 MiB)")
    assert UnloadModels().unload("pfld")["result"] == ("pfld was not loaded: nothing to unload",)


def test_inside_comfyui_unload_models_empties_our_cache_and_comfyuis_ledger(cache, monkeypatch):
    from facegraph.plugin.comfyui import memory

    spec = importlib.util.spec_from_file_location(
        "facegraph_test_comfy_standins", Path(__file__).parents[1] / "plugin" / "comfy_standins.py")
    standins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standins)
    mm = standins.install(monkeypatch, device="cpu:0", offload="cpu")
    theirs = standins.ModelPatcher(ops.Linear(2, 2), torch.device("cpu:0"), torch.device("cpu"), size=MIB)
    mm.load_models_gpu([theirs])

    class Wrapper:
        def __init__(self, spec, resolved, device="cpu", threads=0):
            self.spec, self.device, self.net = spec, device, ops.Linear(64, 64)

    fake = types.ModuleType("facegraph.models.fake_system")
    fake.Wrapper = Wrapper
    monkeypatch.setitem(sys.modules, "facegraph.models.fake_system", fake)
    monkeypatch.setattr(loader, "WRAPPERS", dict(loader.WRAPPERS, tddfa="fake_system:Wrapper"))
    monkeypatch.setattr(loader, "_warned", {"tddfa_v2_mb05"})
    monkeypatch.setattr(devices, "host_device_provider", lambda: "cpu:0")
    store = types.SimpleNamespace(resolve=lambda spec, explicit=None: "files")
    memory.install(cache)
    try:
        loader.load_model("tddfa_v2_mb05", store=store)  # the process cache (this test's fresh one)
        assert len(mm.current_loaded_models) == 2 and len(cache) == 1
        (text,) = UnloadModels().unload("all")["result"]
        assert text.startswith("unloaded 1 model (16.2 KiB):")
        assert len(cache) == 0 and [lm.model for lm in mm.current_loaded_models] == [theirs]  # ComfyUI's stays
    finally:
        memory.uninstall(cache)
