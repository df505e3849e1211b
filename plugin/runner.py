"""Run ComfyUI API-format graphs headless with facegraph's node classes.

Graph files (JSON or YAML) hold either a plain API graph ``{id: {"class_type": ..., "inputs": {...}}}``, links
written ``[source_id, output_slot]``, or a template wrapper::

    parameters: {shot: plate, first: 1001}     # defaults; --set name=value overrides
    graph: { "1": {class_type: FacegraphLoadImageSequence, inputs: {path: "in/${shot}.####.exr"}}, ... }

A string that is exactly ``${name}`` takes the parameter's value with its type; ``${name}`` inside a longer
string is substituted as text. ``--set NODE.INPUT=value`` sets one node's input directly (so an editor
template keeps real default values). UI-format workflows (what the editor saves, and example_workflows/) are
converted on load.

Named parameters (declared once, in a UI workflow's ``extra.facegraph.parameters`` or a wrapper's
``parameters:``) are either a plain default for ``${name}`` or a declaration that feeds node inputs, so the
editor keeps working values in its widgets and the command line sets them all by one name::

    "input": {"type": "STRING", "default": "plate/plate.####.exr", "help": "the plate",
              "feeds": ["1.path", "3.path"]}

``type`` is INT / FLOAT / STRING / BOOLEAN or a list of choices (checked when set); ``default`` defaults to the
first fed input's value; ``help`` is shown by ``facegraph run TEMPLATE --help-params``. Nodes run in dependency order; only output nodes and what they need run (all nodes if the
graph has no output node). Every error names the node id and class.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..core.errors import FacegraphError, GraphError

log = logging.getLogger(__name__)

_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCALAR_TYPES = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A template parameter: its name, type (INT / FLOAT / STRING / BOOLEAN or a tuple of choices), default,
    help, and the node inputs (``NODE.INPUT``) it sets; no feeds: a ``${name}`` text parameter."""

    name: str
    type: Any = "STRING"
    default: Any = None
    help: str = ""
    feeds: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"type": list(self.type) if isinstance(self.type, tuple) else self.type, "default": self.default,
                "help": self.help, "feeds": list(self.feeds)}


@dataclasses.dataclass
class Template:
    """A graph file: its API graph, its declared parameters (name -> ParamSpec, in declaration order) and the
    plain ``${name}`` defaults."""

    path: str
    graph: dict
    parameters: dict[str, ParamSpec]
    defaults: dict

    def names(self) -> list[str]:
        return sorted(set(self.parameters) | set(self.defaults) | referenced_parameters(self.graph))


@dataclasses.dataclass
class GraphRun:
    outputs: dict[str, tuple]
    ui: dict[str, Any]
    order: list[str]
    seconds: dict[str, float]
    graph_hash: str


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors / aliases: a 600-byte "billion laughs" document of aliases expands
    to 9^9 strings when parameters are substituted. Graph files never need them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed in graph files",
                                              event.start_mark)
        return super().compose_node(parent, index)


_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


def load_graph_file(path: str | Path) -> tuple[dict, dict]:
    """(graph, parameter defaults) from a JSON/YAML file. Anything malformed raises GraphError naming the file."""
    t = load_template(path)
    return t.graph, {**{n: p.default for n, p in t.parameters.items() if not p.feeds}, **t.defaults}


