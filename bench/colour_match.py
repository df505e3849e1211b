"""Issue 10 (colour part): how close does each colour-matching method / space bring a face to another face's
tone, and what does it cost per 1080p frame?

Faces: the stills in ../shared/data/stills, read with cv2 and decoded sRGB -> linear (core.colour.srgb_to_linear).
Each face region is a soft ellipse inside the face box of the default detector (YuNet, from the model mirror;
semi-axes 0.32 x 0.42 of the box, centred 5 % below its middle: cheeks, nose and forehead, little hair or
background; the outer 15 % of the radius ramps the weight to 0). The boxes in ../shared/data/boxes are other
photos (PASCAL VOC), so they are not used. Stills without a detected face are skipped.
Pairs: each still's face (source) is matched to the next still's face in name order (target). The target plate
is pushed +1.5 stops (x 2^1.5) so its skin highlights pass 1.0, as on an HDR plate: a method that clips would
show it. Baseline for the quality figures: the source face before matching (same pairs, same run). Baseline for
the timings: one multiply of the same 1080p frame by a constant (same run).
"""
from __future__ import annotations

import argparse
import os
import statistics

import cv2
import numpy as np
import torch

from facegraph.core import colour_match as cm
from facegraph.core.colour import ViewOptions, network_view, srgb_to_linear
from facegraph.core.errors import EstimationError, FacegraphError

from .common import DATA, SHARED, interleaved, machine, table

HDR_STOPS = 1.5
CASES = [(m, s) for m in cm.METHODS for s in cm.SPACES]


def _ellipse(h: int, w: int, box) -> np.ndarray:
    """Soft elliptical face-skin weight (H, W) float32 inside a detector box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1) + 0.05 * (y1 - y0)
    ax, ay = 0.32 * (x1 - x0), 0.42 * (y1 - y0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres (core/conventions.py)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)


def load_faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(name, linear RGB (H, W, 3) float32, face weight (H, W) float32)] for every still with a face, cropped
    to the face ellipse plus 16 pixels."""
    os.environ.setdefault("FACEGRAPH_MODEL_MIRROR", str(SHARED / "models"))
    from facegraph.models.loader import load_model

    det = load_model("yunet_n")
    out = []
    for path in sorted((DATA / "stills").glob("*.jpg")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        lin = srgb_to_linear(np.ascontiguousarray(bgr[..., ::-1]).astype(np.float32) / 255.0)
        d = det.detect([network_view(lin, options=ViewOptions())])[0]
        if not len(d):
            continue
        best = int(np.argmax(d.scores))
        mask = _ellipse(lin.shape[0], lin.shape[1], d.boxes[best])
        ys, xs = np.nonzero(mask > 0)  # keep the face's surroundings only: the same stats, less work
        y0, y1 = max(0, ys.min() - 16), min(lin.shape[0], ys.max() + 17)
        x0, x1 = max(0, xs.min() - 16), min(lin.shape[1], xs.max() + 17)
        out.append((path.name, np.ascontiguousarray(lin[y0:y1, x0:x1]), np.ascontiguousarray(mask[y0:y1, x0:x1])))
    return out


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].contiguous()


def _m(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask)[None, None].contiguous()


