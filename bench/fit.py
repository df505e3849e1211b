"""Morphable-model fitting (core/morphable/fit.py, shot.py) on real labels and real landmarks.

Table 1: fit each model to the GROUND-TRUTH 68 points of the AFLW2000-3D dev set (200 faces, 3D-convention
labels) and the 300-W style set (28 faces, 2D labels): reprojection rms (pixels, and normalised as the
sets' NME: sqrt(w h) of the ground-truth box for AFLW2000-3D, the outer-eye-corner distance for 300-W), the
NME of the fit's own 68 points (``ibug68_3d`` on AFLW2000-3D, ``ibug68_2d`` on 300-W), ms per face cold and
warm-started (init = the same face's cold fit: the cost of a tracking update), with and without the jaw
contour; eos's per-pass times are quoted beside (not measured here).
Table 2: fit to the 478-point mesh of the default landmark chain (MediaPipe Face Landmarker v2 + one re-crop,
plugin/evaluate.py's ``default-chain`` with the protocols' boxes) and score the fit's 68 points against the
labels, beside the mesh -> 68 mapping (core.landmarks.MESH_TO_IBUG68) measured in the same run.
Table 3: identity drift on a real clip: per-frame fits vs one shared identity (core/morphable/shot.py) on
the same landmarks, and pose jitter (second difference of yaw / pitch / roll, degrees).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facegraph.core.landmarks import box_norm, interocular_norm, mesh_to_ibug68, nme
from facegraph.core.morphable.fit import FitOptions, fit, ibug68_from_fit
from facegraph.core.morphable.shot import ShotSmoothing, fit_shot
from facegraph.core.temporal import second_difference_rms
from facegraph.models.morphable import load_morphable_model
from facegraph.plugin.evaluate import YAW_BINS, aflw_samples, folder_samples, region_for, view_of

from .common import DATA, machine, table

MODELS = ("bfm_3ddfa", "sfm_3448", "mediapipe_canonical")
#: eos (patrikhuber/eos README / VISAPP 2016): about 0.3 ms per pose + shape pass without the contour and
#: about 24 ms with contour fitting, on the authors' machine (as quoted in the issue; not measured here)
EOS_MS = {False: 0.3, True: 24.0}


def _ms(fn, repeat: int = 1) -> tuple[float, object]:
    """CPU milliseconds of the calling thread per call (time.thread_time): the fit is single-threaded numpy,
    and on this shared 2-core machine (load 6-8 while measured) wall-clock times of a few ms swing by 10x
    with other people's jobs."""
    t0 = time.thread_time()
    for _ in range(repeat):
        out = fn()
    return (time.thread_time() - t0) / repeat * 1e3, out


def _mean_of_bins(values, yaws) -> float:
    bins = []
    for lo, hi in YAW_BINS:
        v = [x for x, y in zip(values, yaws) if lo <= y < hi]
        if v:
            bins.append(float(np.mean(v)))
    return float(np.mean(bins))


