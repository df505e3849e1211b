"""Run one template on one chunk of a shot (frames A..B with K handles each side), and merge the chunks.

What a chunk does (the frame window, core/frame_window.py, set for the run):

- every sequence / movie reader of the graph (anything that plans through ``open_source`` or reads through
  ``iter_frames``) reads ``A-K .. B+K``, clipped to the frames it reads in a single run, so temporal filters and
  shot fits see the handles;
- every frame-sequence writer (``SequenceWriter``: Save EXR Sequence, the synthesis jobs' outputs) writes only
  ``A..B``; the graph hash in each frame is the single run's (the window is not part of the graph), so a chunk
  and a single run resume each other's frames;
- per-shot outputs (a folder or a still: the tracking export, a contact sheet, a before / after sheet, a face
  fit folder) are written per chunk, for what the chunk saw (its frames and handles), under the chunk's own name
  ``<name>.chunk_A-B[.ext]`` so chunks on different machines never write over each other; each such folder gets
  a ``facegraph_chunk.json`` manifest. An output input is recognised by its tooltip (core.paths.OUTPUT_TIP), a
  frame sequence by its frame token (``####``, ``%04d``, ``$F4``): no node needs to know about chunks.

Shot-level state (track ids, the main track, smoothing over the whole shot, face replace's colour match) is
decided once per shot, from the shot cache (``cache_dir``: ``--cache DIR``, shared by the farm's workers, keyed by
each frame's content), which holds every analysed frame:

- the analysis pass (``analysis_pass``: ``--analysis-pass``) runs only the shot analysis nodes (Analyse Shot and
  what feeds them) on each chunk's own frames, filling the cache; the engines and farm jobs run it over every
  chunk first (:func:`needs_analysis_pass`);
- a chunk that knows its shot (``shot``: ``--shot``) and finds every frame of it in the cache tracks and smooths
  the whole shot (models/shot.py ``analyse_shot``) and keeps its own frames and handles of the result, so it
  writes exactly a single run's frames; a chunk that does not smooths over its frames and handles only (close,
  not equal; it logs a warning);
- :func:`merge` runs the graph's tracking-export branch over the whole shot from the cache (no model runs again),
  so the merged export equals a single run's, track ids included.

:func:`run_chunk` is importable and picklable (plain arguments, a JSON-able result) for any engine that
distributes chunks (Ray, a farm worker).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..core.errors import GraphError, InputError

log = logging.getLogger(__name__)

MANIFEST = "facegraph_chunk.json"
#: per-shot outputs that are files (not folders): the suffix goes before the extension
_FILE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".json", ".txt", ".csv", ".mp4", ".mov")
_ANNOTATION = re.compile(r"^(.*?)(\s*\[(?:input|output|temp)\]\s*)$")  # as core.paths reads them


def plan_chunks(frames: tuple[int, int], chunk: int) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` chunks of at most ``chunk`` frames covering ``frames`` = (first, last), in
    order (the last chunk may be shorter). InputError for chunk < 1 or a reversed range."""
    a, b = (int(v) for v in frames)
    if isinstance(chunk, bool) or int(chunk) < 1:
        raise InputError(f"chunk size must be at least 1 frame, got {chunk!r}")
    if b < a:
        raise InputError(f"frames {a}-{b}: the last frame is before the first", hint="write FIRST-LAST")
    chunk = int(chunk)
    return [(s, min(s + chunk - 1, b)) for s in range(a, b + 1, chunk)]


def chunk_name(value: str, frames: tuple[int, int]) -> str:
    """The chunk's own name for a per-shot output ``value``: ``tracking`` -> ``tracking.chunk_1001-1050``,
    ``sheet.png`` -> ``sheet.chunk_1001-1050.png`` (a ``[output]`` annotation is kept)."""
    m = _ANNOTATION.match(value)
    text, note = (m.group(1), m.group(2)) if m else (value, "")
    text = text.rstrip("/\\")
    tag = f".chunk_{frames[0]}-{frames[1]}"
    root, ext = os.path.splitext(text)
    if ext.lower() in _FILE_EXTENSIONS:
        return root + tag + ext + note
    return text + tag + note


