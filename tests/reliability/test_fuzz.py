"""Property-based fuzzing of the readers of untrusted input (issue 8): frame ranges and sequence patterns, graph
documents, tracking exports and pickled arrays. The property everywhere: the reader returns, or raises a
FacegraphError (subclasses allowed); nothing else escapes, and every example finishes within the deadline.

Deterministic (derandomize): the same examples every run; no example database is written.
"""
from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from facegraph.core.errors import FacegraphError, InputError, ModelError
from facegraph.core.io import sequence
from facegraph.core.io.sequence import MAX_FRAMES_ENV, SequencePattern, max_frames, parse_frames
from facegraph.core.shot import ShotResult, SmoothedTrack, read_export, to_json
from facegraph.core.types import Alignment, Face, FrameFaces, HeadPose, Landmarks
from facegraph.models.safe_pickle import load_arrays
from facegraph.plugin.runner import Runner, load_graph_file

FUZZ = settings(max_examples=200, deadline=500, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="facegraph-fuzz-") as d:
        yield Path(d)


@pytest.fixture(autouse=True, scope="module")
def _default_frame_limit():
    mp = pytest.MonkeyPatch()
    mp.delenv(MAX_FRAMES_ENV, raising=False)
    yield
    mp.undo()


def _write(scratch: Path, name: str, data: bytes | str) -> Path:
    p = scratch / name
    p.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return p


# -------------------------------------------------------------------------------- JSON-like values
_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
            | st.text(max_size=12))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=25)


# ------------------------------------------------------------------------- (a) frame ranges, patterns
_range_pieces = st.sampled_from(["-", "-", ",", "x", "y", ":", "--", " ", "#", "@", ".", "%04d", "$F4", "e", ""])
_numbers = st.one_of(st.integers(-20, 20), st.integers(-10**6, 10**8), st.integers(0, 10**16)).map(str)
near_ranges = st.lists(st.one_of(_numbers, _range_pieces), min_size=1, max_size=9).map("".join)


def _check_frames(out):
    assert out is None or (isinstance(out, tuple) and 0 < len(out) <= max_frames()
                           and all(type(f) is int for f in out) and len(set(out)) == len(out))


@FUZZ
@given(st.one_of(st.text(max_size=60), near_ranges))
@example("1-10000000")
@example("1300-1001")
@example("1-10000000:7")
def test_parse_frames_fuzz(text):
    try:
        out = parse_frames(text)
    except FacegraphError:
        return
    _check_frames(out)


@FUZZ
@given(st.lists(st.tuples(st.integers(-10**5, 10**5), st.integers(0, 300), st.sampled_from(["", "x", "y", ":"]),
                          st.integers(1, 12)), min_size=1, max_size=4))
def test_parse_frames_agrees_with_fileseq(parts):
    import fileseq

    text = ",".join(f"{a}-{a + n}{m}{s}" if m else f"{a}-{a + n}" for a, n, m, s in parts)
    try:
        out = parse_frames(text)
    except InputError:
        return  # e.g. 1-10y1 selects nothing; fileseq returns an empty set there
    assert out == tuple(int(f) for f in fileseq.FrameSet(text))


_pad_tokens = st.sampled_from(["####", "#", "@", "@@@", "%04d", "%d", "$F4", "$F", "#.#", "%", "$"])
_dirs = st.sampled_from(["", "/shots/a/", "rel/", "C:\\plates\\", "//srv/x/", "./"])
near_patterns = st.tuples(_dirs, st.text("abcplate._-v1", max_size=8), st.one_of(st.just(""), near_ranges),
                          _pad_tokens, st.sampled_from(["", ".exr", ".png", ".#.exr", ".tar.gz"])).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=60), near_patterns))
@example("plate.1-10000000####.exr")
@example("plate.1-10000000:7####.exr")
def test_sequence_pattern_fuzz(text):
    try:
        p = SequencePattern.parse(text)
    except FacegraphError:
        return
    if p.frames is not None:
        _check_frames(p.frames)
    if not p.is_still:
        assert isinstance(p.path(7), str) and isinstance(p.display(), str)


@settings(FUZZ, max_examples=100)
@given(st.one_of(st.text(max_size=60), near_patterns))
def test_pattern_range_shortcut_hides_no_range(text):
    """sequence._pattern_range skips fileseq's (slow) splitter when no range can sit before a frame token;
    whatever fileseq's splitter finds, the shortcut must not have missed."""
    from fileseq.filesequence import parse_sequence_string

    try:
        found = parse_sequence_string(text, allow_subframes=False).frame_range or ""
    except Exception:
        return
    assert sequence._pattern_range(text) == found


