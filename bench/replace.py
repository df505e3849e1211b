"""Face replace on real footage: flicker at the mask's edge and ms per frame, stage by stage.

Flicker (issue 10): on a real talking-head clip (../shared/data/video/d*.mp4, decoded to linear), the face of a
real still (../shared/data/stills/s0.jpg) is put on every frame (face_replace: one colour match per shot,
Poisson, log guidance). In a band around the mask's edge (0.05 < mask < 0.95, dilated by 2 px, in either of
two consecutive frames) the RMS frame-to-frame change of the composite is divided by the RMS change of the
plate itself in the same band: 1.0 = no flicker added. Target <= 1.2. Two colour strategies are compared in
the same run: the shipped one (one transfer for the shot) and a per-frame fit (the baseline that flickers).

Speed: the same job on a 1920x1080 plate (the sample portrait moved by known motion, core.synthetic), ms per
frame for each stage, on this CPU with torch at 2 threads.

    .venv/bin/python -m bench.run replace [--clip d3.mp4] [--frames 40]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import DATA, machine, table


def _masks_and_frames(out_pattern: str, plate, result, options):
    """Yield (plate frame, composite, edge band) per frame, recomputing each frame's mask from its mesh."""
    from facegraph.core.io.images import read_image
    from facegraph.core.render.raster import rasterise
    from facegraph.models.pipeline.synthesis import FaceMesh, _frame_vertices, _region_mask, _shot_faces

    mesh = FaceMesh.of(options.model)
    faces = _shot_faces(result, None)
    for frame in plate.frames_iter():
        face = faces.get(frame.number)
        if face is None:
            continue
        px = frame.pixels[..., :3]
        size = (px.shape[1], px.shape[0])
        verts = _frame_vertices(face, mesh, frame, size)
        ras = rasterise(verts, mesh.triangles, size)
        m = _region_mask(mesh, verts, ras, size, options.regions, options.feather_px)[0, 0].numpy()
        out, _ = read_image(out_pattern.replace("####", f"{frame.number:04d}"))
        yield frame.number, px, out[..., :3], m


def edge_flicker(frames) -> tuple[float, float, float]:
    """(composite RMS change, plate RMS change, ratio) in the band around the mask edge."""
    import cv2

    prev = None
    num = den = 0.0
    for _, plate, comp, m in frames:
        band = ((m > 0.05) & (m < 0.95)).astype(np.uint8)
        band = cv2.dilate(band, np.ones((5, 5), np.uint8)).astype(bool)
        if prev is not None:
            p_plate, p_comp, p_band = prev
            b = band | p_band
            num += float(((comp - p_comp)[b] ** 2).sum())
            den += float(((plate - p_plate)[b] ** 2).sum())
        prev = (plate, comp, band)
    return np.sqrt(num), np.sqrt(den), (np.sqrt(num) / np.sqrt(den)) if den > 0 else float("nan")


def flicker(clip: str, n: int, work: Path) -> list[list[str]]:
    from facegraph.core.io.images import read_image
    from facegraph.core.io.source import open_source
    from facegraph.core.shot import SmoothOptions
    from facegraph.models.pipeline.synthesis import ReplaceOptions, face_replace
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser, analyse_shot

    plate = open_source(str(DATA / "video" / clip))
    plate.frames = plate.frames[:n]
    result = analyse_shot(plate, AnalysisOptions(), SmoothOptions(fps=plate.fps or 25.0))
    src, _ = read_image(DATA / "stills" / "s0.jpg")
    sf = ShotAnalyser(AnalysisOptions()).analyse_frame(src, 0)
    rows = []
    for name, opts in (("one transfer per shot (shipped)", ReplaceOptions(texture_size=512)),
                       ("per-frame colour fit (baseline)", ReplaceOptions(texture_size=512, keyframes=1))):
        if name.startswith("per-frame"):
            # per-frame fit: run each frame as its own one-frame shot so its transfer is fitted on it alone
            outs = work / "perframe" / "r.####.exr"
            for f in plate.frames:
                face_replace(src, sf, plate.subset([f]), result, str(outs), options=opts, mode="overwrite", preview_frames=0)
            pattern = str(outs)
        else:
            pattern = str(work / "shot" / "r.####.exr")
            face_replace(src, sf, plate, result, pattern, options=opts, mode="overwrite", preview_frames=0)
        c, p, r = edge_flicker(_masks_and_frames(pattern, plate, result, opts))
        rows.append([name, f"{c:.3f}", f"{p:.3f}", f"{r:.2f}"])
    return rows