def quality(faces, quantiles: int) -> tuple[dict, dict, int, dict, dict]:
    """Per case: mean over pairs of |d mean| and |d std| per channel, in log2 RGB (stops) and linear (relative);
    failures; the median peak of the output face region; the % of its pixels with a channel below 0."""
    n = len(faces)
    acc: dict[str, dict[str, list]] = {}
    fails = {c: 0 for c in CASES}
    peaks: dict[str, list] = {}
    negs: dict[str, list] = {}

    def add(key, dlog, dlin):
        a = acc.setdefault(key, {"lm": [], "ls": [], "rm": [], "rs": []})
        a["lm"].append(np.abs(dlog["mean_diff"]))
        a["ls"].append(np.abs(dlog["std_diff"]))
        a["rm"].append(np.abs(dlin["mean_diff"]) / np.abs(dlin["mean_b"]))
        a["rs"].append(np.abs(dlin["std_diff"]) / np.abs(dlin["std_b"]))

    def region(img, m):  # (N, 3) colours where the face weight is > 0
        return img[0].permute(1, 2, 0)[m[0, 0] > 0]

    for i in range(n):
        _, src_np, ms_np = faces[i]
        _, tgt_np, mt_np = faces[(i + 1) % n]
        src, ms = _t(src_np), _m(ms_np)
        tgt, mt = _t(tgt_np * np.float32(2.0 ** HDR_STOPS)), _m(mt_np)
        inside = (ms > 0).to(torch.float32)  # apply on the face's box only: the same values there, less work
        add("before", *(cm.region_stats_difference(src, tgt, ms, mt, space=s) for s in ("log", "linear")))
        peaks.setdefault("target", []).append(float(region(tgt, mt).max()))
        peaks.setdefault("before", []).append(float(region(src, ms).max()))
        negs.setdefault("before", []).append(float((region(src, ms) < 0).any(dim=1).float().mean()))
        for method, space in CASES:
            key = f"{method} / {space}"
            try:
                ss = cm.colour_stats(src, ms, space, sketch=method == "histogram")
                st = cm.colour_stats(tgt, mt, space, sketch=method == "histogram")
                tr = cm.fit_colour_transfer(ss, st, method, quantiles=quantiles)
                out = cm.apply_colour_transfer(src, tr, mask=inside)
            except EstimationError:
                fails[(method, space)] += 1
                continue
            add(key, *(cm.region_stats_difference(out, tgt, ms, mt, space=s) for s in ("log", "linear")))
            peaks.setdefault(key, []).append(float(region(out, ms).max()))
            negs.setdefault(key, []).append(float((region(out, ms) < 0).any(dim=1).float().mean()))
    means = {k: {q: np.mean(v, axis=0) for q, v in a.items()} for k, a in acc.items()}
    return (means, fails, n, {k: statistics.median(v) for k, v in peaks.items()},
            {k: 100 * float(np.mean(v)) for k, v in negs.items()})


TEMPORAL = (("mkl", "log"), ("meanstd", "opponent"), ("histogram", "log"))