def per_shot_outputs(graph: Mapping[str, dict], classes: Mapping[str, type] | None = None) -> dict[str, str]:
    """``{"NODE.INPUT": value}`` of every output path of a prepared graph that is a folder or a still (not a
    frame sequence): what a chunk writes under its own name."""
    from ..core.io.sequence import SequencePattern
    from ..core.paths import OUTPUT_TIP

    if classes is None:
        from ..nodes import NODE_CLASSES as classes
    out: dict[str, str] = {}
    for nid, node in graph.items():
        cls = classes.get(node["class_type"])
        if cls is None:
            continue
        spec = cls.INPUT_TYPES()
        for name, decl in {**spec.get("required", {}), **spec.get("optional", {})}.items():
            opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
            if decl[0] != "STRING" or OUTPUT_TIP not in str(opts.get("tooltip", "")):
                continue
            value = node["inputs"].get(name, opts.get("default", ""))
            if not isinstance(value, str) or not value.strip():
                continue
            m = _ANNOTATION.match(value.strip())
            if SequencePattern.parse((m.group(1) if m else value).strip()).is_still:
                out[f"{nid}.{name}"] = value.strip()
    return out


@contextlib.contextmanager
def cache_folder(cache_dir: str | os.PathLike | None) -> Iterator[None]:
    """Use ``cache_dir`` as the shot cache (models.store.shot_cache_dir: ``$FACEGRAPH_SHOT_CACHE``) inside the
    block; "" / None keeps the default. The model cache is not moved."""
    from ..models.store import ENV_SHOT_CACHE

    if not cache_dir:
        yield
        return
    before = os.environ.get(ENV_SHOT_CACHE)
    os.environ[ENV_SHOT_CACHE] = os.path.abspath(os.fspath(cache_dir))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_SHOT_CACHE, None)
        else:
            os.environ[ENV_SHOT_CACHE] = before


def shot_analysis_nodes(graph: Mapping[str, dict], classes: Mapping[str, type] | None = None) -> list[str]:
    """Ids of the nodes that decide a shot's shot-level state (node classes with ``SHOT_ANALYSIS = True``:
    Analyse Shot), in id order: what a chunked render's analysis pass runs."""
    if classes is None:
        from ..nodes import NODE_CLASSES as classes
    return sorted((nid for nid, node in graph.items()
                   if getattr(classes.get(node.get("class_type")), "SHOT_ANALYSIS", False)), key=str)


def needs_analysis_pass(template: str, assignments: Mapping[str, Any] | None = None) -> bool:
    """Whether a chunked render of ``template`` runs an analysis pass first (it has a shot analysis node)."""
    from .runner import bind, load_template

    graph, _ = bind(load_template(template), assignments)
    return bool(shot_analysis_nodes(graph))


