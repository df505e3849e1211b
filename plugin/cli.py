"""The ``facegraph`` command line. Library code raises; only this entry point turns errors into exit codes.

Exit codes (EXIT_CODES, shown by ``facegraph run --help``): 0 success, 1 a check failed (e.g. a hash mismatch in
``models verify``), 2 bad input or a failed run (one line naming the file / frame / node / option and what to do;
the traceback only with ``--debug``), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys

import numpy as np
from typing import Callable, Sequence

from ..core import progress
from ..core.errors import FacegraphError, InputError

log = logging.getLogger("facegraph")

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def command(fn: Callable[[argparse._SubParsersAction], None]) -> Callable:
    COMMANDS[fn.__name__.removeprefix("add_")] = fn
    return fn


# ------------------------------------------------------------------------------------------------ models
@command
def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, fetch, verify and pin model files")
    msub = p.add_subparsers(dest="action", required=True)
    lp = msub.add_parser("list", help="registered models: id, task, licence, size, resolved or not")
    lp.add_argument("--task")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_models_list)
    fp = msub.add_parser("fetch", help="make models available locally (mirror or official URL), verified")
    fp.add_argument("ids", nargs="*")
    fp.add_argument("--all", action="store_true")
    fp.set_defaults(func=_models_fetch)
    vp = msub.add_parser("verify", help="re-hash every resolvable file; exit 1 on any mismatch")
    vp.add_argument("ids", nargs="*")
    vp.set_defaults(func=_models_verify)
    pp = msub.add_parser("pin", help="trust a file that has no published sha256 (records it in pins.json)")
    pp.add_argument("id")
    g = pp.add_mutually_exclusive_group(required=True)
    g.add_argument("--sha256")
    g.add_argument("--file", help="hash this local copy and pin that hash")
    pp.set_defaults(func=_models_pin)
    ep = msub.add_parser("export-onnx", help="export every torch-ported network (BlazeFace, face mesh v1/v2, iris, "
                                             "3DDFA_V2) to ONNX with a dynamic batch axis, for TensorRT / onnxruntime")
    ep.add_argument("out", help="folder for <id>[.<part>].onnx (created; existing files are replaced)")
    ep.add_argument("--opset", type=int, default=18)
    ep.set_defaults(func=_models_export_onnx)


def _models_export_onnx(args: argparse.Namespace) -> int:
    try:
        from ..models.onnx_export import export_all
    except ImportError as exc:
        raise InputError(f"ONNX export needs the onnx packages ({exc.name} is missing)",
                         hint="pip install 'facegraph[onnx]'") from None
    for path in export_all(args.out, opset=args.opset):
        print(path)
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from ..models.registry import registry
    from ..models.store import default_store

    store = default_store()
    rows = []
    for spec in registry():
        if args.task and spec.task != args.task:
            continue
        ok, where = store.status(spec)
        rows.append({"id": spec.id, "task": spec.task, "default": spec.default, "licence": spec.licence,
                     "flag": spec.licence_flag, "size": spec.size, "resolved": ok, "where": where})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':24} {'task':12} {'size':>9}  {'status':10} licence")
    for r in rows:
        size = f"{r['size'] / 1e6:.1f} MB"
        status = r["where"] if r["resolved"] else "missing"
        flag = f"[{r['flag']}] " if r["flag"] else ""
        star = "*" if r["default"] else " "
        print(f"{r['id'] + star:24} {r['task']:12} {size:>9}  {status:10} {flag}{r['licence']}")
    print("* default for its task")
    return 0


def _selected(args: argparse.Namespace):
    from ..models.registry import registry

    reg = registry()
    if getattr(args, "all", False) or not args.ids:
        return list(reg)
    return [reg.get(i) for i in args.ids]


def _models_fetch(args: argparse.Namespace) -> int:
    from ..models.store import default_store

    if not args.ids and not args.all:
        print("name model ids or pass --all", file=sys.stderr)
        return 2
    store, failed = default_store(), 0
    for spec in _selected(args):
        try:
            res = store.resolve(spec)
            print(f"ok       {spec.id} ({', '.join(sorted(set(res.locations.values())))})")
        except FacegraphError as exc:
            failed += 1
            print(f"FAILED   {spec.id}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _models_verify(args: argparse.Namespace) -> int:
    from ..core.errors import IntegrityError
    from ..models.store import default_store

    store = default_store()
    bad = missing = good = unpinned = 0
    for spec in _selected(args):
        for f in spec.files:
            loc = store.locate(f)
            if loc is None:
                missing += 1
                print(f"missing  {spec.id}: {f.path}")
                continue
            try:
                store.verify(f, loc.path)
                good += 1
                print(f"ok       {spec.id}: {loc.path}")
            except IntegrityError as exc:
                bad += 1
                print(f"MISMATCH {spec.id}: {exc}")
            except FacegraphError as exc:
                unpinned += 1
                print(f"UNPINNED {spec.id}: {exc}")
    print(f"{good} verified, {bad} mismatched, {unpinned} unpinned, {missing} missing")
    return 1 if bad or unpinned else 0


def _models_pin(args: argparse.Namespace) -> int:
    from ..models.registry import registry
    from ..models.store import default_store, sha256_of

    spec = registry().get(args.id)
    unpinned = [f for f in spec.files if f.sha256 is None]
    if len(unpinned) != 1:
        print(f"{spec.id} has {len(unpinned)} unpinned files; nothing to pin", file=sys.stderr)
        return 2
    if args.file and not os.path.isfile(args.file):
        raise InputError(f"--file: no such file {args.file!r}", hint="give the path of your local copy of the model")
    if args.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        raise InputError(f"--sha256: {args.sha256!r} is not a 64-digit hex sha256")
    sha = args.sha256 or sha256_of(args.file)
    default_store().pin(unpinned[0], sha)
    print(f"pinned {unpinned[0].path} = {sha}")
    return 0


# --------------------------------------------------------------------------------------------------- run
EXIT_CODES = """exit codes:
  0    success (a dry run: the graph is valid)
  1    a check failed (models verify: a hash mismatch or an unpinned file)
  2    bad input or a failed run: unknown node, missing or mistyped input, bad parameter, unreadable frame,
       refused overwrite, a failing node (one line naming the file / frame / node / input and what to do;
       the traceback with --debug)
  130  interrupted (Ctrl-C / SIGINT)"""

RUN_EPILOG = """A template's named parameters (--help-params lists them) set every node input they feed; any node input is
also set directly as --set NODE.INPUT=VALUE. --frames A-B runs that part of the shot: readers read A-K..B+K
(--handles K, clipped to the shot) so temporal filters see the handles; frame-sequence writers write only
A..B. --chunked (what farm jobs pass) also names per-shot outputs (folders, stills) after the chunk,
<name>.chunk_A-B, and `facegraph merge` joins the chunks' tracking exports into the single run's, through the
shot cache shared by every chunk (--cache DIR). A chunk equals a single run over the shot exactly when the shot
cache holds every frame of the shot (--shot F-L): run every chunk with --analysis-pass first (farm jobs and
--chunk N do), then the chunks; otherwise Analyse Shot smooths over the chunk and its handles (close, not equal).

