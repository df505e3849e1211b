"""The analysis chain, OLD (commit 01574dc: numpy, full-resolution network view, one face at a time) vs NEW
(one torch frame path, views toned at each network's input size, batched), measured in the same run.

1. Default chain per 1080p frame (s0.jpg placed in a 1920 x 1080 plate, as bench/speed.py), stage by stage:
   view, detect (yunet_n), landmarks (mediapipe_landmarker_v2), refine (re-crop 1; eyes auto, which for v2 means
   no iris patch), and the whole per-frame analysis (ShotAnalyser: the same plus the exposure gate) at batch 1
   and 8; plus the chain with iris patches on.
2. Detect + 478-point mesh per 512 x 512 image (8 AFLW2000-3D images scaled to 512), YuNet at a 320 px input,
   beside MediaPipe's own FaceLandmarker (IMAGE mode) on the same images when mediapipe is installed in a
   scratch venv (/tmp/mpvenv, never the project's; FACEGRAPH_MEDIAPIPE_PYTHON names another interpreter).

3. ``--tracking`` (only this section; no old tree needed): ROI tracking between keyframes (models/shot.py,
   AnalysisOptions.detect_every). ShotAnalyser per frame with detect_every 1 (detect every frame) vs 4 vs 8, in
   the same run, interleaved round by round (min and median of the rounds' ms per frame): on the 1080p plate of
   section 1 repeated as a 16-frame shot (ONE still repeated: the face never moves, so tracking is at its
   easiest), on 16 frames of d10.mp4 placed in the same 1080p plate, and on the same frames at their own
   512 px. Then accuracy on the real clips (all four d*.mp4, first 120 frames each, through
   ShotAnalyser.analyse on the movie): landmark difference tracked vs every-frame (px, all 478 points of the
   faces found in both: mean / p95 / max), the share of non-keyframes that fell back to the full chain, and
   the jitter (bench/temporal.py's measure, raw and RTS-smoothed) both ways.

    .venv/bin/python -c "import bench.chain as b; print(b.main(['--tracking']))"

The old tree is imported from a git worktree of 01574dc as the package ``facegraph_base`` (made here if
missing). Measurements run in one worker process with OMP_WAIT_POLICY=PASSIVE (unless the environment sets
it): on a shared, loaded machine OpenMP's spin-waiting makes 2-thread torch collapse (issue 11), which would
measure the neighbours, not the code. OLD and NEW alternate call by call (ABAB), so drift hits both alike;
min and median are reported, ratios are OLD / NEW medians of the same run.

    .venv/bin/python -c "import bench.chain as b; print(b.main([]))"
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import DATA, ROOT, Timings, machine, run_worker, table

BASE_SHA = "01574dc5117b6c7e0f268285b27cd05e0a143816"
BASE_TREE = Path(tempfile.gettempdir()) / "chain_base"
BASE_PKG = Path(tempfile.gettempdir()) / "chain_base_pkg"
MP_PYTHON = os.environ.get("FACEGRAPH_MEDIAPIPE_PYTHON", str(Path(tempfile.gettempdir()) / "mpvenv" / "bin" / "python"))


def _base_tree() -> str | None:
    """The old tree importable as ``facegraph_base`` (a git worktree of BASE_SHA); None if it cannot be made."""
    if not (BASE_TREE / "models" / "analysis.py").is_file():
        r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(BASE_TREE), BASE_SHA],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
    BASE_PKG.mkdir(exist_ok=True)
    link = BASE_PKG / "facegraph_base"
    if not link.exists():
        link.symlink_to(BASE_TREE)
    return str(BASE_PKG)


# ------------------------------------------------------------------------------------------------ worker
def _worker(threads: int, repeat: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import facegraph_base.core.colour as ocol
    import facegraph_base.models.analysis as oan
    import facegraph_base.models.loader as oload
    import facegraph_base.models.shot as oshot

    import facegraph.core.colour as ncol
    import facegraph.models.analysis as nan_
    import facegraph.models.shot as nshot
    from facegraph.core.detection import DetectOptions
    from facegraph.core.io.images import read_image
    from facegraph.core.refine import RefineOptions
    from facegraph.models.loader import load_model

    px, _ = read_image(DATA / "stills" / "s0.jpg")
    plate = np.zeros((1080, 1920, 3), np.float32)
    plate[200:200 + px.shape[0], 700:700 + px.shape[1]] = px[..., :3]
    times = timed = Timings()

    models = {}
    for side, load in (("old", oload.load_model), ("new", load_model)):
        models[side] = {k: load(k, threads=threads) for k in ("yunet_n", "mediapipe_landmarker_v2", "mediapipe_iris")}
    ro, rn = oan.RefineOptions if hasattr(oan, "RefineOptions") else RefineOptions, RefineOptions

    def old_chain(record=True):
        m = models["old"]
        k = (lambda s: "old/" + s) if record else (lambda s: "warm/" + s)
        view = timed(k("view"), lambda: ocol.network_view(plate, options=ocol.ViewOptions()))
        ff = timed(k("detect"), lambda: oan.detect_frames(m["yunet_n"], [view], [0], DetectOptions()))
        lf = timed(k("landmarks"), lambda: oan.landmark_frames(m["mediapipe_landmarker_v2"], [view], ff, recrop=0))
        timed(k("refine"), lambda: oan.refine_frames([view], lf, mesh=m["mediapipe_landmarker_v2"],
                                                      iris=m["mediapipe_iris"], options=ro(recrop=1)))

    frame = torch.from_numpy(plate).permute(2, 0, 1)

    def new_chain(record=True):
        m = models["new"]
        k = (lambda s: "new/" + s) if record else (lambda s: "warm/" + s)

        def view():
            fv = ncol.FrameViews([frame])
            fv.gain(0)
            return fv
        fv = timed(k("view"), view)
        ff = timed(k("detect"), lambda: nan_.detect_frames(m["yunet_n"], fv, [0], DetectOptions()))
        lf = timed(k("landmarks"), lambda: nan_.landmark_frames(m["mediapipe_landmarker_v2"], fv, ff, recrop=0))
        timed(k("refine"), lambda: nan_.refine_frames(fv, lf, mesh=m["mediapipe_landmarker_v2"],
                                                       iris=m["mediapipe_iris"], options=rn(recrop=1)))

    an_old = {e: oshot.ShotAnalyser(oshot.AnalysisOptions(threads=threads, eyes=e)) for e in ("auto", "on")}
    an_new = {e: nshot.ShotAnalyser(nshot.AnalysisOptions(threads=threads, eyes=e)) for e in ("auto", "on")}
    batch8 = [plate] * 8
    for _ in range(2):  # warm-up: traces per input shape, caches
        old_chain(False), new_chain(False)
        for e in ("auto", "on"):
            an_old[e].analyse_frame(plate, 0), an_new[e].analyse_frame(plate, 0)
        an_new["auto"].analyse_frames(batch8, list(range(8)))
    for _ in range(repeat):
        old_chain()
        new_chain()
        for e in ("auto", "on"):
            timed(f"old/frame eyes={e}", lambda: an_old[e].analyse_frame(plate, 0))
            timed(f"new/frame eyes={e}", lambda: an_new[e].analyse_frame(plate, 0))
        t0 = time.perf_counter()
        an_new["auto"].analyse_frames(batch8, list(range(8)))
        times.setdefault("new/frame batch 8", []).append((time.perf_counter() - t0) * 1e3 / 8)
    for side in ("old", "new"):
        times[f"{side}/total"] = [sum(v) for v in zip(*(times[f"{side}/{s}"] for s in
                                                         ("view", "detect", "landmarks", "refine")))]

    # --------------------------------------------------------------- detect + mesh per 512 x 512 image
    import cv2

    names = sorted(p for p in (DATA / "aflw2000_dev").glob("*.jpg"))[:8]
    imgs = [cv2.resize(read_image(p)[0][..., :3], (512, 512), interpolation=cv2.INTER_LINEAR) for p in names]
    opts = DetectOptions(score_threshold=0.5, input_size=320)

    def old_image(img, m=models["old"]):
        view = ocol.network_view(img, options=ocol.ViewOptions())
        d = m["yunet_n"].detect([view], opts)[0]
        if len(d):
            mesh = m["mediapipe_landmarker_v2"]
            mesh.predict(view, [mesh.roi_for(d.boxes[0], d.keypoints[0])])

    def new_image(imgs_, extras, m=models["new"]):
        fv = ncol.FrameViews([torch.from_numpy(i).permute(2, 0, 1) for i in imgs_])
        ff = nan_.detect_frames(m["yunet_n"], fv, list(range(len(imgs_))), opts)
        ff = [f.replace(faces=f.faces[:1]) for f in ff]
        nan_.landmark_results(m["mediapipe_landmarker_v2"], fv, ff, extras=extras)

    for img in imgs[:2]:
        old_image(img), new_image([img], True), new_image([img], False)
    new_image(imgs, False)
    for _ in range(max(2, repeat // 4)):
        for img in imgs:
            timed("img/old", lambda: old_image(img))
            timed("img/new", lambda: new_image([img], True))
            timed("img/new no extras", lambda: new_image([img], False))
        t0 = time.perf_counter()
        new_image(imgs, False)
        times.setdefault("img/new batch 8 no extras", []).append((time.perf_counter() - t0) * 1e3 / len(imgs))
    tmp = Path(tempfile.mkdtemp(prefix="chain_bench_"))
    for i, img in enumerate(imgs):
        srgb = np.clip(ncol.linear_to_srgb(img), 0, 1)
        cv2.imwrite(str(tmp / f"{i}.png"), np.round(srgb[..., ::-1] * 255).astype(np.uint8))
    return {"times": times, "images": str(tmp)}


# ------------------------------------------------------------------------------------ ROI tracking (3.)
TRACK_EVERY = (1, 4, 8)
TRACK_CLIP_FRAMES = 120
TRACK_SPEED_FRAMES = 16


def _place_1080(px):
    """A frame placed in a 1920 x 1080 black plate at (700, 200), as section 1 places s0.jpg."""
    import numpy as np

    plate = np.zeros((1080, 1920, 3), np.float32)
    plate[200:200 + px.shape[0], 700:700 + px.shape[1]] = px[..., :3]
    return plate


def _tracking_worker(threads: int, repeat: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from facegraph.core.io.images import read_image
    from facegraph.core.io.source import open_source
    from facegraph.core.shot import SmoothOptions, process_shot
    from facegraph.models.analysis import TRACKED_NOTE
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser, keyframe_groups

    from .temporal import jitter

    an = {n: ShotAnalyser(AnalysisOptions(threads=threads, detect_every=n)) for n in TRACK_EVERY}
    still = _place_1080(read_image(DATA / "stills" / "s0.jpg")[0])
    clip = open_source(DATA / "video" / "d10.mp4", list(range(1001, 1001 + TRACK_SPEED_FRAMES)))
    own = [f.pixels for f in clip.frames_iter()]
    shots = {"1080p plate (s0.jpg repeated)": [still] * TRACK_SPEED_FRAMES,
             "d10.mp4 in a 1080p plate": [_place_1080(p) for p in own],
             "d10.mp4 at 512 px": own}
    numbers = list(range(1000, 1000 + TRACK_SPEED_FRAMES))  # keyframes at 1000, 1008 (8) / every 4th (4)
    times: dict[str, list[float]] = {}
    for frames in shots.values():  # warm-up: traces per input shape, caches
        for a in an.values():
            a.analyse_sequence(frames[:9], numbers[:9])
    for _ in range(repeat):
        for name, frames in shots.items():
            for n, a in an.items():
                t0 = time.perf_counter()
                a.analyse_sequence(frames, numbers)
                times.setdefault(f"{name}/{n}", []).append((time.perf_counter() - t0) * 1e3 / len(frames))
    shots.clear()
    acc = {}
    for path in sorted((DATA / "video").glob("d*.mp4")):
        src = open_source(path)
        src = open_source(path, list(src.frames[:TRACK_CLIP_FRAMES]))
        res = {n: a.analyse(src) for n, a in an.items()}
        row = {"frames": len(src.frames)}
        for n in TRACK_EVERY[1:]:
            dist, fell, counts = [], 0, 0
            between = 0
            keys = {g[0] for g in keyframe_groups(src.frames, n)}
            for ref, got in zip(res[1], res[n]):
                counts += len(ref) != len(got)
                if got.frame not in keys:
                    between += 1
                    fell += not any(TRACKED_NOTE in f.notes for f in got.faces)
                if len(ref) and len(got):
                    dist.append(np.linalg.norm(ref.faces[0].landmarks.xy - got.faces[0].landmarks.xy, axis=1))
            d = np.concatenate(dist) if dist else np.zeros(1)
            row[n] = {"mean": float(d.mean()), "p95": float(np.percentile(d, 95)), "max": float(d.max()),
                      "fell": fell, "between": between, "count_differs": counts}
        for n in TRACK_EVERY:
            row[f"jitter/{n}"] = [jitter(process_shot(res[n], SmoothOptions(method=m, fps=src.fps)))[0]
                                  for m in ("none", "rts")]
        acc[path.name] = row
    return {"times": times, "accuracy": acc}


def tracking(threads: int = 2, repeat: int = 6) -> str:
    """The ``--tracking`` report (module docstring, section 3), measured in one worker process."""
    res, err = run_worker(f"bench.chain._tracking_worker({threads}, {repeat})")
    if res is None:
        return f"worker failed:\n```\n{err}\n```"
    t = res["times"]
    rows = []
    for name in dict.fromkeys(k.rsplit("/", 1)[0] for k in t):
        base = statistics.median(t[f"{name}/1"])
        rows.append([name] + [f"{min(t[f'{name}/{n}']):.1f} / {statistics.median(t[f'{name}/{n}']):.1f}"
                              for n in TRACK_EVERY]
                    + [f"{base / statistics.median(t[f'{name}/{n}']):.2f}" for n in TRACK_EVERY[1:]])
    runtime = os.environ.get("FACEGRAPH_TFLITE_RUNTIME", "auto")
    text = (f"{machine()}; torch threads {threads}; OMP_WAIT_POLICY={res['omp_wait_policy']}; "
            f"FACEGRAPH_TFLITE_RUNTIME={runtime}; load average {os.getloadavg()[0]:.1f} at the end\n\n"
            f"ShotAnalyser per frame (analyse_sequence over a {TRACK_SPEED_FRAMES}-frame shot numbered from 1000: "
            f"keyframes every 8th / 4th frame), ms per frame, min / median of {repeat} interleaved rounds; "
            f"detect_every 1 = detection on every frame (batches of 8). The plate row repeats ONE still (no "
            f"motion: tracking's easiest case). Target (issue 11): <= 30 ms per 1080p frame.\n\n"
            + table(["shot"] + [f"detect_every {n}" for n in TRACK_EVERY]
                    + [f"speed-up x{n}" for n in TRACK_EVERY[1:]], rows))
    rows = []
    for clip, row in res["accuracy"].items():
        for n in TRACK_EVERY[1:]:
            a = row[str(n)]
            rows.append([clip, row["frames"], n, f"{a['mean']:.2f}", f"{a['p95']:.2f}", f"{a['max']:.2f}",
                         f"{a['fell']} / {a['between']}", a["count_differs"],
                         " / ".join(f"{v * 100:.3f}" for v in row["jitter/1"]),
                         " / ".join(f"{v * 100:.3f}" for v in row[f"jitter/{n}"])])
    text += ("\n\nAccuracy on the real clips (first 120 frames; d0.mp4 has 78): landmarks tracked vs detected "
             "every frame, px over all 478 points of the first face of frames where both found one; fell back = "
             "non-keyframes that ran the full chain (tracking lost); faces differ = frames whose face count "
             "differs; jitter = bench/temporal.py's non-rigid measure (% of inter-ocular distance), raw / RTS-smoothed\n\n"
             + table(["clip", "frames", "detect_every", "mean px", "p95 px", "max px", "fell back",
                      "faces differ", "jitter every-frame", "jitter tracked"], rows))
    return text


_MP_SCRIPT = r"""
import json, sys, time, glob
import mediapipe as mp
from mediapipe.tasks import python as mpt
from mediapipe.tasks.python import vision
opts = vision.FaceLandmarkerOptions(base_options=mpt.BaseOptions(model_asset_path=sys.argv[1]),
                                    running_mode=vision.RunningMode.IMAGE, num_faces=1)
