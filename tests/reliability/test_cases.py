"""The reliability suite (issue 8: "nothing lost, nothing stale"): hostile input, faults and unsafe files
against the CLI, the runner and the nodes.

Table-driven: each case builds its input in a temp folder, runs one command (or one call), and the harness
asserts the exit code, that the error names what it must name in ONE line with no traceback, that every
input file is byte-identical afterwards (hashed before and after), that no temp file is left anywhere, and
the case's own check of the output folder. Cases that need the real models are marked ``shared``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from facegraph.plugin.cli import main

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ helpers
def exr(path: Path, px: np.ndarray, *, half: bool = False, channels=None, data_window=None,
        display_window=None, attrs: dict | None = None) -> Path:
    """Write a test EXR with OIIO directly (not through the code under test)."""
    import OpenImageIO as oiio

    px = np.asarray(px, np.float32)
    if px.ndim == 2:
        px = px[..., None]
    h, w, c = px.shape
    spec = oiio.ImageSpec(w, h, c, oiio.HALF if half else oiio.FLOAT)
    spec.channelnames = tuple(channels or ("R", "G", "B", "A")[:c] if c != 1 else ("Y",))
    if data_window:
        spec.x, spec.y = data_window
    if display_window:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = display_window
    for k, v in (attrs or {}).items():
        spec.attribute(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    out.write_image(px)
    out.close()
    return path


def read(path: Path) -> tuple[np.ndarray, Any]:
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    px = inp.read_image(oiio.FLOAT)
    inp.close()
    return np.asarray(px), spec


def plate(folder: Path, n: int = 4, first: int = 1, value: float = 0.5, size=(8, 6), name="p") -> str:
    for i in range(n):
        exr(folder / f"{name}.{first + i:04d}.exr", np.full((size[1], size[0], 3), value + i, np.float32))
    return str(folder / f"{name}.####.exr")


def graph(folder: Path, nodes: dict, params: dict | None = None) -> str:
    doc = {"parameters": params, "graph": nodes} if params is not None else nodes
    p = folder / "g.json"
    p.write_text(json.dumps(doc))
    return str(p)


def copy_graph(src: str, dst: str, **extra) -> dict:
    return {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": src, **extra}},
            "2": {"class_type": "FacegraphSaveEXRSequence",
                  "inputs": {"images": ["1", 0], "sequence": ["1", 2], "path": dst, "mode": "overwrite"}}}


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files_of(root)}


def set_mtime_like(path: Path, st: os.stat_result) -> None:
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# ------------------------------------------------------------------------------------------------ cases
@dataclasses.dataclass
class Case:
    id: str
    build: Callable[[Path], list[str] | Callable[[], Any]]   # argv for `facegraph`, or a call
    code: int = 2                 # exit code (calls: 0 = returns, 2 = raises FacegraphError)
    says: tuple[str, ...] = ()    # the error (or warning) text must contain each of these
    check: Callable[[Path], None] | None = None
    marks: tuple = ()
    env: dict | None = None


CASES: list[Case] = []


def case(id: str, code: int = 2, says: tuple[str, ...] = (), marks: tuple = (), env: dict | None = None):
    def deco(fn):
        checker = getattr(fn, "check", None)
        CASES.append(Case(id, fn, code, says, checker, marks, env))
        return fn
    return deco


def then(check: Callable[[Path], None]):
    def deco(fn):
        fn.check = check
        return fn
    return deco


def no_outputs(folder: str = "out"):
    def check(tmp: Path) -> None:
        out = tmp / folder
        assert not out.exists() or not [p for p in files_of(out) if not p.name.startswith(".facegraph")], \
            f"outputs written: {files_of(out)}"
    return check


# ---- data loss: never write over an input -------------------------------------------------------------
@case("analyse-crops-over-input", says=("input", "crop"))
@then(lambda tmp: None)
def _(tmp):
    pat = plate(tmp / "in" / "shot" / "crops", 3, 1001, name="crop")
    return ["analyse", pat, "--out", str(tmp / "in" / "shot"), "--overwrite", "--no-preview"]


@case("convert-out-equals-in-overwrite", says=("over the input",))
def _(tmp):
    pat = plate(tmp / "in", 3)
    return ["convert", pat, pat, "--overwrite", "--half"]


@case("convert-still-out-equals-in", says=("over the input",))
def _(tmp):
    p = exr(tmp / "in" / "a.exr", np.ones((4, 4, 3)))
    return ["convert", str(p), str(p), "--overwrite"]


@case("convert-out-through-symlinked-folder", says=("over the input",))
def _(tmp):
    pat = plate(tmp / "in", 2)
    os.symlink(tmp / "in", tmp / "alias")
    return ["convert", pat, str(tmp / "alias" / "p.####.exr"), "--overwrite"]


@case("convert-out-hard-link-to-input", says=("over the input",))
def _(tmp):
    pat = plate(tmp / "in", 2)
    (tmp / "out").mkdir()
    os.link(tmp / "in" / "p.0001.exr", tmp / "out" / "o.0001.exr")
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--overwrite"]


@case("convert-out-via-dotdot", says=("over the input",))
def _(tmp):
    pat = plate(tmp / "in", 2)
    return ["convert", pat, str(tmp / "in" / ".." / "in" / "p.####.exr"), "--resume"]


@case("graph-save-over-its-loader", says=("over the input", "node=2"))
def _(tmp):
    pat = plate(tmp / "in", 2)
    return ["run", graph(tmp, copy_graph(pat, pat))]


def _output_inside_input_ok(tmp):
    assert len(list((tmp / "in" / "sub").glob("o.*.exr"))) == 3


@case("convert-output-inside-input-folder", code=0)
@then(_output_inside_input_ok)
def _(tmp):
    pat = plate(tmp / "in", 3)
    return ["convert", pat, str(tmp / "in" / "sub" / "o.####.exr")]


# ---- half overflow ---------------------------------------------------------------------------------------
def _big(tmp):
    exr(tmp / "in" / "p.0001.exr", np.array([[[1e5, 1.0, -7e4]]], np.float32).repeat(4, 0).repeat(4, 1))
    return str(tmp / "in" / "p.####.exr")


@case("half-overflow-refused", says=("exceed half", "o.0001", "--half-overflow"))
@then(no_outputs())
def _(tmp):
    return ["convert", _big(tmp), str(tmp / "out" / "o.####.exr"), "--half"]


def _clamped(tmp):
    px, spec = read(tmp / "out" / "o.0001.exr")
    assert np.isfinite(px).all() and px.max() == 65504 and px.min() == -65504


@case("half-overflow-clamp", code=0, says=("clamped",))
@then(_clamped)
def _(tmp):
    return ["convert", _big(tmp), str(tmp / "out" / "o.####.exr"), "--half", "--half-overflow", "clamp"]


def _as_float(tmp):
    px, spec = read(tmp / "out" / "o.0001.exr")
    assert str(spec.format) == "float" and px.max() == 1e5


@case("half-overflow-float", code=0, says=("written as float",))
@then(_as_float)
def _(tmp):
    return ["convert", _big(tmp), str(tmp / "out" / "o.####.exr"), "--half-overflow", "float"]


# ---- non-finite and unusual values ---------------------------------------------------------------------
def _only_complete_first(tmp):
    assert sorted(p.name for p in (tmp / "out").glob("o.*")) == ["o.0001.exr"]
    assert np.isfinite(read(tmp / "out" / "o.0001.exr")[0]).all()


@case("nan-input-refused", says=("NaN/Inf", "frame=2", "--nonfinite zero"))
@then(_only_complete_first)
def _(tmp):
    pat = plate(tmp / "in", 3)
    exr(tmp / "in" / "p.0002.exr", np.full((6, 8, 3), np.nan))
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--float"]


def _zeroed(tmp):
    px, _ = read(tmp / "out" / "o.0002.exr")
    assert np.isfinite(px).all() and (px == 0).all()


@case("nan-input-zeroed-on-request", code=0)
@then(_zeroed)
def _(tmp):
    pat = plate(tmp / "in", 3)
    exr(tmp / "in" / "p.0002.exr", np.full((6, 8, 3), np.nan))
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--float", "--nonfinite", "zero"]


@case("inf-input-refused", says=("NaN/Inf", "frame=1"))
@then(no_outputs())
def _(tmp):
    exr(tmp / "in" / "p.0001.exr", np.full((2, 2, 3), np.inf))
    return ["convert", str(tmp / "in" / "p.####.exr"), str(tmp / "out" / "o.####.exr")]


def _negative_kept(tmp):
    px, _ = read(tmp / "out" / "o.0001.exr")
    assert px.min() == np.float32(-0.25) and px.max() == np.float32(60000.5)


@case("negative-and-large-values-kept-exactly", code=0)
@then(_negative_kept)
def _(tmp):
    exr(tmp / "in" / "p.0001.exr", np.array([[[-0.25, 60000.5, 1.0]]]).repeat(3, 0))
    return ["convert", str(tmp / "in" / "p.####.exr"), str(tmp / "out" / "o.####.exr"), "--float"]


# ---- bad files: found by the header check before any work -------------------------------------------------
@case("zero-byte-frame-fails-first", says=("frame 3", "0 bytes"))
@then(no_outputs())
def _(tmp):
    pat = plate(tmp / "in", 4)
    (tmp / "in" / "p.0003.exr").write_bytes(b"")
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


@case("random-bytes-frame-fails-first", says=("frame 2", "cannot open"))
@then(no_outputs())
def _(tmp):
    pat = plate(tmp / "in", 4)
    (tmp / "in" / "p.0002.exr").write_bytes(os.urandom(3000))
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


def _truncated(tmp):
    done = sorted(p.name for p in tmp.glob("out/o.*.exr"))
    assert done in ([], ["o.0001.exr", "o.0002.exr"])  # complete frames only; the bad one is not half-written
    for name in done:
        assert np.isfinite(read(tmp / "out" / name)[0]).all()


@case("truncated-frame-leaves-only-complete-frames", says=("frame", "3"))
@then(_truncated)
def _(tmp):
    pat = plate(tmp / "in", 4, size=(64, 64))
    f = tmp / "in" / "p.0003.exr"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--compression", "none"]


@case("mismatched-sizes-fail-first", says=("differs",))
@then(no_outputs())
def _(tmp):
    pat = plate(tmp / "in", 3)
    exr(tmp / "in" / "p.0003.exr", np.zeros((9, 9, 3)))
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


@case("frame-over-the-size-limit", says=("larger than the limit", "FACEGRAPH_MAX_PIXELS"),
      env={"FACEGRAPH_MAX_PIXELS": "100"})
@then(no_outputs())
def _(tmp):
    pat = plate(tmp / "in", 2, size=(16, 16))
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


@case("rg-only-exr-is-not-luminance-alpha", says=("no R/G/B", "'R', 'G'"))
@then(no_outputs())
def _(tmp):
    exr(tmp / "in" / "p.0001.exr", np.ones((4, 4, 2)), channels=("R", "G"))
    return ["convert", str(tmp / "in" / "p.####.exr"), str(tmp / "out" / "o.####.exr")]


def _luma(tmp):
    px, spec = read(tmp / "out" / "o.0001.exr")
    assert px.shape[-1] == 3 and np.allclose(px, 0.75)


@case("y-only-exr-is-luminance", code=0)
@then(_luma)
def _(tmp):
    exr(tmp / "in" / "p.0001.exr", np.full((4, 4, 1), 0.75))
    return ["convert", str(tmp / "in" / "p.####.exr"), str(tmp / "out" / "o.####.exr"), "--float"]


def _png_decoded(tmp):
    px, _ = read(tmp / "out" / "o.0001.exr")
    assert abs(float(px[0, 0, 0]) - 0.2158605) < 1e-4  # sRGB 128/255 -> linear


@case("png-renamed-exr-decoded-by-real-format", code=0)
@then(_png_decoded)
def _(tmp):
    import cv2

    (tmp / "in").mkdir()
    cv2.imwrite(str(tmp / "in" / "x.png"), np.full((4, 4, 3), 128, np.uint8))
    os.rename(tmp / "in" / "x.png", tmp / "in" / "p.0001.exr")
    return ["convert", str(tmp / "in" / "p.####.exr"), str(tmp / "out" / "o.####.exr"), "--float"]


@case("unknown-exr-compression", says=("unknown EXR compression",))
@then(no_outputs())
def _(tmp):
    return ["convert", plate(tmp / "in", 1), str(tmp / "out" / "o.####.exr"), "--compression", "zap"]


# ---- missing frames under each policy --------------------------------------------------------------------
def _gap(tmp):
    pat = plate(tmp / "in", 4)
    (tmp / "in" / "p.0003.exr").unlink()
    return pat


@case("missing-frame-error-policy", says=("1 missing frame(s): 3",))
@then(no_outputs())
def _(tmp):
    return ["convert", _gap(tmp), str(tmp / "out" / "o.####.exr"), "--frames", "1-4"]


def _held(tmp):
    assert read(tmp / "out" / "o.0003.exr")[0].mean() == pytest.approx(1.5)


@case("missing-frame-hold-policy", code=0, says=("filled by policy",))
@then(_held)
def _(tmp):
    return ["convert", _gap(tmp), str(tmp / "out" / "o.####.exr"), "--frames", "1-4", "--missing", "hold",
            "--float"]


def _black(tmp):
    assert (read(tmp / "out" / "o.0003.exr")[0] == 0).all()


@case("missing-frame-black-policy", code=0)
@then(_black)
def _(tmp):
    return ["convert", _gap(tmp), str(tmp / "out" / "o.####.exr"), "--frames", "1-4", "--missing", "black"]


def _skipped(tmp):
    assert sorted(p.name for p in (tmp / "out").glob("o.*")) == ["o.0001.exr", "o.0002.exr", "o.0004.exr"]


@case("missing-frame-skip-policy", code=0)
@then(_skipped)
def _(tmp):
    return ["convert", _gap(tmp), str(tmp / "out" / "o.####.exr"), "--frames", "1-4", "--missing", "skip"]


@case("black-fill-chunk-without-present-frames", code=0)
def _(tmp):
    from facegraph.core.io.frames import iter_frames
    from facegraph.core.io.sequence import FramePlan, SequencePattern

    pat = SequencePattern.parse(plate(tmp / "in", 2))

    def call():
        frames = list(iter_frames(pat, plan=FramePlan(frames=(5, 6), sources=(None, None), missing=(5, 6))))
        assert [f.pixels.shape for f in frames] == [(6, 8, 3)] * 2
    return call


# ---- frame ranges ---------------------------------------------------------------------------------------
@case("huge-frame-range-refused-fast", says=("FACEGRAPH_MAX_FRAMES",))
def _(tmp):
    return ["convert", plate(tmp / "in", 1), str(tmp / "out" / "o.####.exr"), "--frames", "1-10000000"]


@case("reverse-frame-range-refused", says=("runs backwards", "1001-1300"))
def _(tmp):
    return ["convert", plate(tmp / "in", 1), str(tmp / "out" / "o.####.exr"), "--frames", "1300-1001"]


@case("garbage-frame-range-short-error", says=("cannot parse frame range 'abc'",))
def _(tmp):
    return ["convert", plate(tmp / "in", 1), str(tmp / "out" / "o.####.exr"), "--frames", "abc"]


def _negative_frames(tmp):
    assert len(list((tmp / "out").glob("o.*.exr"))) == 6


@case("negative-frame-range-without-equals", code=0)
@then(_negative_frames)
def _(tmp):
    pat = plate(tmp / "in", 6, first=-3)
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--frames", "-3-2"]


# ---- output folders, resume, locks, temp files -----------------------------------------------------------
def _user_file_kept(tmp):
    assert (tmp / "out" / "notes.txt").read_text() == "mine"


@case("analyse-into-non-empty-folder-refused", says=("not empty", "--overwrite"))
@then(_user_file_kept)
def _(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine")
    return ["analyse", plate(tmp / "in", 1), "--out", str(tmp / "out")]


def _stale_removed(tmp):
    out = tmp / "out"
    assert (out / "notes.txt").read_text() == "mine"                       # not ours: kept
    assert not (out / "crops" / "crop.0999.exr").exists()                  # a frame the new run did not cover
    assert not (out / "tracking" / "npz" / "frame.0999.npz").exists()
    doc = json.loads((out / "tracking" / "tracking.json").read_text())
    assert doc["tracks"], "a still must make a track"
    man = json.loads((out / ".facegraph-manifest.json").read_text())
    assert man["state"] == "complete" and "tracking/tracking.json" in man["files"]


@case("analyse-overwrite-removes-previous-run-only", code=0, marks=(pytest.mark.shared,))
@then(_stale_removed)
def _(tmp):

    (tmp / "in").mkdir()
    shutil.copy(ROOT.parent / "shared" / "data" / "stills" / "s0.jpg", tmp / "in" / "face.jpg")
    out = tmp / "out"
    exr(out / "crops" / "crop.0999.exr", np.zeros((2, 2, 3)))
    (out / "tracking" / "npz").mkdir(parents=True)
    (out / "tracking" / "npz" / "frame.0999.npz").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    (out / ".facegraph-manifest.json").write_text(json.dumps(
        {"state": "complete", "patterns": ["crops/crop.####.exr"], "files": ["tracking/npz/frame.0999.npz"]}))
    return ["analyse", str(tmp / "in" / "face.jpg"), "--out", str(out), "--overwrite", "--no-preview",
            "--no-cache"]


def _overscan_matches(tmp):
    a = json.loads((tmp / "plain" / "tracking" / "tracking.json").read_text())
    b = json.loads((tmp / "over" / "tracking" / "tracking.json").read_text())
    assert b["source"]["data_window"] == [-40, -30, _overscan_matches.w + 80, _overscan_matches.h + 60]
    assert b["source"]["display_window"] == [0, 0, _overscan_matches.w, _overscan_matches.h]
    fa, fb = a["frames"][0]["faces"][0], b["frames"][0]["faces"][0]
    assert b["frames"][0]["size"] == [_overscan_matches.w, _overscan_matches.h]
    pa = np.asarray(fa["landmarks"]["points"])[:, :2]
    pb = np.asarray(fb["landmarks"]["points"])[:, :2]
    # display-window pixels on both: the 40 x 30 px overscan must not shift anything (networks see slightly
    # different padding, so allow a pixel)
    assert np.median(np.linalg.norm(pa - pb, axis=1)) < 1.0, np.median(np.linalg.norm(pa - pb, axis=1))


@case("overscan-coordinates-are-display-window", code=0, marks=(pytest.mark.shared,))
@then(_overscan_matches)
def _(tmp):
    import cv2

    from facegraph.core.colour import srgb_to_linear

    rgb = cv2.imread(str(ROOT.parent / "shared" / "data" / "stills" / "s0.jpg"))[..., ::-1]
    lin = srgb_to_linear(rgb.astype(np.float32) / 255.0)
    h, w = lin.shape[:2]
    _overscan_matches.w, _overscan_matches.h = w, h
    exr(tmp / "in" / "plain.exr", lin)
    padded = np.zeros((h + 60, w + 80, 3), np.float32)
    padded[30:30 + h, 40:40 + w] = lin
    exr(tmp / "in" / "over.exr", padded, data_window=(-40, -30), display_window=(0, 0, w, h))
    assert main(["-q", "analyse", str(tmp / "in" / "plain.exr"), "--out", str(tmp / "plain"), "--no-preview",
                 "--no-crops", "--no-cache"]) == 0
    return ["analyse", str(tmp / "in" / "over.exr"), "--out", str(tmp / "over"), "--no-preview", "--no-crops",
            "--no-cache"]


def _same_frames_kept(tmp):
    assert (tmp / "out" / "o.0001.exr").stat().st_mtime_ns == _same_frames_kept.mtime


@case("resume-keeps-frames-of-the-same-graph", code=0)
@then(_same_frames_kept)
def _(tmp):
    pat = plate(tmp / "in", 2)
    assert main(["-q", "convert", pat, str(tmp / "out" / "o.####.exr")]) == 0
    _same_frames_kept.mtime = (tmp / "out" / "o.0001.exr").stat().st_mtime_ns
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--resume"]


def _rerendered(tmp):
    assert read(tmp / "out" / "o.0001.exr")[0].shape[:2] == (4, 4)  # the new graph's frames, not the old


@case("resume-re-renders-frames-of-another-graph", code=0, says=("re-render",))
@then(_rerendered)
def _(tmp):
    a = plate(tmp / "in" / "a", 2, size=(8, 6))
    b = plate(tmp / "in" / "b", 2, size=(4, 4))
    assert main(["-q", "convert", a, str(tmp / "out" / "o.####.exr")]) == 0
    return ["convert", b, str(tmp / "out" / "o.####.exr"), "--resume"]


def _temp_cleaned(tmp):
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["o.0001.exr", "o.0002.exr", "o.0003.exr"]


@case("resume-cleans-a-killed-writers-temp-file", code=0)
@then(_temp_cleaned)
def _(tmp):
    pat = plate(tmp / "in", 3)
    assert main(["-q", "convert", pat, str(tmp / "out" / "o.####.exr"), "--frames", "1-2"]) == 0
    (tmp / "out" / ".o.0003.exr.x1y2z3.tmp.exr").write_bytes(b"partial")
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--resume"]


@case("existing-output-refused-without-mode", says=("output frame exists", "resume"))
def _(tmp):
    pat = plate(tmp / "in", 2)
    assert main(["-q", "convert", pat, str(tmp / "out" / "o.####.exr")]) == 0
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


@case("two-writers-on-one-output", says=("another writer",))
def _(tmp):
    pat = plate(tmp / "in", 2)
    (tmp / "out").mkdir()
    lock = tmp / "out" / ".o.####.exr.facegraph-lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(30)"), str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    _two_writers_holder.append(holder)
    return ["convert", pat, str(tmp / "out" / "o.####.exr")]


_two_writers_holder: list = []


def _kill9_identical(tmp):
    ref, got = hashes(tmp / "ref"), hashes(tmp / "out")
    assert ref.keys() == got.keys() and len(ref) == 40
    # bit-identical pixels (files differ only by nothing: same writer, same hash attribute)
    assert ref == got


@case("kill-9-then-resume-is-bit-identical", code=0)
@then(_kill9_identical)
def _(tmp):
    pat = plate(tmp / "in", 40, size=(256, 256))
    cmd = [sys.executable, "-m", "facegraph.plugin.cli", "-q", "convert", pat]
    subprocess.run(cmd + [str(tmp / "ref" / "o.####.exr")], check=True, timeout=120)
    p = subprocess.Popen(cmd + [str(tmp / "out" / "o.####.exr")])
    t0 = time.time()
    while time.time() - t0 < 60 and p.poll() is None and len(list(tmp.glob("out/o.*.exr"))) < 5:
        time.sleep(0.005)
    p.kill()  # SIGKILL: no cleanup runs
    p.wait()
    assert len(list((tmp / "out").glob("o.*.exr"))) < 40, "the writer finished before it could be killed"
    return ["convert", pat, str(tmp / "out" / "o.####.exr"), "--resume"]


def _readable(tmp):
    for p in files_of(tmp / "out"):
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))


@case("outputs-honour-the-umask", code=0)
@then(_readable)
def _(tmp):
    return ["convert", plate(tmp / "in", 2), str(tmp / "out" / "o.####.exr")]


def _readable_tiff(tmp):
    for p in files_of(tmp / "out"):
        assert p.stat().st_mode & 0o777 == 0o644


@case("display-outputs-honour-the-umask", code=0)
@then(_readable_tiff)
def _(tmp):
    return ["convert", plate(tmp / "in", 2), str(tmp / "out" / "o.####.png")]


# ---- read-only and full output (injected: tests run as root, for whom permissions do not apply) ------------
def _fault(tmp, err: OSError):
    import tempfile

    pat = plate(tmp / "in", 2)
    real = tempfile.mkstemp

    def call():
        tempfile.mkstemp = lambda *a, **k: (_ for _ in ()).throw(err)
        try:
            return main(["-q", "convert", pat, str(tmp / "out" / "o.####.exr")])
        finally:
            tempfile.mkstemp = real
    return call


@case("read-only-output-folder", says=("cannot write here", "Permission denied", "o.0001.exr"))
@then(no_outputs())
def _(tmp):
    import errno

    return _fault(tmp, PermissionError(errno.EACCES, "Permission denied"))


@case("full-output-disk", says=("cannot write here", "No space left"))
@then(no_outputs())
def _(tmp):
    import errno

    return _fault(tmp, OSError(errno.ENOSPC, "No space left on device"))


@case("full-cache-disk-continues-without-cache", code=0, says=("continuing without it",))
def _(tmp):
    from facegraph.core.shotcache import FrameCache
    from facegraph.core.types import FrameFaces

    (tmp / "cache").write_text("a file where the cache folder should be")

    def call():
        c = FrameCache(tmp / "cache", {"k": 1})
        c.put(1, ["id"], FrameFaces(frame=1, size=(4, 4)))
        c.put(2, ["id"], FrameFaces(frame=2, size=(4, 4)))
        assert not c.enabled
    return call


# ---- stale results: content identity, not stat -------------------------------------------------------------
def _edit_in_place(path: Path) -> None:
    """Change bytes of ``path`` in place: same inode, same size, and the mtime put back (``touch -r``)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    with open(path, "r+b") as fh:
        fh.write(bytes(data))
    set_mtime_like(path, st)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@case("cache-identity-sees-an-in-place-edit", code=0)