def speed(n: int, work: Path) -> list[list[str]]:
    from facegraph.core.io.images import read_image
    from facegraph.core.io.source import open_source
    from facegraph.core.shot import SmoothOptions
    from facegraph.core.synthetic import render_plate, smooth_motion
    from facegraph.core.io.frames import SequenceWriter
    from facegraph.models.pipeline.synthesis import ReplaceOptions, face_replace
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser, analyse_shot
    from facegraph.plugin.demo import sample_photo

    photo = sample_photo()
    size = (1920, 1080)
    motion = smooth_motion(n, (photo.shape[1] * 2, photo.shape[0] * 2), size)
    big = np.kron(photo, np.ones((2, 2, 1), np.uint8))
    with SequenceWriter(str(work / "hd" / "p.####.exr"), mode="overwrite") as w:
        for i, img in enumerate(render_plate(big, motion, size)):
            w.write(1001 + i, img)
    plate = open_source(str(work / "hd" / "p.####.exr"))
    t0 = time.perf_counter()
    result = analyse_shot(plate, AnalysisOptions(), SmoothOptions(fps=24.0))
    analyse_ms = (time.perf_counter() - t0) * 1e3 / n
    src, _ = read_image(DATA / "stills" / "s0.jpg")
    sf = ShotAnalyser(AnalysisOptions()).analyse_frame(src, 0)
    t0 = time.perf_counter()
    rep = face_replace(src, sf, plate, result, str(work / "hdout" / "r.####.exr"), options=ReplaceOptions(),
                       mode="overwrite", preview_frames=0)
    total = (time.perf_counter() - t0) * 1e3 / n
    rows = [["analysis (detect, 478 mesh, iris, track, smooth)", f"{analyse_ms:.0f}"]]
    rows += [[k, f"{v * 1e3 / n:.0f}"] for k, v in rep.seconds.items()]
    rows.append(["face replace total (incl. read + write EXR)", f"{total:.0f}"])
    return rows


def uv_round_trip(names: tuple[str, ...] = ("s0.jpg", "s1.jpg", "d8.jpg", "emma.jpg")) -> list[list[str]]:
    """Extract a face's UV texture from a real photo and render it back into the same photo: PSNR inside the
    rendered face (alpha > 0.5), per model, in linear light (peak = the face region's max)."""
    from facegraph.core.io.images import read_image
    from facegraph.core.render.raster import rasterise
    from facegraph.core.render.uv import render_uv_texture
    from facegraph.models.pipeline.synthesis import FaceMesh, face_vertices, largest_face, \
        texture_from_frame
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser

    an = ShotAnalyser(AnalysisOptions())
    rows = []
    for model in ("mediapipe_canonical", "bfm_3ddfa", "sfm_3448"):
        mesh = FaceMesh.of(model)
        vals = []
        for name in names:
            px, _ = read_image(DATA / "stills" / name)
            face = largest_face(an.analyse_frame(px, 0))
            tex = texture_from_frame(px, face, mesh, 1024)
            h, w = px.shape[:2]
            v = torch.tensor(face_vertices(face, mesh, (w, h)))[None]
            rr = render_uv_texture(tex.colour, v, mesh.triangles, mesh.uv, (w, h), uv_triangles=mesh.uv_triangles,
                                   texture_alpha=tex.alpha, raster=rasterise(v, mesh.triangles, (w, h)))
            a = rr.alpha[0, 0].numpy()
            inside = a > 0.5
            got = (rr.colour[0] / rr.alpha[0].clamp_min(1e-6)).permute(1, 2, 0).numpy()[inside]
            ref = px[..., :3][inside]
            mse = float(((got - ref) ** 2).mean())
            vals.append(10 * np.log10(float(ref.max()) ** 2 / max(mse, 1e-12)))
        rows.append([model, ", ".join(f"{v:.1f}" for v in vals), f"{np.mean(vals):.1f}"])
    return rows


def main(argv: list[str]) -> str:
    ap = argparse.ArgumentParser(prog="bench.replace")
    ap.add_argument("--clip", default="d3.mp4")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--hd-frames", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uv = uv_round_trip()
        fl = flicker(args.clip, args.frames, work)
        sp = speed(args.hd_frames, work)
    return "\n".join([
        f"Machine: {machine()}; torch threads 2.",
        "",
        "UV round trip on real photos (stills s0, s1, d8, emma; 1024 texels): extract the face's texture, "
        "render it back into the same photo; PSNR (dB) inside the rendered face, linear light:",
        "",
        table(["model", "per photo", "mean"], uv),
        "",
        f"Flicker at the mask edge, {args.clip} ({args.frames} frames), source stills/s0.jpg "
        "(RMS frame-to-frame change in the edge band; ratio = composite / plate; target <= 1.2):",
        "",
        table(["colour strategy", "composite", "plate", "ratio"], fl),
        "",
        f"Face replace per 1920x1080 frame ({args.hd_frames} frames, CPU), ms per frame:",
        "",
        table(["stage", "ms / frame"], sp),
    ])