""" + EXIT_CODES


def parse_span(text: str) -> tuple[int, int]:
    """``"1001-1100"`` / ``"1001"`` / ``"-5--1"`` -> (first, last), inclusive; InputError otherwise."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text or "")
    if not m:
        raise InputError(f"--frames {text!r}: give a contiguous range FIRST-LAST (e.g. 1001-1100) or one frame")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise InputError(f"--frames {text}: the last frame is before the first", hint=f"write {b}-{a}")
    return a, b


@command
def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a graph (template, ComfyUI API or UI format, JSON or YAML) headless",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="template parameter, or NODE.INPUT=VALUE for one node input (repeatable)")
    p.add_argument("--frames", metavar="A-B", help="run frames A-B of the shot (a chunk)")
    p.add_argument("--handles", type=int, default=0, metavar="K",
                   help="read K more frames each side of --frames for temporal filters; write only A-B")
    p.add_argument("--chunked", action="store_true",
                   help="this run is one chunk of a shot: per-shot outputs go to <name>.chunk_A-B (see merge)")
    p.add_argument("--cache", default="", metavar="DIR",
                   help="the shot cache folder (per-frame analysis), shared by every chunk of a shot")
    p.add_argument("--shot", metavar="A-B",
                   help="the whole shot's frames (farm jobs): --frames and its handles are clipped to them, and "
                        "a chunk decides tracks and smoothing over the whole shot once the shot cache holds it")
    p.add_argument("--analysis-pass", action="store_true",
                   help="the first pass of a chunked render: run only Analyse Shot (and what feeds it) on --frames, "
                        "filling the shot cache (--cache); write nothing")
    p.add_argument("--input-dir", default="", help="where relative paths that nodes read go (default: here)")
    p.add_argument("--output-dir", default="", help="where relative paths that nodes write go (default: here)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the graph and print the plan (nodes, frames, outputs); run and write nothing")
    p.add_argument("--help-params", action="store_true", help="list the template's named parameters and exit")
    p.add_argument("--json", action="store_true", help="print the summary (or the dry run's plan) as JSON")
    from .ray_engine import add_engine_arguments

    add_engine_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..core.paths import folders
    from .chunks import run_graph
    from .runner import describe, format_parameters, format_plan, load_template, parse_assignments

    if args.help_params:
        print("\n".join(format_parameters(load_template(args.graph))))
        return 0
    if args.handles < 0:
        raise InputError(f"--handles must be >= 0, got {args.handles}")
    span = parse_span(args.frames) if args.frames else None
    shot = None
    if span is not None and args.shot:
        shot = parse_span(args.shot)
        clipped = (max(span[0], shot[0]), min(span[1], shot[1]))
        if clipped[1] < clipped[0]:
            raise InputError(f"--frames {args.frames} is outside --shot {args.shot}")
        span = clipped
    if (args.handles or args.chunked) and span is None:
        raise InputError("--handles and --chunked need --frames A-B (the chunk)")
    sets = parse_assignments(args.set)
    if args.dry_run:
        with folders(input=args.input_dir or None, output=args.output_dir or None):
            plan = describe(args.graph, sets, span, args.handles, args.chunked)
        if args.json:
            print(json.dumps(plan, indent=1, default=str))
            return 0
        print("\n".join(format_plan(plan)))
        print("\n".join(format_parameters(load_template(args.graph))))
        problems = [r for r in plan["reads"] if r.get("problem")]
        print(f"dry run: the graph is valid; {len(plan['nodes'])} node(s) would run" +
              (f"; {len(problems)} input(s) cannot be planned yet (see reads)" if problems else ""))
        return 0
    if args.engine == "ray" or args.chunk is not None:
        return _run_chunks(args, sets, span)
    if args.analysis_pass and span is None:
        raise InputError("--analysis-pass needs --frames A-B (the chunk to analyse)")
    summary = run_graph(args.graph, sets, span, args.handles, args.input_dir, args.output_dir, args.cache,
                        chunked=args.chunked, shot=shot, analysis_pass=args.analysis_pass)
    result = summary.pop("run")
    if result is None:
        log.info("analysis pass: the graph has no Analyse Shot node; nothing to do")
        return 0
    for nid, ui in result.ui.items():
        if ui and ui.get("text"):
            log.info("node %s: %s", nid, " ".join(map(str, ui["text"])))
    frames = summary["written"] + summary["kept"]
    rate = summary["written"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    slowest = sorted(result.seconds.items(), key=lambda kv: -kv[1])[:3]
    log.info("done: %d node(s) in %.1f s; %d frame file(s) written, %d kept (resume)%s; slowest: %s; graph %s",
             len(result.order), summary["seconds"], summary["written"], summary["kept"],
             f", {rate:.2f} frames/s" if frames else "",
             ", ".join(f"node {k} {v:.1f} s" for k, v in slowest), result.graph_hash)
    for out in summary["outputs"]:
        log.info("output: %s", out)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


def _run_chunks(args: argparse.Namespace, sets: dict, span) -> int:
    """``run --engine local|ray [--chunk N]``: --frames in chunks with handles, one after another here or on a
    pool of Ray actors (plugin/ray_engine.py); per-shot outputs are written per chunk (join them with merge)."""
    from .ray_engine import engine_from_args

    if span is None:
        raise InputError("--engine / --chunk need --frames A-B (the frames to split into chunks)")
    engine = engine_from_args(args)
    summary = engine.run(args.graph, sets, span, handles=args.handles, input_dir=args.input_dir,
                         output_dir=args.output_dir, cache_dir=args.cache)
    retried = sum(c.get("attempts", 1) - 1 for c in summary["chunks"])
    log.info("done: %d chunk(s) of frames %d-%d on %s (%d worker(s)) in %.1f s%s; per-shot outputs are per "
             "chunk (<name>.chunk_A-B): join them with facegraph merge", len(summary["chunks"]), *summary["frames"],
             summary["engine"], summary.get("workers", 1), summary["seconds"],
             f", {retried} chunk(s) retried" if retried else "")
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    return 0


class ProgressLog:
    """A reporter for ``facegraph run``: the tqdm bars on a terminal (rate and ETA included), and where stderr
    is not a terminal (farm logs) one log line per task at most every ``every`` seconds and at its end:
    ``label: done/total, frames/s, ETA``."""

    def __init__(self, inner, every: float = 10.0) -> None:
        import time

        self.inner = inner
        self.every = every
        self._clock = time.perf_counter
        self._tasks: list[list] = []  # [label, total, done, t0, last_log]
        self._log = not sys.stderr.isatty()

    def start(self, total: int, label: str) -> None:
        self.inner.start(total, label)
        now = self._clock()
        self._tasks.append([label, int(total), 0, now, now])

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)
        if not self._tasks:
            return
        t = self._tasks[-1]
        t[2] += n
        now = self._clock()
        if self._log and now - t[4] >= self.every:
            t[4] = now
            log.info("%s", self.line(t, now))

    def finish(self) -> None:
        self.inner.finish()
        if self._tasks:
            t = self._tasks.pop()
            if self._log and t[1] > 1 and self._clock() - t[3] >= self.every:
                log.info("%s (done)", self.line(t, self._clock()))

    def check_interrupt(self) -> None:
        self.inner.check_interrupt()

    @staticmethod
    def line(t: list, now: float) -> str:
        label, total, done, t0 = t[:4]
        dt = max(now - t0, 1e-9)
        rate = done / dt
        eta = (total - done) / rate if rate > 0 and total else float("nan")
        return (f"{label}: {done}/{total or '?'}, {rate:.2f}/s" +
                (f", ETA {eta:.0f} s" if eta == eta else ""))