def _(tmp):
    from facegraph.core.shotcache import file_identity

    plate(tmp / "edit", 1, value=0.5)  # edited on purpose: not under in/

    def call():
        f = tmp / "edit" / "p.0001.exr"
        before = file_identity(f)
        _edit_in_place(f)
        assert file_identity(f) != before
    _edit_in_place.allow = True
    return call


def _is_changed(node_cls: str, make: Callable[[Path], str]):
    def build(tmp):
        from facegraph.nodes import NODE_CLASSES

        path = make(tmp)
        cls = NODE_CLASSES[node_cls]

        def call():
            a = cls.IS_CHANGED(path=path)
            target = Path(path.replace("####", "0001")) if "####" in path else Path(path)
            if target.is_dir():
                target = target / "tracking.json"
            _edit_in_place(target)
            assert cls.IS_CHANGED(path=path) != a, f"{node_cls} did not notice an in-place edit"
        return call
    return build


def _tracking_doc(tmp: Path) -> str:
    d = tmp / "trk"
    d.mkdir()
    (d / "tracking.json").write_text(json.dumps({"schema": "facegraph.tracking", "fps": 24}))
    return str(d)


for _node, _make in (("FacegraphLoadImageSequence", lambda t: plate(t / "edit", 2)),
                     ("FacegraphLoadImage", lambda t: str(exr(t / "edit" / "a.exr", np.ones((4, 4, 3))))),
                     ("FacegraphAnalyseShot", lambda t: plate(t / "edit", 2)),
                     ("FacegraphImportTracking", _tracking_doc)):
    CASES.append(Case(f"is-changed-{_node}", _is_changed(_node, _make), code=0))


