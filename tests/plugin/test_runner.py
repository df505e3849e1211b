import json

import numpy as np
import pytest
import yaml

from facegraph.core.errors import GraphError
from facegraph.core.io.images import read_image, write_image
from facegraph.plugin.cli import main
from facegraph.plugin.runner import Runner, parse_assignments


@pytest.fixture
def plate(tmp_path):
    rng = np.random.default_rng(0)
    for f in range(1, 4):
        write_image(tmp_path / "in" / f"p.{f:04d}.exr", rng.random((8, 12, 3)).astype(np.float32) * 4,
                    pixel_type="float")
    return tmp_path / "in" / "p.####.exr"


def _graph(src, dst, mode="error"):
    return {
        "1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": src, "missing": "error"}},
        "2": {"class_type": "FacegraphSaveEXRSequence",
              "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": dst, "pixel_type": "float",
                         "mode": mode}},
    }


def test_api_graph_runs_and_round_trips_pixels(plate, tmp_path):
    run = Runner().run(_graph(str(plate), str(tmp_path / "out" / "o.####.exr")))
    assert run.order == ["1", "2"]
    for f in range(1, 4):
        a, _ = read_image(str(plate).replace("####", f"{f:04d}"))
        b, info = read_image(tmp_path / "out" / f"o.{f:04d}.exr")
        assert np.array_equal(a, b)
        assert info.attribute("facegraph:frame") == f


def test_cli_runs_a_json_graph_headless(plate, tmp_path):
    g = tmp_path / "g.json"
    g.write_text(json.dumps(_graph(str(plate), str(tmp_path / "o" / "x.####.exr"))))
    assert main(["-q", "run", str(g)]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x.0001.exr", "x.0002.exr", "x.0003.exr"]


def test_yaml_template_parameters_and_set(plate, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text(yaml.safe_dump({
        "parameters": {"src": str(plate), "name": "default", "count": 2},
        "graph": {
            "1": {"class_type": "FacegraphLoadImageSequence",
                  "inputs": {"path": "${src}", "count": "${count}", "missing": "error"}},
            "2": {"class_type": "FacegraphSaveEXRSequence",
                  "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": str(tmp_path) + "/${name}.####.exr"}},
        }}))
    assert main(["-q", "run", str(g), "--set", "name=shot_a", "--set", "count=3"]) == 0
    assert len(list(tmp_path.glob("shot_a.*.exr"))) == 3


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g["1"].update(class_type="FacegraphLoadImageSequense"), "did you mean FacegraphLoadImageSequence"),
    (lambda g: g["2"]["inputs"].update(images=["9", 0]), "missing node 9"),
    (lambda g: g["2"]["inputs"].update(images=["1", 7]), "has 3 outputs"),
    (lambda g: g["2"]["inputs"].update(images=["1", 2]), "wants IMAGE but node 1 output 2 is FACEGRAPH_SEQUENCE"),
    (lambda g: g["2"]["inputs"].update(pixel_type="double"), "not one of"),
    (lambda g: g["2"]["inputs"].update(colour="red"), "unknown input 'colour'"),
    (lambda g: g["1"]["inputs"].update(first=-4), "outside"),
    (lambda g: g["1"]["inputs"].update(path="${nope}"), r"parameter \$\{nope\} has no value"),
])
def test_graph_errors_name_the_node(mutate, message, plate, tmp_path):
    g = _graph(str(plate), str(tmp_path / "o.####.exr"))
    mutate(g)
    with pytest.raises(GraphError, match=message) as exc:
        Runner().run(g)
    assert "node=" in str(exc.value)


def test_cycle_is_reported():
    g = {"1": {"class_type": "FacegraphSaveEXRSequence", "inputs": {"images": ["2", 0]}},
         "2": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": ["1", 0]}}}
    with pytest.raises(GraphError):
        Runner().run(g)


def test_failing_node_is_named_and_nothing_is_half_written(plate, tmp_path):
    out = tmp_path / "o"
    Runner().run(_graph(str(plate), str(out / "o.####.exr")))
    with pytest.raises(Exception, match=r"output frame exists.*node=2 \(FacegraphSaveEXRSequence\)"):
        Runner().run(_graph(str(plate), str(out / "o.####.exr")))
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    Runner().run(_graph(str(plate), str(out / "o.####.exr"), mode="resume"))


def test_cli_reports_failures_with_exit_code_2(tmp_path, caplog):
    g = tmp_path / "g.json"
    g.write_text(json.dumps(_graph(str(tmp_path / "none.####.exr"), str(tmp_path / "o.####.exr"))))
    assert main(["-q", "run", str(g)]) == 2
    assert "no frames found" in caplog.text and "node=1 (FacegraphLoadImageSequence)" in caplog.text


def test_parse_assignments_types_values():
    assert parse_assignments(["a=1", "b=2.5", "c=true", "d=text", "e="]) == \
        {"a": 1, "b": 2.5, "c": True, "d": "text", "e": ""}