def load_clip(name: str, frames: int, det) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``frames`` frames of a clip as (T, 3, H, W) linear float32 and their per-frame face weights
    (the ellipse inside each frame's own detection: the box jitters as a tracker's would)."""
    cap = cv2.VideoCapture(str(DATA / "video" / f"{name}.mp4"))
    imgs, masks = [], []
    while len(imgs) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        lin = srgb_to_linear(np.ascontiguousarray(bgr[..., ::-1]).astype(np.float32) / 255.0)
        d = det.detect([network_view(lin, options=ViewOptions())])[0]
        if not len(d):
            continue
        imgs.append(lin)
        masks.append(_ellipse(lin.shape[0], lin.shape[1], d.boxes[int(np.argmax(d.scores))]))
    cap.release()
    return (torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.stack(masks))[:, None].contiguous())


def temporal(frames: int, quantiles: int) -> tuple[list[list[str]], int, str]:
    """Per-frame fits vs smoothed vs one shot-level fit, source clip d3 onto target clip d6 (+1.5 stops).

    Correction jitter: RMS over frames of the frame-to-frame change of (output face mean - source face mean),
    log2 RGB, mean over channels: how much the applied correction flickers (0 for one fixed map in log space).
    Error to target: mean over frames and channels of |output face mean - target face mean| (stops)."""
    from facegraph.models.loader import load_model

    det = load_model("yunet_n")
    src, ms = load_clip("d3", frames, det)
    tgt, mt = load_clip("d6", frames, det)
    tgt = tgt * np.float32(2.0 ** HDR_STOPS)
    t = min(len(src), len(tgt))
    src, ms, tgt, mt = src[:t], ms[:t], tgt[:t], mt[:t]
    inside = (ms > 0).to(torch.float32)

    def face_means(img, m):
        return np.array([cm.colour_stats(img[i:i + 1], m[i:i + 1], "log", sketch=False).mean.numpy()
                         for i in range(len(img))])

    m_src, m_tgt = face_means(src, ms), face_means(tgt, mt)
    rows = []
    for method, space in TEMPORAL:
        sk = method == "histogram"
        per_s = cm.frame_colour_stats(src, ms, space, sketch=sk)
        per_t = cm.frame_colour_stats(tgt, mt, space, sketch=sk)
        per = [cm.fit_colour_transfer(a, b, method, quantiles=quantiles) for a, b in zip(per_s, per_t)]
        shot = cm.fit_colour_transfer(sum(per_s), sum(per_t), method, quantiles=quantiles)
        variants = {"per frame": per, "centred, radius 3": cm.smooth_transfers(per, mode="centred", radius=3),
                    "ema, alpha 0.3": cm.smooth_transfers(per, mode="ema", alpha=0.3), "shot-level": [shot] * t}
        for label, trs in variants.items():
            out = torch.cat([cm.apply_colour_transfer(src[i:i + 1], trs[i], mask=inside[i:i + 1])
                             for i in range(t)])
            m_out = face_means(out, ms)
            jitter = float(np.sqrt(np.mean(np.diff(m_out - m_src, axis=0) ** 2)))
            err = float(np.mean(np.abs(m_out - m_tgt)))
            rows.append([f"{method} / {space}", label, f"{jitter:.4f}", f"{err:.3f}"])
    raw = float(np.sqrt(np.mean(np.diff(m_tgt - m_src, axis=0) ** 2)))
    return rows, t, f"{raw:.4f}"


def plate_1080p(img: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1920 x 1080 plate with the still placed in it (scaled to 1000 px high), and its face weight."""
    s = 1000.0 / img.shape[0]
    w = min(1900, int(round(img.shape[1] * s)))
    im = cv2.resize(img, (w, 1000), interpolation=cv2.INTER_AREA)
    mk = cv2.resize(mask, (w, 1000), interpolation=cv2.INTER_LINEAR)
    plate = np.full((1080, 1920, 3), 0.05, np.float32)
    weight = np.zeros((1080, 1920), np.float32)
    x0 = (1920 - w) // 2
    plate[40:1040, x0:x0 + w] = im
    weight[40:1040, x0:x0 + w] = np.clip(mk, 0.0, 1.0)
    return _t(plate), _m(weight)