# ---- graphs and parameters -------------------------------------------------------------------------------
def _template(tmp: Path) -> str:
    pat = plate(tmp / "in", 2)
    return graph(tmp, {"1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": "${src}", "count": 0}},
                       "2": {"class_type": "FacegraphSaveEXRSequence",
                             "inputs": {"images": ["1", 0], "path": str(tmp / "out" / "o.####.exr")}}},
                 params={"src": pat})


@case("run-unknown-parameter", says=("no parameter 'nosuchparam'",))
@then(no_outputs())
def _(tmp):
    return ["run", _template(tmp), "--set", "nosuchparam=5"]


@case("run-typo-parameter-suggests", says=("did you mean src",))
@then(no_outputs())
def _(tmp):
    return ["run", _template(tmp), "--set", "scr=x"]


@case("run-int-input-fraction", says=("not a valid INT", "count"))
@then(no_outputs())
def _(tmp):
    return ["run", _template(tmp), "--set", "1.count=2.7"]


@case("run-int-input-boolean", says=("not a valid INT",))
@then(no_outputs())
def _(tmp):
    return ["run", _template(tmp), "--set", "1.count=true"]


@case("run-float-input-nan", says=("not a valid FLOAT", "stops"))
def _(tmp):
    g = graph(tmp, {"1": {"class_type": "FacegraphViewTransform", "inputs": {"images": ["2", 0]}},
                    "2": {"class_type": "FacegraphLoadImage", "inputs": {"path": "x.exr"}}})
    return ["run", g, "--set", "1.stops=.nan"]  # YAML's .nan: a real float NaN