def run_graph(template: str, assignments: Mapping[str, Any] | None = None, frames: tuple[int, int] | None = None,
              handles: int = 0, input_dir: str = "", output_dir: str = "", cache_dir: str = "",
              chunked: bool = False, shot: tuple[int, int] | None = None, analysis_pass: bool = False) -> dict:
    """Run a graph file headless; with ``frames`` = (A, B) as the frame window A..B with ``handles`` (of the
    shot ``shot`` = (first, last) when known); with ``chunked`` per-shot outputs go under the chunk's own names
    (module docstring); with ``analysis_pass`` only the shot analysis nodes and what feeds them run, on A..B
    without handles, filling the shot cache, and nothing is written. Returns the summary of :func:`run_chunk`
    plus ``run`` (the GraphRun)."""
    from ..core.frame_window import frame_window
    from ..core.io.frames import tally
    from ..core.paths import folders
    from .runner import Runner, bind, load_template

    if handles and frames is None:
        raise InputError("--handles needs --frames (the chunk the handles are around)")
    if chunked and frames is None:
        raise InputError("a chunked run needs --frames (the chunk)")
    if analysis_pass and frames is None:
        raise InputError("the analysis pass needs --frames (the chunk to analyse)")
    t0 = time.perf_counter()
    tmpl = load_template(template)
    graph, params = bind(tmpl, assignments)
    assignments = dict(assignments or {})
    if analysis_pass:
        handles, chunked = 0, False
        whole, graph = graph, {}
        for nid in shot_analysis_nodes(whole):
            graph.update(_ancestors(whole, nid))
        if not graph:  # a template without shot analysis: nothing to do
            return {"frames": list(frames), "handles": 0, "written": 0, "kept": 0, "outputs": [],
                    "seconds": round(time.perf_counter() - t0, 3), "graph_hash": "", "nodes": 0,
                    "node_seconds": {}, "run": None}
    window = (frame_window(*frames, handles, shot=shot, analysis_pass=analysis_pass) if frames is not None
              else contextlib.nullcontext())
    with folders(input=input_dir or None, output=output_dir or None), cache_folder(cache_dir), window, \
            tally() as counts:
        redirect: dict[str, str] = {}
        if chunked:
            runner = Runner()
            try:
                prepared = runner.prepare(graph, params)
            except GraphError as exc:
                raise exc.with_context(file=template)
            redirect = {k: chunk_name(v, frames) for k, v in per_shot_outputs(prepared, runner.node_classes).items()}
        try:
            run = Runner().run(graph, params, after_prepare=redirect)
        except GraphError as exc:
            raise exc.with_context(file=template)
        if chunked:
            _write_manifests(redirect, dict(template=os.path.abspath(template), assignments=assignments,
                                            frames=list(frames), handles=int(handles), input_dir=input_dir,
                                            output_dir=output_dir, cache_dir=cache_dir, graph_hash=run.graph_hash))
    return {"frames": list(frames) if frames else None, "handles": int(handles),
            "written": len(counts["written"]), "kept": len(counts["kept"]),
            "outputs": sorted({os.path.dirname(p) for p in counts["written"] + counts["kept"]}
                              | {_resolved(v) for v in redirect.values()}),
            "seconds": round(time.perf_counter() - t0, 3), "graph_hash": run.graph_hash,
            "nodes": len(run.order), "node_seconds": {k: round(v, 3) for k, v in run.seconds.items()}, "run": run}


def _resolved(value: str) -> str:
    from ..core.paths import resolve

    return resolve(value, "output")


