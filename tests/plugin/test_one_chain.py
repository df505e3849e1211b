"""One analysis chain behind every entry point: the command line (`facegraph landmarks`), a headless graph of
the nodes (Load Image -> Detect -> Landmarks -> Refine) and the evaluation predictor that BENCHMARKS.md
measures give the same faces on the same real photo, because they all run models/analysis.py."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

pytestmark = pytest.mark.shared


def test_cli_graph_and_eval_give_identical_faces(data):
    from facegraph.core.detection import DetectOptions
    from facegraph.models.loader import load_model
    from facegraph.plugin.cli import main
    from facegraph.plugin.evaluate import Predictor, frame_views_of
    from facegraph.plugin.runner import Runner

    photo = str(data / "stills" / "s0.jpg")
    # the evaluation predictor (what `facegraph eval` and the benches score)
    views = frame_views_of(photo)
    found = load_model("yunet_n", task="detect").detect_views(views, DetectOptions())[0]
    assert len(found) >= 1
    pred = Predictor("default-chain")
    evals = [np.asarray(pred.predict(views, ("face", tuple(map(float, b))), keypoints=k)[1].points)[:, :2]
             for b, k in zip(found.boxes, found.keypoints)]
    # the command line
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["-q", "landmarks", photo, "--model", "default-chain", "--json"]) == 0
    cli = [np.asarray(f["points"]) for f in json.loads(buf.getvalue())["images"][0]["faces"]]
    # a headless graph of the nodes, with the same view (the photo's values as they are) and the same passes
    graph = {
        "1": {"class_type": "FacegraphLoadImage", "inputs": {"path": photo}},
        "2": {"class_type": "FacegraphDetectFaces", "inputs": {"images": ["1", 0], "exposure": "none"}},
        "3": {"class_type": "FacegraphFaceLandmarks", "inputs": {"images": ["1", 0], "faces": ["2", 0],
                                                                 "recrop": 0, "exposure": "none"}},
        "4": {"class_type": "FacegraphRefineLandmarks", "inputs": {"images": ["1", 0], "faces": ["3", 0],
                                                                   "recrop": 1, "eyes": "auto", "exposure": "none"}},
        "5": {"class_type": "FacegraphFaceInfo", "inputs": {"faces": ["4", 0]}},
    }
    run = Runner().run(graph)
    faces = run.outputs["4"][0][0].faces
    nodes = [np.asarray(f.landmarks.points)[:, :2] for f in faces]
    assert len(evals) == len(cli) == len(nodes)
    for e, c, n in zip(evals, cli, nodes):
        assert e.shape == n.shape == (478, 2)
        assert np.array_equal(e, n), float(np.abs(e - n).max())
        assert np.abs(c - e).max() <= 5e-4 + 1e-4  # the JSON rounds to 1/1000 px (of float32 values)
