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


# ---------------------------------------------------------------- named parameters, --dry-run, --help-params
def _template(tmp_path, plate, out):
    doc = {"parameters": {
        "input": {"type": "STRING", "feeds": ["1.path"], "help": "the plate"},
        "output": {"type": "STRING", "feeds": ["2.path"], "help": "where"},
        "count": {"type": "INT", "feeds": ["1.count"], "help": "frames"},
        "depth": {"type": ["half", "float"], "feeds": ["2.pixel_type"], "help": "EXR depth"},
        "name": "plain"},
        "graph": _graph(str(plate), str(out))}
    doc["graph"]["1"]["inputs"]["count"] = 0
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_named_parameters_feed_their_inputs(plate, tmp_path):
    from facegraph.plugin.runner import bind, load_template

    t = load_template(_template(tmp_path, plate, tmp_path / "o.####.exr"))
    assert t.parameters["count"].default == 0 and t.defaults == {"name": "plain"}
    graph, _ = bind(t, {"count": "2", "depth": "half", "2.compression": "piz"})
    assert graph["1"]["inputs"]["count"] == 2 and graph["2"]["inputs"]["pixel_type"] == "half"
    assert graph["2"]["inputs"]["compression"] == "piz"  # NODE.INPUT still works
    with pytest.raises(GraphError, match=r"parameter 'count' = 'two' is not a valid INT \(feeds 1.count\)"):
        bind(t, {"count": "two"})
    with pytest.raises(GraphError, match="not one of"):
        bind(t, {"depth": "double"})
    with pytest.raises(GraphError, match="did you mean count"):
        bind(t, {"cont": 1})


def test_dry_run_prints_the_plan_and_writes_nothing(plate, tmp_path, capsys):
    t = _template(tmp_path, plate, tmp_path / "out" / "o.####.exr")
    assert main(["-q", "run", str(t), "--dry-run", "--frames", "2-2", "--handles", "1"]) == 0
    text = capsys.readouterr().out
    assert "FacegraphLoadImageSequence" in text and "sequence, 3 frame(s) 1-3" in text
    assert str(tmp_path / "out" / "o.####.exr") in text and "count (INT, default 0)" in text
    assert not (tmp_path / "out").exists()
    assert main(["-q", "run", str(t), "--help-params"]) == 0
    assert "depth (half|float, default 'float')  -> 2.pixel_type" in capsys.readouterr().out


@pytest.mark.parametrize("sets, message", [
    (["1.class_type=x"], None),
    (["2.images=[9, 0]"], "missing node 9"),
    (["2.images=[1, 2]"], "wants IMAGE but node 1 output 2"),
    (["count=abc"], "parameter 'count'"),
    (["2.colour=red"], "unknown input 'colour'"),
])
def test_dry_run_errors_name_node_and_input(plate, tmp_path, caplog, sets, message):
    t = _template(tmp_path, plate, tmp_path / "o.####.exr")
    if message is None:  # an unknown node class
        g = yaml.safe_load(t.read_text())
        g["graph"]["1"]["class_type"] = "FacegraphLoadImageSequense"
        t.write_text(yaml.safe_dump(g))
        sets, message = [], "did you mean FacegraphLoadImageSequence"
    args = ["run", str(t), "--dry-run"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    assert message in caplog.text


def test_run_summary_and_chunk(plate, tmp_path, caplog):
    import logging

    t = _template(tmp_path, plate, tmp_path / "out" / "o.####.exr")
    with caplog.at_level(logging.INFO, logger="facegraph"):
        assert main(["run", str(t), "--frames", "2-3", "--handles", "1", "--json"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".exr") == ["o.0002.exr", "o.0003.exr"]
    assert "2 frame file(s) written" in caplog.text and "frames/s" in caplog.text
    assert main(["-q", "run", str(t), "--frames", "3-2"]) == 2
    assert main(["-q", "run", str(t), "--handles", "2"]) == 2  # handles need --frames
