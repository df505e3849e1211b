"""Farm job files for one template: Deadline (command-line plugin), OpenCue (job spec XML), OpenJD (job template).

Every manager runs the same command per chunk, with its own frame tokens for the chunk's first and last frame::

    facegraph run TEMPLATE --frames START-END --handles K --chunked --shot A-B --cache DIR [--set ...]

Where the template has Analyse Shot (and the job more than one chunk), the same chunks first run an analysis pass
(the same command with ``--analysis-pass``: Analyse Shot alone, into the shared shot cache), and the chunks depend
on it: each chunk then decides tracks and smoothing over the whole shot from the cache, so its frames equal a
single run's.

(Deadline ``<STARTFRAME>-<ENDFRAME>``; OpenCue ``#FRAME_START#-#FRAME_END#``; OpenJD ``{{Task.Param.Frame}}`` of a
``CHUNK[INT]`` task parameter with a CONTIGUOUS range constraint, which expands to ``START-END``). ``--shot`` clips a
chunk to the job's frames (OpenCue's ``#FRAME_END#`` of a short last chunk can pass the end). Where the template
writes a tracking export, a second step that depends on every chunk runs ``facegraph merge`` over the chunks'
exports (plugin/chunks.py), so the job ends with the single run's export. The chunks a manager makes
(``ChunkSize`` / ``chunk`` / ``defaultTaskCount`` from the first frame) are :func:`plugin.chunks.plan_chunks`'s, which
is how the merge step can name the chunk folders in advance.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from typing import Any, Literal, Mapping
from xml.sax.saxutils import escape, quoteattr

from ..core.errors import InputError

Manager = Literal["deadline", "opencue", "openjd"]
MANAGERS: tuple[str, ...] = ("deadline", "opencue", "openjd")
TOKENS = {"deadline": ("<STARTFRAME>", "<ENDFRAME>"), "opencue": ("#FRAME_START#", "#FRAME_END#"),
          "openjd": ("{{Task.Param.Frame}}", None)}
#: the node classes whose per-shot outputs a merge step joins (re-run over the whole shot from the shot cache):
#: the tracking export and the 3D face fit export (one identity and one texture for the shot)
MERGED_CLASSES = ("FacegraphExportTracking", "FacegraphExportFaceFit")


@dataclasses.dataclass(frozen=True)
class FarmJob:
    """What a job file needs: the template, the shot's frames, the chunk size and handles, the ``--set``
    assignments, the shared cache and folders, and the facegraph executable the workers run."""

    template: str
    frames: tuple[int, int]
    chunk: int
    handles: int = 0
    assignments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cache_dir: str = ""
    input_dir: str = ""
    output_dir: str = ""
    executable: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        from .chunks import plan_chunks

        plan_chunks(self.frames, self.chunk)  # validates
        if self.handles < 0:
            raise InputError(f"--handles must be >= 0, got {self.handles}")
        if not self.cache_dir:
            raise InputError("a farm job needs --cache DIR: the shot cache every chunk shares (on shared storage)",
                             hint="chunks on different machines decide shot-level state through it")

    @property
    def exe(self) -> str:
        return self.executable or default_executable()

    @property
    def title(self) -> str:
        base = os.path.splitext(os.path.basename(self.template))[0]
        return self.name or f"facegraph {base} {self.frames[0]}-{self.frames[1]}"


def default_executable() -> str:
    """The ``facegraph`` console script beside this Python (a venv's bin/), else ``facegraph`` on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "facegraph")
    return here if os.path.isfile(here) else "facegraph"


def _set_args(assignments: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in assignments.items():
        text = "true" if v is True else "false" if v is False else "" if v is None else str(v)
        out += ["--set", f"{k}={text}"]
    return out


def chunk_args(job: FarmJob, span: str, analysis: bool = False) -> list[str]:
    """The argument list (after the executable) of one chunk's command; ``span`` holds the frame tokens;
    ``analysis``: the chunk's analysis pass (``--analysis-pass``: Analyse Shot only, into the shot cache)."""
    args = ["run", os.path.abspath(job.template), "--frames", span, "--handles", str(job.handles), "--chunked",
            "--shot", f"{job.frames[0]}-{job.frames[1]}", "--cache", os.path.abspath(job.cache_dir)]
    if analysis:
        args += ["--analysis-pass"]
    if job.input_dir:
        args += ["--input-dir", os.path.abspath(job.input_dir)]
    if job.output_dir:
        args += ["--output-dir", os.path.abspath(job.output_dir)]
    return args + _set_args(job.assignments)


def has_analysis_pass(job: FarmJob) -> bool:
    """Whether the job runs an analysis pass over every chunk before the chunks (its template has Analyse Shot
    and there is more than one chunk): each chunk then decides tracks and smoothing over the whole shot."""
    from .chunks import needs_analysis_pass, plan_chunks

    return len(plan_chunks(job.frames, job.chunk)) > 1 and needs_analysis_pass(job.template, job.assignments)


def merge_args(job: FarmJob) -> list[list[str]]:
    """One ``merge OUT CHUNK_DIRS...`` argument list per per-shot output the job merges (tracking exports)."""
    from ..core.paths import folders, resolve
    from .chunks import chunk_name, plan_chunks, per_shot_outputs
    from .runner import Runner, bind, load_template

    graph, params = bind(load_template(job.template), job.assignments)
    runner = Runner()
    prepared = runner.prepare(graph, params)
    out = []
    with folders(input=job.input_dir or None, output=job.output_dir or None):
        for key, value in per_shot_outputs(prepared, runner.node_classes).items():
            if prepared[key.partition(".")[0]]["class_type"] not in MERGED_CLASSES:
                continue
            chunks = [resolve(chunk_name(value, c), "output") for c in plan_chunks(job.frames, job.chunk)]
            out.append(["merge", resolve(value, "output"), *chunks])
    return out


def _line(exe: str, args: list[str]) -> str:
    return shlex.join([exe, *args])


# ------------------------------------------------------------------------------------------- deadline
def deadline(job: FarmJob) -> dict[str, str]:
    """Deadline 10 command-line jobs: ``job_info`` / ``plugin_info`` key=value files for the chunks (the
    CommandLine plugin; ``<STARTFRAME>`` / ``<ENDFRAME>`` in its Arguments; ChunkSize), an ``analysis_*`` pair
    before them where the job has an analysis pass, a ``merge_*`` pair for the merge (one task) and
    ``submit.sh``, which submits them in that order, each dependent on the one before."""
    a, b = TOKENS["deadline"]
    files: dict[str, str] = {}
    submit = ["deadlinecommand", "-SubmitMultipleJobs", "-dependent"]
    if has_analysis_pass(job):
        files["analysis_job_info"] = _ini({"Plugin": "CommandLine", "Name": f"{job.title} analysis",
                                           "Frames": f"{job.frames[0]}-{job.frames[1]}", "ChunkSize": job.chunk,
                                           "Comment": "facegraph analysis pass: the shot cache for the chunks"})
        files["analysis_plugin_info"] = _ini({"Executable": job.exe, "ShellExecute": "False",
                                              "Arguments": deadline_join(chunk_args(job, f"{a}-{b}", True))})
        submit += ["-job", "analysis_job_info.txt", "analysis_plugin_info.txt"]
    files["job_info"] = _ini({"Plugin": "CommandLine", "Name": job.title, "Frames": f"{job.frames[0]}-{job.frames[1]}",
                              "ChunkSize": job.chunk, "Comment": "facegraph chunks with handles"})
    files["plugin_info"] = _ini({"Executable": job.exe, "Arguments": deadline_join(chunk_args(job, f"{a}-{b}")),
                                 "ShellExecute": "False"})
    submit += ["-job", "job_info.txt", "plugin_info.txt"]
    for i, args in enumerate(merge_args(job)):
        files[f"merge{i}_job_info"] = _ini({"Plugin": "CommandLine", "Name": f"{job.title} merge {i}",
                                            "Frames": "0", "ChunkSize": 1})
        files[f"merge{i}_plugin_info"] = _ini({"Executable": job.exe, "Arguments": deadline_join(args),
                                               "ShellExecute": "False"})
        submit += ["-job", f"merge{i}_job_info.txt", f"merge{i}_plugin_info.txt"]
    files["submit"] = "#!/bin/sh\n# submit from this folder; -dependent: each job waits for the one before\n" \
                      f"cd \"$(dirname \"$0\")\" && {shlex.join(submit)}\n"
    return files


def deadline_join(args: list[str]) -> str:
    """An Arguments string for the CommandLine plugin, which splits it itself (no shell): arguments with
    spaces or quotes are wrapped in double quotes (Deadline's <QUOTE> token is a literal double quote)."""
    out = []
    for a in args:
        if a and not any(c.isspace() or c in "\"'" for c in a):
            out.append(a)
        else:
            out.append('"' + a.replace('"', "<QUOTE>") + '"')
    return " ".join(out)


def _ini(d: Mapping[str, Any]) -> str:
    return "".join(f"{k}={v}\n" for k, v in d.items())


# -------------------------------------------------------------------------------------------- opencue
def opencue(job: FarmJob, show: str = "facegraph", shot: str = "shot", user: str = "") -> str:
    """An OpenCue job spec (the cjsl XML that ``cuerun`` / pycuerun submit): a Render layer over the frames with
    ``chunk`` and ``#FRAME_START#-#FRAME_END#`` in its command, and a Post layer per merge that depends on it."""
    a, b = TOKENS["opencue"]
    user = user or os.environ.get("USER", "facegraph")
    span = f"{job.frames[0]}-{job.frames[1]}"
    layers = [_cue_layer("chunks", "Render", _line(job.exe, chunk_args(job, f"{a}-{b}")), span, job.chunk)]
    depends = []
    if has_analysis_pass(job):
        layers.insert(0, _cue_layer("analysis", "Render", _line(job.exe, chunk_args(job, f"{a}-{b}", True)), span,
                                    job.chunk))
        depends.append(_cue_depend(job, "chunks", "analysis"))
    for i, args in enumerate(merge_args(job)):
        layers.append(_cue_layer(f"merge{i}", "Post", _line(job.exe, args), "1", 1))
        depends.append(_cue_depend(job, f"merge{i}", "chunks"))
    return ('<?xml version="1.0"?>\n'
            '<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" "http://localhost:8080/spcue/dtd/cjsl-1.14.dtd">\n'
            f"<spec>\n  <facility>local</facility>\n  <show>{escape(show)}</show>\n  <shot>{escape(shot)}</shot>\n"
            f"  <user>{escape(user)}</user>\n  <job name={quoteattr(_cue_name(job))}>\n    <paused>False</paused>\n"
            "    <maxretries>2</maxretries>\n    <autoeat>False</autoeat>\n    <layers>\n" + "".join(layers) +
            "    </layers>\n  </job>\n  <depends>\n" + "\n".join(depends) + ("\n" if depends else "") +
            "  </depends>\n</spec>\n")


def _cue_depend(job: FarmJob, layer: str, on: str) -> str:
    """``layer`` waits for every frame of layer ``on`` (same job)."""
    name = escape(_cue_name(job))
    return (f'  <depend type="LAYER_ON_LAYER" anyframe="false"><depjob>{name}</depjob><deplayer>{layer}</deplayer>'
            f'<onjob>{name}</onjob><onlayer>{on}</onlayer></depend>')


def _cue_name(job: FarmJob) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in job.title)


def _cue_layer(name: str, kind: str, cmd: str, frames: str, chunk: int) -> str:
    return (f"      <layer name={quoteattr(name)} type={quoteattr(kind)}>\n        <cmd>{escape(cmd)}</cmd>\n"
            f"        <range>{frames}</range>\n        <chunk>{chunk}</chunk>\n        <cores>1</cores>\n"
            "        <services><service>shell</service></services>\n      </layer>\n")


# --------------------------------------------------------------------------------------------- openjd
def openjd(job: FarmJob) -> str:
    """An Open Job Description job template (specification jobtemplate-2023-09 with the TASK_CHUNKING
    extension): a step whose ``Frame`` task parameter is ``CHUNK[INT]`` over ``{{Param.Frames}}`` with
    ``defaultTaskCount`` = chunk and a CONTIGUOUS range constraint (``{{Task.Param.Frame}}`` expands to
    ``START-END``), an ``analysis`` step of the same chunks before it where the job has an analysis pass, and a
    merge step that depends on it."""
    import yaml

    def chunked(name: str, analysis: bool) -> dict:
        return {"name": name, "parameterSpace": {"taskParameterDefinitions": [{
                    "name": "Frame", "type": "CHUNK[INT]", "range": "{{Param.Frames}}",
                    "chunks": {"defaultTaskCount": int(job.chunk), "rangeConstraint": "CONTIGUOUS"}}]},
                "script": {"actions": {"onRun": {"command": job.exe,
                                                 "args": chunk_args(job, TOKENS["openjd"][0], analysis)}}}}

    steps = [chunked("chunks", False)]
    if has_analysis_pass(job):
        steps = [chunked("analysis", True), {**steps[0], "dependencies": [{"dependsOn": "analysis"}]}]
    for i, args in enumerate(merge_args(job)):
        steps.append({"name": f"merge{i}", "dependencies": [{"dependsOn": "chunks"}],
                      "script": {"actions": {"onRun": {"command": job.exe, "args": args}}}})
    doc = {"specificationVersion": "jobtemplate-2023-09", "extensions": ["TASK_CHUNKING"], "name": job.title,
           "parameterDefinitions": [{"name": "Frames", "type": "STRING",
                                     "default": f"{job.frames[0]}-{job.frames[1]}",
                                     "description": "the shot's frames (merge steps name chunks of this range)"}],
           "steps": steps}
    return yaml.safe_dump(doc, sort_keys=False, width=1 << 16)


def job_files(manager: str, job: FarmJob) -> dict[str, str]:
    """{file name: text} of the job for ``manager`` (deadline: several files; opencue: job.xml; openjd:
    job.yaml)."""
    if manager not in MANAGERS:
        raise InputError(f"--manager must be one of {MANAGERS}, got {manager!r}")
    if manager == "deadline":
        return {f"{k}.txt" if k != "submit" else "submit.sh": v for k, v in deadline(job).items()}
    if manager == "opencue":
        return {"job.xml": opencue(job)}
    return {"job.yaml": openjd(job)}


def write_job(manager: str, job: FarmJob, out: str) -> list[str]:
    """Write the job files: ``out`` is a folder for deadline (its files inside), the file itself otherwise."""
    from ..core.fsutil import atomic_write

    files = job_files(manager, job)
    if manager == "deadline":
        paths = [os.path.join(out, name) for name in files]
        for p, text in zip(paths, files.values()):
            atomic_write(p, text.encode())
        os.chmod(os.path.join(out, "submit.sh"), 0o755)
        return paths
    atomic_write(out, next(iter(files.values())).encode())
    return [out]


def describe(job: FarmJob) -> str:
    """One line: what the job runs (for the command line's log)."""
    from .chunks import plan_chunks

    n = len(plan_chunks(job.frames, job.chunk))
    return json.dumps({"template": job.template, "frames": list(job.frames), "chunks": n, "handles": job.handles})
