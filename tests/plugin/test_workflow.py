"""Editor (UI-format) workflows: conversion both ways, and the shipped templates are valid graphs."""
import json
from pathlib import Path

import pytest

from facegraph.core.errors import GraphError
from facegraph.nodes import NODE_CLASSES
from facegraph.plugin.runner import Runner, apply_overrides, load_graph_file
from facegraph.plugin.workflow import api_to_ui, ui_to_api

ROOT = Path(__file__).resolve().parents[2]
GRAPH = {
    "1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "a.####.exr", "frames": "1-3", "first": 0,
                                                                 "count": 2, "missing": "hold"}},
    "2": {"class_type": "FacegraphSaveEXRSequence", "inputs": {"images": ["1", 0], "sequence": ["1", 2],
                                                               "path": "b.####.exr", "pixel_type": "float",
                                                               "compression": "piz", "mode": "overwrite"}},
}


def test_round_trip_api_ui_api():
    ui = api_to_ui(GRAPH, NODE_CLASSES)
    assert {"nodes", "links", "version"} <= set(ui) and len(ui["links"]) == 2
    back = ui_to_api(ui, NODE_CLASSES)
    for nid, node in GRAPH.items():
        for k, v in node["inputs"].items():
            assert back[nid]["inputs"][k] == v, (nid, k)


def test_example_workflows_are_valid_templates():
    files = sorted((ROOT / "example_workflows").glob("*.json"))
    assert files
    for f in files:
        graph, _ = load_graph_file(f)
        prepared = Runner().prepare(graph)
        assert Runner().order(prepared)


def test_overrides_and_errors(tmp_path):
    g = json.loads(json.dumps(GRAPH))
    params = apply_overrides(g, {"1.path": "c.####.exr", "shot": "x"})
    assert g["1"]["inputs"]["path"] == "c.####.exr" and params == {"shot": "x"}
    with pytest.raises(GraphError, match="no node 9"):
        apply_overrides(g, {"9.path": "z"})
    ui = api_to_ui(GRAPH, NODE_CLASSES)
    ui["nodes"][1]["mode"] = 4
    with pytest.raises(GraphError, match="bypassed"):
        ui_to_api(ui, NODE_CLASSES)
    ui["nodes"][1]["mode"] = 2  # muted: dropped
    assert list(ui_to_api(ui, NODE_CLASSES)) == ["1"]


def test_the_shipped_templates_are_what_the_generator_writes():
    """example_workflows/*.json are made by tests/golden/make_workflows.py from the node classes: a node that
    gains an input changes the UI format's widget list, so a template not regenerated would fail here."""
    import importlib.util
    import json
    from pathlib import Path

    from facegraph.nodes import NODE_CLASSES
    from facegraph.plugin.workflow import api_to_ui

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("make_workflows", root / "tests" / "golden" / "make_workflows.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, (graph, title) in gen.WORKFLOWS.items():
        want = api_to_ui(graph, NODE_CLASSES, title=title, parameters=gen.PARAMETERS[name])
        shipped = json.loads((root / "example_workflows" / f"{name}.json").read_text())
        assert shipped == json.loads(json.dumps(want)), f"{name}.json: run tests/golden/make_workflows.py"
