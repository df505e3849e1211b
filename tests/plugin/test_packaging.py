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
