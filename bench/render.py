"""Rendering on this CPU (2 threads): the rasteriser on 3DDFA_V2's BFM mesh (38365 vertices, 76073 triangles,
frontal, filling 90 % of the image) at 512 / 1024 / 2048 px beside today's rasteriser (core/render/raster.py at
commit BASELINE, read with `git show` into a module of its own) in the same run, interleaved; their rasters
compared bit for bit; UV texture extraction at T = 512 / 1024 and UV re-rendering at 1024 px with each rasteriser;
and the UV round trip's PSNR.

The machine is shared (2 cores, other jobs): figures are min / median of interleaved runs, with the load average
(`os.getloadavg`, as `uptime` prints it) at the start and the end of the run.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from facegraph.core.render.raster import rasterise
from facegraph.core.render.uv import extract_uv_texture, render_uv_texture, uv_raster

from .common import SHARED, machine, table

MODELS = SHARED / "models"


def bfm_mesh(size: int, fill: float = 0.9):
    """(vertices (1, V, 3) float32 screen space, triangles (F, 3) int64 counter-clockwise, uv (V, 2) v down)."""
    import scipy.io

    from facegraph.models.safe_pickle import load_arrays

    tri = np.ascontiguousarray(load_arrays(MODELS / "3ddfa_v2" / "tri.pkl").T[:, [0, 2, 1]]).astype(np.int64)
    keep = np.load(MODELS / "3ddfa_v2" / "indices.npy")
    mean = np.load(MODELS / "bfm" / "u_shp.npy").reshape(-1, 3)[keep].astype(np.float64)  # flat x, y, z
    p = mean * [1.0, -1.0, -1.0]  # model (y up, z to the viewer) -> screen (y down, z away)
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    s = fill * size / (hi - lo).max()
    v = np.empty_like(p)
    v[:, :2] = (p[:, :2] - (lo + hi) / 2) * s + size / 2
    v[:, 2] = (p[:, 2] - p[:, 2].min()) * s + 1.0
    uv = scipy.io.loadmat(MODELS / "3ddfa_v2" / "BFM_UV.mat")["UV"][keep]
    uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1)  # BFM_UV.mat has v up
    return (torch.from_numpy(v.astype(np.float32))[None], torch.from_numpy(tri),
            torch.from_numpy(uv.astype(np.float32)))


#: Today's rasteriser, the baseline: the last commit of core/render/raster.py before the numpy / chunked rewrite.
BASELINE = "564ed20eb7e959135394207321b3f4a4fe03cb5d"


def baseline_module():
    """core/render/raster.py at BASELINE as the module facegraph.core.render._raster_baseline (None without git)."""
    name = "facegraph.core.render._raster_baseline"
    if name in sys.modules:
        return sys.modules[name]
    root = Path(__file__).resolve().parents[1]
    try:
        src = subprocess.run(["git", "-C", str(root), "show", f"{BASELINE}:core/render/raster.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType(name)
    mod.__package__ = "facegraph.core.render"
    mod.__file__ = f"<{BASELINE[:7]}:core/render/raster.py>"
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


@contextlib.contextmanager
def uv_rasteriser(module):
    """core/render/uv.py rasterising and interpolating with ``module``'s functions inside the block (it imports
    ``rasterise`` and ``interpolate`` by name)."""
    import facegraph.core.render.uv as uv_module

    saved = uv_module.rasterise, uv_module.interpolate
    uv_module.rasterise, uv_module.interpolate = module.rasterise, module.interpolate
    try:
        yield
    finally:
        uv_module.rasterise, uv_module.interpolate = saved


def _median_ms(fn, rounds: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def _interleaved_ms(fns: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """(median, min) ms per call, candidates run alternately so drift (other jobs on the machine) hits all alike;
    the min is the best estimate of the uncontended time on a shared machine."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v) * 1e3, min(v) * 1e3) for k, v in times.items()}


