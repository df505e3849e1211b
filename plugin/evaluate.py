"""Evaluation on the annotated sets in ../shared/data (protocols in its README).

- AFLW2000-3D dev subset: NME / sqrt(w h) of the ground-truth points' box, per |yaw| bin (0-30, 30-60,
  60-90) and the mean of bins, with the benchmark's crop boxes or end to end from our detector.
- 300-W style faces (landmarks68/): NME / outer-eye-corner distance, failures above 8 %.
- Detection recall on boxes/ (dlib imglab XML): IoU >= 0.5.
Ground-truth ``.pts`` are 0-based pixel indices and are converted to pixel-area coordinates once, here.
"""
from __future__ import annotations

import csv
import dataclasses
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..core.colour import ViewOptions, network_view
from ..core.conventions import from_index_coords
from ..core.detection import box_iou
from ..core.errors import InputError
from ..core.io.images import read_image
from ..core.landmarks import IBUG68_REGIONS, box_norm, interocular_norm, nme, read_pts

YAW_BINS = ((0, 30), (30, 60), (60, 90.01))
#: the set's images are display-referred photos: networks see them as they are
PHOTO_VIEW = ViewOptions(exposure="none")


@dataclasses.dataclass
class Sample:
    name: str
    image: Path
    gt: np.ndarray                      # (68, 2) pixel-area coordinates
    box: tuple | None = None            # the protocol's crop box, if any
    yaw: float | None = None


def aflw_samples(root: Path) -> list[Sample]:
    root = Path(root)
    index = root / "index.csv"
    if not index.is_file():
        raise InputError("not an AFLW2000-3D folder (no index.csv)", file=str(root))
    out = []
    for r in csv.DictReader(index.open()):
        box = tuple(float(r[k]) for k in ("roi_x0", "roi_y0", "roi_x1", "roi_y1"))
        out.append(Sample(r["image"], root / r["image"], from_index_coords(read_pts(root / r["pts"])), box,
                          float(r["abs_yaw_deg"])))
    return out


def folder_samples(root: Path) -> list[Sample]:
    root = Path(root)
    out = []
    for pts in sorted(root.glob("*.pts")):
        img = next((pts.with_suffix(e) for e in (".jpg", ".png", ".jpeg", ".ppm", ".bmp", ".tif")
                    if pts.with_suffix(e).exists()), None)
        if img is not None:
            out.append(Sample(pts.stem, img, from_index_coords(read_pts(pts))))
    if not out:
        raise InputError("no .pts files with images", file=str(root))
    return out


def load_samples(root: Path) -> tuple[str, list[Sample]]:
    """("aflw" | "68", samples) for a data folder."""
    root = Path(root)
    if (root / "index.csv").is_file():
        return "aflw", aflw_samples(root)
    return "68", folder_samples(root)


def dlib_boxes(root: Path) -> dict[str, np.ndarray]:
    """{image file: (N, 4) x0, y0, x1, y1} from dlib imglab XML files in ``root``."""
    out: dict[str, np.ndarray] = {}
    for xml in sorted(Path(root).glob("*.xml")):
        for im in ET.parse(xml).getroot().iter("image"):
            boxes = [[int(b.get("left")), int(b.get("top")), int(b.get("left")) + int(b.get("width")),
                      int(b.get("top")) + int(b.get("height"))] for b in im.iter("box")]
            out[im.get("file")] = np.asarray(boxes, np.float64).reshape(-1, 4)
    return out


def view_of(path: Path) -> np.ndarray:
    """The full-resolution display-referred view of an image, (H, W, 3) float32 in [0, 1] (for checks that
    feed one model directly)."""
    px, _ = read_image(path)
    return network_view(px[..., :3], options=PHOTO_VIEW)