# ----------------------------------------------------------------------------------- (b) graph loader
_CLASS_NAMES = ["FacegraphLoadImageSequence", "FacegraphLoadImage", "FacegraphSaveEXRSequence", "Nope"]
_api_graphs = st.dictionaries(
    st.one_of(st.integers(0, 9).map(str), st.text(max_size=3)),
    st.one_of(json_values, st.fixed_dictionaries({"class_type": st.sampled_from(_CLASS_NAMES) | json_values},
                                                 optional={"inputs": json_values})), max_size=4)
_ui_workflows = st.fixed_dictionaries(
    {"nodes": st.lists(st.one_of(json_values, st.fixed_dictionaries(
        {"id": json_values}, optional={"type": st.sampled_from(_CLASS_NAMES) | json_values, "mode": json_values,
                                       "widgets_values": json_values, "inputs": json_values})), max_size=3),
     "links": st.lists(json_values, max_size=3) | json_values},
    optional={"extra": json_values})
graph_documents = st.one_of(
    json_values, _api_graphs, _ui_workflows,
    st.fixed_dictionaries({"graph": json_values | _api_graphs}, optional={"parameters": json_values}))


def _load_graph(scratch, name, data, prepare=False):
    try:
        graph, params = load_graph_file(_write(scratch, name, data))
        if prepare:
            Runner().prepare(graph, params)
    except FacegraphError:
        pass


# What the fuzz found in plugin/ (fixed; issue 8): each test keeps one minimal input that used to escape as an
# explicit example, so a regression fails at once and deterministically.
_ESCAPES = (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError)


@FUZZ
@given(graph_documents, st.sampled_from([".json", ".yaml"]))
@example({"graph": 0}, ".json")
def test_graph_loader_documents_fuzz(scratch, doc, suffix):
    text = json.dumps(doc) if suffix == ".json" else yaml.safe_dump(doc)
    _load_graph(scratch, "graph" + suffix, text)


@FUZZ
@given(st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200)),
       st.sampled_from([".json", ".yaml", ".yml"]))
@example(b"[" * 100_000, ".json")
def test_graph_loader_text_fuzz(scratch, data, suffix):
    _load_graph(scratch, "graph" + suffix, data)


@FUZZ
@given(graph_documents)
@example({"9": {"class_type": []}})
def test_graph_loader_then_prepare_fuzz(scratch, doc):
    """Also: a YAML "billion laughs" of aliases is refused at load (it used to hang prepare's substitution)."""
    _load_graph(scratch, "graph.json", json.dumps(doc), prepare=True)


# ---------------------------------------------------------------------------------- (c) read_export
def _export_doc() -> dict:
    frames, faces, aligns = [], [], []
    for i, n in enumerate((1, 2)):
        face = Face(box=[10, 20, 110, 140], score=0.9, keypoints=np.full((5, 2), 50.0),
                    landmarks=Landmarks(points=np.full((3, 2), 60.0), scheme="x3"), pose=HeadPose(yaw=5.0),
                    provenance="smoothed", track_id=0)
        frames.append(FrameFaces(frame=n, size=(64, 48), faces=(face,)))
        faces.append(face)
        aligns.append(Alignment(crop_from_frame=[[0.01, 0, -0.1], [0, 0.01, -0.2]], crop_size=(1, 1), frame=n))
    track = SmoothedTrack(0, (1, 2), tuple(faces), tuple(aligns), (False, True))
    return to_json(ShotResult(frames=frames, tracks=[track], fps=24.0, template="ffhq"), crop_size=(8, 8))


_EXPORT = _export_doc()


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


_EXPORT_PATHS = [p for p in _paths(_EXPORT) if p]


@st.composite
def mutated_exports(draw):
    doc = json.loads(json.dumps(_EXPORT))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_EXPORT_PATHS))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
            pass
    return doc


def _read_export(scratch, data):
    try:
        out = read_export(_write(scratch, "tracking.json", data))
    except FacegraphError:
        return
    assert isinstance(out, ShotResult)


@FUZZ
@given(st.one_of(json_values, mutated_exports()))
def test_read_export_documents_fuzz(scratch, doc):
    _read_export(scratch, json.dumps(doc))


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=40).map(lambda b: json.dumps(_EXPORT).encode()[:len(b) * 40])))
def test_read_export_bytes_fuzz(scratch, data):
    _read_export(scratch, data)