def _same(a, b) -> str:
    """Which of tri_id / bary / depth / mask are bit-identical (torch.equal) between two rasters."""
    names = ("tri_id", "bary", "depth", "mask")
    diff = [n for n in names if not torch.equal(getattr(a, n), getattr(b, n))]
    return "all four" if not diff else "differ: " + ", ".join(diff)


def _pair(new: tuple[float, float], old: tuple[float, float]) -> list[str]:
    (nm, nb), (om, ob) = new, old
    return [f"{nb:.1f} / {nm:.1f}", f"{ob:.1f} / {om:.1f}", f"{ob / nb:.2f}x / {om / nm:.2f}x"]


def synthetic_texture(t: int) -> torch.Tensor:
    """(1, 3, t, t) smooth scene-linear albedo with a few sharper stripes and values above 1."""
    v, u = torch.meshgrid((torch.arange(t) + 0.5) / t, (torch.arange(t) + 0.5) / t, indexing="ij")
    r = 0.8 + 0.3 * torch.sin(2 * math.pi * 6 * u) * torch.cos(2 * math.pi * 4 * v)
    g = 0.5 + 0.2 * torch.cos(2 * math.pi * 9 * (u + v))
    b = 0.3 + 0.25 * (torch.sin(2 * math.pi * 20 * u) > 0).float()
    return (torch.stack([r * 1.6, g, b])[None]).float()


def lit_frame(vertices, triangles, uv, size: int, tex_size: int = 1024):
    """A rendered-then-lit synthetic frame: albedo texture rendered, times Lambert shading from interpolated
    normals (light from the upper left, plus ambient). Returns (frame (1, 3, H, W), coverage (1, 1, H, W))."""
    from facegraph.core.render.raster import interpolate, vertex_normals

    raster = rasterise(vertices, triangles, (size, size))
    albedo = render_uv_texture(synthetic_texture(tex_size), vertices, triangles, uv, (size, size), raster=raster)
    n = interpolate(raster, vertex_normals(vertices, triangles)[0], triangles)
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-8)
    light = torch.tensor([-0.4, -0.5, -0.77]).view(1, 3, 1, 1)  # towards the camera (-z), up and left
    shade = 0.25 + 1.5 * (n * light).sum(1, keepdim=True).clamp(min=0)
    return albedo.colour * shade, raster.mask