def frame_views_of(path: Path):
    """An image as the analysis chain takes it: its linear frame in a FrameViews with the set's view (each
    network's input is made at the network's own resolution), as the nodes and ``facegraph analyse`` do."""
    import torch

    from ..core.colour import FrameViews

    px, _ = read_image(path)
    return FrameViews(torch.from_numpy(np.ascontiguousarray(px[..., :3])).permute(2, 0, 1)[None], PHOTO_VIEW)


def face_box_from_roi_box(box: tuple) -> tuple[float, float, float, float]:
    """The face box whose 3DDFA_V2 crop (parse_roi_box_from_bbox: side 1.58 x mean box side, centre 0.14 x
    that mean below the box centre) is the AFLW2000-3D benchmark's crop box: how the protocol's box is given
    to models with other crop conventions."""
    x0, y0, x1, y1 = box
    old = (x1 - x0) / 1.58
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.14 * old
    return (cx - old / 2, cy - old / 2, cx + old / 2, cy + old / 2)


def gt_face_box(gt: np.ndarray) -> tuple[float, float, float, float]:
    """A detector-like box from ground-truth points (their bounds, top raised by 15 % of the height to
    take in the forehead, as face detectors' boxes do)."""
    (x0, y0), (x1, y1) = gt.min(0), gt.max(0)
    return (float(x0), float(y0 - 0.15 * (y1 - y0)), float(x1), float(y1))


@dataclasses.dataclass
class LandmarkScore:
    name: str
    nme: float | None          # None = no face found
    yaw: float | None
    regions: dict[str, float]
    seconds: float


def summarise(kind: str, scores: list[LandmarkScore], threshold: float) -> dict:
    found = [s for s in scores if s.nme is not None]
    out = {"faces": len(scores), "missed": len(scores) - len(found),
           "failure_rate": (sum(s.nme > threshold for s in found) + len(scores) - len(found)) / max(1, len(scores)),
           "mean": float(np.mean([s.nme for s in found])) if found else float("nan"),
           "ms_per_face": float(np.mean([s.seconds for s in scores]) * 1e3) if scores else float("nan")}
    if kind == "aflw":
        bins = []
        for lo, hi in YAW_BINS:
            v = [s.nme for s in found if lo <= s.yaw < hi]
            out[f"yaw_{lo}_{int(hi)}"] = float(np.mean(v)) if v else float("nan")
            out[f"n_{lo}_{int(hi)}"] = len(v)
            bins.append(out[f"yaw_{lo}_{int(hi)}"])
        out["mean_of_bins"] = float(np.nanmean(bins))
    for region in IBUG68_REGIONS:
        v = [s.regions[region] for s in found if region in s.regions]
        if v:
            out[f"region_{region}"] = float(np.mean(v))
    return out


def score_landmarks(samples: list[Sample], kind: str,
                    predict: Callable[[Sample, np.ndarray], np.ndarray | None]) -> Iterator[LandmarkScore]:
    """Run ``predict(sample, view) -> (68, 2) or None`` over samples and score each with the set's protocol."""
    for s in samples:
        view = frame_views_of(s.image)
        t0 = time.perf_counter()
        pred = predict(s, view)
        dt = time.perf_counter() - t0
        if pred is None:
            yield LandmarkScore(s.name, None, s.yaw, {}, dt)
            continue
        norm = box_norm(s.gt) if kind == "aflw" else interocular_norm(s.gt)
        regions = {r: nme(pred, s.gt, norm, idx) for r, idx in IBUG68_REGIONS.items()}
        yield LandmarkScore(s.name, nme(pred, s.gt, norm), s.yaw, regions, dt)


def pick_face(boxes: np.ndarray, gt: np.ndarray) -> int | None:
    """The detected face that overlaps the annotation's box most (IoU with the points' bounds)."""
    if len(boxes) == 0:
        return None
    (x0, y0), (x1, y1) = gt.min(0), gt.max(0)
    iou = box_iou(np.asarray([[x0, y0, x1, y1]]), boxes)[0]
    i = int(np.argmax(iou))
    return i if iou[i] > 0.2 else None


