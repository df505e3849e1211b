"""Load the pack exactly as ComfyUI's custom-node loader does, with no host present.

ComfyUI imports ``custom_nodes/<folder>/__init__.py`` with importlib.util.spec_from_file_location under a
module name of its own choosing, while its own top-level ``nodes`` module is already in sys.modules; then it
reads NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS with hasattr/getattr.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("api_snapshot.json")


@pytest.fixture(scope="module")
def loaded():
    fake_nodes = types.ModuleType("nodes")
    fake_nodes.NODE_CLASS_MAPPINGS = {"KSampler": object}
    saved = {k: sys.modules.get(k) for k in ("nodes",)}
    sys.modules["nodes"] = fake_nodes
    name = "custom_nodes_x_facegraph_checkout"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert hasattr(module, "NODE_CLASS_MAPPINGS")
        yield module
    finally:
        for k in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[k]
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_loader_finds_mappings_and_leaves_host_modules_alone(loaded):
    maps = getattr(loaded, "NODE_CLASS_MAPPINGS")
    names = getattr(loaded, "NODE_DISPLAY_NAME_MAPPINGS")
    assert maps and set(names) == set(maps)
    assert sys.modules["nodes"].NODE_CLASS_MAPPINGS == {"KSampler": object}
    assert not any(m == "comfy" or m.startswith("comfy.") for m in sys.modules), "comfy imported eagerly"
    for cls in maps.values():
        assert cls.__module__.startswith(loaded.__name__ + "."), cls.__module__


def _check_input(node_id, name, decl):
    assert isinstance(decl, tuple) and 1 <= len(decl) <= 2, (node_id, name)
    kind = decl[0]
    assert isinstance(kind, (str, list)), (node_id, name)
    if isinstance(kind, list):
        assert kind and all(isinstance(c, str) for c in kind), (node_id, name)
    opts = decl[1] if len(decl) == 2 else {}
    assert isinstance(opts, dict)
    assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
    if isinstance(kind, list) and "default" in opts:
        assert opts["default"] in kind, (node_id, name)
    if kind in ("INT", "FLOAT") and "default" in opts:
        assert opts.get("min", -1e308) <= opts["default"] <= opts.get("max", 1e308), (node_id, name)


def test_every_node_class_is_well_formed(loaded):
    for node_id, cls in loaded.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("Facegraph"), node_id
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}, node_id
        for section in ("required", "optional"):
            for name, decl in spec.get(section, {}).items():
                _check_input(node_id, name, decl)
        assert isinstance(cls.RETURN_TYPES, tuple)
        for rt in cls.RETURN_TYPES:
            assert isinstance(rt, str)
            assert rt in ("IMAGE", "MASK", "STRING", "INT", "FLOAT", "BOOLEAN") or rt.startswith("FACEGRAPH_") \
                or rt in ("FACE_LANDMARKS", "BOUNDING_BOX"), (node_id, rt)
        names = getattr(cls, "RETURN_NAMES", None)
        assert names is not None and len(names) == len(cls.RETURN_TYPES), node_id
        tips = getattr(cls, "OUTPUT_TOOLTIPS", None)
        assert tips is not None and len(tips) == len(cls.RETURN_TYPES), node_id
        assert isinstance(cls.FUNCTION, str) and callable(getattr(cls, cls.FUNCTION)), node_id
        assert isinstance(cls.CATEGORY, str) and cls.CATEGORY.startswith("facegraph"), node_id
        assert isinstance(getattr(cls, "OUTPUT_NODE", False), bool), node_id
        assert getattr(cls, "DESCRIPTION", ""), node_id
        assert loaded.NODE_DISPLAY_NAME_MAPPINGS[node_id], node_id


def test_api_snapshot(loaded):
    """Node ids and input names are public API: saved graphs break when one disappears or changes type."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from snapshot import api
    finally:
        sys.path.pop(0)
    current = api(loaded.NODE_CLASS_MAPPINGS)
    saved = json.loads(SNAPSHOT.read_text())
    problems = []
    for node_id, node in saved.items():
        if node_id not in current:
            problems.append(f"node {node_id} disappeared")
            continue
        for name, decl in node["inputs"].items():
            now = current[node_id]["inputs"].get(name)
            if now is None:
                problems.append(f"{node_id}.{name} disappeared")
            elif now["type"] != decl["type"]:
                problems.append(f"{node_id}.{name} changed type {decl['type']} -> {now['type']}")
            elif decl["type"] == "COMBO" and not set(decl["choices"]) <= set(now["choices"]):
                problems.append(f"{node_id}.{name} lost choices {set(decl['choices']) - set(now['choices'])}")
        if current[node_id]["outputs"][: len(node["outputs"])] != node["outputs"]:
            problems.append(f"{node_id} outputs changed {node['outputs']} -> {current[node_id]['outputs']}")
    assert not problems, "public API broken:\n" + "\n".join(problems)
    added = sorted(set(current) - set(saved))
    grown = sorted(f"{n}.{i}" for n in current if n in saved for i in current[n]["inputs"]
                   if i not in saved[n]["inputs"])
    assert not added and not grown, (
        f"new API not in the snapshot (nodes {added}, inputs {grown}); regenerate it: "
        ".venv/bin/python tests/plugin/snapshot.py > tests/plugin/api_snapshot.json")


