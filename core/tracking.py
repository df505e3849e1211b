"""Link faces across frames into tracks.

Each frame, every live track predicts its box (constant velocity over its last two observations); the cost of
pairing a track with a detected face is 1 - IoU plus ``centre_weight`` x the centre distance in units of the
track's face size; pairs beyond the gates are forbidden; the Hungarian algorithm (scipy's
linear_sum_assignment) picks the cheapest set. Hysteresis: a new track is *tentative* until it is seen in
``birth_hits`` consecutive frames (only then does it get an id, so a one-frame false positive never does), and a
confirmed track survives ``max_age`` frames unseen (short occlusions keep their id).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .detection import box_iou
from .errors import InputError
from .types import FrameFaces, Track


@dataclasses.dataclass(frozen=True)
class TrackOptions:
    min_iou: float = 0.1
    max_centre_distance: float = 1.0   # in face sizes
    centre_weight: float = 0.5
    birth_hits: int = 2
    max_age: int = 12

    def __post_init__(self) -> None:
        if self.birth_hits < 1 or self.max_age < 0:
            raise InputError("birth_hits must be >= 1 and max_age >= 0")


@dataclasses.dataclass
class _Live:
    boxes: list            # observed boxes (last few)
    frames: list           # frame numbers of observations
    indices: list          # (frame position, face index) of observations
    hits: int = 0
    missed: int = 0
    track_id: int | None = None

    def predict(self, frame: int) -> np.ndarray:
        b = np.asarray(self.boxes[-1], np.float64)
        if len(self.boxes) < 2:
            return b
        dt = self.frames[-1] - self.frames[-2]
        v = (b - np.asarray(self.boxes[-2], np.float64)) / max(dt, 1)
        return b + v * (frame - self.frames[-1])


def _cost(pred: np.ndarray, boxes: np.ndarray, o: TrackOptions) -> np.ndarray:
    iou = box_iou(pred, boxes)
    pc = (pred[:, None, :2] + pred[:, None, 2:]) / 2
    bc = (boxes[None, :, :2] + boxes[None, :, 2:]) / 2
    size = np.maximum(np.sqrt((pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])), 1e-6)[:, None]
    dist = np.linalg.norm(pc - bc, axis=2) / size
    cost = 1.0 - iou + o.centre_weight * dist
    cost[(iou < o.min_iou) & (dist > o.max_centre_distance)] = np.inf
    return cost


def track(frames: list[FrameFaces], options: TrackOptions = TrackOptions()) -> tuple[list[FrameFaces], list[Track]]:
    """Assign track ids to the faces of consecutive frames (frame order as given).

    Returns the frames with ``track_id`` set on tracked faces (None on unconfirmed ones) and the tracks."""
    live: list[_Live] = []
    done: list[_Live] = []
    next_id = 0
    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize costs 0.4 s to import (every CLI start)

    for pos, ff in enumerate(frames):
        boxes = np.stack([f.box for f in ff.faces]).astype(np.float64) if len(ff) else np.zeros((0, 4))
        matched_tracks, matched_faces = set(), set()
        if live and len(boxes):
            pred = np.stack([t.predict(ff.frame) for t in live])
            cost = _cost(pred, boxes, options)
            finite = np.where(np.isfinite(cost), cost, 1e9)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    t = live[r]
                    t.boxes = (t.boxes + [boxes[c]])[-3:]
                    t.frames.append(ff.frame)
                    t.indices.append((pos, c))
                    t.hits += 1
                    t.missed = 0
                    matched_tracks.add(r)
                    matched_faces.add(c)
        for r, t in enumerate(live):
            if r not in matched_tracks:
                t.missed += 1
                if t.track_id is None:
                    t.hits = 0  # tentative tracks must be seen consecutively
        for c in range(len(boxes)):
            if c not in matched_faces:
                live.append(_Live(boxes=[boxes[c]], frames=[ff.frame], indices=[(pos, c)], hits=1))
        for t in live:
            if t.track_id is None and t.hits >= options.birth_hits:
                t.track_id = next_id
                next_id += 1
        keep = []
        for t in live:
            dead = t.missed > (options.max_age if t.track_id is not None else 0)
            (done if dead else keep).append(t)
        live = keep
    done += live
    ids: dict[tuple[int, int], int] = {}
    tracks = []
    for t in sorted((t for t in done if t.track_id is not None), key=lambda t: t.track_id):
        for key in t.indices:
            ids[key] = t.track_id
    out = []
    for pos, ff in enumerate(frames):
        faces = tuple(f.replace(track_id=ids.get((pos, i))) for i, f in enumerate(ff.faces))
        out.append(ff.replace(faces=faces))
    for t in sorted((t for t in done if t.track_id is not None), key=lambda t: t.track_id):
        fr = [frames[p].frame for p, _ in t.indices]
        fc = [out[p].faces[i] for p, i in t.indices]
        tracks.append(Track(track_id=t.track_id, frames=tuple(fr), faces=tuple(fc)))
    return out, tracks
