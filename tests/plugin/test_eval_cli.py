import json

import numpy as np
import pytest

from facegraph.plugin.cli import main

pytestmark = pytest.mark.shared


def test_eval_landmarks_aflw_json(data, capsys):
    assert main(["-q", "eval", "landmarks", "--data", str(data / "aflw2000_dev"), "--model", "tddfa_v2_mb05",
                 "--limit", "12", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)[0]
    assert r["set"] == "aflw" and r["faces"] == 12 and 0 < r["mean_of_bins"] < 0.06


def test_eval_landmarks_300w_table_with_detection(data, capsys):
    assert main(["-q", "eval", "landmarks", "--data", str(data / "landmarks68"), "--model", "pfld",
                 "--boxes", "detect", "--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "| pfld |" in out and "outer eye-corner" in out


def test_eval_detect(data, capsys):
    assert main(["-q", "eval", "detect", "--data", str(data / "boxes"), "--model", "yunet_n", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)[0]
    assert r["faces"] == 43 and r["recall"] >= 0.95


def test_landmarks_cli_many_images_boxes_csv_and_ibug68(data, tmp_path, capsys):
    ims = [data / "aflw2000_dev" / "image00042.jpg", data / "aflw2000_dev" / "image00052.jpg"]
    csv = tmp_path / "b.csv"
    csv.write_text("image,x0,y0,x1,y1\nimage00042.jpg,69,128,370,429\nimage00052.jpg,65,128,370,433\n")
    assert main(["landmarks", *map(str, ims), "--model", "tddfa_v2_mb05", "--boxes-csv", str(csv),
                 "--scheme", "ibug68", "--index-coords", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["convention"] == "pixel-index" and len(doc["images"]) == 2
    pts = np.asarray(doc["images"][0]["faces"][0]["points"])
    from facegraph.core.landmarks import box_norm, read_pts

    gt = read_pts(data / "aflw2000_dev" / "image00042.pts")
    assert pts.shape == (68, 2) and np.linalg.norm(pts - gt, axis=1).mean() / box_norm(gt) < 0.03
    assert main(["landmarks", str(ims[0]), "--json"]) == 0  # detector path, native scheme
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"][0]["faces"][0]["scheme"] == "mediapipe478"
