"""ROI tracking between keyframes in the shot analysis (models/shot.py, AnalysisOptions.detect_every): the keyframe
rule, tracked frames close to detecting every frame on a real clip, a lost face falling back to the full chain,
cache identities over a keyframe group, and a chunk of a known shot equal to the single run."""
import os

import numpy as np
import pytest

from facegraph.core.errors import InputError
from facegraph.core.frame_window import frame_window
from facegraph.core.io.images import read_image, write_image
from facegraph.core.io.source import open_source
from facegraph.core.types import FrameFaces
from facegraph.models.analysis import TRACKED_NOTE
from facegraph.models.shot import AnalysisOptions, ShotAnalyser, is_keyframe, keyframe_groups

#: tracked vs every-frame landmarks on d0.mp4 1001-1012 (512 px, one face, its box ~215 px wide), all 478 points:
#: measured mean 0.17 px, p95 0.38 px, max 0.68 px here; bench/chain.py --tracking measures 120 frames of all four clips
TRACKED_MEAN_PX = 0.4
TRACKED_MAX_PX = 1.5


def test_keyframes_are_absolute_multiples_and_the_shots_first_frame():
    assert [f for f in range(1003, 1021) if is_keyframe(f, f - 1 if f > 1003 else None, 8)] == [1003, 1008, 1016]
    assert keyframe_groups(range(1003, 1021), 8) == [tuple(range(1003, 1008)), tuple(range(1008, 1016)),
                                                      tuple(range(1016, 1021))]
    # skipped frames: the first frame after a skipped multiple of 8 starts the next group
    assert keyframe_groups([6, 7, 9, 17, 18, 30], 8) == [(6, 7), (9,), (17, 18), (30,)]
    assert keyframe_groups([-9, -8, -7], 8) == [(-9,), (-8, -7)]
    assert keyframe_groups([1, 2, 3], 1) == [(1,), (2,), (3,)]  # detect_every 1: every frame
    assert keyframe_groups([], 8) == []
    for bad in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="detect_every"):
            AnalysisOptions(detect_every=bad)


@pytest.fixture(scope="module")
def analysers(mirror):
    """detect_every 1 and 8 (one load of the models: the loader's cache shares them)."""
    return {n: ShotAnalyser(AnalysisOptions(device="cpu", detect_every=n)) for n in (1, 8)}


@pytest.fixture(scope="module")
def clip(data):
    """d0.mp4 frames 1001-1012 (512 x 512) and their numbers."""
    src = open_source(data / "video" / "d0.mp4", list(range(1001, 1013)))
    return [f.pixels for f in src.frames_iter()], list(src.frames)


@pytest.mark.shared
def test_tracked_frames_are_close_to_detecting_every_frame(analysers, clip):
    px, numbers = clip
    every = analysers[1].analyse_sequence(px, numbers)
    tracked = analysers[8].analyse_sequence(px, numbers)
    assert not analysers[1].tracking and analysers[8].tracking
    dist = []
    for ref, got in zip(every, tracked):
        assert len(ref) == len(got) == 1 and got.frame == ref.frame
        face = got.faces[0]
        if got.frame in (1001, 1008):  # keyframes: the full chain, exactly
            assert got == ref and TRACKED_NOTE not in face.notes
            continue
        assert TRACKED_NOTE in face.notes and face.provenance == "refined" and face.landmarks.points.shape == (478, 3)
        assert face.pose is not None and face.blendshapes is not None and face.keypoints is not None
        dist.append(np.linalg.norm(face.landmarks.xy - ref.faces[0].landmarks.xy, axis=1))
        # the detector's box moves with the landmarks: about where the detector puts it
        assert np.abs(face.box - ref.faces[0].box).max() < 0.2 * ref.faces[0].width
    d = np.concatenate(dist)
    assert d.mean() < TRACKED_MEAN_PX and d.max() < TRACKED_MAX_PX, (d.mean(), d.max())


@pytest.mark.shared
def test_a_lost_face_runs_the_full_chain_and_the_frames_after_follow_it(analysers, clip, monkeypatch):
    px, numbers = clip
    px, numbers = px[:6], numbers[:6]
    px[2] = np.zeros_like(px[2])  # 1003: the face is gone, then back at 1004
    an = analysers[8]
    full, track = [], []
    real_full, real_track = ShotAnalyser.analyse_frames, ShotAnalyser.track_frames
    monkeypatch.setattr(ShotAnalyser, "analyse_frames",
                        lambda self, frames, nums: full.extend(nums) or real_full(self, frames, nums))
    monkeypatch.setattr(ShotAnalyser, "track_frames",
                        lambda self, frames, nums, prev: track.extend(nums) or real_track(self, frames, nums, prev))
    got = an.analyse_sequence(px, numbers)
    # 1003 loses the face (presence) -> full chain finds none; 1004 follows no face -> full chain
    assert track == [1002, 1003, 1005, 1006] and full == [1001, 1003, 1004]
    assert [len(ff) for ff in got] == [1, 1, 0, 1, 1, 1]
    assert got[3] == an.analyse_frame(px[3], 1004)  # a de-facto keyframe: exactly the full chain
    assert all(TRACKED_NOTE in got[k].faces[0].notes for k in (1, 4, 5))


