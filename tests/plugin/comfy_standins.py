"""Stand-ins for ComfyUI's memory manager, for tests that run without ComfyUI.

``comfy.model_patcher.ModelPatcher`` and ``comfy.model_management`` with the signatures of ComfyUI's own
(comfy/model_patcher.py and comfy/model_management.py as of 2025: ModelPatcher(model, load_device,
offload_device, size=0, weight_inplace_update=False); load_models_gpu(models, memory_required=0,
force_patch_weights=False, minimum_memory_required=None, force_full_load=False); free_memory(memory_required,
device, keep_loaded=[], for_dynamic=False, pins_required=0, ram_required=0); unload_all_models(); ...) and
the same decisions in a simple form, written for these tests (no ComfyUI code):

- ``current_loaded_models`` is the ledger: LoadedModel entries holding a *weak* reference to their patcher,
  newest first; ``load_models_gpu`` frees room on the card, then asks each model to ``partially_load`` with
  a budget; ``free_memory`` walks the ledger (most offloaded, then fewest references, first) and calls
  ``model_unload(memory_to_free)``: a ``partially_unload`` when that covers it, else ``detach`` and the entry
  leaves the ledger (popped after the walk, by index, as ComfyUI does).
- The card is simulated: ``get_free_memory(dev)`` is ``TOTAL - other_use - loaded_size()`` of the ledger's
  models on it. There is no GPU on the test machine, so the stand-in's "card" is whatever device
  ``get_torch_device()`` says (the CPU by default) and, unlike ComfyUI, it frees memory for a CPU card too.

``install(monkeypatch)`` puts ``comfy``, ``comfy.model_patcher`` and ``comfy.model_management`` in sys.modules
(restored by monkeypatch) and returns the model_management stand-in.
"""
from __future__ import annotations

import sys
import types
import weakref

import torch

GIB = 1024 ** 3