def load_template(path: str | Path) -> Template:
    """A graph file with its parameter declarations (module docstring). GraphError naming the file when
    anything is malformed, including a declaration that feeds a node or input the graph does not have."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GraphError(f"cannot read graph: {exc.strerror or exc}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GraphError(f"a graph file must be UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=_NoAliasLoader)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
        raise GraphError(f"not valid JSON/YAML: {what}", file=str(path)) from None
    if not isinstance(data, dict):
        raise GraphError("a graph file must hold a mapping", file=str(path))
    try:
        graph, params = _graph_and_parameters(data)
        specs, defaults = _declarations(graph, params)
        return Template(path=str(path), graph=graph, parameters=specs, defaults=defaults)
    except GraphError as exc:
        raise exc.with_context(file=str(path))
    except _MALFORMED as exc:
        raise GraphError(f"malformed graph document ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         file=str(path), hint="an editor workflow, an API graph, or parameters: + graph:") from None


def _graph_and_parameters(data: dict) -> tuple[dict, dict]:
    if "nodes" in data and "links" in data:  # an editor workflow (e.g. from example_workflows/)
        from ..nodes import NODE_CLASSES
        from .workflow import ui_to_api

        extra = data.get("extra") or {}
        fg = extra.get("facegraph", {}) if isinstance(extra, dict) else {}
        params = (fg.get("parameters") if isinstance(fg, dict) else None) or {}
        if not isinstance(params, dict):
            raise GraphError("extra.facegraph.parameters must be a mapping")
        return ui_to_api(data, NODE_CLASSES), dict(params)
    if "graph" in data:
        graph, params = data["graph"], data.get("parameters") or {}
        if not isinstance(graph, dict):
            raise GraphError(f"'graph' must be a mapping of node id -> node, got {type(graph).__name__}")
        if not isinstance(params, dict):
            raise GraphError(f"'parameters' must be a mapping of name -> value, got {type(params).__name__}")
        return dict(graph), dict(params)
    return data, {}


_DECL_KEYS = {"type", "default", "help", "feeds"}


def _declarations(graph: dict, params: dict) -> tuple[dict[str, ParamSpec], dict]:
    specs: dict[str, ParamSpec] = {}
    defaults: dict = {}
    for name, value in params.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise GraphError(f"parameter name {name!r} is not an identifier (letters, digits, _)")
        if not (isinstance(value, dict) and value and set(value) <= _DECL_KEYS):
            defaults[name] = value
            continue
        feeds = value.get("feeds") or []
        if isinstance(feeds, str):
            feeds = [feeds]
        if not isinstance(feeds, list) or not all(isinstance(f, str) for f in feeds):
            raise GraphError(f"parameter {name!r}: feeds must be a list of NODE.INPUT strings")
        for f in feeds:
            nid, dot, inp = f.partition(".")
            if not dot or not inp:
                raise GraphError(f"parameter {name!r} feeds {f!r}: write NODE.INPUT, e.g. 1.path")
            if nid not in graph:
                raise GraphError(f"parameter {name!r} feeds {f!r}: the graph has no node {nid}")
        typ = value.get("type", "STRING")
        typ = tuple(typ) if isinstance(typ, list) else typ
        if not isinstance(typ, tuple) and typ not in _SCALAR_TYPES:
            raise GraphError(f"parameter {name!r}: type must be one of {', '.join(_SCALAR_TYPES)} or a list of "
                             f"choices, got {typ!r}")
        default = value.get("default")
        if default is None and feeds:
            nid, _, inp = feeds[0].partition(".")
            default = (graph[nid].get("inputs") or {}).get(inp)
        specs[name] = ParamSpec(name=name, type=typ, default=default, help=str(value.get("help") or ""),
                                feeds=tuple(feeds))
    return specs, defaults


def check_parameter(spec: ParamSpec, value: Any) -> Any:
    """``value`` as the parameter's type; GraphError naming the parameter, what it feeds and its help."""
    where = f" (feeds {', '.join(spec.feeds)})" if spec.feeds else ""
    if isinstance(spec.type, tuple):
        if value not in spec.type:
            raise GraphError(f"parameter {spec.name!r} = {value!r} is not one of {list(spec.type)}{where}",
                             hint=spec.help or None)
        return value
    try:
        return _coerce("", spec.name, spec.type, _SCALAR_TYPES[spec.type], value)
    except GraphError:
        raise GraphError(f"parameter {spec.name!r} = {value!r} is not a valid {spec.type}{where}",
                         hint=spec.help or None) from None


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> {"a": 1, "b": "x"}; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise GraphError(f"--set expects name=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v) if v.strip() else ""
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


def substitute(value: Any, params: Mapping[str, Any], where: str = "") -> Any:
    if isinstance(value, str):
        m = _PARAM.fullmatch(value)
        if m:
            return _param(m.group(1), params, where)
        return _PARAM.sub(lambda mm: str(_param(mm.group(1), params, where)), value)
    if isinstance(value, list):
        return [substitute(v, params, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params, where) for k, v in value.items()}
    return value


def _param(name: str, params: Mapping[str, Any], where: str) -> Any:
    if name not in params:
        raise GraphError(f"parameter ${{{name}}} has no value", node=where or None,
                         hint=f"pass --set {name}=VALUE (known: {', '.join(sorted(params)) or 'none'})")
    return params[name]


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)) and isinstance(v[1], int)


