import json

import numpy as np
import pytest

from facegraph.core import types as t
from facegraph.core.errors import InputError


def _face(i=0):
    rng = np.random.default_rng(i)
    lm = t.Landmarks(points=rng.random((68, 3)) * 100, scheme="ibug68", confidence=rng.random(68))
    pose = t.HeadPose(yaw=12.5, pitch=-3.25, roll=1.0, matrix=np.eye(4) * 1.5, method="procrustes")
    bs = t.Blendshapes(names=("jawOpen", "eyeBlinkLeft"), values=[0.25, 0.125])
    mm = t.MorphableParams(model="bfm_3ddfa", shape=rng.random(40), expression=rng.random(10),
                           camera=rng.random((3, 4)))
    return t.Face(box=[10.5, 20.25, 110.75, 140.0], score=0.987654321, keypoints=rng.random((5, 2)) * 50,
                  landmarks=lm, pose=pose, blendshapes=bs, morphable=mm, provenance="refined",
                  detector="yunet_n", notes=("refine.iris.left=skipped:closed",), track_id=3)


RECORDS = [
    lambda: t.Landmarks(points=np.arange(10, dtype=float).reshape(5, 2) / 3, scheme="five"),
    lambda: t.HeadPose(yaw=1.0 / 3, pitch=2.0, roll=-7.0),
    lambda: t.Blendshapes(names=("a", "b", "c"), values=[0.1, 0.2, 0.3]),
    _face,
    lambda: t.Face(box=[0, 0, 1, 1], score=0.5),
    lambda: t.FrameFaces(frame=1001, size=(1920, 1080), faces=(_face(1), _face(2))),
    lambda: t.FrameFaces(frame=-3, size=(64, 48), faces=()),
    lambda: t.Track(track_id=7, frames=(1, 2, 5), faces=(_face(1), _face(2), _face(3))),
    lambda: t.Alignment(crop_from_frame=[[1.0 / 3, 0.1, 5.5], [-0.1, 1.0 / 3, 7.25]], crop_size=(512, 512),
                        template="ffhq_512", frame=1001, face_index=0),
]


@pytest.mark.parametrize("make", RECORDS)
def test_json_round_trip_is_lossless(make):
    rec = make()
    text = t.dumps(rec)
    back = t.loads(text)
    assert type(back) is type(rec)
    assert back == rec
    # bit-exact floats, not merely close
    assert t.dumps(back) == text


def test_float32_values_survive_json_exactly():
    pts = np.random.default_rng(0).random((478, 3)).astype(np.float32) * 1e3
    lm = t.Landmarks(points=pts, scheme="mediapipe478")
    back = t.loads(t.dumps(lm))
    assert back.points.dtype == np.float32
    assert np.array_equal(back.points.view(np.uint32), pts.view(np.uint32))


def test_nan_compares_equal_and_round_trips():
    lm = t.Landmarks(points=[[np.nan, 1.0], [2.0, 3.0]], scheme="x")
    assert lm == t.loads(t.dumps(lm))


def test_arrays_are_read_only_copies():
    pts = np.zeros((5, 2))
    lm = t.Landmarks(points=pts, scheme="five")
    pts[0, 0] = 9
    assert lm.points[0, 0] == 0
    with pytest.raises(ValueError):
        lm.points[0, 0] = 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(points=np.zeros((5, 4)), scheme="x"), "shape"),
    (dict(points=np.zeros((5, 2)), scheme=""), "scheme"),
    (dict(points=np.zeros((5, 2)), scheme="x", confidence=np.zeros(4)), "confidence"),
    (dict(points="abc", scheme="x"), "numeric"),
])
def test_landmarks_validation(kwargs, message):
    with pytest.raises(InputError, match=message):
        t.Landmarks(**kwargs)


def test_face_validation():
    with pytest.raises(InputError, match="x1 >= x0"):
        t.Face(box=[10, 0, 5, 5])
    with pytest.raises(InputError, match="provenance"):
        t.Face(box=[0, 0, 1, 1], provenance="guessed")
    with pytest.raises(InputError, match=r"\(5, 2\)"):
        t.Face(box=[0, 0, 1, 1], keypoints=np.zeros((4, 2)))


def test_track_frames_must_increase():
    f = t.Face(box=[0, 0, 1, 1])
    with pytest.raises(InputError, match="increase"):
        t.Track(track_id=1, frames=(2, 1), faces=(f, f))
    with pytest.raises(InputError, match="frames"):
        t.Track(track_id=1, frames=(1,), faces=(f, f))


def test_alignment_inverse_and_validation():
    a = t.Alignment(crop_from_frame=[[2.0, 0.5, 3.0], [-0.5, 2.0, 4.0]], crop_size=(112, 112), template="x")
    m = np.vstack([a.crop_from_frame, [0, 0, 1]])
    inv = np.vstack([a.frame_from_crop, [0, 0, 1]])
    assert np.allclose(m @ inv, np.eye(3))
    assert a.scale == pytest.approx(np.sqrt(4.25))
    with pytest.raises(InputError, match="singular"):
        t.Alignment(crop_from_frame=np.zeros((2, 3)), crop_size=(1, 1))
    with pytest.raises(InputError, match="crop_size"):
        t.Alignment(crop_from_frame=[[1, 0, 0], [0, 1, 0]], crop_size=(0, 10))


def test_loads_refuses_wrong_type():
    with pytest.raises(InputError, match="expected"):
        t.Face.from_dict(json.loads(t.dumps(t.HeadPose())))


def test_records_are_unhashable_and_compare_by_value():
    assert _face(0) == _face(0)
    assert _face(0) != _face(1)
    with pytest.raises(TypeError):
        hash(_face(0))