def test_bridges_install_inside_a_fake_comfyui(monkeypatch, tmp_path):
    """With folder_paths / comfy present, the model folder, device and progress bridges are wired lazily."""
    from facegraph.core import progress
    from facegraph.models import devices
    from facegraph.models.store import default_store
    from facegraph.plugin import comfyui

    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path)
    registered = {}
    fp.add_model_folder_path = lambda name, path, is_default=False: registered.setdefault(name, []).append(path)
    fp.get_folder_paths = lambda name: registered.get(name, [])
    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: "cuda:3"
    interrupted = []

    class Interrupted(Exception):
        pass

    def throw():
        if interrupted:
            raise Interrupted()

    mm.throw_exception_if_processing_interrupted = throw
    utils = types.ModuleType("comfy.utils")
    updates = []

    class Bar:
        def __init__(self, total):
            updates.append(("total", total))

        def update(self, n):
            updates.append(("update", n))

    utils.ProgressBar = Bar
    comfy.model_management, comfy.utils = mm, utils
    for k, v in {"folder_paths": fp, "comfy": comfy, "comfy.model_management": mm, "comfy.utils": utils}.items():
        monkeypatch.setitem(sys.modules, k, v)
    store = default_store()
    old_dirs, old_dev = store.host_dirs, devices.host_device_provider
    try:
        assert comfyui.install_bridges()
        assert registered["facegraph"] == [str(tmp_path / "facegraph")]
        assert [str(p) for p in store.host_dirs()] == [str(tmp_path / "facegraph")]
        assert devices.resolve_device("auto") == "cuda:3"
        with progress.task(3, "x") as bar:
            bar.advance()
            interrupted.append(1)
            with pytest.raises(Interrupted):
                bar.advance()
        assert updates == [("total", 3), ("update", 1)]
    finally:
        from facegraph.models.cache import default_cache
        from facegraph.plugin.comfyui import memory

        memory.uninstall(default_cache())  # the stand-in memory manager must not outlive the test
        store.host_dirs, devices.host_device_provider = old_dirs, old_dev
        progress.set_fallback(None)


def test_bridges_send_ui_pictures_to_comfyuis_folders(monkeypatch, tmp_path):
    """install_bridges points node pictures at folder_paths' temp / output folders; without it, our own."""
    import numpy as np

    from facegraph.core import progress
    from facegraph.models import devices
    from facegraph.models.store import default_store
    from facegraph.plugin import comfyui

    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.add_model_folder_path = lambda name, path, is_default=False: None
    fp.get_folder_paths = lambda name: []
    fp.get_temp_directory = lambda: str(tmp_path / "temp")
    fp.get_output_directory = lambda: str(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    store = default_store()
    old_dirs, old_dev = store.host_dirs, devices.host_device_provider
    try:
        assert comfyui.install_bridges()
        assert progress.ui_folder("temp") == tmp_path / "temp"
        assert progress.ui_folder("output") == tmp_path / "output"
        (ref,) = progress.ui_images([np.zeros((2, 2, 3), np.uint8)], "t")
        assert (tmp_path / "temp" / ref["subfolder"] / ref["filename"]).is_file() and ref["type"] == "temp"
        monkeypatch.delitem(sys.modules, "folder_paths")  # host gone: the bridge falls back, never fails
        assert progress.ui_folder("temp") != tmp_path / "temp"
    finally:
        store.host_dirs, devices.host_device_provider = old_dirs, old_dev
        progress.set_fallback(None)
        progress.set_ui_folder(None)


def test_output_nodes_report_something_to_show(loaded):
    """A graph may end in these, and each shows its result on the node (ComfyUI's {"ui": ...})."""
    maps = loaded.NODE_CLASS_MAPPINGS
    for node_id in ("FacegraphFaceInfo", "FacegraphDrawLandmarks", "FacegraphSaveContactSheet",
                    "FacegraphExportTracking"):
        assert getattr(maps[node_id], "OUTPUT_NODE", False) is True, node_id
