from facegraph.core.io.images import read_image
from facegraph.plugin.cli import main


import json

import pytest


@pytest.mark.shared
def test_demo_runs_the_analyse_shot_and_face_replace_templates(tmp_path):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--frames", "8"]) == 0
    crops = sorted((out / "crops").glob("*.exr"))
    assert len(crops) == 8
    px, info = read_image(crops[0])
    assert px.shape == (512, 512, 3) and info.pixel_type == "half" and info.attribute("facegraph:graph_hash")
    doc = json.loads((out / "tracking" / "tracking.json").read_text())
    assert len(doc["tracks"]) == 1 and len(doc["tracks"][0]["frames"]) == 8
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # face replace: the EXR result, and the before / after picture
    replaced = sorted((out / "replace").glob("replace.*.exr"))
    assert len(replaced) == 8
    px, info = read_image(replaced[0])
    assert px.shape == (480, 640, 3) and info.attribute("facegraph:graph_hash")
    assert (out / "before_after.png").stat().st_size > 10_000
    # idempotent: a second run succeeds (the plate is kept, outputs replaced)
    plate = sorted((out / "plate").glob("*.exr"))[0].stat().st_mtime_ns
    assert main(["-q", "demo", "--out", str(out), "--frames", "8"]) == 0
    assert sorted((out / "plate").glob("*.exr"))[0].stat().st_mtime_ns == plate