# ------------------------------------------------------------------------------------------------- merge
@command
def add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join the chunks of a shot (their tracking exports) into the single run's",
                       epilog="OUT: the merged folder (e.g. facegraph/tracking). CHUNK_DIRS: the chunks' folders, "
                              "<name>.chunk_A-B, written by `facegraph run --chunked` (each holds "
                              "facegraph_chunk.json). The merge re-runs the export's branch over the whole shot "
                              "from the chunks' shared --cache: the result equals a single run's.\n\n" + EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("chunk_dirs", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from .chunks import merge

    res = merge(args.out, args.chunk_dirs)
    if args.json:
        print(json.dumps(res, indent=1))
    log.info("merged %d chunk(s), frames %d-%d, into %s in %.1f s", res["chunks"], *res["frames"], res["output"],
             res["seconds"])
    return 0


# -------------------------------------------------------------------------------------------------- farm
@command
def add_farm(sub: argparse._SubParsersAction) -> None:
    from .farm import MANAGERS

    p = sub.add_parser("farm", help="render farm job files for a template (Deadline, OpenCue, OpenJD)")
    fsub = p.add_subparsers(dest="action", required=True)
    jp = fsub.add_parser("job", help="write the job file(s) that run a template in chunks with handles",
                         epilog="deadline: --out is a folder (job_info.txt, plugin_info.txt, merge*_*.txt, "
                                "submit.sh); opencue: a job spec XML; openjd: a job template YAML. Without --out "
                                "the files are printed. Each chunk runs `facegraph run TEMPLATE --frames START-END "
                                "--handles K --chunked --shot A-B --cache DIR`; a merge step joins the tracking "
                                "exports.\n\n" + EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    jp.add_argument("--manager", choices=MANAGERS, required=True)
    jp.add_argument("template")
    jp.add_argument("--frames", required=True, metavar="A-B", help="the shot's frames")
    jp.add_argument("--chunk", type=int, required=True, metavar="N", help="frames per chunk (task)")
    jp.add_argument("--handles", type=int, default=0, metavar="K")
    jp.add_argument("--set", action="append", metavar="NAME=VALUE")
    jp.add_argument("--cache", required=True, metavar="DIR", help="shot cache on storage every worker sees")
    jp.add_argument("--input-dir", default="")
    jp.add_argument("--output-dir", default="")
    jp.add_argument("--facegraph", default="", metavar="EXE",
                    help="the facegraph executable on the workers (default: the one beside this Python)")
    jp.add_argument("--name", default="", help="job name")
    jp.add_argument("--out", default="", metavar="FILE")
    jp.set_defaults(func=_farm_job)


def _farm_job(args: argparse.Namespace) -> int:
    from .farm import FarmJob, job_files, write_job
    from .runner import Runner, bind, load_template, parse_assignments

    sets = parse_assignments(args.set)
    graph, params = bind(load_template(args.template), sets)
    Runner().prepare(graph, params)  # a job that would fail on every worker fails here, once
    job = FarmJob(template=args.template, frames=parse_span(args.frames), chunk=args.chunk, handles=args.handles,
                  assignments=sets, cache_dir=args.cache, input_dir=args.input_dir, output_dir=args.output_dir,
                  executable=args.facegraph, name=args.name)
    if not args.out:
        files = job_files(args.manager, job)
        for name, text in files.items():
            if len(files) > 1:
                print(f"# ---- {name}")
            print(text, end="")
        return 0
    for path in write_job(args.manager, job, args.out):
        log.info("wrote %s", path)
    return 0


# -------------------------------------------------------------------------------------------------- ls
@command
def add_ls(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="the sequences and stills in a folder, as patterns with their frame ranges")
    p.add_argument("folder")
    p.set_defaults(func=_ls)


def _ls(args: argparse.Namespace) -> int:
    from ..core.io.sequence import find_sequences

    for line in find_sequences(args.folder):
        print(line)
    return 0


# ----------------------------------------------------------------------------------------------- convert
def add_view_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.colour import VIEW_TRANSFORMS

    p.add_argument("--view", choices=VIEW_TRANSFORMS, default="srgb",
                   help="view transform for display outputs (png/jpg/tif/mp4/mov)")
    p.add_argument("--stops", type=float, default=0.0, help="exposure trim in stops before the view")
    p.add_argument("--ocio-config", default="", help="OCIO config file or built-in URI (ocio://studio-config-latest)")
    p.add_argument("--display", default="", help="OCIO display (default: the config's)")
    p.add_argument("--ocio-view", default="", help="OCIO view (default: the display's)")
    p.add_argument("--ocio-colourspace", default="auto", help="colour space of the linear frames (auto: "
                   "Linear Rec.709 where the config has it, else its scene_linear role)")


def view_from_args(args: argparse.Namespace):
    from ..core.colour import ViewOptions

    view = "ocio" if args.ocio_config and args.view == "srgb" else args.view
    return ViewOptions(exposure="none", stops=args.stops, view=view, ocio_config=args.ocio_config,
                       ocio_display=args.display, ocio_view=args.ocio_view, ocio_colourspace=args.ocio_colourspace)


@command
def add_convert(sub: argparse._SubParsersAction) -> None:
    from ..core.io.images import EXR_COMPRESSIONS, HALF_OVERFLOW_POLICIES
    from ..core.io.sequence import MISSING_POLICIES

    p = sub.add_parser("convert", help="transcode between sequences, stills and movies (EXR stays linear)")
    p.add_argument("input", help="plate.####.exr, plate.%%04d.exr, a still, or a movie (mp4/mov/...)")
    p.add_argument("output", help="out.####.exr (linear), out.####.png / .jpg / .tif or .mp4 / .mov (through --view)")
    p.add_argument("--frames", help="frame range, e.g. 1001-1100 (movies count from --start-frame)")
    p.add_argument("--missing", choices=MISSING_POLICIES, default="error")
    p.add_argument("--compression", default="zip", help=f"EXR compression: {', '.join(EXR_COMPRESSIONS)}")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--half", dest="pixel_type", action="store_const", const="half", default="half")
    depth.add_argument("--float", dest="pixel_type", action="store_const", const="float")
    add_read_arguments(p)
    p.add_argument("--half-overflow", choices=HALF_OVERFLOW_POLICIES, default="error",
                   help="values beyond half's range (|x| > 65504): error (write nothing), clamp, or write float")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", dest="mode", action="store_const", const="overwrite", default="error")
    mode.add_argument("--resume", dest="mode", action="store_const", const="resume")
    p.add_argument("--start-frame", type=int, default=1001, help="frame number of a movie's first frame")
    p.add_argument("--fps", type=float, help="movie output frame rate (default: the input's, else 24)")
    p.add_argument("--codec", choices=("h264", "prores"), default="h264")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG/TIFF output depth")
    add_view_arguments(p)
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from ..core.io.convert import ConvertOptions, convert
    from ..core.io.images import validate_compression
    from ..core.io.sequence import parse_frames
    from ..core.io.source import open_source

    src = open_source(args.input, parse_frames(args.frames), missing=args.missing, start_frame=args.start_frame,
                      layer=args.layer, nonfinite=args.nonfinite)
    opts = ConvertOptions(pixel_type=args.pixel_type, compression=validate_compression(args.compression),
                          mode=args.mode, view=view_from_args(args), fps=args.fps, codec=args.codec,
                          bit_depth=args.bit_depth, half_overflow=args.half_overflow)
    rep = convert(src, args.output, opts)
    if rep.replaced:
        log.warning("%d existing frame(s) came from another graph or other parameters and were re-rendered",
                    rep.replaced)
    if src.missing:
        log.warning("%d missing input frame(s) filled by policy %r", len(src.missing), args.missing)
    log.info("%s: %d written, %d kept (frames %s-%s)", rep.output, rep.written, rep.kept, rep.frames[0],
             rep.frames[-1])
    return 0


def add_read_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.io.images import NONFINITE_POLICIES

    p.add_argument("--layer", default="", help="EXR layer holding the R, G, B channels (e.g. beauty)")
    p.add_argument("--nonfinite", choices=NONFINITE_POLICIES, default="error",
                   help="NaN/Inf pixels in the input: error (stop, naming the frame) or zero (replace with 0)")


# --------------------------------------------------------------------------------------------- landmarks
def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a box is x0,y0,x1,y1, got {text!r}") from None
    return (x0, y0, x1, y1)


@command
def add_landmarks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("landmarks", help="landmarks of the faces in images, as JSON (frame pixels)")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", default="mediapipe_landmarker_v2",
                   help="landmark model id, or a preset: default-chain, fused")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--box", type=_parse_box, help="x0,y0,x1,y1 for every image instead of detecting")
    g.add_argument("--boxes-csv", help="CSV with columns image,x0,y0,x1,y1: a box per image")
    p.add_argument("--box-kind", choices=("crop", "face"), default="crop",
                   help="crop: the square region to crop, as given; face: a face box, framed the model's way")
    p.add_argument("--detector", default="yunet_n")
    p.add_argument("--scheme", choices=("native", "ibug68"), default="native")
    p.add_argument("--index-coords", action="store_true",
                   help="pixel-centre coordinates (as in .pts files) instead of pixel-area (default)")
    p.add_argument("--json", action="store_true", help="JSON output (the default and only format)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_landmarks)


def _landmarks(args: argparse.Namespace) -> int:
    from ..core.detection import DetectOptions
    from ..models.loader import load_model
    from .evaluate import Predictor, frame_views_of

    pred = Predictor(args.model, device=args.device)
    boxes: dict[str, tuple] = {}
    if args.boxes_csv:
        boxes = _read_boxes_csv(args.boxes_csv)
    det = None
    if args.box is None and not boxes:
        det = load_model(args.detector, task="detect", device=args.device)
    out = []
    for path in args.images:
        view = frame_views_of(path)
        if args.box is not None:
            regions = [(args.box_kind, args.box)]
        elif boxes:
            key = next((k for k in (path, os.path.basename(path)) if k in boxes), None)
            if key is None:
                raise InputError(f"no box for {path} in {args.boxes_csv}")
            regions = [(args.box_kind, boxes[key])]
        else:
            found = det.detect_views(view, DetectOptions())[0]
            five = found.keypoints if found.keypoints is not None and found.scheme == "five" else None
            regions = [("face", tuple(float(v) for v in b)) for b in found.boxes]
        faces = []
        for k, (kind, box) in enumerate(regions):
            kps = five[k] if det is not None and five is not None else None  # as Detect -> Landmarks passes them
            p68, res = pred.predict(view, (kind, box), keypoints=kps)
            pts = p68 if args.scheme == "ibug68" else np.asarray(res.points)[:, :2]
            if args.index_coords:
                pts = pts - 0.5
            face = {"box": [round(float(v), 3) for v in box], "box_kind": kind,
                    "scheme": "ibug68" if args.scheme == "ibug68" else pred.scheme,
                    "points": np.round(pts, 3).tolist()}
            if face["scheme"] == "ibug68":
                face["convention"] = ibug68_convention(pred.scheme)
            faces.append(face)
        out.append({"image": path, "faces": faces})
    print(json.dumps({"convention": "pixel-index" if args.index_coords else "pixel-area",
                      "model": args.model, "images": out}))
    return 0


def ibug68_convention(source_scheme: str) -> str:
    """Which of the two 68-point conventions a model's 68 points follow: ``ibug68_3d`` (jaw points on fixed
    surface vertices, AFLW2000-3D's re-annotation) for points mapped from a 3D mesh, ``ibug68_2d`` (jaw on the
    visible silhouette, 300-W) for 2D landmark networks trained on 300-W-style labels."""
    return "ibug68_3d" if source_scheme.startswith("mediapipe") else "ibug68_2d"


def _read_boxes_csv(path: str) -> dict[str, tuple]:
    """image -> (x0, y0, x1, y1) from a CSV with columns image,x0,y0,x1,y1; InputError naming file, line, column."""
    import csv

    cols = ("image", "x0", "y0", "x1", "y1")
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise InputError(f"--boxes-csv: cannot read {path!r}: {exc.strerror or exc}") from None
    out: dict[str, tuple] = {}
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"--boxes-csv {path}: missing column(s) {', '.join(missing)}",
                             hint=f"the header must be {','.join(cols)}")
        for line, row in enumerate(reader, 2):
            try:
                box = tuple(float(row[k]) for k in cols[1:])
            except (TypeError, ValueError):
                raise InputError(f"--boxes-csv {path} line {line}: x0,y0,x1,y1 must be numbers, got "
                                 f"{[row[k] for k in cols[1:]]}") from None
            if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
                raise InputError(f"--boxes-csv {path} line {line}: not a box {box} (need x1 > x0, y1 > y0)")
            out[row["image"]] = box
    return out


@command
def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure models on annotated data (../shared/data)")
    esub = p.add_subparsers(dest="what", required=True)
    lp = esub.add_parser("landmarks", help="NME by the set's protocol (AFLW2000-3D or 300-W style)")
    lp.add_argument("--data", required=True)
    lp.add_argument("--model", action="append", required=True,
                    help="model id or preset (default-chain, fused); repeatable")
    lp.add_argument("--boxes", choices=("given", "detect"), default="given")
    lp.add_argument("--detector", default="yunet_n")
    lp.add_argument("--threshold", type=float, default=0.08, help="failure threshold on NME")
    lp.add_argument("--threads", type=int, default=0)
    lp.add_argument("--limit", type=int, default=0, help="only the first N samples (quick checks)")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_eval_landmarks)
    dp = esub.add_parser("detect", help="recall at IoU 0.5 on dlib imglab boxes")
    dp.add_argument("--data", required=True)
    dp.add_argument("--model", action="append", required=True)
    dp.add_argument("--threads", type=int, default=0)
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=_eval_detect)


