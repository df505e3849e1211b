"""The installed package carries every sub-package (a non-editable install - ComfyUI-Manager, a wheel - only
ships what pyproject.toml lists)."""
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"facegraph"}
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in ("core", "models", "nodes", "plugin"):
            found.add(".".join(("facegraph",) + rel.parts))
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_every_template_has_a_thumbnail():
    """ComfyUI's template browser shows <name>.jpg beside <name>.json (tests/golden/make_thumbnails.py)."""
    wf = ROOT / "example_workflows"
    missing = [p.name for p in wf.glob("*.json") if not p.with_suffix(".jpg").is_file()]
    assert not missing, f"templates without a thumbnail: {missing}"


def test_the_frontend_extension_ships_and_is_declared():
    """ComfyUI serves WEB_DIRECTORY's .js files to the browser: the extension that shows ui.text on a node."""
    import facegraph

    web = ROOT / facegraph.WEB_DIRECTORY
    js = (web / "facegraph_text.js").read_text()
    assert "registerExtension" in js and "serialize = false" in js
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "facegraph.web" in data["packages"] and data["package-data"]["facegraph.web"] == ["*.js"]


def test_the_frontend_extension_shows_ui_text_on_the_node(tmp_path):
    """Run the extension in node.js against stand-ins of ComfyUI's app / ComfyWidgets: a facegraph node's
    ui.text lands in one read-only box that is not saved with the workflow; other nodes are left alone."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("node") is None:
        pytest.skip("node.js is not installed")
    js = (ROOT / "web" / "facegraph_text.js").read_text()
    js = js.replace('import { app } from "../../scripts/app.js";', "const app = globalThis.app;")
    js = js.replace('import { ComfyWidgets } from "../../scripts/widgets.js";',
                    "const ComfyWidgets = globalThis.ComfyWidgets;")
    harness = """
const registered = [];
globalThis.app = { registerExtension: (e) => registered.push(e) };
globalThis.ComfyWidgets = { STRING: (node, name, spec) => {
    const widget = { name, value: "", options: {}, inputEl: { style: {} } };
    node.widgets = node.widgets || []; node.widgets.push(widget); return { widget }; } };
await import("./ext.mjs");
function NodeType() {}
NodeType.prototype.onExecuted = function () { this.calls = (this.calls || 0) + 1; };
NodeType.prototype.computeSize = function () { return [200, 120]; };
NodeType.prototype.setSize = function (s) { this.size = s; };
await registered[0].beforeRegisterNodeDef(NodeType, { name: "FacegraphFaceInfo" });
function Other() {}
await registered[0].beforeRegisterNodeDef(Other, { name: "KSampler" });
const n = new NodeType(); n.size = [200, 60];
n.onExecuted({ text: ["3 faces", "licence: MIT"] });
n.onExecuted({ text: ["2 faces"] });
n.onExecuted({ images: [] });
const box = n.widgets.filter((w) => w.name === "facegraph_info");
console.log(JSON.stringify({ boxes: box.length, value: box[0].value, readOnly: box[0].inputEl.readOnly,
    serialize: box[0].serialize, optSerialize: box[0].options.serialize, calls: n.calls, height: n.size[1],
    other: Other.prototype.onExecuted === undefined }));
"""
    (tmp_path / "ext.mjs").write_text(js)
    (tmp_path / "run.mjs").write_text(harness)
    out = subprocess.run(["node", str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"boxes": 1, "value": "2 faces", "readOnly": True, "serialize": False, "optSerialize": False,
                   "calls": 3, "height": 120, "other": True}