# ----------------------------------------------------------------------------------------- predictors
#: chain presets usable wherever a landmark model id is expected
PRESETS = {
    "default-chain": "MediaPipe Face Landmarker v2 with one re-crop pass (the pack's default chain)",
    "fused": "3DDFA_V2 and PFLD, blended by head yaw (smoothstep 30-60 degrees): restricted licences",
}


class Predictor:
    """(view, region) -> 68 iBUG points (and the face's landmarks) for a model id or a chain preset.

    ``region`` is (kind, box): kind ``face`` (a detector-style face box: each model applies its own crop
    convention) or ``crop`` (the square region to crop, used as given: 3DDFA_V2's protocol on AFLW2000-3D).
    Faces go through the analysis chain itself (models/analysis.py: landmark_frames, refine_frames,
    fuse_faces), the one the nodes, ``facegraph analyse`` and the templates run, so the figures measure it.
    """

    def __init__(self, name: str, device: str = "cpu", threads: int = 0, precision: str = "fp32") -> None:
        from ..models.loader import load_model

        self.name = name
        self.iris = None
        if name == "default-chain":  # AnalysisOptions' defaults: mesh v2, re-crop 1, eye patches "auto"
            from ..models.shot import AnalysisOptions

            opts = AnalysisOptions()
            self.models = {"main": load_model(opts.landmarks, device=device, threads=threads, precision=precision)}
            self.iris = load_model(opts.eye_model, task="refine", device=device, threads=threads,
                                   precision=precision)
            self.recrop, self.eyes = opts.recrop, opts.eyes
        elif name == "fused":
            if precision != "fp32":
                raise InputError(f"the fused preset runs in fp32 only (precision {precision!r} asked)")
            self.models = {"3d": load_model("tddfa_v2_mb05", device=device, threads=threads),
                           "2d": load_model("pfld", device=device, threads=threads)}
            self.recrop = 0
        else:
            self.models = {"main": load_model(name, task="landmarks", device=device, threads=threads,
                                              precision=precision)}
            self.recrop = 0

    @property
    def scheme(self) -> str:
        return "ibug68" if self.name == "fused" else self.models["main"].scheme

    def _face(self, model, view, region, keypoints=None):
        """The chain's face for one region: landmark_frames (+ refine_frames for the default chain)."""
        from ..core.colour import FrameViews
        from ..core.landmarks import Roi
        from ..core.refine import RefineOptions
        from ..core.types import Face, FrameFaces
        from ..models.analysis import apply_result, as_views, landmark_frames, refine_frames

        kind, box = region
        views = as_views(view if isinstance(view, FrameViews) else [view])
        face = Face(box=np.asarray(box, np.float32), score=1.0,
                    keypoints=None if keypoints is None else np.asarray(keypoints, np.float32))
        if kind == "crop":  # the protocol's own crop box, as given (no model crop convention)
            x0, y0, x1, y1 = box
            res = model.predict_frames(views, [0], [Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0))])[0]
            return apply_result(face, res, model.spec.id)
        frames = [FrameFaces(frame=0, size=views.size, faces=(face,))]
        if self.name == "default-chain":
            frames = landmark_frames(model, views, frames, recrop=0)
            frames = refine_frames(views, frames, mesh=model, iris=self.iris,
                                   options=RefineOptions(recrop=self.recrop, eyes=self.eyes))
        else:
            frames = landmark_frames(model, views, frames, recrop=self.recrop)
        return frames[0].faces[0]

    def predict(self, view, region: tuple, keypoints: np.ndarray | None = None) -> tuple[np.ndarray, object]:
        """(68 points (68, 2) in pixel-area coordinates, the face's Landmarks in the model's own scheme) for
        ``view``: a FrameViews of one linear frame (:func:`frame_views_of`) or a display-referred numpy view."""
        from ..core.landmarks import mesh_to_ibug68
        from ..models.analysis import fuse_faces

        if self.name == "fused":
            a = self._face(self.models["3d"], view, region, keypoints)
            b = self._face(self.models["2d"], view, region if region[0] == "face" else
                           ("face", face_box_from_roi_box(region[1])), keypoints)
            fused = fuse_faces(a, b)
            return np.asarray(fused.landmarks.points)[:, :2], fused.landmarks
        lm = self._face(self.models["main"], view, region, keypoints).landmarks
        pts = np.asarray(lm.points)[:, :2]
        return (mesh_to_ibug68(pts) if len(pts) > 68 else pts), lm


