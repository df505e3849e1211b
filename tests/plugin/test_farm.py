"""Farm job files (plugin/farm.py): each manager's output parses, names its own frame tokens and chunking, and
the command it names, with the tokens of one chunk substituted, runs that chunk (the facegraph console script,
on frames of a real clip)."""
import configparser
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from facegraph.core.errors import InputError
from facegraph.core.io.images import read_image
from facegraph.plugin.cli import main
from facegraph.plugin.farm import FarmJob, deadline_join, job_files

ROOT = Path(__file__).resolve().parents[2]
EXE = ROOT / ".venv" / "bin" / "facegraph"
WF = ROOT / "example_workflows"


def _copy_template(tmp_path):
    g = {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "plate.####.exr", "missing": "hold"}},
         "2": {"class_type": "FacegraphSaveEXRSequence",
               "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": "out/o.####.exr", "pixel_type": "float",
                          "mode": "resume"}}}
    doc = {"parameters": {"input": {"type": "STRING", "feeds": ["1.path"], "help": "plate"},
                          "output": {"type": "STRING", "feeds": ["2.path"], "help": "output"}}, "graph": g}
    p = tmp_path / "copy.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _job(tmp_path, template, **kw):
    return FarmJob(template=str(template), frames=(1001, 1006), chunk=2, handles=1, cache_dir=str(tmp_path / "cache"),
                   executable=str(EXE), **kw)


def _deadline_command(files, first, last):
    info = configparser.ConfigParser()
    info.optionxform = str
    info.read_string("[job]\n" + files["job_info.txt"])
    plugin = configparser.ConfigParser(interpolation=None)
    plugin.optionxform = str
    plugin.read_string("[plugin]\n" + files["plugin_info.txt"])
    assert info["job"]["Plugin"] == "CommandLine" and info["job"]["Frames"] == "1001-1006"
    assert info["job"]["ChunkSize"] == "2"
    args = plugin["plugin"]["Arguments"]
    assert "<STARTFRAME>-<ENDFRAME>" in args
    args = args.replace("<STARTFRAME>", str(first)).replace("<ENDFRAME>", str(last)).replace("<QUOTE>", '"')
    return [plugin["plugin"]["Executable"], *shlex.split(args)]


def _opencue_command(text, first, last):
    root = ET.fromstring(text.split("\n", 2)[2])  # after the XML declaration and DOCTYPE
    layer = root.find("job/layers/layer[@name='chunks']")
    assert layer.find("range").text == "1001-1006" and layer.find("chunk").text == "2"
    cmd = layer.find("cmd").text
    assert "#FRAME_START#-#FRAME_END#" in cmd
    return shlex.split(cmd.replace("#FRAME_START#", str(first)).replace("#FRAME_END#", str(last))), root


def _openjd_command(text, first, last):
    doc = yaml.safe_load(text)
    assert doc["specificationVersion"] == "jobtemplate-2023-09" and "TASK_CHUNKING" in doc["extensions"]
    step = next(st for st in doc["steps"] if st["name"] == "chunks")
    (param,) = step["parameterSpace"]["taskParameterDefinitions"]
    assert param["type"] == "CHUNK[INT]" and param["range"] == "{{Param.Frames}}"
    assert param["chunks"] == {"defaultTaskCount": 2, "rangeConstraint": "CONTIGUOUS"}
    assert doc["parameterDefinitions"][0]["default"] == "1001-1006"
    run = step["script"]["actions"]["onRun"]
    # CONTIGUOUS: {{Task.Param.Frame}} expands to START-END
    return [run["command"], *[a.replace("{{Task.Param.Frame}}", f"{first}-{last}") for a in run["args"]]], doc


def test_job_files_parse_with_each_managers_tokens(tmp_path):
    t = _copy_template(tmp_path)
    job = _job(tmp_path, t, assignments={"input": "/plates/my shot/p.####.exr"})
    cmd = _deadline_command(job_files("deadline", job), 1003, 1004)
    assert cmd[cmd.index("--frames") + 1] == "1003-1004" and "input=/plates/my shot/p.####.exr" in cmd
    cmd, _ = _opencue_command(job_files("opencue", job)["job.xml"], 1003, 1004)
    assert cmd[cmd.index("--handles") + 1] == "1" and "--chunked" in cmd
    cmd, doc = _openjd_command(job_files("openjd", job)["job.yaml"], 1003, 1004)
    assert cmd[cmd.index("--shot") + 1] == "1001-1006" and len(doc["steps"]) == 1  # no tracking export: no merge
    assert deadline_join(["a b", 'q"x']) == '"a b" "q<QUOTE>x"'
    with pytest.raises(InputError, match="--cache"):
        FarmJob(template=str(t), frames=(1, 2), chunk=1)