def table_ground_truth(limit: int) -> str:
    sets = {"AFLW2000-3D dev": ("aflw", aflw_samples(DATA / "aflw2000_dev")),
            "300-W style": ("68", folder_samples(DATA / "landmarks68"))}
    rows = []
    for set_name, (kind, samples) in sets.items():
        if limit:
            samples = samples[::max(1, len(samples) // limit)][:limit]
        conv = "ibug68_3d" if kind == "aflw" else "ibug68_2d"
        for mid in MODELS:
            m = load_morphable_model(mid)
            for contour in (False, True):
                if mid == "mediapipe_canonical" and contour:
                    continue   # basis-free: the residual absorbs every point; no contour step
                o = FitOptions(use_contour=contour)
                rms, rms_n, out_n, cold, warm, its, wits = [], [], [], [], [], [], []
                for s in samples:
                    norm = box_norm(s.gt) if kind == "aflw" else interocular_norm(s.gt)
                    t_cold, r = _ms(lambda: fit(m, s.gt, options=o))
                    t_warm, rw = _ms(lambda: fit(m, s.gt, options=o, init=r))
                    cold.append(t_cold)
                    warm.append(t_warm)
                    its.append(r.iterations)
                    wits.append(rw.iterations)
                    rms.append(r.rms)
                    rms_n.append(r.rms / norm)
                    out_n.append(nme(ibug68_from_fit(m, r, conv), s.gt, norm))
                yaws = [s.yaw for s in samples] if kind == "aflw" else None
                agg = (lambda v: _mean_of_bins(v, yaws)) if kind == "aflw" else np.mean
                rows.append([set_name, mid, "on" if contour else "off", f"{np.median(rms):.2f}",
                             f"{agg(rms_n) * 100:.2f}", f"{agg(out_n) * 100:.2f} ({conv[6:]})",
                             f"{statistics.median(cold):.1f} ({np.mean(its):.1f} it)",
                             f"{statistics.median(warm):.1f} ({np.mean(wits):.1f} it)",
                             f"{EOS_MS[contour]} (quoted)" if mid != "mediapipe_canonical" else "-"])
    return table(["set", "model", "contour", "rms px (median)", "rms / norm %", "NME of fit's 68 %",
                  "CPU ms cold", "CPU ms warm", "eos ms/pass"], rows)


def _mesh_predictions(limit: int):
    from facegraph.plugin.evaluate import Predictor

    pred = Predictor("default-chain", threads=2)
    out = {}
    for set_name, kind, samples in (("AFLW2000-3D dev", "aflw", aflw_samples(DATA / "aflw2000_dev")),
                                    ("300-W style", "68", folder_samples(DATA / "landmarks68"))):
        if limit:
            samples = samples[::max(1, len(samples) // limit)][:limit]
        preds = []
        for s in samples:
            view = view_of(s.image)
            _, res = pred.predict(view, region_for(s, kind, "given", pred))
            preds.append(np.asarray(res.points, np.float64))
        out[set_name] = (kind, samples, preds)
    return out


def table_mesh(limit: int) -> str:
    data = _mesh_predictions(limit)
    rows = []
    for set_name, (kind, samples, preds) in data.items():
        conv = "ibug68_3d" if kind == "aflw" else "ibug68_2d"
        norms = [box_norm(s.gt) if kind == "aflw" else interocular_norm(s.gt) for s in samples]
        yaws = [s.yaw for s in samples] if kind == "aflw" else None
        agg = (lambda v: _mean_of_bins(v, yaws)) if kind == "aflw" else np.mean
        base = [nme(mesh_to_ibug68(p[:, :2]), s.gt, n) for p, s, n in zip(preds, samples, norms)]
        rows.append([set_name, "mesh -> 68 (MESH_TO_IBUG68, baseline)", "-", f"{agg(base) * 100:.2f}", "1.00",
                     f"{np.mean(np.array(base) > 0.08) * 100:.1f}"])
        for mid in MODELS:
            m = load_morphable_model(mid)
            o = FitOptions(scheme="mediapipe478", use_contour=False)
            errs, ms = [], []
            for p, s, n in zip(preds, samples, norms):
                pts = p if mid == "mediapipe_canonical" else p[:, :2]
                t, r = _ms(lambda: fit(m, pts, options=o))
                ms.append(t)
                errs.append(nme(ibug68_from_fit(m, r, conv), s.gt, n))
            rows.append([set_name, f"{mid} fit -> {conv}", f"{statistics.median(ms):.1f}",
                         f"{agg(errs) * 100:.2f}", f"{agg(errs) / agg(base):.2f}",
                         f"{np.mean(np.array(errs) > 0.08) * 100:.1f}"])
    return table(["set", "68 points from", "fit CPU ms", "NME %", "ratio to mesh -> 68", "NME > 8 % (%)"], rows)


def _clip_points(clip: str, frames: int):
    import cv2

    from facegraph.core.detection import DetectOptions
    from facegraph.models.loader import load_model
    from facegraph.plugin.evaluate import Predictor

    det = load_model("yunet_n", task="detect", threads=2)
    pred = Predictor("default-chain", threads=2)
    cap = cv2.VideoCapture(str(DATA / "video" / clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    pts, size = [], None
    while len(pts) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        view = np.ascontiguousarray(bgr[..., ::-1], np.float32) / 255.0
        size = (view.shape[1], view.shape[0])
        found = det.detect([view], DetectOptions(score_threshold=0.5))[0]
        if not len(found.boxes):
            pts.append(None)
            continue
        i = int(np.argmax((found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])))
        _, res = pred.predict(view, ("face", tuple(found.boxes[i])))
        pts.append(np.asarray(res.points, np.float64))
    cap.release()
    return pts, fps, size


def table_video(clip: str, frames: int) -> str:
    pts, fps, size = _clip_points(clip, frames)
    rows = []
    chunks = 3
    for mid in MODELS:
        m = load_morphable_model(mid)
        o = FitOptions(scheme="mediapipe478", use_contour=False)
        p_in = [None if p is None else (p if mid == "mediapipe_canonical" else p[:, :2]) for p in pts]
        t0 = time.thread_time()
        shot = fit_shot(m, p_in, options=o, smoothing=ShotSmoothing(fps=fps), frame_size=size)
        shot_ms = (time.thread_time() - t0) * 1e3 / max(1, sum(p is not None for p in pts))
        ang_raw = np.array([np.nan * np.ones(3) if r is None else r.angles for r in
                            [None if p is None else fit(m, p, options=o) for p in p_in]])
        ang_s = np.array([np.nan * np.ones(3) if r is None else r.angles for r in shot.frames])
        # shared identities of disjoint chunks: how much the shot's identity itself moves
        n = len(pts) // chunks
        chunk_ids = [fit_shot(m, p_in[k * n:(k + 1) * n], options=o, smoothing=ShotSmoothing(fps=fps, method="none"),
                              frame_size=size).identity for k in range(chunks)]
        if mid == "mediapipe_canonical":
            # offsets (3 V) in model units: per-frame canonicalised offsets vs chunk trimmed means
            per_frame = np.array([r.expression + r.identity for r in shot.raw if r is not None])
            ext = float(np.sqrt(np.prod(np.ptp(m.mean[:, :2], axis=0))))
            sd_frame = float(np.nanmean(per_frame.std(0))) / ext
            sd_shot = float(np.mean(np.std(chunk_ids, axis=0))) / ext
            unit = "face sizes (offset per vertex coordinate)"
        else:
            ind = shot.independent[np.isfinite(shot.independent).all(1)]
            sd_frame = float(ind.std(0).mean())
            sd_shot = float(np.mean(np.std(chunk_ids, axis=0)))
            unit = "N(0,1) coefficient"
        rows.append([mid, f"{sd_frame:.4f}", f"{sd_shot:.4f}", f"{sd_frame / max(sd_shot, 1e-12):.1f}x", unit,
                     f"{second_difference_rms(ang_raw):.3f}", f"{second_difference_rms(ang_s):.3f}",
                     f"{shot_ms:.1f}"])
    head = (f"clip {clip}, {len(pts)} frames at {fps:.0f} fps, {sum(p is None for p in pts)} without a face; "
            f"478 points from yunet_n + default-chain; shared identity: {chunks} disjoint chunks of "
            f"{len(pts) // chunks} frames, std across chunks")
    return head + "\n\n" + table(["model", "identity std per-frame fits", "identity std shared (chunks)",
                                  "ratio", "unit", "pose jitter deg per-frame", "pose jitter deg shot (rts)",
                                  "shot CPU ms / frame"], rows)


def main(argv: list[str]) -> str:
    ap = argparse.ArgumentParser(prog="bench.fit")
    ap.add_argument("--limit", type=int, default=0, help="faces per set (0 = all)")
    ap.add_argument("--no-mesh", action="store_true", help="skip table 2 (runs the landmark network)")
    ap.add_argument("--no-video", action="store_true", help="skip table 3")
    ap.add_argument("--clip", default="d0.mp4")
    ap.add_argument("--frames", type=int, default=60)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    out = ["# Morphable-model fitting", "", machine(), "",
           "## 1. Fit to the ground-truth 68 points", "",
           "rms / norm and NME: AFLW2000-3D = mean of the |yaw| bins 0-30 / 30-60 / 60-90, norm sqrt(w h) of the "
           "ground-truth box; 300-W = mean, norm outer-eye-corner distance. NME of the fit's 68: `ibug68_3d` on "
           "AFLW2000-3D, `ibug68_2d` on 300-W (mediapipe_canonical: the free-form residual reproduces every "
           "point, so its rms is the rigid Procrustes residual and its NME is ~0 by construction). "
           "Warm = init from the same face's cold fit. Times: median CPU ms of the calling thread per face "
           "(time.thread_time; the fit is single-threaded numpy).", "",
           table_ground_truth(a.limit)]
    if not a.no_mesh:
        out += ["", "## 2. Fit to the predicted 478-point mesh, scored as 68 points", "",
                "Default chain (MediaPipe Face Landmarker v2 + one re-crop), protocol boxes as plugin/evaluate.py; "
                "BFM / SFM fitted to the 2D mesh through their `mediapipe478` correspondences, the canonical mesh "
                "by 3D Procrustes.", "", table_mesh(a.limit)]
    if not a.no_video:
        out += ["", "## 3. Identity drift and pose jitter on a real clip", "", table_video(a.clip, a.frames)]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