def _pct(v: float) -> str:
    return "-" if v != v else f"{v * 100:.2f}"


def _eval_landmarks(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_landmarks

    rows = [evaluate_landmarks(args.data, m, args.boxes, args.detector, args.threshold, threads=args.threads,
                               limit=args.limit) for m in args.model]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if rows[0]["set"] == "aflw":
        print(f"AFLW2000-3D: NME / sqrt(w h) of the GT box, boxes={args.boxes}; failure: NME > {args.threshold:.0%} "
              "or no face")
        print("| model | 0-30 | 30-60 | 60-90 | mean of bins | failures | ms/face |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {_pct(r['yaw_0_30'])} | {_pct(r['yaw_30_60'])} | {_pct(r['yaw_60_90'])} | "
                  f"{_pct(r['mean_of_bins'])} | {r['failure_rate'] * 100:.1f} % | {r['ms_per_face']:.1f} |")
    else:
        print(f"300-W style: NME / outer eye-corner distance, boxes={args.boxes}; failure: NME > "
              f"{args.threshold:.0%} or no face")
        print("| model | NME | eyes | failures | ms/face |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {_pct(r['mean'])} | {_pct(r.get('region_eyes', float('nan')))} | "
                  f"{r['failure_rate'] * 100:.1f} % | {r['ms_per_face']:.1f} |")
    return 0


def _eval_detect(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_detector

    rows = [evaluate_detector(args.data, m, threads=args.threads) for m in args.model]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| detector | recall (IoU >= 0.5) | false positives | ms/image |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['found']}/{r['faces']} ({r['recall'] * 100:.0f} %) | {r['false_positives']} | "
              f"{r['ms_per_image']:.1f} |")
    return 0