def region_for(sample: Sample, kind: str, boxes: str, predictor: Predictor) -> tuple:
    """The protocol's region for a sample: AFLW's given crop box (as the crop for 3DDFA_V2, whose protocol it
    is, and as the implied face box for the others), or the 300-W faces' annotation bounds."""
    if kind == "aflw":
        if predictor.name.startswith("tddfa"):
            return ("crop", sample.box)
        return ("face", face_box_from_roi_box(sample.box))
    return ("face", gt_face_box(sample.gt))


def evaluate_landmarks(data: Path, model: str, boxes: str = "given", detector: str = "yunet_n",
                       threshold: float = 0.08, device: str = "cpu", threads: int = 0, limit: int = 0,
                       precision: str = "fp32") -> dict:
    """The protocol's summary (see module docstring) for one model or preset on one data folder
    (``limit`` > 0: only the first N samples, for quick checks)."""
    from ..core.detection import DetectOptions
    from ..models.loader import load_model

    if boxes not in ("given", "detect"):
        raise InputError(f"boxes must be 'given' or 'detect', got {boxes!r}")
    kind, samples = load_samples(data)
    if limit > 0:
        samples = samples[:limit]
    pred = Predictor(model, device=device, threads=threads, precision=precision)
    det = load_model(detector, task="detect", device=device, threads=threads) if boxes == "detect" else None

    def run(sample: Sample, view: np.ndarray):
        if det is None:
            return pred.predict(view, region_for(sample, kind, boxes, pred))[0]
        found = det.detect_views(view, DetectOptions(score_threshold=0.5))[0]
        i = pick_face(found.boxes, sample.gt)
        if i is None:
            return None
        kps = None if found.keypoints is None or found.scheme != "five" else found.keypoints[i]
        return pred.predict(view, ("face", tuple(found.boxes[i])), keypoints=kps)[0]

    scores = list(score_landmarks(samples, kind, run))
    out = summarise(kind, scores, threshold)
    out.update({"set": kind, "model": model, "boxes": boxes, "detector": detector if boxes == "detect" else None,
                "threshold": threshold, "precision": precision})
    return out


def evaluate_detector(data: Path, model: str, iou: float = 0.5, score_threshold: float = 0.5,
                      device: str = "cpu", threads: int = 0) -> dict:
    """Recall (ground-truth faces matched at IoU >= ``iou``), false positives and time per image."""
    from ..core.detection import DetectOptions
    from ..models.loader import load_model

    gt = dlib_boxes(Path(data))
    if not gt:
        raise InputError("no dlib imglab XML with boxes", file=str(data))
    det = load_model(model, task="detect", device=device, threads=threads)
    hits = total = fps = 0
    seconds = []
    for name, boxes in gt.items():
        view = frame_views_of(Path(data) / name)
        t0 = time.perf_counter()
        found = det.detect_views(view, DetectOptions(score_threshold=score_threshold))[0]
        seconds.append(time.perf_counter() - t0)
        total += len(boxes)
        if len(found):
            m = box_iou(boxes, found.boxes)
            hits += int((m.max(1) >= iou).sum())
            fps += int((m.max(0) < iou).sum())
    return {"model": model, "faces": total, "found": hits, "recall": hits / max(1, total), "false_positives": fps,
            "images": len(gt), "ms_per_image": float(np.mean(seconds) * 1e3)}