class Runner:
    def __init__(self, node_classes: Mapping[str, type] | None = None) -> None:
        if node_classes is None:
            from ..nodes import NODE_CLASSES

            node_classes = NODE_CLASSES
        self.node_classes = dict(node_classes)

    # ------------------------------------------------------------------------------------------ checks
    def _class(self, nid: str, ctype: Any) -> type:
        cls = self.node_classes.get(ctype)
        if cls is None:
            close = difflib.get_close_matches(str(ctype), self.node_classes, n=3)
            raise GraphError(f"unknown node class {ctype!r}", node=nid,
                             hint=f"did you mean {', '.join(close)}?" if close else "see `facegraph nodes`")
        return cls

    def prepare(self, graph: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, dict]:
        """Substitute parameters, normalise ids to strings, check classes/links/inputs. Returns the graph."""
        params = dict(params or {})
        out: dict[str, dict] = {}
        for nid, node in graph.items():
            nid = str(nid)
            if not isinstance(node, dict) or "class_type" not in node:
                raise GraphError("each node needs class_type and inputs", node=nid)
            if not isinstance(node["class_type"], str):
                raise GraphError(f"class_type must be a node class name, got {node['class_type']!r}", node=nid)
            if not isinstance(node.get("inputs") or {}, dict):
                raise GraphError(f"inputs must be a mapping of name -> value, got {type(node['inputs']).__name__}",
                                 node=nid)
            inputs = substitute(dict(node.get("inputs") or {}), params, nid)
            out[nid] = {"class_type": node["class_type"], "inputs": inputs}
        for nid, node in out.items():
            cls = self._class(nid, node["class_type"])
            spec = cls.INPUT_TYPES()
            declared = {**spec.get("required", {}), **spec.get("optional", {})}
            for name, value in node["inputs"].items():
                if name not in declared:
                    raise GraphError(f"unknown input {name!r} for {node['class_type']}", node=nid,
                                     hint=f"inputs: {', '.join(declared)}")
                want = declared[name][0]
                if _is_link(value):
                    src = str(value[0])
                    if src not in out:
                        raise GraphError(f"input {name!r} links to missing node {src}", node=nid)
                    src_cls = self._class(src, out[src]["class_type"])
                    slot = value[1]
                    if not 0 <= slot < len(src_cls.RETURN_TYPES):
                        raise GraphError(f"input {name!r} links to output {slot} of node {src}, which has "
                                         f"{len(src_cls.RETURN_TYPES)} outputs", node=nid)
                    got = src_cls.RETURN_TYPES[slot]
                    if isinstance(want, str) and want != "*" and got != want:
                        raise GraphError(f"input {name!r} wants {want} but node {src} output {slot} is {got}",
                                         node=nid)
                    node["inputs"][name] = [src, slot]
                else:
                    node["inputs"][name] = self._check_widget(nid, name, want, declared[name], value)
            for name, decl in spec.get("required", {}).items():
                if name not in node["inputs"]:
                    opts = decl[1] if len(decl) > 1 else {}
                    if "default" in opts:
                        node["inputs"][name] = opts["default"]
                    elif isinstance(decl[0], list) and decl[0]:
                        node["inputs"][name] = decl[0][0]
                    else:
                        raise GraphError(f"required input {name!r} of {node['class_type']} is not set", node=nid)
        return out

    @staticmethod
    def _check_widget(nid: str, name: str, want: Any, decl: tuple, value: Any) -> Any:
        opts = decl[1] if len(decl) > 1 else {}
        if isinstance(want, list):
            if value not in want:
                raise GraphError(f"input {name!r} = {value!r} is not one of {want}", node=nid)
            return value
        typ = _SCALAR_TYPES.get(want)
        if typ is None:
            raise GraphError(f"input {name!r} of type {want} must be linked to another node", node=nid)
        value = _coerce(nid, name, want, typ, value)
        if typ in (int, float):
            lo, hi = opts.get("min"), opts.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise GraphError(f"input {name!r} = {value} is outside [{lo}, {hi}]", node=nid)
        return value

    # ------------------------------------------------------------------------------------------ order
    def order(self, graph: Mapping[str, dict]) -> list[str]:
        deps = {nid: {str(v[0]) for v in n["inputs"].values() if _is_link(v)} for nid, n in graph.items()}
        outputs = [nid for nid, n in graph.items()
                   if getattr(self.node_classes[n["class_type"]], "OUTPUT_NODE", False)]
        needed: set[str] = set()
        stack = list(outputs or graph)
        while stack:
            nid = stack.pop()
            if nid not in needed:
                needed.add(nid)
                stack.extend(deps[nid])
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(nid: str, path: list[str]) -> None:
            if state.get(nid) == 2:
                return
            if state.get(nid) == 1:
                raise GraphError("the graph has a cycle: " + " -> ".join(path + [nid]), node=nid)
            state[nid] = 1
            for d in sorted(deps[nid], key=_sort_key):
                visit(d, path + [nid])
            state[nid] = 2
            order.append(nid)

        for nid in sorted(needed, key=_sort_key):
            visit(nid, [])
        return order

    # -------------------------------------------------------------------------------------------- run
    def run(self, graph: Mapping[str, Any], params: Mapping[str, Any] | None = None, *,
            after_prepare: Mapping[str, Any] | None = None) -> GraphRun:
        """Prepare, order and run ``graph``. ``after_prepare``: ``NODE.INPUT`` -> value set for execution
        after the checks, left out of the PROMPT the nodes see (and hash into their outputs)."""
        from ..core.fsutil import job

        with job():  # files any node reads are never written over by any node of this run
            return self._run(graph, params, after_prepare)

    def _run(self, graph: Mapping[str, Any], params: Mapping[str, Any] | None = None,
             after_prepare: Mapping[str, Any] | None = None) -> GraphRun:
        prepared = self.prepare(graph, params)
        graph_hash = hashlib.sha256(json.dumps(prepared, sort_keys=True, default=str).encode()).hexdigest()[:16]
        order = self.order(prepared)
        execute = prepared
        if after_prepare:
            execute = json.loads(json.dumps(prepared))
            for key, value in after_prepare.items():
                nid, _, name = key.partition(".")
                if nid not in execute:
                    raise GraphError(f"{key}: the graph has no node {nid}")
                execute[nid]["inputs"][name] = value
        results: dict[str, tuple] = {}
        ui: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for i, nid in enumerate(order, 1):
            node = execute[nid]
            cls = self.node_classes[node["class_type"]]
            kwargs = {k: (results[str(v[0])][v[1]] if _is_link(v) else v) for k, v in node["inputs"].items()}
            hidden = cls.INPUT_TYPES().get("hidden", {})
            for name, kind in hidden.items():
                if kind == "PROMPT":
                    kwargs[name] = prepared
                elif kind == "UNIQUE_ID":
                    kwargs[name] = nid
            log.info("[%d/%d] node %s (%s)", i, len(order), nid, node["class_type"])
            t0 = time.perf_counter()
            try:
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
            except FacegraphError as exc:
                raise exc.with_context(node=f"{nid} ({node['class_type']})")
            except Exception as exc:
                raise GraphError(f"{type(exc).__name__}: {exc}", node=f"{nid} ({node['class_type']})") from exc
            seconds[nid] = time.perf_counter() - t0
            if isinstance(out, dict):
                ui[nid] = out.get("ui")
                out = out.get("result", ())
            if not isinstance(out, tuple) or len(out) != len(cls.RETURN_TYPES):
                raise GraphError(f"returned {type(out).__name__} of length "
                                 f"{len(out) if isinstance(out, tuple) else '?'}, expected "
                                 f"{len(cls.RETURN_TYPES)} outputs", node=f"{nid} ({node['class_type']})")
            results[nid] = out
        return GraphRun(outputs=results, ui=ui, order=order, seconds=seconds, graph_hash=graph_hash)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(nid: str, name: str, want: str, typ: type, value: Any) -> Any:
    """A widget value of the declared type, strictly: INT takes integers (2.0 yes, 2.7 and true no), FLOAT
    takes finite numbers (no NaN / Inf, no booleans), BOOLEAN takes true/false (or 1/0, yes/no, on/off)."""
    bad = GraphError(f"input {name!r} = {value!r} is not a valid {want}", node=nid)
    if typ is str:
        return "" if value is None else str(value) if not isinstance(value, (dict, list)) else _raise(bad)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value.strip()) if typ is float or "." in value or "e" in value.lower() else int(value.strip())
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float)):
        raise bad
    if typ is int:
        if isinstance(value, float):
            if not (value == value and abs(value) != float("inf") and value.is_integer()):
                raise GraphError(f"input {name!r} = {value!r} is not a valid INT (a whole number)", node=nid)
            value = int(value)
        return int(value)
    value = float(value)
    if value != value or abs(value) == float("inf"):
        raise GraphError(f"input {name!r} = {value!r} is not a valid FLOAT (finite numbers only)", node=nid)
    return value