# ------------------------------------------------------------------------------------------------ analyse
CROP_MIN, CROP_MAX = 16, 8192


@command
def add_analyse(sub: argparse._SubParsersAction) -> None:
    from ..core.io.sequence import MISSING_POLICIES
    from ..core.temporal import SMOOTH_METHODS

    p = sub.add_parser("analyse", help="track faces through a shot; write tracking data, crops, previews")
    p.add_argument("input", help="a sequence (plate.####.exr), a movie or a still")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", help="frame range (movies count from --start-frame)")
    p.add_argument("--missing", choices=MISSING_POLICIES, default="hold")
    p.add_argument("--smooth", choices=SMOOTH_METHODS, default="rts")
    p.add_argument("--strength", type=float, default=0.0, help="> 0 smoother, < 0 follows faster")
    p.add_argument("--detector", default="yunet_n")
    p.add_argument("--landmarks", default="mediapipe_landmarker_v2")
    p.add_argument("--crop-size", type=int, default=512, help=f"stabilised crop size, {CROP_MIN}-{CROP_MAX} px")
    p.add_argument("--no-crops", action="store_true")
    p.add_argument("--no-preview", action="store_true")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--start-frame", type=int, default=1001)
    p.add_argument("--fps", type=float, help="frame rate for sequences (default: 24)")
    p.add_argument("--device", default="auto")
    p.add_argument("--detect-every", type=int, default=None, metavar="N",
                   help="run the detector on every N-th frame (keyframes) and follow the landmarks between them; "
                        "1: every frame (default 8)")
    add_read_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace what an earlier run wrote into --out (its manifest); never other files")
    p.set_defaults(func=_analyse)


