"""Poisson blend: accuracy against a sparse direct solve, speed against cv2.seamlessClone (the baseline,
measured in the same run), the box solve's ms per channel per megapixel, and paste-back per face.

Data: real photos from ../shared/data/stills read with cv2, linearised with the sRGB EOTF and scaled to HDR
(the brightest value 100): the plate is s1.jpg resized to the frame, the face is s0.jpg resized to the face
size; the mask is a soft ellipse inscribed in the face rectangle (linear ramp over its outer 12 %). cv2 gets
the same pixels as 8-bit sRGB (what it accepts) and, to see what it does with them, as float32 linear.
Threads: torch.set_num_threads(2) (the house rule); scipy.fft uses as many; cv2 keeps its default pool.
Run: .venv/bin/python -c "import bench.blend as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from facegraph.core.blend import (PasteOptions, PoissonOptions, _box_of, _BoxSolver, _grow, _smooth_length,
                                  paste_back, poisson_blend)
from facegraph.core.colour import srgb_to_linear

from .common import DATA, interleaved, machine, table

PEAK = 100.0  # HDR scale of the test data (the "values up to 100")


def _still(name: str, w: int, h: int) -> np.ndarray:
    """8-bit BGR still resized (area) to (w, h)."""
    im = cv2.imread(str(DATA / "stills" / name), cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(DATA / "stills" / name)
    return cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)


def _hdr(bgr8: np.ndarray) -> np.ndarray:
    """8-bit BGR -> linear RGB float32 (H, W, 3) scaled so the brightest value is PEAK."""
    lin = srgb_to_linear(bgr8[..., ::-1].astype(np.float32) / 255.0)
    return (lin * (PEAK / max(float(lin.max()), 1e-6))).astype(np.float32)


def _ellipse(w: int, h: int, soft: float = 0.12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    d = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    return np.clip((1 - d) / soft, 0, 1).astype(np.float32)


def scene(fw: int, fh: int, face_w: int, face_h: int) -> dict:
    """Plate, face and mask in both forms: torch (1, C, H, W) frame-sized and cv2 (8-bit crop + centre)."""
    plate8 = _still("s1.jpg", fw, fh)
    face8 = _still("s0.jpg", face_w, face_h)
    m = _ellipse(face_w, face_h)
    x0, y0 = (fw - face_w) // 2, (fh - face_h) // 2
    src = _hdr(plate8).copy()
    face = _hdr(face8)
    src[y0:y0 + face_h, x0:x0 + face_w] = face
    mask = np.zeros((fh, fw), np.float32)
    mask[y0:y0 + face_h, x0:x0 + face_w] = m
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]  # noqa: E731
    return {"source": t(src), "target": t(_hdr(plate8)), "mask": torch.from_numpy(mask)[None, None],
            "face8": face8, "plate8": plate8, "mask8": np.where(m > 0, 255, 0).astype(np.uint8),
            "face_f": face[..., ::-1].copy(), "plate_f": _hdr(plate8)[..., ::-1].copy(),
            "centre": (x0 + face_w // 2, y0 + face_h // 2)}


def reference(s: np.ndarray, t: np.ndarray, m: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The documented system (core/blend.py, "source" guidance) assembled edge by edge, sparse LU in float64."""
    c, h, w = s.shape
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(region)
    idx[ys, xs] = np.arange(len(ys))
    n = len(ys)
    rows, cols, vals, b, diag = [], [], [], np.zeros((c, n)), np.zeros(n)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        qy, qx = ys + dy, xs + dx
        p = np.nonzero((qy >= 0) & (qy < h) & (qx >= 0) & (qx < w))[0]
        qy, qx, py, px = qy[p], qx[p], ys[p], xs[p]
        diag[p] += 1
        wt = np.maximum(m[py, px], m[qy, qx])
        b[:, p] += wt * (s[:, py, px] - s[:, qy, qx]) + (1 - wt) * (t[:, py, px] - t[:, qy, qx])
        qi = idx[qy, qx]
        inside = qi >= 0
        rows += [p[inside]]
        cols += [qi[inside]]
        vals += [-np.ones(int(inside.sum()))]
        b[:, p[~inside]] += t[:, qy[~inside], qx[~inside]]
    a = sp.csc_matrix((np.concatenate(vals + [diag]), (np.concatenate(rows + [np.arange(n)]),
                                                      np.concatenate(cols + [np.arange(n)]))), shape=(n, n))
    lu = spl.splu(a)
    out = t.copy()
    for k in range(c):
        u = lu.solve(b[k])
        out[k, ys, xs] = u * m[ys, xs] + t[k, ys, xs] * (1 - m[ys, xs])
    return out