def _raise(exc: Exception):
    raise exc


def _sort_key(nid: str) -> tuple:
    return (0, int(nid), "") if nid.isdigit() else (1, 0, nid)


def apply_overrides(graph: dict, assignments: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``NODE.INPUT`` assignments to ``graph`` in place; returns the remaining (parameter) ones."""
    params = {}
    for key, value in assignments.items():
        nid, dot, name = key.partition(".")
        if dot and nid in graph:
            graph[nid].setdefault("inputs", {})[name] = value
        elif dot and nid.isdigit():
            raise GraphError(f"--set {key}: the graph has no node {nid}")
        else:
            params[key] = value
    return params


def referenced_parameters(value: Any) -> set[str]:
    """The ``${name}`` parameters a graph (or any part of it) uses."""
    if isinstance(value, str):
        return set(_PARAM.findall(value))
    if isinstance(value, list):
        return set().union(*(referenced_parameters(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(referenced_parameters(v) for v in value.values())) if value else set()
    return set()


def bind(template: Template, assignments: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """(graph, ``${name}`` values) of a template with ``assignments`` applied: NODE.INPUT overrides, then
    declared parameters (checked against their type, set on every input they feed), then ``${name}`` values.
    GraphError naming the file for an unknown or badly typed parameter."""
    graph = json.loads(json.dumps(template.graph))
    try:
        given = apply_overrides(graph, dict(assignments or {}))
        known = template.names()
        text = dict(template.defaults)
        for name, value in given.items():
            spec = template.parameters.get(name)
            if spec is None and name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                raise GraphError(f"--set {name}: the graph has no parameter {name!r}",
                                 hint=(f"did you mean {', '.join(close)}? " if close else "")
                                 + f"parameters: {', '.join(known) or 'none'}; a node input is set as NODE.INPUT")
            if spec is None:
                text[name] = value
                continue
            value = check_parameter(spec, value)
            for feed in spec.feeds:
                nid, _, inp = feed.partition(".")
                graph[nid].setdefault("inputs", {})[inp] = value
            if not spec.feeds:
                text[name] = value
        for name, spec in template.parameters.items():
            if not spec.feeds and name not in text:
                text[name] = spec.default
    except GraphError as exc:
        raise exc.with_context(file=template.path)
    return graph, text


def run_file(path: str | Path, assignments: Mapping[str, Any] | None = None, *,
             after_prepare: Mapping[str, Any] | None = None) -> GraphRun:
    """Run a graph file with ``assignments`` (see :func:`bind`). ``after_prepare``: NODE.INPUT values set on the
    checked graph for execution only (not in the PROMPT the nodes hash: a chunk's own output names)."""
    template = load_template(path)
    graph, params = bind(template, assignments)
    try:
        return Runner().run(graph, params, after_prepare=after_prepare)
    except FacegraphError as exc:
        raise exc.with_context(file=str(path))


def describe(path: str | Path, assignments: Mapping[str, Any] | None = None, frames: tuple[int, int] | None = None,
             handles: int = 0, chunked: bool = False) -> dict:
    """The plan of a run without running it (``facegraph run --dry-run``): the graph is bound and checked as a
    run would (unknown node, missing or mistyped input, bad parameter: GraphError naming the node and input),
    then described: ``nodes`` in run order (id, class, links), ``frames`` each reader would read (planned from
    the disk listing, inside the frame window when ``frames`` is given; nothing is decoded), ``outputs``
    (resolved output paths; a chunk's per-shot outputs under their chunk names) and ``parameters``. Nothing
    is written."""
    from ..core.frame_window import frame_window
    from ..core.paths import INPUT_TIP, OUTPUT_TIP, resolve
    from .chunks import chunk_name

    template = load_template(path)
    graph, params = bind(template, assignments)
    runner = Runner()
    try:
        prepared = runner.prepare(graph, params)
        order = runner.order(prepared)
    except FacegraphError as exc:
        raise exc.with_context(file=str(path))
    nodes, reads, outputs = [], [], []
    for nid in order:
        node = prepared[nid]
        cls = runner.node_classes[node["class_type"]]
        spec = cls.INPUT_TYPES()
        decls = {**spec.get("required", {}), **spec.get("optional", {})}
        links = {k: f"{v[0]}:{v[1]}" for k, v in node["inputs"].items() if _is_link(v)}
        nodes.append({"id": nid, "class": node["class_type"], "links": links})
        for name, decl in decls.items():
            tip = str(decl[1].get("tooltip", "")) if len(decl) > 1 and isinstance(decl[1], dict) else ""
            value = node["inputs"].get(name)
            if decl[0] != "STRING" or not isinstance(value, str) or not value.strip():
                continue
            if OUTPUT_TIP in tip:
                shown = chunk_name(value, frames) if chunked and frames and _is_still(value) else value
                outputs.append({"node": nid, "input": name, "path": resolve(shown, "output")})
            elif INPUT_TIP in tip:
                window = frame_window(*frames, handles) if frames else _null()
                with window:
                    reads.append({"node": nid, "input": name, "path": resolve(value, "input"),
                                  **_planned(resolve(value, "input"), node["inputs"].get("frames"),
                                             node["inputs"].get("missing", "error"))})
    return {"file": str(path), "nodes": nodes, "reads": reads, "outputs": outputs,
            "window": {"frames": list(frames), "handles": handles, "chunked": chunked} if frames else None,
            "parameters": {n: {**p.to_dict(), "value": _fed_value(graph, p)} for n, p in template.parameters.items()},
            "text_parameters": {k: v for k, v in params.items()}}


def _null():
    import contextlib

    return contextlib.nullcontext()


def _is_still(value: str) -> bool:
    from ..core.io.sequence import SequencePattern

    text = re.sub(r"\s*\[(input|output|temp)\]\s*$", "", value.strip())
    return SequencePattern.parse(text).is_still


def _fed_value(graph: dict, spec: ParamSpec) -> Any:
    if not spec.feeds:
        return spec.default
    nid, _, inp = spec.feeds[0].partition(".")
    return (graph.get(nid, {}).get("inputs") or {}).get(inp, spec.default)


def _planned(path: str, frames: Any, missing: Any) -> dict:
    """What a reader would read: kind and frame range (from the disk listing; nothing decoded)."""
    from ..core.io.sequence import parse_frames
    from ..core.io.source import open_source

    try:
        src = open_source(path, parse_frames(frames) if isinstance(frames, str) else None,
                          missing=missing if isinstance(missing, str) else "error", check=False)
    except (FacegraphError, OSError) as exc:
        return {"kind": "?", "count": 0, "problem": str(exc)}
    out = {"kind": src.kind, "count": len(src.frames)}
    if src.frames and src.kind != "still":
        out["frames"] = [min(src.frames), max(src.frames)]
    if src.missing:
        out["missing"] = len(src.missing)
    return out


def format_plan(plan: dict) -> list[str]:
    """Lines of text for :func:`describe`'s plan."""
    lines = [f"plan of {plan['file']}"]
    if plan["window"]:
        w = plan["window"]
        lines.append(f"chunk: frames {w['frames'][0]}-{w['frames'][1]}, handles {w['handles']}"
                     + (" (per-shot outputs under chunk names)" if w["chunked"] else ""))
    lines.append(f"nodes ({len(plan['nodes'])}, in run order):")
    for n in plan["nodes"]:
        links = ", ".join(f"{k}<-{v}" for k, v in n["links"].items())
        lines.append(f"  {n['id']:>3} {n['class']}" + (f"  [{links}]" if links else ""))
    lines.append("reads:")
    for r in plan["reads"]:
        what = (f"{r['kind']}, {r['count']} frame(s)" + (f" {r['frames'][0]}-{r['frames'][1]}" if "frames" in r else "")
                + (f", {r['missing']} missing (filled by policy)" if r.get("missing") else ""))
        if r.get("problem"):
            what = f"cannot plan: {r['problem']}"
        lines.append(f"  {r['node']}.{r['input']}: {r['path']} ({what})")
    lines.append("writes:")
    for o in plan["outputs"]:
        lines.append(f"  {o['node']}.{o['input']}: {o['path']}")
    return lines


def format_parameters(plan_or_template: Template) -> list[str]:
    """Lines listing a template's parameters: name, type, default, what it feeds, help."""
    t = plan_or_template
    lines = [f"parameters of {t.path} (--set NAME=VALUE; any node input: --set NODE.INPUT=VALUE):"]
    if not t.parameters and not t.defaults:
        lines.append("  (none declared)")
    for name, p in t.parameters.items():
        typ = "|".join(map(str, p.type)) if isinstance(p.type, tuple) else p.type
        feeds = f"  -> {', '.join(p.feeds)}" if p.feeds else ""
        lines.append(f"  {name} ({typ}, default {p.default!r}){feeds}")
        if p.help:
            lines.append(f"      {p.help}")
    for name, v in t.defaults.items():
        lines.append(f"  {name} (${{{name}}}, default {v!r})")
    return lines

