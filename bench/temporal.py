"""Issue 5: temporal stability.

1. Jitter on the real clips (../shared/data/video): RMS of the frame-to-frame second difference of the 68
   landmarks in the aligned (head-motion-free) frame - each frame's points Procrustes-aligned to the mean68
   template - over the template's inter-ocular distance; raw vs each filter at its defaults. Also the rigid
   part (second difference of the face centre over inter-ocular distance), which includes real head motion.
2. Lag and accuracy on known motion: the astronaut photo moved by known smooth similarity motion with a 30 px
   step, rendered with sensor noise, through the real chain: frames to settle after the step and the mean
   position error against the known motion.
Baseline in every row: the raw (unsmoothed) output of the same run.
"""
from __future__ import annotations

import numpy as np

from facegraph.core.geometry import estimate_similarity, transform_points
from facegraph.core.io.source import open_source
from facegraph.core.landmarks import mesh_to_ibug68
from facegraph.core.motion_eval import follow_error, frames_to_settle
from facegraph.core.shot import SmoothOptions, process_shot
from facegraph.core.synthetic import render_plate, smooth_motion
from facegraph.core.templates import MEAN68
from facegraph.core.temporal import second_difference_rms
from facegraph.models.shot import AnalysisOptions, ShotAnalyser
from facegraph.models.store import default_cache_dir

from .common import DATA, machine, table

METHODS = ("none", "one-euro", "kalman", "rts")
IOD = float(np.linalg.norm(MEAN68[36] - MEAN68[45]))


def jitter(result) -> tuple[float, float]:
    t = result.main_track()
    aligned, centres = [], []
    for f in t.faces:
        p = mesh_to_ibug68(f.landmarks.xy) if f.landmarks.scheme.startswith("mediapipe") else np.asarray(f.landmarks.xy)
        fit = estimate_similarity(p, MEAN68)
        aligned.append((transform_points(fit.matrix, p) / IOD).reshape(-1))
        centres.append(p.mean(0) / np.linalg.norm(p[36] - p[45]))
    return second_difference_rms(np.array(aligned)), second_difference_rms(np.array(centres))


def clips() -> str:
    an = ShotAnalyser(AnalysisOptions())
    rows = []
    ratios = {m: [] for m in METHODS}
    for clip in sorted((DATA / "video").glob("d*.mp4")):
        src = open_source(clip)
        frames = an.analyse(src, default_cache_dir() / "shots")
        base = None
        cells = [clip.name, len(frames)]
        for m in METHODS:
            nr, rig = jitter(process_shot(frames, SmoothOptions(method=m, fps=src.fps)))
            base = base or (nr, rig)
            ratios[m].append(base[0] / nr)
            cells.append(f"{nr * 100:.3f} (x{base[0] / nr:.1f}) / {rig * 100:.2f} (x{base[1] / rig:.1f})")
        rows.append(cells)
    rows.append(["geometric mean of the ratios", ""] + ["" if m == "none" else
                                                        f"x{np.exp(np.mean(np.log(ratios[m]))):.1f}" for m in METHODS])
    return ("Jitter on the real clips, % of inter-ocular distance: non-rigid (aligned frame) / rigid (face centre); "
            "(xN) = raw / filtered\n\n" + table(["clip", "frames"] + list(METHODS), rows))


def lag() -> str:
    from facegraph.plugin.demo import sample_photo

    photo = sample_photo()
    step = 24
    motion = smooth_motion(48, (512, 512), (640, 480), step_at=step, step_px=30.0, exposure_stops=0.5, seed=3)
    rng = np.random.default_rng(0)
    plate = [f + rng.normal(0, 0.01, f.shape).astype(np.float32) for f in render_plate(photo, motion, (640, 480))]
    an = ShotAnalyser(AnalysisOptions())
    frames = [an.analyse_frame(f, 1001 + i) for i, f in enumerate(plate)]
    rows = []
    for m in METHODS:
        t = process_shot(frames, SmoothOptions(method=m)).main_track()
        c = np.array([transform_points(a.frame_from_crop, [[0.5, 0.5]])[0] for a in t.alignments])
        err = follow_error(c, [motion.matrices[f - 1001] for f in t.frames])
        tol = max(1.0, 3 * float(np.median(err[2:step - 1])))
        rows.append([m, frames_to_settle(err, step, tol), f"{err.mean():.2f}", f"{np.percentile(err, 95):.2f}",
                     f"{err[step:step + 2].max():.2f}"])
    return ("Known motion (48 frames, 640x480, face ~80 px, 30 px step at frame 24, sensor noise 0.01): settle = "
            "frames after the step until the error stays within max(1 px, 3 x pre-step median)\n\n" +
            table(["smoothing", "frames to settle", "mean error px", "p95 error px", "error on the step frames px"],
                  rows))


def main(argv=None) -> str:
    return "\n\n".join([machine(), clips(), lag()])


if __name__ == "__main__":
    print(main())