def test_a_template_with_a_tracking_export_gets_a_merge_step(tmp_path):
    job = _job(tmp_path, WF / "analyse_shot.json", output_dir=str(tmp_path / "out"))
    _, root = _opencue_command(job_files("opencue", job)["job.xml"], 1001, 1002)
    merge = root.find("job/layers/layer[@name='merge0']")
    args = shlex.split(merge.find("cmd").text)
    assert args[1:3] == ["merge", str(tmp_path / "out/facegraph/tracking")]
    assert args[3:] == [str(tmp_path / f"out/facegraph/tracking.chunk_{a}-{b}") for a, b in
                        ((1001, 1002), (1003, 1004), (1005, 1006))]
    deps = {d.find("deplayer").text: d.find("onlayer").text for d in root.findall("depends/depend")}
    assert deps == {"chunks": "analysis", "merge0": "chunks"}
    _, doc = _openjd_command(job_files("openjd", job)["job.yaml"], 1001, 1002)
    assert [st["name"] for st in doc["steps"]] == ["analysis", "chunks", "merge0"]
    assert doc["steps"][1]["dependencies"] == [{"dependsOn": "analysis"}]
    assert doc["steps"][2]["dependencies"] == [{"dependsOn": "chunks"}]
    files = job_files("deadline", job)
    assert "-dependent" in files["submit.sh"] and "merge0_plugin_info.txt" in files
    order = files["submit.sh"].split()
    assert order.index("analysis_plugin_info.txt") < order.index("plugin_info.txt") < order.index(
        "merge0_plugin_info.txt")


def test_the_analysis_pass_runs_the_same_chunks_with_its_flag(tmp_path):
    """Analyse Shot in the template: every manager runs an analysis pass over the same chunks first (the chunk
    command plus --analysis-pass), and the chunks wait for it; a template without one gets no such step."""
    job = _job(tmp_path, WF / "analyse_shot.json", output_dir=str(tmp_path / "out"))
    root = ET.fromstring(job_files("opencue", job)["job.xml"].split("\n", 2)[2])
    analysis = shlex.split(root.find("job/layers/layer[@name='analysis']/cmd").text)
    chunks = shlex.split(root.find("job/layers/layer[@name='chunks']/cmd").text)
    assert "--analysis-pass" in analysis and [a for a in analysis if a != "--analysis-pass"] == chunks
    assert root.find("job/layers/layer[@name='analysis']/chunk").text == "2"
    files = job_files("deadline", job)
    assert "--analysis-pass" in files["analysis_plugin_info.txt"] and "--analysis-pass" not in files["plugin_info.txt"]
    copy = _job(tmp_path, _copy_template(tmp_path))
    assert [st["name"] for st in yaml.safe_load(job_files("openjd", copy)["job.yaml"])["steps"]] == ["chunks"]
    assert not any(k.startswith("analysis") for k in job_files("deadline", copy))


def test_cli_writes_the_files(tmp_path, capsys):
    t = _copy_template(tmp_path)
    assert main(["-q", "farm", "job", "--manager", "deadline", str(t), "--frames", "1001-1006", "--chunk", "2",
                 "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "dl")]) == 0
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["job_info.txt", "plugin_info.txt", "submit.sh"]
    assert main(["-q", "farm", "job", "--manager", "openjd", str(t), "--frames", "1001-1006", "--chunk", "2",
                 "--cache", str(tmp_path / "c")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["steps"]
    assert main(["-q", "farm", "job", "--manager", "openjd", str(t), "--frames", "1001-1006", "--chunk", "2",
                 "--cache", str(tmp_path / "c"), "--set", "nope=1"]) == 2  # checked once, before any worker


@pytest.fixture(scope="module")
def clip(data, tmp_path_factory):
    """6 frames of a real talking-head clip as an EXR sequence."""
    d = tmp_path_factory.mktemp("clip")
    assert main(["-q", "convert", str(data / "video" / "d0.mp4"), str(d / "plate.####.exr"), "--frames",
                 "1001-1006", "--float"]) == 0
    return d


@pytest.mark.shared
@pytest.mark.parametrize("manager, chunk", [("deadline", (1001, 1002)),  # one in the default suite (~40 s)
                                            pytest.param("opencue", (1003, 1004), marks=pytest.mark.slow),
                                            pytest.param("openjd", (1005, 1006), marks=pytest.mark.slow)])
def test_each_managers_command_runs_its_chunk(manager, chunk, clip, tmp_path):
    t = _copy_template(tmp_path)
    job = _job(tmp_path, t, input_dir=str(clip), output_dir=str(tmp_path / "o"),
               assignments={"input": "plate.####.exr", "output": "out/o.####.exr"})
    files = job_files(manager, job)
    cmd = (_deadline_command(files, *chunk) if manager == "deadline" else
           _opencue_command(files["job.xml"], *chunk)[0] if manager == "opencue" else
           _openjd_command(files["job.yaml"], *chunk)[0])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "o" / "out").iterdir() if p.suffix == ".exr")
    assert written == [f"o.{f}.exr" for f in range(chunk[0], chunk[1] + 1)]  # only the chunk, not the handles
    for f in range(chunk[0], chunk[1] + 1):
        a, _ = read_image(clip / f"plate.{f}.exr")
        b, _ = read_image(tmp_path / "o" / "out" / f"o.{f}.exr")
        assert np.array_equal(a, b)
    assert "done:" in proc.stderr and "frames/s" in proc.stderr  # the summary
