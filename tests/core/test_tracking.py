"""Tracks on synthetic multi-face motion: crossing paths, occlusion gaps, births, false positives."""
import numpy as np

from facegraph.core.tracking import TrackOptions, track
from facegraph.core.types import Face, FrameFaces


def _frames(paths, n, drop=(), extra=()):
    """paths: functions t -> (cx, cy, size); drop: (t, path index) to leave out; extra: (t, box) to add."""
    out = []
    for t in range(n):
        faces = []
        for i, p in enumerate(paths):
            if (t, i) in drop:
                continue
            cx, cy, s = p(t)
            faces.append(Face(box=[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], score=0.9))
        faces += [Face(box=b, score=0.7) for tt, b in extra if tt == t]
        order = np.random.default_rng(t).permutation(len(faces))  # detector order is arbitrary
        out.append(FrameFaces(frame=100 + t, size=(640, 480), faces=tuple(faces[k] for k in order)))
    return out


def _ids_by_path(tracked, paths):
    """For each path, the set of track ids its faces received."""
    ids = [set() for _ in paths]
    for t, ff in enumerate(tracked):
        for f in ff.faces:
            c = (f.box[:2] + f.box[2:]) / 2
            i = int(np.argmin([np.hypot(*(c - np.asarray(p(t)[:2]))) for p in paths]))
            if np.hypot(*(c - np.asarray(paths[i](t)[:2]))) < 1 and f.track_id is not None:
                ids[i].add(f.track_id)
    return ids


def test_two_faces_keep_their_ids_through_a_crossing_and_an_occlusion():
    paths = [lambda t: (100 + 8 * t, 200, 60), lambda t: (500 - 8 * t, 230, 60)]
    drop = {(t, 0) for t in range(30, 35)}  # face 0 hidden for 5 frames while they cross
    tracked, tracks = track(_frames(paths, 50, drop))
    assert len(tracks) == 2
    ids = _ids_by_path(tracked, paths)
    assert all(len(s) == 1 for s in ids) and ids[0] != ids[1]
    t0 = next(t for t in tracks if t.track_id in ids[0])
    assert len(t0.frames) == 45 and all(b > a for a, b in zip(t0.frames, t0.frames[1:]))


def test_a_one_frame_false_positive_never_gets_an_id():
    paths = [lambda t: (320, 240, 80)]
    tracked, tracks = track(_frames(paths, 10, extra=[(4, [10, 10, 40, 40])]))
    assert len(tracks) == 1
    stray = [f for f in tracked[4].faces if f.box[0] == 10]
    assert stray and stray[0].track_id is None


def test_a_face_lost_for_too_long_comes_back_as_a_new_track():
    paths = [lambda t: (320, 240, 80)]
    drop = {(t, 0) for t in range(10, 30)}
    _, tracks = track(_frames(paths, 40, drop), TrackOptions(max_age=5))
    assert len(tracks) == 2 and tracks[0].frames[-1] == 109 and tracks[1].frames[0] == 130