def _write_manifests(redirect: Mapping[str, str], info: dict) -> None:
    from ..core.fsutil import atomic_write

    for key, value in redirect.items():
        folder = Path(_resolved(value))
        if folder.is_dir():
            doc = {"schema": "facegraph.chunk", "version": 1, "output": key, **info}
            atomic_write(folder / MANIFEST, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def run_chunk(template: str, assignments: dict, frames: tuple[int, int], handles: int,
              input_dir: str = "", output_dir: str = "", cache_dir: str = "", shot: tuple[int, int] | None = None,
              analysis_pass: bool = False) -> dict:
    """Run ``template`` (a graph file) with ``assignments`` (``--set`` values: parameters and NODE.INPUT) on
    frames ``frames`` = (A, B) of the shot, reading ``handles`` extra frames each side, writing only A..B, per-shot
    outputs under the chunk's own names (module docstring). ``input_dir`` / ``output_dir``: where relative
    paths go (as ``run --input-dir / --output-dir``); ``cache_dir``: the shot cache shared by every chunk of the
    shot ("" = the default cache). ``shot``: the whole shot's (first, last) frames, when known: handles stop
    at its ends, and Analyse Shot decides tracks and smoothing over the whole shot when the cache holds every
    frame of it, which the ``analysis_pass`` (run first, on every chunk: see :func:`needs_analysis_pass`)
    makes true; the chunk then equals a single run over the shot exactly.

    Returns a JSON-able summary: ``frames`` [A, B], ``handles``, ``written`` / ``kept`` (frame files), ``outputs``
    (folders written), ``seconds``, ``graph_hash``, ``nodes``, ``node_seconds``. Raises FacegraphError (a
    GraphError naming the file and node) on failure; nothing half-written is left (atomic writes).
    """
    out = run_graph(template, assignments, (int(frames[0]), int(frames[1])), int(handles), input_dir, output_dir,
                    cache_dir, chunked=not analysis_pass, shot=tuple(shot) if shot is not None else None,
                    analysis_pass=analysis_pass)
    out.pop("run")
    return out


# ----------------------------------------------------------------------------------------------- merge
def read_manifest(folder: str | os.PathLike) -> dict:
    """The ``facegraph_chunk.json`` of a chunk's per-shot output folder; InputError naming it otherwise."""
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except OSError:
        raise InputError(f"{folder} is not a chunk's output folder (no {MANIFEST})",
                         hint="give the chunk folders a chunked run wrote (<name>.chunk_A-B)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != "facegraph.chunk":
        raise InputError(f"{path}: not a facegraph chunk manifest")
    return doc


def merge(out: str | os.PathLike, chunk_dirs: list[str]) -> dict:
    """Join the chunks of one shot into the single run's per-shot output ``out`` (e.g. the tracking export).

    The chunks must come from one template with the same assignments, handles and shot cache, and together
    cover a contiguous frame range (each frame in one chunk). The merge re-runs the branch of the graph that
    feeds the chunks' output node over that whole range, with the shared cache: per-frame results come from
    the cache (written by the chunks), the shot-level pass (tracking, gates, fills, smoothing) runs once over
    the whole shot, so ``out`` equals what a single run writes. Returns {"output", "frames", "chunks",
    "seconds"}.
    """
    from ..core.frame_window import frame_window
    from ..core.paths import folders
    from .runner import Runner, bind, load_template

    if not chunk_dirs:
        raise InputError("merge needs at least one chunk folder")
    t0 = time.perf_counter()
    target = Path(out).resolve()
    for d in chunk_dirs:
        if Path(d).resolve() == target:
            raise InputError(f"the merge's output {out} is one of the chunk folders it reads",
                             hint="merge into the shot's own output folder (e.g. facegraph/tracking)")
    docs = [read_manifest(d) for d in chunk_dirs]
    ref = docs[0]
    for d, folder in zip(docs[1:], chunk_dirs[1:]):
        for key in ("template", "assignments", "handles", "cache_dir", "output", "input_dir", "graph_hash"):
            if d.get(key) != ref.get(key):
                raise InputError(f"{folder}: its {key} ({d.get(key)!r}) differs from {chunk_dirs[0]}'s "
                                 f"({ref.get(key)!r})", hint="merge the chunks of one shot and one job only")
    spans = sorted((tuple(d["frames"]), f) for d, f in zip(docs, chunk_dirs))
    for (prev, pf), (cur, cf) in zip(spans, spans[1:]):
        if cur[0] <= prev[1]:
            raise InputError(f"chunks {pf} and {cf} overlap (frames {prev[0]}-{prev[1]} and {cur[0]}-{cur[1]})")
        if cur[0] != prev[1] + 1:
            raise InputError(f"frames {prev[1] + 1}-{cur[0] - 1} are in no chunk (between {pf} and {cf})",
                             hint="render the missing chunk, then merge again")
    first, last = spans[0][0][0], spans[-1][0][1]
    tmpl = load_template(ref["template"])
    graph, params = bind(tmpl, ref["assignments"])
    nid, _, name = ref["output"].partition(".")
    branch = _ancestors(graph, nid)
    with folders(input=ref.get("input_dir") or None, output=ref.get("output_dir") or None), \
            cache_folder(ref.get("cache_dir")), frame_window(first, last, 0):
        Runner().run(branch, params, after_prepare={ref["output"]: os.path.abspath(os.fspath(out))})
    return {"output": os.fspath(out), "frames": [first, last], "chunks": len(docs),
            "seconds": round(time.perf_counter() - t0, 3)}


def _ancestors(graph: Mapping[str, dict], nid: str) -> dict:
    if nid not in graph:
        raise InputError(f"the template has no node {nid} (the chunks' output node)")
    keep: set[str] = set()
    stack = [nid]
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        for v in (graph[n].get("inputs") or {}).values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int) and str(v[0]) in graph:
                stack.append(str(v[0]))
    return {k: v for k, v in graph.items() if k in keep}