def round_trip_psnr(vertices, triangles, uv, size: int, t: int) -> tuple[float, float]:
    frame, cov = lit_frame(vertices, triangles, uv, size)
    tex, weight = extract_uv_texture(frame, vertices, triangles, uv, t)
    alpha = (weight > 0).float()
    back = render_uv_texture(tex, vertices, triangles, uv, (size, size), texture_alpha=alpha)
    region = (back.alpha > 0.999) & (cov > 0)  # face pixels whose texels were seen
    err = ((back.colour - frame) ** 2).mean(1, keepdim=True)[region]
    peak = float(frame.amax())
    return 10 * math.log10(peak ** 2 / float(err.mean())), float(region.float().sum() / (cov > 0).float().sum())


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv or [])
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    old = baseline_module()
    if old is None:
        return f"git show {BASELINE}:core/render/raster.py failed: no baseline to measure against"
    rows = []
    for size in (512, 1024, 2048):
        v, tri, uv = bfm_mesh(size)
        sz = (size, size)
        ours, ref = rasterise(v, tri, sz), old.rasterise(v, tri, sz)
        agree = float((ours.tri_id >= 0).eq(ref.tri_id >= 0).float().mean())
        ours4, ref4 = rasterise(v, tri, sz, samples=4), old.rasterise(v, tri, sz, samples=4)
        rounds = a.rounds if size < 2048 else max(3, a.rounds // 2)
        ms = _interleaved_ms({"new": lambda: rasterise(v, tri, sz), "old": lambda: old.rasterise(v, tri, sz)},
                             rounds)
        aa = _interleaved_ms({"new": lambda: rasterise(v, tri, sz, samples=4),
                              "old": lambda: old.rasterise(v, tri, sz, samples=4)}, 3 if size < 2048 else 2)
        rows.append([f"{size} x {size}", f"{float(ours.mask.mean()):.3f}", *_pair(ms["new"], ms["old"]),
                     f"{agree:.5f}", _same(ours, ref), *_pair(aa["new"], aa["old"])[:2], _same(ours4, ref4)])
    text = (f"{machine()}, torch threads {a.threads}; load average at the start {load0[0]:.2f}, {load0[1]:.2f}, "
            f"{load0[2]:.2f} (1, 5, 15 min; 2 cores)\n\nRasterise the BFM mesh (38365 vertices, 76073 triangles): ms, "
            f"min / median of {a.rounds} interleaved runs ({max(3, a.rounds // 2)} at 2048; samples=4: 3, 2 at 2048), "
            f"this rasteriser beside today's ({BASELINE[:7]}); speed-up = today / new\n\n" +
            table(["image", "coverage", "new", f"today ({BASELINE[:7]})", "speed-up", "coverage agreement",
                   "bit-identical", "samples=4 new", "samples=4 today", "samples=4 identical"], rows))
    size = 1024
    v, tri, uv = bfm_mesh(size)
    frame, _ = lit_frame(v, tri, uv, size)
    raster = rasterise(v, tri, (size, size))
    tex = synthetic_texture(1024)
    rows = []
    for t in (512, 1024):
        texr = uv_raster(uv, tri, t)
        with uv_rasteriser(old):
            ref_tex = extract_uv_texture(frame, v, tri, uv, t)
        new_tex = extract_uv_texture(frame, v, tri, uv, t)
        same = all(torch.equal(x, y) for x, y in zip(new_tex, ref_tex))

        def extract_old():
            with uv_rasteriser(old):
                extract_uv_texture(frame, v, tri, uv, t)

        ms = _interleaved_ms({"new": lambda: extract_uv_texture(frame, v, tri, uv, t), "old": extract_old},
                             max(3, a.rounds // 2))
        reuse = _median_ms(lambda: extract_uv_texture(frame, v, tri, uv, t, raster=raster, texture_raster=texr),
                           max(3, a.rounds // 2))
        psnr, seen = round_trip_psnr(v, tri, uv, size, t)
        rows.append([f"extract, T = {t}", *_pair(ms["new"], ms["old"]), f"{reuse:.1f}",
                     "yes" if same else "no", f"{psnr:.2f}", f"{seen:.3f}"])

    def render_old():
        with uv_rasteriser(old):
            render_uv_texture(tex, v, tri, uv, (size, size))

    ms = _interleaved_ms({"new": lambda: render_uv_texture(tex, v, tri, uv, (size, size)), "old": render_old},
                         max(3, a.rounds // 2))
    reuse = _median_ms(lambda: render_uv_texture(tex, v, tri, uv, (size, size), raster=raster),
                       max(3, a.rounds // 2))
    with uv_rasteriser(old):
        ref_render = render_uv_texture(tex, v, tri, uv, (size, size))
    new_render = render_uv_texture(tex, v, tri, uv, (size, size))
    same = all(torch.equal(getattr(new_render, n), getattr(ref_render, n)) for n in ("colour", "alpha", "depth"))
    rows.append(["render_uv_texture 1024 px, T = 1024", *_pair(ms["new"], ms["old"]), f"{reuse:.1f}",
                 "yes" if same else "no", "", ""])
    text += ("\n\nUV texture through each raster module (rasterise and interpolate), 1024 x 1024 frame, ms, min / "
             "median of interleaved runs (everything: both rasters included); new with the rasters reused: median; "
             "identical: "
             "texture and weight (colour, alpha, depth) bit for bit. Round trip: extract from a rendered-then-lit "
             "synthetic frame, re-render into the same frame, PSNR (peak = the frame's max) over face pixels whose "
             "texels were seen (their share of the face in the last column)\n\n" +
             table(["", "new", "today", "speed-up", "new, rasters reused", "identical", "round-trip PSNR dB",
                    "face share"], rows))
    load1 = os.getloadavg()
    text += (f"\n\nLoad average at the end: {load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f} (2 cores; other jobs "
             "share this machine)")
    return text


if __name__ == "__main__":
    print(main())