def _analyse(args: argparse.Namespace) -> int:
    from ..core.io.sequence import parse_frames
    from .analyse import analyse_to_disk

    if not CROP_MIN <= args.crop_size <= CROP_MAX:
        raise InputError(f"--crop-size {args.crop_size} is outside {CROP_MIN}-{CROP_MAX} px")
    if not math.isfinite(args.strength):
        raise InputError(f"--strength must be a finite number, got {args.strength}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise InputError(f"--fps must be a positive number, got {args.fps}")
    for line in analyse_to_disk(args.input, args.out, frames=parse_frames(args.frames), missing=args.missing,
                                smooth=args.smooth, strength=args.strength, detector=args.detector,
                                landmarks=args.landmarks, crops=not args.no_crops, crop_size=args.crop_size,
                                cache=not args.no_cache, start_frame=args.start_frame, fps=args.fps,
                                preview=not args.no_preview, device=args.device, layer=args.layer,
                                nonfinite=args.nonfinite, overwrite=args.overwrite, detect_every=args.detect_every):
        print(line)
    return 0


# -------------------------------------------------------------------------------------------------- demo
@command
def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the built-in sample and write its results")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--source", help="the photo whose face the face-replace graph puts on the plate "
                                    "(default: the built-in one)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if not 1 <= args.frames <= 1000:
        raise InputError(f"--frames {args.frames} is outside 1-1000")
    for line in run_demo(args.out, frames=args.frames, source=args.source):
        print(line)
    return 0


# -------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from ..core.version import version

    p = argparse.ArgumentParser(prog="facegraph", description="facegraph: face pipeline for compositors")
    p.add_argument("--version", action="version", version=f"facegraph {version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--debug", action="store_true", help="debug logging, and the traceback of any error")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return p


_VALUE_OPTIONS = ("--frames", "--shot", "--box", "--strength", "--stops", "--start-frame")
_NEGATIVE = re.compile(r"-\d")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--frames -3-2`` -> ``--frames=-3-2``: argparse would take a value starting with '-' for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUE_OPTIONS and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from ..core.fsutil import job
    from .reporters import TqdmReporter

    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage line and message
        return int(exc.code or 0) if exc.code in (0, None) else 2
    level = logging.DEBUG if args.verbose or args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="facegraph: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    try:
        # before torch is imported: OpenMP reads its wait policy once, at load (models/threads.py)
        from ..models.threads import configure_process

        configure_process(getattr(args, "threads", 0) or None)
        with job(), progress.reporting(ProgressLog(TqdmReporter())):
            return int(args.func(args) or 0)
    except FacegraphError as exc:
        if args.debug:
            log.exception("%s", exc)
        else:
            log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except OSError as exc:  # an OS refusal that no layer below named (permissions, disk full, ...)
        where = f" [file={exc.filename}]" if getattr(exc, "filename", None) else ""
        log.error("%s%s. Check the path, its permissions and the free space%s", exc.strerror or exc, where,
                  "" if args.debug else " (--debug shows the traceback)")
        if args.debug:
            log.exception("traceback")
        return 2
    except Exception as exc:  # a bug: still one line, the traceback on request
        log.error("internal error in %s: %s: %s. Please report it with the output of --debug", args.command,
                  type(exc).__name__, exc)
        if args.debug:
            log.exception("traceback")
        return 2


def entry() -> None:  # console-script entry point: the only place that exits the process
    sys.exit(main())


if __name__ == "__main__":
    entry()
