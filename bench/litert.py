"""LiteRT (XNNPACK) vs the torch port for the TFLite face graphs on the CPU, in one run (issue 11, "fast on a CPU").

Both runtimes run in the SAME process on the SAME model instances: the choice is made per call
(``FACEGRAPH_TFLITE_RUNTIME``, models/litert_runtime.py), so the two alternate call by call (ABAB) and drift on
this shared machine hits both alike. min and median are reported; ratios are torch / LiteRT medians.

1. The graphs alone: mesh v2 per face, iris per eye pair, BlazeFace short range per image; LiteRT at 1 and 2
   threads, the torch port (frozen trace, small_stage threads); quiet, then beside two busy processes.
2. Detect + 478-point mesh per 512 x 512 image (8 AFLW2000-3D images scaled to 512, as bench/chain.py):
   BlazeFace short range and YuNet at a 320 px input, best face, with and without pose / blendshapes; beside
   MediaPipe's own FaceLandmarker (IMAGE mode) on the same images, run from /tmp/mpvenv after the worker.
3. The default chain per 1080p frame (bench/chain.py's NEW path: s0.jpg in a 1920 x 1080 plate; stages view,
   detect yunet_n, landmarks mediapipe_landmarker_v2, refine re-crop 1; ShotAnalyser per frame, eyes auto / on,
   and in batches of 8).
4. Detection's share of the 1080p chain and what would cut it: yunet_n at 640 (default), 480 and 320 px inputs,
   BlazeFace full range (192 x 192) on LiteRT.
5. Landmark NME on the AFLW2000-3D dev set (200 faces, plugin/evaluate.py's protocol), torch vs LiteRT:
   mediapipe_landmarker_v2 from the given boxes, and the default chain from detected boxes.

    .venv/bin/python -c "import bench.litert as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import DATA, ROOT, Timings, machine, run_worker, table

ENV = "FACEGRAPH_TFLITE_RUNTIME"
SIDES = ("torch", "litert")


def _stat(v: list[float]) -> list[str]:
    return [f"{min(v):.1f}", f"{statistics.median(v):.1f}"]


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}"


# ------------------------------------------------------------------------------------------------ worker
def _worker(threads: int, repeat: int, nme: bool) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import cv2

    import facegraph.core.colour as col
    import facegraph.models.analysis as an
    import facegraph.models.shot as shot
    from facegraph.core.detection import DetectOptions
    from facegraph.core.io.images import read_image
    from facegraph.core.refine import RefineOptions
    from facegraph.models import litert_runtime as lr
    from facegraph.models.loader import load_model
    from facegraph.models.tflite_torch import TFLiteModule
    from facegraph.models.threads import small_stage

    times = timed = Timings()

    def side(name):
        os.environ[ENV] = name

    # ----------------------------------------------------------------------- 1. the graphs alone
    mp_dir = DATA.parent / "models" / "mediapipe"
    graphs = {"mesh": (mp_dir / "face_landmarker.task", "face_landmarks_detector.tflite", (1, 256, 256, 3)),
              "iris (2 eyes)": (mp_dir / "iris_landmark.tflite", None, (2, 64, 64, 3)),
              "blazeface short": (mp_dir / "face_detection_short_range.tflite", None, (1, 128, 128, 3))}
    rng = np.random.default_rng(0)
    runners = {}
    for g, (path, member, shape) in graphs.items():
        x = rng.random(shape, dtype=np.float32)
        port = TFLiteModule.from_file(path, member)
        xt = torch.from_numpy(x)
        lite = {n: lr.LiteRTGraph.from_file(path, member, threads=n) for n in (1, 2)}

        def torch_run(port=port, xt=xt):
            with small_stage():
                port.run(xt)
        runners[g] = {"torch": torch_run, "litert 1 thread": lambda l=lite[1], x=x: l.run(x),
                      "litert 2 threads": lambda l=lite[2], x=x: l.run(x)}
        for f in runners[g].values():
            f(), f(), f()

    def graphs_round(tag):
        for g, fns in runners.items():
            for k, f in fns.items():
                timed(f"graph/{tag}/{g}/{k}", f)

    # per-item invocations (what LiteRTGraph does) vs one interpreter resized to a batch of 8
    from ai_edge_litert.interpreter import Interpreter

    path, member, _ = graphs["mesh"]
    blob = lr.read_graph_bytes(path, member)
    x8 = rng.random((8, 256, 256, 3), dtype=np.float32)
    per_item = lr.LiteRTGraph(blob, threads=threads)
    resized = Interpreter(model_content=blob, num_threads=threads)
    resized.resize_tensor_input(resized.get_input_details()[0]["index"], list(x8.shape))
    resized.allocate_tensors()

    def run_resized():
        resized.set_tensor(resized.get_input_details()[0]["index"], x8)
        resized.invoke()
        return [resized.get_tensor(o["index"]) for o in resized.get_output_details()]
    same = all(np.array_equal(a, b) for a, b in zip(per_item.run(x8), run_resized()))
    run_resized()
    for _ in range(repeat):
        timed("batch8/per item", lambda: per_item.run(x8))
        timed("batch8/resized", run_resized)

    for _ in range(repeat * 2):
        graphs_round("quiet")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        for _ in range(repeat * 2):
            graphs_round("load")
    finally:
        for p in busy:
            p.kill()
            p.wait()

    # ----------------------------------------------------------------------- 2. detect + mesh per 512 image
    names = sorted(p for p in (DATA / "aflw2000_dev").glob("*.jpg"))[:8]
    imgs = [cv2.resize(read_image(p)[0][..., :3], (512, 512), interpolation=cv2.INTER_LINEAR) for p in names]
    mesh = load_model("mediapipe_landmarker_v2", threads=threads)
    dets = {"BlazeFace": (load_model("blazeface_short", threads=threads), DetectOptions(score_threshold=0.5)),
            "YuNet-320": (load_model("yunet_n", threads=threads), DetectOptions(score_threshold=0.5, input_size=320))}
    found = {}

    def image(img, det, extras):
        d, opts = dets[det]
        fv = col.FrameViews([torch.from_numpy(img).permute(2, 0, 1)])
        ff = an.detect_frames(d, fv, [0], opts)
        ff = [f.replace(faces=f.faces[:1]) for f in ff]
        return len(an.landmark_results(mesh, fv, ff, extras=extras))

    for s in SIDES:
        side(s)
        for det in dets:
            for e in (False, True):
                image(imgs[0], det, e), image(imgs[1], det, e)
    for _ in range(max(2, repeat // 4)):
        for img in imgs:
            for det in dets:
                for e in (False, True):
                    for s in SIDES:
                        side(s)
                        n = timed(f"img/{det}/{'extras' if e else 'points'}/{s}", lambda: image(img, det, e))
                        found[f"{det}/{s}"] = found.get(f"{det}/{s}", 0) + n
    tmp = Path(tempfile.mkdtemp(prefix="litert_bench_"))
    for i, img in enumerate(imgs):
        srgb = np.clip(col.linear_to_srgb(img), 0, 1)
        cv2.imwrite(str(tmp / f"{i}.png"), np.round(srgb[..., ::-1] * 255).astype(np.uint8))

    # ----------------------------------------------------------------------- 3. the 1080p chain
    px, _ = read_image(DATA / "stills" / "s0.jpg")
    plate = np.zeros((1080, 1920, 3), np.float32)
    plate[200:200 + px.shape[0], 700:700 + px.shape[1]] = px[..., :3]
    frame = torch.from_numpy(plate).permute(2, 0, 1)
    yunet = dets["YuNet-320"][0]
    iris = load_model("mediapipe_iris", threads=threads)

    def chain(s, record=True):
        k = (lambda st: f"chain/{st}/{s}") if record else (lambda st: "warm")

        def view():
            fv = col.FrameViews([frame])
            fv.gain(0)
            return fv
        fv = timed(k("view"), view)
        ff = timed(k("detect"), lambda: an.detect_frames(yunet, fv, [0], DetectOptions()))
        lf = timed(k("landmarks"), lambda: an.landmark_frames(mesh, fv, ff, recrop=0))
        timed(k("refine"), lambda: an.refine_frames(fv, lf, mesh=mesh, iris=iris, options=RefineOptions(recrop=1)))

    analysers = {e: shot.ShotAnalyser(shot.AnalysisOptions(threads=threads, eyes=e)) for e in ("auto", "on")}
    batch8 = [plate] * 8
    for s in SIDES:
        side(s)
        for _ in range(2):
            chain(s, False)
            for a in analysers.values():
                a.analyse_frame(plate, 0)
            analysers["auto"].analyse_frames(batch8, list(range(8)))
    for _ in range(repeat):
        for s in SIDES:
            side(s)
            chain(s)
            for e, a in analysers.items():
                timed(f"chain/frame eyes={e}/{s}", lambda: a.analyse_frame(plate, 0))
            t0 = time.perf_counter()
            analysers["auto"].analyse_frames(batch8, list(range(8)))
            times.setdefault(f"chain/frame batch 8/{s}", []).append((time.perf_counter() - t0) * 1e3 / 8)
    for s in SIDES:
        times[f"chain/total/{s}"] = [sum(v) for v in zip(*(times[f"chain/{st}/{s}"] for st in
                                                            ("view", "detect", "landmarks", "refine")))]

    # ----------------------------------------------------------------------- 4. detection on the 1080p plate
    side("litert")
    fv = col.FrameViews([frame])
    fv.gain(0)
    full = load_model("blazeface_full", threads=threads)
    variants = {"yunet_n 640 (default)": (yunet, DetectOptions()),
                "yunet_n 480": (yunet, DetectOptions(input_size=480)),
                "yunet_n 320": (yunet, DetectOptions(input_size=320)),
                "blazeface_full (LiteRT)": (full, DetectOptions(score_threshold=0.5))}
    boxes = {}
    for k, (d, o) in variants.items():
        d.detect_views(fv, o)
    for _ in range(repeat):
        for k, (d, o) in variants.items():
            r = timed(f"det1080/{k}", lambda: d.detect_views(fv, o))[0]
            boxes[k] = [round(float(v), 1) for v in r.boxes[0]] if len(r) else None

    # the per-frame chain (ShotAnalyser, eyes auto) with a smaller detector input, and without the re-crop pass
    chains = {"default (yunet_n 640, re-crop 1)": shot.AnalysisOptions(threads=threads),
              "yunet_n 320, re-crop 1": shot.AnalysisOptions(threads=threads, detect=DetectOptions(input_size=320)),
              "yunet_n 320, re-crop 0": shot.AnalysisOptions(threads=threads, detect=DetectOptions(input_size=320),
                                                             recrop=0)}
    chain_an = {k: shot.ShotAnalyser(o) for k, o in chains.items()}
    for a in chain_an.values():
        a.analyse_frame(plate, 0)
    for _ in range(repeat):
        for k, a in chain_an.items():
            timed(f"variant/{k}", lambda: a.analyse_frame(plate, 0))

    # ----------------------------------------------------------------------- 5. NME
    accuracy = {}
    if nme:
        from facegraph.plugin.evaluate import evaluate_landmarks

        for s in SIDES:
            side(s)
            for model, how in (("mediapipe_landmarker_v2", "given"), ("default-chain", "detect")):
                r = evaluate_landmarks(DATA / "aflw2000_dev", model, how, threads=threads)
                accuracy[f"{model}/{how}/{s}"] = {k: r[k] for k in ("yaw_0_30", "yaw_30_60", "yaw_60_90",
                                                                   "mean_of_bins", "failure_rate", "faces", "missed")}
    return {"times": times, "found": found, "batch8_identical": same, "images": str(tmp), "boxes": boxes, "accuracy": accuracy,
            "litert": lr.litert_available()}


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--no-nme", action="store_true", help="skip the AFLW2000-3D accuracy pass (minutes)")
    a = ap.parse_args(argv)
    res, err = run_worker(f"bench.litert._worker({a.threads}, {a.repeat}, {not a.no_nme})", [str(ROOT.parent)])
    if res is None:
        return f"worker failed:\n```\n{err}\n```"
    if not res["litert"]:
        return "ai_edge_litert does not import in this environment: nothing to compare"
    t = res["times"]
    out = [f"{machine()}; torch threads {a.threads}; OMP_WAIT_POLICY={res['omp_wait_policy']}; load average "
           f"{os.getloadavg()[0]:.1f} at the end; {a.repeat} rounds; ms; torch and LiteRT alternate call by call"]

    rows = []
    for tag, label in (("quiet", "quiet"), ("load", "2 busy processes")):
        for g in ("mesh", "iris (2 eyes)", "blazeface short"):
            tt = t[f"graph/{tag}/{g}/torch"]
            l1, l2 = t[f"graph/{tag}/{g}/litert 1 thread"], t[f"graph/{tag}/{g}/litert 2 threads"]
            rows.append([label, g, *_stat(tt), *_stat(l1), *_stat(l2), _ratio(tt, l2)])
    out.append("1. The graphs alone (random inputs): torch port (frozen trace, small_stage threads) vs LiteRT at 1 and "
               "2 threads\n\n" + table(["machine", "graph", "torch min", "torch median", "LiteRT 1t min",
                                        "LiteRT 1t median", "LiteRT 2t min", "LiteRT 2t median",
                                        "torch / LiteRT 2t"], rows))

    pi, rz = t["batch8/per item"], t["batch8/resized"]
    out.append(f"Mesh, 8 faces, {a.threads} threads: 8 batch-1 invocations (LiteRTGraph.run) min {min(pi) / 8:.1f} / "
               f"median {statistics.median(pi) / 8:.1f} ms per face; one interpreter resized to 8: min "
               f"{min(rz) / 8:.1f} / median {statistics.median(rz) / 8:.1f} ms per face (per item / resized "
               f"{_ratio(pi, rz)}); outputs bit-identical: {res['batch8_identical']}")

    from .chain import _mediapipe

    mp = _mediapipe(res["images"], max(2, a.repeat // 4))
    rows = []
    for det in ("BlazeFace", "YuNet-320"):
        for what, label in (("points", "points only"), ("extras", "+ pose, blendshapes")):
            tt, ll = t[f"img/{det}/{what}/torch"], t[f"img/{det}/{what}/litert"]
            rows.append([det, label, *_stat(tt), *_stat(ll), _ratio(tt, ll)])
    if mp is None:
        note = "MediaPipe: not installed in /tmp/mpvenv (or FACEGRAPH_MEDIAPIPE_PYTHON)"
    elif "error" in mp:
        note = f"MediaPipe failed: {mp['error']}"
    else:
        med = statistics.median(mp["times"])
        rows.append([f"MediaPipe {mp['version']} FaceLandmarker (IMAGE mode)", "points only", "-", "-",
                     *_stat(mp["times"]), "-"])
        best = {det: statistics.median(t[f"img/{det}/points/litert"]) / med for det in ("BlazeFace", "YuNet-320")}
        note = (f"MediaPipe ran right after the worker on the same images (8-bit sRGB PNG), {mp['found']} of "
                f"{len(mp['times'])} calls found a face. LiteRT points-only median / MediaPipe median: "
                + ", ".join(f"{k} {v:.2f}" for k, v in best.items()))
    found = res["found"]
    note += "; faces found per side: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
    out.append("2. Detect + 478-point mesh per 512 x 512 image (8 AFLW2000-3D images), best face, one image per call\n\n"
               + table(["detector", "outputs", "torch min", "torch median", "LiteRT min", "LiteRT median",
                        "torch / LiteRT"], rows) + "\n\n" + note)

    rows = []
    for st in ("view", "detect", "landmarks", "refine", "total", "frame eyes=auto", "frame eyes=on", "frame batch 8"):
        tt, ll = t[f"chain/{st}/torch"], t[f"chain/{st}/litert"]
        rows.append([st, *_stat(tt), *_stat(ll), _ratio(tt, ll)])
    out.append("3. Default chain per 1080p frame (yunet_n -> mediapipe_landmarker_v2 -> re-crop 1; one face); 'frame' "
               "rows are ShotAnalyser per frame (eyes=on adds the iris patches; batch 8: per frame). Target <= 30 ms\n\n"
               + table(["stage", "torch min", "torch median", "LiteRT min", "LiteRT median", "torch / LiteRT"], rows))

    rows = []
    base = t["det1080/yunet_n 640 (default)"]
    for k, box in res["boxes"].items():
        v = t[f"det1080/{k}"]
        rows.append([k, *_stat(v), _ratio(base, v), box])
    rows2 = []
    for k in ("default (yunet_n 640, re-crop 1)", "yunet_n 320, re-crop 1", "yunet_n 320, re-crop 0"):
        v = t[f"variant/{k}"]
        rows2.append([k, *_stat(v), _ratio(t["variant/default (yunet_n 640, re-crop 1)"], v)])
    share = statistics.median(t["chain/detect/litert"]) / statistics.median(t["chain/frame eyes=auto/litert"])
    out.append(f"4. Detection on the 1080p plate (LiteRT side): the detect stage is {share * 100:.0f} % of the LiteRT "
               f"per-frame median\n\n" + table(["detector / input", "min", "median", "640 / this", "best box"], rows)
               + "\n\nShotAnalyser per 1080p frame (eyes auto) on LiteRT, variants\n\n"
               + table(["chain", "min", "median", "default / this"], rows2))

    if res["accuracy"]:
        rows = []
        acc = res["accuracy"]
        for model, how in (("mediapipe_landmarker_v2", "given"), ("default-chain", "detect")):
            for s in SIDES:
                r = acc[f"{model}/{how}/{s}"]
                rows.append([model, how, s, *(f"{r[k] * 100:.3f}" for k in ("yaw_0_30", "yaw_30_60", "yaw_60_90",
                                                                             "mean_of_bins")),
                             f"{r['failure_rate'] * 100:.1f} %", r["missed"], r["faces"]])
        out.append("5. AFLW2000-3D dev NME % (sqrt(w h) of the GT box), torch vs LiteRT\n\n"
                   + table(["model", "boxes", "runtime", "0-30", "30-60", "60-90", "mean of bins", "failures",
                            "missed", "faces"], rows))
    return "\n\n".join(out)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