def _rel(ours: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    """(max |ours - ref| / max(|ref|, 1), max |ours - ref| / PEAK)."""
    e = np.abs(ours.double().numpy() - ref)
    return float((e / np.maximum(np.abs(ref), 1.0)).max()), float(e.max() / PEAK)


def accuracy() -> str:
    sc = scene(480, 360, 120, 156)
    s, t, m = sc["source"], sc["target"], sc["mask"]
    s64, t64, m64 = (x[0].double().numpy() for x in (s, t, m))
    y0, y1, x0, x1 = _box_of(m[0, 0], 16)
    y0, y1 = _grow(y0, y1, 360, _smooth_length(y1 - y0))
    x0, x1 = _grow(x0, x1, 480, _smooth_length(x1 - x0))
    box = np.zeros((360, 480), bool)
    box[y0:y1, x0:x1] = True
    ref_box = reference(s64, t64, m64[0], box)
    ref_mask = reference(s64, t64, m64[0], m64[0] > 0)
    rows = []
    for solver, precision, backend, ref in [("dst", "float32", "scipy", ref_box), ("dst", "float64", "scipy", ref_box),
                                            ("dst", "float32", "torch", ref_box), ("cg", "float64", "scipy", ref_mask),
                                            ("cg", "float32", "scipy", ref_mask)]:
        out = poisson_blend(s, t, m, options=PoissonOptions(solver=solver, precision=precision, backend=backend))
        rel, peak = _rel(out[0], ref)
        rows.append([solver, precision, backend, f"{rel:.1e}", f"{peak:.1e}"])
    return (f"Accuracy: a 120x156 face (soft ellipse) in a 480x360 plate, HDR up to {PEAK:g}; reference: scipy sparse "
            f"LU (float64) of the same discrete system (dst: the {x1 - x0}x{y1 - y0} box; cg: Dirichlet on the mask). "
            "Target: <= 1e-3.\n\n" + table(["solver", "precision", "transforms", "max rel. error (|ref| >= 1)",
                                          "max abs. error / peak"], rows))


def speed(rounds: int) -> str:
    rows = []
    notes = []
    for fw, fh, face_w, face_h in [(1920, 1080, 400, 520), (3840, 2160, 800, 1040)]:
        sc = scene(fw, fh, face_w, face_h)
        s, t, m = sc["source"], sc["target"], sc["mask"]
        mask8 = sc["mask8"]
        fns = {
            "cv2 8-bit": lambda: cv2.seamlessClone(sc["face8"], sc["plate8"], mask8.copy(), sc["centre"],
                                                   cv2.NORMAL_CLONE),
            "ours dst float32": lambda: poisson_blend(s, t, m),
            "ours dst float64": lambda: poisson_blend(s, t, m, options=PoissonOptions(precision="float64")),
        }
        times = interleaved(fns, rounds=rounds, warmup=1)
        base = times["cv2 8-bit"]
        label = f"{fw}x{fh}, face {face_w}x{face_h}"
        for k, v in times.items():
            rows.append([label, k, f"{v * 1e3:.0f}", f"{base / v:.2f}"])
        r64 = poisson_blend(s, t, m, options=PoissonOptions(precision="float64")).double()
        r32 = poisson_blend(s, t, m).double()
        d = float(((r32 - r64).abs() / r64.abs().clamp_min(1.0)).max())
        notes.append(f"{label}: dst float32 vs float64, max rel. difference {d:.1e}")
        for prec, tol in (("float64", 1e-6), ("float32", 1e-5)):
            t0 = time.perf_counter()
            poisson_blend(s, t, m, options=PoissonOptions(solver="cg", precision=prec, tol=tol))
            t_cg = time.perf_counter() - t0
            rows.append([label, f"ours cg {prec}, tol {tol:g} (one run)", f"{t_cg * 1e3:.0f}", f"{base / t_cg:.2f}"])
        # what cv2 does with float input
        try:
            t0 = time.perf_counter()
            fl = cv2.seamlessClone(sc["face_f"], sc["plate_f"], mask8.copy(), sc["centre"], cv2.NORMAL_CLONE)
            dt = time.perf_counter() - t0
            ours = poisson_blend(s, t, m)[0].permute(1, 2, 0).numpy()[..., ::-1]
            finite = np.isfinite(fl)
            err = np.abs(fl[finite] - ours[finite]).max() if finite.any() else float("nan")
            rows.append([label, "cv2 float32 (one run)", f"{dt * 1e3:.0f}", f"{base / dt:.2f}"])
            notes.append(f"{fw}x{fh}: cv2 on float32 returned {fl.dtype}, {100 * (1 - finite.mean()):.1f} % NaN/Inf, "
                         f"range [{np.nanmin(np.where(finite, fl, np.nan)):.3g}, "
                         f"{np.nanmax(np.where(finite, fl, np.nan)):.3g}] vs ours [{ours.min():.3g}, {ours.max():.3g}]"
                         f", max |difference| on its finite pixels {err:.3g}: not a usable result")
        except cv2.error as e:
            notes.append(f"{fw}x{fh}: cv2 on float32 refused: {str(e).splitlines()[-1][:120]}")
    return ("Speed: ms per blend, median of interleaved rounds; ratio = cv2 8-bit / this (higher is faster). ours "
            "includes the NaN checks, the output copy of the frame and the box solve; cv2 solves over the whole "
            "destination and sees 8-bit data only.\n\n" +
            table(["frame", "method", "ms", "x vs cv2 8-bit"], rows) + "\n\n" + "\n".join(f"- {n}" for n in notes))


def dst_rate(rounds: int) -> str:
    rows = []
    for precision, dt in (("float32", torch.float32), ("float64", torch.float64)):
        for backend in ("scipy", "torch"):
            n = 1000
            op = _BoxSolver(n, n, (False,) * 4, dt, torch.device("cpu"), backend == "scipy")
            x = torch.randn(3, n, n, dtype=dt)
            ts = []
            op.solve(x)
            for _ in range(rounds):
                t0 = time.perf_counter()
                op.solve(x)
                ts.append(time.perf_counter() - t0)
            rows.append([precision, backend, f"{statistics.median(ts) * 1e3 / 3:.1f}"])
    return ("Box solve (DST-I both ways, 1000x1000, 3 channels), ms per channel per megapixel, median\n\n" +
            table(["precision", "transforms", "ms / channel / MP"], rows))


def paste(rounds: int) -> str:
    """One 512x512 crop pasted into a 1920x1080 frame through a rotated, scaled frame_from_crop."""
    plate = torch.from_numpy(_hdr(_still("s1.jpg", 1920, 1080)).transpose(2, 0, 1).copy())[None]
    crop = torch.from_numpy(_hdr(_still("s0.jpg", 512, 512)).transpose(2, 0, 1).copy())[None]
    mask = torch.from_numpy(_ellipse(512, 512, 0.05))[None, None]
    a = np.radians(12.0)
    sc = 0.9
    fc = torch.tensor([[[sc * np.cos(a), -sc * np.sin(a), 700.0], [sc * np.sin(a), sc * np.cos(a), 250.0]]],
                      dtype=torch.float64)
    idx = torch.tensor([0])
    fns = {mode: (lambda mode=mode: paste_back(plate, crop, fc, mask, idx, options=PasteOptions(mode=mode)))
           for mode in ("over", "poisson")}
    times = interleaved(fns, rounds=rounds, warmup=1)
    rows = [[k, f"{v * 1e3:.0f}"] for k, v in times.items()]
    return ("paste_back, one 512x512 face into 1920x1080 (rotated 12 degrees, scale 0.9, feather 8 px, linear), "
            "ms, median\n\n" + table(["mode", "ms"], rows))


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="bench.blend")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv or [])
    torch.set_num_threads(2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    parts = [f"{machine()}; load average {load:.1f} at the start (the host is shared)", accuracy(),
             speed(a.rounds), dst_rate(a.rounds), paste(a.rounds)]
    return "\n\n".join(parts)