def speed(faces, quantiles: int, repeat: int) -> tuple[dict, float, float]:
    """ms per 1080p frame: fit (stats of source and target + fit) and apply (whole frame / face box only).
    All candidates and the baseline run interleaved (ABAB...), so load from other processes hits all alike."""
    src, ms = plate_1080p(faces[0][1], faces[0][2])
    tgt, mt = plate_1080p(faces[1][1], faces[1][2])
    fns = {"baseline": lambda: src * 2.0}
    for method, space in CASES:
        sk = method == "histogram"

        def fit(method=method, space=space, sk=sk):
            return cm.fit_colour_transfer(cm.colour_stats(src, ms, space, sketch=sk),
                                          cm.colour_stats(tgt, mt, space, sketch=sk), method, quantiles=quantiles)

        tr = fit()
        fns[(method, space, "fit")] = fit
        fns[(method, space, "frame")] = lambda tr=tr: cm.apply_colour_transfer(src, tr)
        fns[(method, space, "face")] = lambda tr=tr: cm.apply_colour_transfer(src, tr, mask=ms)
    t = {k: v * 1e3 for k, v in interleaved(fns, rounds=repeat, warmup=1).items()}
    out = {(m, s): (t[(m, s, "fit")], t[(m, s, "frame")], t[(m, s, "face")]) for m, s in CASES}
    return out, t["baseline"], float((ms > 0).float().mean()) * 100


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="bench.colour_match")
    ap.add_argument("--quantiles", type=int, default=256, help="LUT size for 'histogram'")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--frames", type=int, default=60, help="frames of each clip for the temporal table")
    a = ap.parse_args(argv or [])
    torch.set_num_threads(2)
    try:
        faces = load_faces()
    except FacegraphError as e:
        return f"colour_match bench: could not find the faces: {e}"
    means, fails, n, peaks, negs = quality(faces, a.quantiles)
    order = ["before"] + [f"{m} / {s}" for m, s in CASES]
    b = means["before"]

    def f3(v):
        return " / ".join(f"{x:.3f}" for x in v)

    def p3(v):
        return " / ".join(f"{100 * x:.1f}" for x in v)

    rows_log, rows_lin = [], []
    for k in order:
        if k not in means:
            continue
        v = means[k]
        ratio = f"{v['lm'].mean() / b['lm'].mean():.3f} / {v['ls'].mean() / b['ls'].mean():.3f}"
        fail = "" if k == "before" else str(fails[tuple(k.split(" / "))])
        rows_log.append([k, f3(v["lm"]), f3(v["ls"]), ratio, fail, f"{peaks[k]:.2f}", f"{negs[k]:.2f}"])
        rows_lin.append([k, p3(v["rm"]), p3(v["rs"]),
                         f"{v['rm'].mean() / b['rm'].mean():.3f} / {v['rs'].mean() / b['rs'].mean():.3f}"])
    trows, tn, raw = temporal(a.frames, a.quantiles)
    sp, base, cover = speed(faces, a.quantiles, a.repeat)
    rows_t = [[f"{m} / {s}", f"{t[0]:.1f}", f"{t[1]:.1f}", f"{t[2]:.1f}", f"{t[1] / base:.1f}x"]
              for (m, s), t in sp.items()]
    load = os.getloadavg()[0]  # the machine is shared: small ops on 2 threads slow down a lot under load
    return (f"{machine()}; torch threads 2; load average at the end {load:.1f}\n\n"
            f"{n} stills with a face (YuNet), each matched to the next one's face; target plates at "
            f"+{HDR_STOPS} stops (the target faces' median peak is {peaks['target']:.2f}, above 1.0). Mean over "
            f"the {n} pairs of the difference to the target region, per channel R / G / B; measured in log2 RGB "
            f"(stops), whatever space the method fitted in. Ratio: after / before (mean over channels) for mean "
            f"and std. Fails: EstimationError (degenerate source). Peak: median over pairs of the output face "
            f"region's maximum (nothing clips at 1.0). Neg: % of the output face pixels with a channel below 0 "
            f"(an affine map in linear light can push dark skin through zero; the log measure then sees a huge "
            f"error there).\n\n" +
            table(["method / space", "|d mean| (stops)", "|d std| (stops)", "ratio mean / std", "fails", "peak",
                   "neg %"], rows_log) +
            "\n\nThe same in linear light, relative to the target's value: |d mean| / mean_t and |d std| / std_t "
            "in %, per channel R / G / B\n\n" +
            table(["method / space", "|d mean| / mean_t %", "|d std| / std_t %", "ratio mean / std"], rows_lin) +
            f"\n\nTemporal stability: the first {tn} frames of video/d3.mp4 (source) matched frame by frame onto "
            f"video/d6.mp4 at +{HDR_STOPS} stops (target), face ellipses from each frame's own detection. Correction "
            f"jitter: RMS of the frame-to-frame change of (output face mean - source face mean), log2 RGB, mean over "
            f"channels, stops per frame (baseline: the same for target - source, i.e. the jitter a per-frame exact "
            f"mean match must add: {raw}). Error to target: mean over frames and channels of |output - target face "
            f"mean|, stops.\n\n" +
            table(["method / space", "fit", "correction jitter (stops / frame)", "error to target (stops)"], trows) +
            f"\n\nms per 1920 x 1080 frame (median of {a.repeat}, all rows and the baseline interleaved): fit = "
            f"stats of the source and target face regions "
            f"(face weight > 0 on {cover:.0f} % of the frame) + the fit; apply = the whole frame, or only where the "
            f"face mask is > 0 (its bounding box). Baseline: one multiply of the frame by a constant, "
            f"{base:.1f} ms; ratio = apply (whole frame) / baseline.\n\n" +
            table(["method / space", "fit ms", "apply ms (frame)", "apply ms (face mask)", "apply / baseline"],
                  rows_t))


if __name__ == "__main__":
    print(main())