@case("run-unknown-input-on-a-node", says=("unknown input", "pth"))
def _(tmp):
    return ["run", _template(tmp), "--set", "1.pth=x"]


@case("analyse-strength-nan", says=("--strength",))
def _(tmp):
    return ["analyse", plate(tmp / "in", 1), "--out", str(tmp / "out"), "--strength", "nan"]


@case("analyse-crop-size-out-of-range-before-any-write", says=("--crop-size 100000",))
@then(no_outputs())
def _(tmp):
    return ["analyse", plate(tmp / "in", 1), "--out", str(tmp / "out"), "--crop-size", "100000"]


@case("graph-not-json", says=("not valid JSON",))
def _(tmp):
    (tmp / "g.json").write_text("{nope")
    return ["run", str(tmp / "g.json")]


@case("graph-unknown-node", says=("unknown node class", "FacegraphLoadImageSequenz"))
def _(tmp):
    return ["run", graph(tmp, {"1": {"class_type": "FacegraphLoadImageSequenz", "inputs": {}}})]


@case("graph-cycle", says=("cycle",))
def _(tmp):
    return ["run", graph(tmp, {"1": {"class_type": "FacegraphViewTransform", "inputs": {"images": ["2", 0]}},
                               "2": {"class_type": "FacegraphViewTransform", "inputs": {"images": ["1", 0]}}})]


