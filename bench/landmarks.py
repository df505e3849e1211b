"""Landmark accuracy on ../shared/data by each set's protocol (see plugin/evaluate.py), every model and preset,
with the protocol's boxes and end to end from the default detector; eye-region NME before/after the iris
refine; and the MediaPipe -> iBUG-68 mapping's systematic offset."""
from __future__ import annotations

import argparse

import numpy as np

from facegraph.core.landmarks import IBUG68_REGIONS, box_norm, interocular_norm, mesh_to_ibug68
from facegraph.plugin.evaluate import (Predictor, evaluate_landmarks, face_box_from_roi_box, gt_face_box,
                                       load_samples, view_of)

from .common import DATA, machine, table

MODELS = ["tddfa_v2_mb05", "mediapipe_landmarker_v2", "mediapipe_facemesh_v1", "pfld", "default-chain", "fused"]


def pct(v):
    return "-" if v != v else f"{v * 100:.2f}"


def accuracy(limit: int) -> str:
    out = []
    for boxes in ("given", "detect"):
        rows = []
        for m in MODELS:
            r = evaluate_landmarks(DATA / "aflw2000_dev", m, boxes, limit=limit)
            rows.append([m, pct(r["yaw_0_30"]), pct(r["yaw_30_60"]), pct(r["yaw_60_90"]), f"**{pct(r['mean_of_bins'])}**",
                         f"{r['failure_rate'] * 100:.1f} %", r["missed"]])
        out.append(f"AFLW2000-3D dev ({r['faces']} faces), boxes = {boxes}; NME % of sqrt(w h) of the GT box\n\n" +
                   table(["model", "0-30", "30-60", "60-90", "mean of bins", "failures (>8 % or missed)", "missed"], rows))
        rows = []
        for m in MODELS:
            r = evaluate_landmarks(DATA / "landmarks68", m, boxes, limit=limit)
            rows.append([m, f"**{pct(r['mean'])}**"] + [pct(r.get(f"region_{k}", float("nan"))) for k in IBUG68_REGIONS]
                        + [f"{r['failure_rate'] * 100:.1f} %"])
        out.append(f"300-W style set ({r['faces']} faces), boxes = {boxes}; NME % of the outer eye-corner distance\n\n" +
                   table(["model", "all 68", *IBUG68_REGIONS, "failures (>8 % or missed)"], rows))
    return "\n\n".join(out)


def eyes_refine(limit: int) -> str:
    """Eye-region NME (iBUG 36-47) of the mesh after one re-crop, with and without the iris patches."""
    from facegraph.core.refine import RefineOptions
    from facegraph.core.types import Face, FrameFaces, Landmarks
    from facegraph.models.analysis import refine_frames
    from facegraph.models.loader import load_model

    iris = load_model("mediapipe_iris")
    eyes = list(IBUG68_REGIONS["eyes"])
    rows = []
    for model in ("mediapipe_facemesh_v1", "mediapipe_landmarker_v2"):
        pred = Predictor(model)
        pred.recrop = 1
        for data in ("aflw2000_dev", "landmarks68"):
            kind, samples = load_samples(DATA / data)
            samples = samples[:limit] if limit else samples
            before, after, applied = [], [], 0
            for s in samples:
                v = view_of(s.image)
                box = face_box_from_roi_box(s.box) if kind == "aflw" else gt_face_box(s.gt)
                _, res = pred.predict(v, ("face", box))
                norm = box_norm(s.gt) if kind == "aflw" else interocular_norm(s.gt)
                ff = FrameFaces(frame=0, size=(v.shape[1], v.shape[0]), faces=(Face(
                    box=box, landmarks=Landmarks(points=res.points, scheme=res.scheme)),))
                ref = refine_frames([v], [ff], mesh=None, iris=iris, options=RefineOptions(recrop=0, eyes="on"))
                f = ref[0].faces[0]
                applied += sum(n.endswith("=applied") for n in f.notes)
                for dst, pts in ((before, res.points), (after, f.landmarks.points)):
                    p = mesh_to_ibug68(pts[:, :2])
                    dst.append(np.linalg.norm(p[eyes] - s.gt[eyes], axis=1).mean() / norm)
            rows.append([model, data, len(samples), pct(np.mean(before)), pct(np.mean(after)),
                         f"{applied}/{2 * len(samples)}"])
    return "Eye region (iBUG 36-47) NME %, mesh after one re-crop, before / after the iris patches (eyes=on)\n\n" + \
        table(["mesh", "set", "faces", "before", "after iris patches", "patches applied (gates)"], rows)


def mapping_bias(limit: int) -> str:
    """The mapping's systematic part: per iBUG point, the mean signed error over faces (in units of the
    normaliser, faces aligned by their own scale); a good mapping leaves only zero-mean model noise."""
    rows = []
    pred = Predictor("default-chain")
    for data in ("aflw2000_dev", "landmarks68"):
        kind, samples = load_samples(DATA / data)
        samples = [s for s in (samples[:limit] if limit else samples) if kind != "aflw" or s.yaw < 30]
        err = []
        for s in samples:
            v = view_of(s.image)
            box = face_box_from_roi_box(s.box) if kind == "aflw" else gt_face_box(s.gt)
            p68, _ = pred.predict(v, ("face", box))
            norm = box_norm(s.gt) if kind == "aflw" else interocular_norm(s.gt)
            err.append((p68 - s.gt) / norm)
        err = np.asarray(err)
        bias = np.linalg.norm(err.mean(0), axis=1)
        total = np.linalg.norm(err, axis=2).mean(0)
        for region, idx in IBUG68_REGIONS.items():
            rows.append([data + (" (|yaw| < 30)" if kind == "aflw" else ""), region, pct(total[list(idx)].mean()),
                         pct(bias[list(idx)].mean())])
    return ("MediaPipe v2 (default chain) mapped to iBUG-68 by core.landmarks.MESH_TO_IBUG68: error and its "
            "systematic part (norm of the mean signed error per point), %\n\n" +
            table(["set", "region", "NME", "systematic offset"], rows))


def main(argv=None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--only", choices=("accuracy", "eyes", "mapping"))
    a = ap.parse_args(argv)
    parts = [machine()]
    if a.only in (None, "accuracy"):
        parts.append(accuracy(a.limit))
    if a.only in (None, "eyes"):
        parts.append(eyes_refine(a.limit))
    if a.only in (None, "mapping"):
        parts.append(mapping_bias(a.limit))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(main())
