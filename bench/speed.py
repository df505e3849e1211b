"""Speed on this CPU: ms per face for each model at 1 and 2 threads, and the whole default chain per 1080p
frame. Each model is timed on a real face crop (../shared/data/stills/s0.jpg); the 1080p frame places that
photo in a 1920 x 1080 plate. Baseline for ratios: the detector alone on the same frame, same run."""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facegraph.core.colour import ViewOptions, network_view
from facegraph.core.detection import DetectOptions
from facegraph.core.io.images import read_image
from facegraph.models.cache import default_cache
from facegraph.models.loader import load_model, runnable_ids
from facegraph.models.registry import registry

from .common import DATA, machine, table, timeit


def _time(fn, repeat=15, warmup=3):
    """Median milliseconds per call."""
    return statistics.median(timeit(fn, repeat, warmup)) * 1e3


def per_model(threads: int, view: np.ndarray) -> dict[str, float]:
    torch.set_num_threads(threads)
    out = {}
    det = load_model("yunet_n", threads=threads)
    box = det.detect([view])[0].boxes[0]
    for task in ("detect", "landmarks", "refine"):
        for mid in runnable_ids(task):
            if not all(f.sha256 for f in registry().get(mid).files):
                continue
            m = load_model(mid, threads=threads)
            if task == "detect":
                out[mid] = _time(lambda: m.detect([view]))
            elif task == "landmarks":
                roi = m.roi_for(box)
                out[mid] = _time(lambda: m.predict(view, [roi]))
            else:
                mesh = load_model("mediapipe_landmarker_v2", threads=threads).predict(
                    view, [load_model("mediapipe_landmarker_v2").roi_for(box)])[0].points
                eyes = m.eye_rois(mesh)
                out[mid] = _time(lambda: m.predict(view, eyes))
    default_cache().unload()
    return out


def chain_1080p(threads: int) -> dict[str, float]:
    from facegraph.core.align import AlignOptions, align, warp_to_crop
    from facegraph.core.refine import RefineOptions
    from facegraph.models.analysis import detect_frames, landmark_frames, refine_frames

    torch.set_num_threads(threads)
    px, _ = read_image(DATA / "stills" / "s0.jpg")
    plate = np.zeros((1080, 1920, 3), np.float32)
    plate[200:200 + px.shape[0], 700:700 + px.shape[1]] = px[..., :3]
    det = load_model("yunet_n", threads=threads)
    mesh = load_model("mediapipe_landmarker_v2", threads=threads)
    iris = load_model("mediapipe_iris", threads=threads)
    stages = {}

    def run():
        t0 = time.perf_counter()
        view = network_view(plate, options=ViewOptions())
        t1 = time.perf_counter()
        ff = detect_frames(det, [view], [0], DetectOptions())
        t2 = time.perf_counter()
        lf = landmark_frames(mesh, [view], ff, recrop=0)
        t3 = time.perf_counter()
        rf = refine_frames([view], lf, mesh=mesh, iris=iris, options=RefineOptions(recrop=1))
        t4 = time.perf_counter()
        a = align(rf[0].faces[0], AlignOptions(template="ffhq_512", size=(512, 512)))
        warp_to_crop(plate, a)
        t5 = time.perf_counter()
        for k, v in zip(("view", "detect", "landmarks", "refine (re-crop)", "align + warp 512"),
                        (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages.setdefault(k, []).append(v * 1e3)
        return t5 - t0

    for _ in range(3):
        run()
    stages.clear()
    total = [run() * 1e3 for _ in range(10)]
    out = {k: statistics.median(v) for k, v in stages.items()}
    out["total"] = statistics.median(total)
    default_cache().unload()
    return out


def detect_and_mesh_450(threads: int) -> dict[str, float]:
    """Detection + 478-point mesh on a 450 x 450 AFLW2000-3D image (the size MediaPipe's 12.3 ms figure is
    for), with MediaPipe's own detector (BlazeFace short range) and with YuNet."""
    torch.set_num_threads(threads)
    px, _ = read_image(next(iter(sorted((DATA / "aflw2000_dev").glob("*.jpg")))))
    view = network_view(px[..., :3], options=ViewOptions(exposure="none"))
    mesh = load_model("mediapipe_landmarker_v2", threads=threads)
    out = {}
    for det_id in ("blazeface_short", "yunet_n"):
        det = load_model(det_id, threads=threads)
        opts = DetectOptions(score_threshold=0.5, input_size=320 if det_id == "yunet_n" else 0)

        def run():
            d = det.detect([view], opts)[0]
            kps = d.keypoints[0] if d.scheme == "five" else None
            if d.scheme == "blaze6":
                k6 = d.keypoints[0]
                kps = np.stack([k6[0], k6[1], k6[2], k6[3], k6[3]])  # eyes for the crop's rotation
            mesh.predict(view, [mesh.roi_for(d.boxes[0], kps if d.scheme == "five" else None)])
        out[det_id] = _time(run)
    default_cache().unload()
    return out


def main(argv=None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    px, _ = read_image(DATA / "stills" / "s0.jpg")
    view = network_view(px[..., :3], options=ViewOptions(exposure="none"))
    per = {t: per_model(t, view) for t in threads}
    rows = [[mid, registry().get(mid).task] + [f"{per[t][mid]:.1f}" for t in threads] for mid in per[threads[0]]]
    text = (f"{machine()}\n\nms per call, median of 15, on {px.shape[1]}x{px.shape[0]} s0.jpg (detectors: the whole "
            "image; landmark models: one face; iris: both eyes)\n\n" +
            table(["model", "task"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads], rows))
    chains = {t: chain_1080p(t) for t in threads}
    rows = [[k] + [f"{chains[t][k]:.1f}" for t in threads] for k in chains[threads[0]]]
    per450 = {t: detect_and_mesh_450(t) for t in threads}
    rows450 = [[f"{d} + mediapipe_landmarker_v2"] + [f"{per450[t][d]:.1f}" for t in threads] for d in per450[threads[0]]]
    text += ("\n\nDetection + 478-point mesh per 450 x 450 image (AFLW2000-3D), ms, median of 15 (MediaPipe's own "
             "runtime: 12.3 ms on this CPU, per the issue); YuNet at a 320 px input\n\n" +
             table(["chain"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads], rows450))
    text += ("\n\nDefault chain per 1080p frame, one face (YuNet -> MediaPipe v2 -> re-crop -> ffhq_512 align), "
             "ms, median of 10\n\n" + table(["stage"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads], rows))
    return text


if __name__ == "__main__":
    print(main())