lm = vision.FaceLandmarker.create_from_options(opts)
imgs = [mp.Image.create_from_file(p) for p in sorted(glob.glob(sys.argv[2] + "/*.png"))]
for im in imgs[:2]:
    lm.detect(im)
out, found = [], 0
for _ in range(int(sys.argv[3])):
    for im in imgs:
        t0 = time.perf_counter()
        r = lm.detect(im)
        out.append((time.perf_counter() - t0) * 1e3)
        found += len(r.face_landmarks) > 0
print(json.dumps({"times": out, "found": found, "version": mp.__version__}))
"""


def _mediapipe(images: str, rounds: int) -> dict | None:
    task = DATA.parent / "models" / "mediapipe" / "face_landmarker.task"
    if not Path(MP_PYTHON).is_file() or not task.is_file():
        return None
    r = subprocess.run([MP_PYTHON, "-c", _MP_SCRIPT, str(task), images, str(rounds)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _stat(v: list[float]) -> tuple[str, str]:
    return f"{min(v):.1f}", f"{statistics.median(v):.1f}"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--tracking", action="store_true", help="only section 3 (ROI tracking between keyframes)")
    a = ap.parse_args(argv)
    if a.tracking:
        return tracking(a.threads, max(2, a.repeat // 2))
    base = _base_tree()
    if base is None:
        return f"could not make a worktree of {BASE_SHA} at {BASE_TREE}: OLD is not available"
    res, err = run_worker(f"bench.chain._worker({a.threads}, {a.repeat})", [base, str(ROOT.parent)])
    if res is None:
        return f"worker failed:\n```\n{err}\n```"
    t = res["times"]
    rows = []
    for stage in ("view", "detect", "landmarks", "refine", "total", "frame eyes=auto", "frame eyes=on"):
        o, n = t[f"old/{stage}"], t[f"new/{stage}"]
        rows.append([stage, *_stat(o), *_stat(n), f"{statistics.median(o) / statistics.median(n):.2f}"])
    o = t["old/frame eyes=auto"]
    n = t["new/frame batch 8"]
    rows.append(["frame eyes=auto, NEW in batches of 8 (per frame)", *_stat(o), *_stat(n),
                 f"{statistics.median(o) / statistics.median(n):.2f}"])
    text = (f"{machine()}; torch threads {a.threads}; OMP_WAIT_POLICY={res['omp_wait_policy']}; "
            f"load average {os.getloadavg()[0]:.1f} at the end\n\n"
            f"Default chain per 1080p frame (yunet_n -> mediapipe_landmarker_v2 -> re-crop 1; one face), ms, "
            f"{a.repeat} rounds, OLD (01574dc) and NEW alternating. Stages as the nodes run them (each stage "
            f"function on its own); 'frame' rows are ShotAnalyser per frame (the fused chain + exposure gate; "
            f"eyes=on adds the iris patches). Target (issue 11): <= 30 ms per frame.\n\n"
            + table(["stage", "OLD min", "OLD median", "NEW min", "NEW median", "OLD / NEW"], rows))
    rows = []
    o = t["img/old"]
    for key, label in (("img/new", "NEW, one image per call"), ("img/new no extras", "NEW, no pose / blendshapes"),
                       ("img/new batch 8 no extras", "NEW, 8 images per call, no pose / blendshapes")):
        n = t[key]
        rows.append([label, *_stat(o), *_stat(n), f"{statistics.median(o) / statistics.median(n):.2f}"])
    mp = _mediapipe(res["images"], max(2, a.repeat // 4))
    if mp is None:
        note = "mediapipe not installed (pip install mediapipe into /tmp/mpvenv, never the project venv)"
    elif "error" in mp:
        note = f"mediapipe failed: {mp['error']}"
    else:
        mn, md = _stat(mp["times"])
        best = min(statistics.median(t[k]) for k in ("img/new", "img/new no extras", "img/new batch 8 no extras"))
        note = (f"MediaPipe {mp['version']} FaceLandmarker, IMAGE mode, num_faces 1, same images (8-bit sRGB PNG): "
                f"min {mn} ms, median {md} ms per image ({mp['found']} of {len(mp['times'])} calls found a face); "
                f"NEW's best median / MediaPipe's median: {best / statistics.median(mp['times']):.2f}")
    text += ("\n\nDetect + 478-point mesh per 512 x 512 image (8 AFLW2000-3D images), ms per image, YuNet at a "
             "320 px input, best face; OLD always computes pose and blendshapes (MediaPipe's IMAGE mode by "
             "default computes neither)\n\n"
             + table(["chain", "OLD min", "OLD median", "NEW min", "NEW median", "OLD / NEW"], rows) + "\n\n" + note)
    return text


if __name__ == "__main__":
    print(main(sys.argv[1:]))