# ------------------------------------------------------------------------------------ (d) safe_pickle
@pytest.fixture(scope="module")
def seed_pickle(request) -> bytes:
    """The real 3DDFA statistics pickle where ../shared has it, else one like it."""
    try:
        return (request.getfixturevalue("mirror") / "3ddfa_v2" / "param_mean_std_62d_120x120.pkl").read_bytes()
    except (pytest.skip.Exception, OSError):
        rng = np.random.default_rng(0)
        return pickle.dumps({"mean": rng.normal(size=62).astype(np.float32),
                             "std": rng.uniform(size=62).astype(np.float32)}, protocol=3)


def _allowed(obj, depth=0, seen=None):
    """Only arrays, scalars and plain containers, at most 64 containers deep (shared parts checked once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        assert not obj.dtype.hasobject
    elif isinstance(obj, (list, tuple, dict)):
        assert depth < 64
        for v in (obj if not isinstance(obj, dict) else [x for kv in obj.items() for x in kv]):
            _allowed(v, depth + 1, seen)
    else:
        assert obj is None or isinstance(obj, (bool, int, float, str, bytes, np.generic))


def _load_pickle(scratch, data):
    try:
        out = load_arrays(_write(scratch, "x.pkl", data))
    except ModelError:
        return
    _allowed(out)


_GLOBAL_NAMES = [b"numpy.core.multiarray\n_reconstruct", b"numpy\nndarray", b"numpy\ndtype", b"numpy._core.multiarray\nscalar",
                 b"collections\nOrderedDict", b"_codecs\nencode", b"builtins\nbytes", b"numpy._core.numeric\n_frombuffer",
                 b"builtins\neval", b"os\nsystem"]
_opcode = st.one_of(
    st.sampled_from([b"]", b"a", b"e", b"(", b"t", b"l", b")", b"N", b"\x88", b"}", b"s", b"u", b"2", b"0", b"1",
                     b"\x85", b"\x86", b"\x87", b"R", b"b", b"\x94", b"\x81", b"\x8f", b"\x90", b"\x91"]),
    st.integers(0, 255).map(lambda i: b"q" + bytes([i])),                 # BINPUT
    st.integers(0, 255).map(lambda i: b"h" + bytes([i])),                 # BINGET
    st.integers(0, 2**32 - 1).map(lambda i: b"r" + i.to_bytes(4, "little")),  # LONG_BINPUT
    st.integers(0, 2**31 - 1).map(lambda i: b"J" + i.to_bytes(4, "little")),  # BININT
    st.sampled_from(_GLOBAL_NAMES).map(lambda g: b"c" + g + b"\n"),       # GLOBAL
    st.binary(max_size=16).map(lambda d: b"C" + bytes([len(d)]) + d),     # SHORT_BINBYTES
    st.text(max_size=8).map(lambda t: b"\x8c" + bytes([len(t.encode())]) + t.encode()),  # SHORT_BINUNICODE
)
opcode_soup = st.lists(st.one_of(_opcode, st.tuples(_opcode, st.integers(2, 300)).map(lambda t: t[0] * t[1])),
                       max_size=40).map(lambda ops: b"\x80\x04" + b"".join(ops) + b".")


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b"\x80\x04" + b),
                 st.binary(max_size=200).map(lambda b: b"\x80\x02" + b + b"."), opcode_soup))
@example(b"\x80\x02]q\x00h\x00a.")                                # a list inside itself
@example(b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")              # 5000 levels deep
@example(b"\x80\x02]q\x00" + b"(h\x00h\x00lq\x00" * 60 + b".")         # a DAG: 2**60 paths, 61 lists
@example(b"\x80\x02Nr\xff\xff\xff\xff.")                            # memo index 2**32 - 1: a 64 GiB table
def test_load_arrays_bytes_fuzz(scratch, data):
    _load_pickle(scratch, data)


@FUZZ
@given(st.data())
def test_load_arrays_mutated_real_pickle_fuzz(scratch, seed_pickle, data):
    raw = bytearray(seed_pickle)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, len(raw)))
        if op == "set" and i < len(raw):
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del raw[i:i + data.draw(st.integers(1, 8))]
        else:
            del raw[i:]
    _load_pickle(scratch, bytes(raw))


def test_yaml_alias_bomb_is_refused_fast(scratch):
    from facegraph.core.errors import GraphError
    from facegraph.plugin.runner import Runner, load_graph_file

    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    lines.append('graph: {"1": {class_type: FacegraphLoadImage, inputs: {path: *a8}}}')
    p = scratch / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    import time

    t0 = time.perf_counter()
    with pytest.raises(GraphError, match="aliases"):
        Runner().prepare(*load_graph_file(p))
    assert time.perf_counter() - t0 < 2