# ------------------------------------------------------------------------------------------ model_patcher
class ModelPatcher:
    """ComfyUI's base patcher, reduced to what the memory manager calls. Moves the whole model."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size = size
        self.model = model
        if getattr(self.model, "device", None) is None:
            self.model.device = offload_device
        self.load_device = load_device
        self.offload_device = offload_device
        self.weight_inplace_update = weight_inplace_update
        self.parent = None
        self.patches = {}
        self.model_options = {"transformer_options": {}}
        if not hasattr(self.model, "model_loaded_weight_memory"):
            self.model.model_loaded_weight_memory = 0
        self.model_size()

    def model_size(self):
        if self.size > 0:
            return self.size
        self.size = module_size(self.model)
        return self.size

    def loaded_size(self):
        return self.model.model_loaded_weight_memory

    def lowvram_patch_counter(self):
        return 0

    def current_loaded_device(self):
        return self.model.device

    def model_dtype(self):
        return None

    def model_patches_to(self, device):
        pass

    def model_patches_models(self):
        return []

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def is_dynamic(self):
        return False

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if self.model.model_loaded_weight_memory >= self.model_size():
            return 0
        self.model.to(device_to)
        self.model.device = device_to
        self.model.model_loaded_weight_memory = self.model_size()
        return self.model_size()

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        return 0  # the base cannot split a plain module: the manager then detaches it

    def detach(self, unpatch_all=True):
        if unpatch_all:
            self.model.to(self.offload_device)
            self.model.device = self.offload_device
            self.model.model_loaded_weight_memory = 0
        return self.model

    def cleanup(self):
        pass


# -------------------------------------------------------------------------------------- model_management
def module_size(module):
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def _new_management(total: int, device: torch.device, offload: torch.device) -> types.ModuleType:
    mm = types.ModuleType("comfy.model_management")
    mm.TOTAL = total
    mm.other_use = 0          # bytes the card holds besides the ledger's models (other processes, activations)
    mm.current_loaded_models = []
    mm.calls = []             # (function name, args) of the manager's entry points, for the tests
    mm.empty_cache_calls = 0
    mm.module_size = module_size

    class LoadedModel:
        def __init__(self, model):
            self._model = weakref.ref(model)
            self.device = model.load_device
            self.real_model = None
            self.currently_used = True
            self.model_finalizer = None

        @property
        def model(self):
            return self._model()

        def model_memory(self):
            return self.model.model_size()

        def model_loaded_memory(self):
            return self.model.loaded_size()

        def model_offloaded_memory(self):
            return self.model.model_size() - self.model.loaded_size()

        def model_memory_required(self, device):
            if device == self.model.current_loaded_device():
                return self.model_offloaded_memory()
            return self.model_memory()

        def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
            self.model.model_patches_to(self.device)
            self.model.model_patches_to(self.model.model_dtype())
            budget = 1e32 if lowvram_model_memory == 0 else lowvram_model_memory
            self.model.partially_load(self.device, budget, force_patch_weights=force_patch_weights)
            real = self.model.model
            self.real_model = weakref.ref(real)
            self.model_finalizer = weakref.finalize(real, mm.cleanup_models)
            return real

        def model_unload(self, memory_to_free=None, unpatch_weights=True):
            if memory_to_free is not None and memory_to_free < self.model.loaded_size():
                freed = self.model.partially_unload(self.model.offload_device, memory_to_free)
                if freed >= memory_to_free:
                    return False
            self.model.detach(unpatch_weights)
            self.model_finalizer.detach()
            self.model_finalizer = None
            self.real_model = None
            return True

        def __eq__(self, other):
            return self.model is other.model

        def is_dead(self):
            return self.real_model is not None and self.real_model() is not None and self.model is None

    mm.LoadedModel = LoadedModel

    class InterruptProcessingException(Exception):
        pass

    mm.InterruptProcessingException = InterruptProcessingException

    def get_torch_device():
        return device

    def unet_offload_device():
        return offload

    def intermediate_device():
        return offload

    def extra_reserved_memory():
        return 0

    def minimum_inference_memory():
        return 0

    def get_free_memory(dev=None, torch_free_too=False):
        dev = device if dev is None else dev
        used = mm.other_use + sum(lm.model.loaded_size() for lm in mm.current_loaded_models
                                  if lm.model is not None and lm.device == dev)
        free = mm.TOTAL - used
        return (free, 0) if torch_free_too else free

    def soft_empty_cache(force=False):
        mm.empty_cache_calls += 1

    def cleanup_models():
        for i in range(len(mm.current_loaded_models) - 1, -1, -1):
            lm = mm.current_loaded_models[i]
            if lm.real_model is not None and lm.real_model() is None:
                mm.current_loaded_models.pop(i)

    def cleanup_models_gc():
        pass

    def free_memory(memory_required, device, keep_loaded=[], for_dynamic=False, pins_required=0,
                    ram_required=0):
        mm.calls.append(("free_memory", memory_required, device))
        cleanup_models_gc()
        candidates = []
        for i in range(len(mm.current_loaded_models) - 1, -1, -1):
            lm = mm.current_loaded_models[i]
            if (device is None or lm.device == device) and lm not in keep_loaded and not lm.is_dead():
                candidates.append((-lm.model_offloaded_memory(), sys.getrefcount(lm.model), lm.model_memory(), i))
                lm.currently_used = False
        unloaded = []
        for *_, i in sorted(candidates):
            shortfall = 1e32 if device is None else memory_required - get_free_memory(device)
            if shortfall > 0 and mm.current_loaded_models[i].model_unload(shortfall):
                unloaded.append(i)
        out = [mm.current_loaded_models.pop(i) for i in sorted(unloaded, reverse=True)]
        if out:
            soft_empty_cache()
        return out

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        mm.calls.append(("load_models_gpu", list(models)))
        to_load = []
        for m in dict.fromkeys(list(models) + [x for m in models for x in m.model_patches_models()]):
            entry = LoadedModel(m)
            if entry in mm.current_loaded_models:
                entry = mm.current_loaded_models[mm.current_loaded_models.index(entry)]
                entry.currently_used = True
            to_load.append(entry)
        for entry in to_load:  # clones of an incoming model (itself included, as in ComfyUI) leave the ledger
            for i in range(len(mm.current_loaded_models) - 1, -1, -1):
                if entry.model.is_clone(mm.current_loaded_models[i].model):
                    gone = mm.current_loaded_models.pop(i)
                    gone.model.detach(unpatch_all=False)
                    if gone.model_finalizer is not None:
                        gone.model_finalizer.detach()
        need: dict = {}
        for entry in to_load:
            need[entry.device] = need.get(entry.device, 0) + entry.model_memory_required(entry.device)
        for dev, n in need.items():
            free_memory(n * 1.1 + memory_required, dev)
        for entry in to_load:
            budget = 0 if force_full_load else max(0.1, get_free_memory(entry.device) + entry.model_loaded_memory())
            entry.model_load(budget, force_patch_weights=force_patch_weights)
            mm.current_loaded_models.insert(0, entry)

    def load_model_gpu(model):
        return load_models_gpu([model])

    def loaded_models(only_currently_used=False):
        return [lm.model for lm in mm.current_loaded_models if lm.currently_used or not only_currently_used]

    def unload_all_models():
        mm.calls.append(("unload_all_models",))
        free_memory(1e30, get_torch_device())

    def throw_exception_if_processing_interrupted():
        pass

    for f in (get_torch_device, unet_offload_device, intermediate_device, extra_reserved_memory,
              minimum_inference_memory, get_free_memory, soft_empty_cache, cleanup_models, cleanup_models_gc,
              free_memory, load_models_gpu, load_model_gpu, loaded_models, unload_all_models,
              throw_exception_if_processing_interrupted):
        setattr(mm, f.__name__, f)
    return mm


def install(monkeypatch, *, total: int = 8 * GIB, device: str = "cpu", offload: str = "cpu"):
    """Put the stand-ins in sys.modules (monkeypatch restores them); returns the model_management stand-in."""
    mm = _new_management(total, torch.device(device), torch.device(offload))
    mp = types.ModuleType("comfy.model_patcher")
    mp.ModelPatcher = ModelPatcher
    pkg = types.ModuleType("comfy")
    pkg.model_patcher, pkg.model_management = mp, mm
    for name, mod in {"comfy": pkg, "comfy.model_patcher": mp, "comfy.model_management": mm}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mm