@case("malicious-yaml-graph-runs-no-code", says=("not valid JSON/YAML",))
@then(lambda tmp: None if not (tmp / "pwned").exists() else pytest.fail("YAML ran code"))
def _(tmp):
    (tmp / "g.yaml").write_text(f"graph: !!python/object/apply:os.system ['touch {tmp / 'pwned'}']\n")
    return ["run", str(tmp / "g.yaml")]


@case("malicious-pickle-runs-no-code", says=("refusing to unpickle",))
@then(lambda tmp: None if not (tmp / "pwned").exists() else pytest.fail("pickle ran code"))
def _(tmp):
    from facegraph.models.safe_pickle import load_arrays

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    (tmp / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    return lambda: load_arrays(tmp / "evil.pkl")


@case("deeply-nested-pickle")
def _(tmp):
    from facegraph.models.safe_pickle import load_arrays

    (tmp / "deep.pkl").write_bytes(b"(" * 100000 + b"l" * 100000 + b".")  # protocol 0: 100000 nested lists
    return lambda: load_arrays(tmp / "deep.pkl")


@case("malformed-tracking-file", says=("template",))
def _(tmp):
    from facegraph.nodes import NODE_CLASSES

    d = tmp / "trk"
    d.mkdir()
    (d / "tracking.json").write_text(json.dumps({"schema": "facegraph.tracking", "version": 1, "frames": [],
                                                 "tracks": []}))
    return lambda: NODE_CLASSES["FacegraphImportTracking"]().load(str(d))


# ---- CLI argument errors: one line, exit 2 ------------------------------------------------------------------
@case("landmarks-boxes-csv-missing-file", says=("--boxes-csv", "nope.csv"), marks=(pytest.mark.shared,))
def _(tmp):
    img = exr(tmp / "in" / "a.exr", np.ones((8, 8, 3)))
    return ["landmarks", str(img), "--boxes-csv", str(tmp / "nope.csv")]


@case("landmarks-boxes-csv-missing-column", says=("missing column", "y1"), marks=(pytest.mark.shared,))
def _(tmp):
    img = exr(tmp / "in" / "a.exr", np.ones((8, 8, 3)))
    (tmp / "b.csv").write_text("image,x0,y0,x1\na.exr,1,2,3\n")
    return ["landmarks", str(img), "--boxes-csv", str(tmp / "b.csv")]


@case("landmarks-boxes-csv-not-a-number", says=("line 2", "numbers"), marks=(pytest.mark.shared,))
def _(tmp):
    img = exr(tmp / "in" / "a.exr", np.ones((8, 8, 3)))
    (tmp / "b.csv").write_text("image,x0,y0,x1,y1\na.exr,1,two,3,4\n")
    return ["landmarks", str(img), "--boxes-csv", str(tmp / "b.csv")]


@case("models-pin-missing-file", says=("--file", "no such file"))
def _(tmp):
    from facegraph.models.registry import registry

    unpinned = next(s.id for s in registry() if any(f.sha256 is None for f in s.files))
    return ["models", "pin", unpinned, "--file", str(tmp / "missing.onnx")]


@case("unknown-cli-option", says=())
def _(tmp):
    return ["convert", "--no-such-option"]


# ------------------------------------------------------------------------------------------------ harness
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=list(c.marks)) for c in CASES])
def test_reliability(c: Case, tmp_path, caplog, capsys, monkeypatch, umask_022):
    for k, v in (c.env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    made = c.build(tmp_path)
    inputs = tmp_path / "in"
    before = hashes(inputs) if inputs.exists() else {}
    caplog.set_level(logging.INFO)
    from facegraph.core.errors import FacegraphError

    t0 = time.perf_counter()
    try:
        if callable(made):
            try:
                result = made()
                code = result if isinstance(result, int) else 0
            except FacegraphError as exc:
                code = 2
                logging.getLogger("facegraph").error("%s", exc)
        else:
            code = main(made)
    finally:
        for h in _two_writers_holder:
            h.kill()
            h.wait()
            for lock in tmp_path.rglob("*.facegraph-lock"):
                lock.unlink()  # the holder's, not ours
        _two_writers_holder.clear()
    elapsed = time.perf_counter() - t0
    text = caplog.text + capsys.readouterr().err
    assert code == c.code, f"exit {code}, expected {c.code}; log:\n{text}"
    for s in c.says:
        assert s in text, f"{s!r} not in:\n{text}"
    if c.code == 2:
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) <= 1 and "Traceback" not in text, f"not one clear line:\n{text}"
        assert all("\n" not in r.getMessage() for r in errors)
    assert elapsed < 60
    if before:
        after = hashes(inputs)
        assert {k: after.get(k) for k in before} == before, "an input file changed or vanished"
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.endswith(".facegraph-lock")]
    assert not leftovers, f"temp files left: {leftovers}"
    if c.check is not None:
        c.check(tmp_path)


def test_the_suite_has_at_least_50_cases():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)