@pytest.mark.shared
def test_the_track_step_loses_a_face_whose_region_leaves_the_frame(analysers, clip):
    px, numbers = clip
    an = analysers[8]
    first = an.analyse_frame(px[0], 1001)
    assert an.track_frames([px[1]], [1002], [first])[0] is not None
    away = first.shifted(-600.0, 0.0)  # the landmarks' region centred left of the frame
    assert an.track_frames([px[1]], [1002], [away])[0] is None
    assert an.track_frames([px[1]], [1002], [FrameFaces(frame=1001, size=(512, 512))])[0] is None
    with pytest.raises(InputError, match="tracking is off"):
        analysers[1].track_frames([px[1]], [1002], [first])


@pytest.fixture
def plate(tmp_path, clip):
    """d0.mp4 1001-1005 as EXR frames 6-10 (keyframes 6, the shot's first, and 8)."""
    px, _ = clip
    for f, p in zip(range(6, 11), px):
        write_image(tmp_path / "p" / f"p.{f:04d}.exr", p, pixel_type="half")
    return str(tmp_path / "p" / "p.####.exr")


def _counting(monkeypatch):
    calls = []
    real_full, real_track = ShotAnalyser.analyse_frames, ShotAnalyser.track_frames
    monkeypatch.setattr(ShotAnalyser, "analyse_frames",
                        lambda self, frames, nums: calls.extend(nums) or real_full(self, frames, nums))
    monkeypatch.setattr(ShotAnalyser, "track_frames",
                        lambda self, frames, nums, prev: calls.extend(nums) or real_track(self, frames, nums, prev))
    return calls


@pytest.mark.shared
def test_an_edit_invalidates_the_later_frames_of_its_keyframe_group_only(analysers, plate, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    an = analysers[8]
    calls = _counting(monkeypatch)
    first = an.analyse(open_source(plate), cache)
    assert sorted(calls) == [6, 7, 8, 9, 10] and all(len(ff) == 1 for ff in first)
    assert [TRACKED_NOTE in ff.faces[0].notes for ff in first] == [False, True, False, True, True]
    calls.clear()
    assert an.analyse(open_source(plate), cache) == first and calls == []  # the same records come back
    p6 = plate.replace("####", "0006")
    px, _ = read_image(p6)
    os.unlink(p6)
    write_image(p6, px * 0.9, pixel_type="half")
    calls.clear()
    again = an.analyse(open_source(plate), cache)
    assert calls == [6, 7] and again[2:] == first[2:]  # 6's group is 6-7; 8-10 do not depend on it
    calls.clear()
    an.analyse(open_source(plate, [7, 8]), cache)  # another shot (starts at 7): 7 is its keyframe
    assert calls == [7]
    calls.clear()
    ShotAnalyser(AnalysisOptions(device="cpu", detect_every=4)).analyse(open_source(plate), cache)
    assert sorted(calls) == [6, 7, 8, 9, 10]  # detect_every is part of the key


@pytest.mark.shared
def test_a_chunk_of_a_known_shot_follows_the_frames_before_its_window(analysers, plate, tmp_path, monkeypatch):
    """A chunk starting mid-group decodes the group's earlier frames from the whole shot (outside its window)
    and gets the single run's records, bit for bit; without the shot it starts a group of its own."""
    an = analysers[8]
    single = an.analyse(open_source(plate))
    calls = _counting(monkeypatch)
    with frame_window(9, 10, 0, shot=(6, 10)):
        src = open_source(plate)
        assert src.frames == (9, 10) and src.whole() is not None
        chunk = an.analyse(src, tmp_path / "cache")
    assert chunk == single[3:] and calls == [8, 9, 10]
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("frames/*.json"))
    assert cached == ["10.json", "9.json"]  # the chunk's own frames
    calls.clear()
    with frame_window(9, 10, 0, shot=(6, 10)):
        assert an.analyse(open_source(plate), tmp_path / "cache") == chunk and calls == []
        assert an.cached(open_source(plate).whole(), tmp_path / "cache") is None  # 6-8 not cached
    with frame_window(9, 10, 0):  # the shot is not known: the chunk's own frames are the shot
        alone = an.analyse(open_source(plate))
    assert TRACKED_NOTE not in alone[0].faces[0].notes and TRACKED_NOTE in alone[1].faces[0].notes
