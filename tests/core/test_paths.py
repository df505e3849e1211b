"""Relative node paths go to the host's input / output folders (issue 12 "Folders")."""
import json
import os

import numpy as np
import pytest

from facegraph.core import paths


@pytest.fixture
def host(tmp_path):
    roots = {k: tmp_path / k for k in ("input", "output", "temp")}
    for r in roots.values():
        r.mkdir()
    paths.set_host_folders(lambda kind: str(roots[kind]))
    yield roots
    paths.set_host_folders(None)


def test_resolve_rules(host, tmp_path):
    assert paths.resolve("plate.####.exr", "input") == str(host["input"] / "plate.####.exr")
    assert paths.resolve("out/x.exr", "output") == str(host["output"] / "out" / "x.exr")
    assert paths.resolve("x.png [output]", "input") == str(host["output"] / "x.png")   # ComfyUI's annotation
    assert paths.resolve("y.png [temp]", "output") == str(host["temp"] / "y.png")
    assert paths.resolve(str(tmp_path / "abs.exr"), "output") == str(tmp_path / "abs.exr")
    assert paths.resolve("~/a.exr", "input") == os.path.expanduser("~/a.exr")
    assert paths.resolve("  ", "input") == ""


def test_headless_default_is_the_current_folder_and_the_runner_can_set_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("a.exr", "input") == str(tmp_path / "a.exr")
    with paths.folders(input=tmp_path / "in", output=tmp_path / "out"):
        assert paths.resolve("a.exr", "input") == str(tmp_path / "in" / "a.exr")
        assert paths.resolve("a.exr", "output") == str(tmp_path / "out" / "a.exr")
    assert paths.resolve("a.exr", "output") == str(tmp_path / "a.exr")


def test_nodes_read_from_input_and_write_to_output(host):
    from facegraph.core.io.images import read_image, write_image
    from facegraph.nodes import NODE_CLASSES

    write_image(host["input"] / "a.exr", np.full((4, 4, 3), 0.5, np.float32))
    img, _ = NODE_CLASSES["FacegraphLoadImage"]().load("a.exr")
    NODE_CLASSES["FacegraphSaveEXRSequence"]().save(img, "shots/o.####.exr", pixel_type="float")
    px, _ = read_image(host["output"] / "shots" / "o.1001.exr")
    assert np.allclose(px, 0.5)
    tip = NODE_CLASSES["FacegraphLoadImage"].INPUT_TYPES()["required"]["path"][1]["tooltip"]
    assert "input folder" in tip


def test_cli_run_input_and_output_dirs(tmp_path):
    from facegraph.core.io.images import write_image
    from facegraph.plugin.cli import main

    write_image(tmp_path / "in" / "p.0001.exr", np.ones((4, 4, 3), np.float32))
    g = tmp_path / "g.json"
    g.write_text(json.dumps({
        "1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "p.####.exr"}},
        "2": {"class_type": "FacegraphSaveEXRSequence",
              "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": "o.####.exr"}}}))
    assert main(["-q", "run", str(g), "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "o.0001.exr").is_file()
