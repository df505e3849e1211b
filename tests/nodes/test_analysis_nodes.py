"""The analysis nodes on a real photo, through the headless runner as a graph would use them."""
import json

import numpy as np
import pytest

from facegraph.core import types as t
from facegraph.core.errors import InputError
from facegraph.nodes.analysis import (AlignFaces, DetectFaces, DrawLandmarks, FaceInfo, FaceLandmarks,
                                      FromBoundingBox, FromFaceLandmarks, FuseLandmarks, LoadLandmarker, RefineLandmarks, SelectFaces, ToBoundingBox,
                                      ToFaceLandmarks)
from facegraph.plugin.runner import Runner

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def images(data):
    from facegraph.core.io.images import read_image
    from facegraph.nodes.types import numpy_to_image

    px, _ = read_image(data / "stills" / "s0.jpg")
    linear = px[..., :3] * np.float32(0.25)  # a darker, linear plate: exposure handling must cope
    return numpy_to_image(np.stack([linear, linear]))


@pytest.fixture(scope="module")
def faces(images):
    (det,) = DetectFaces().detect(images, score_threshold=0.6)
    (lm,) = FaceLandmarks().landmarks(images, det, recrop=1)
    return lm


def test_detect_and_landmarks(images, faces):
    assert len(faces) == 2 and all(len(ff) == 1 for ff in faces)
    f = faces[0].faces[0]
    assert f.landmarks.scheme == "mediapipe478" and f.pose is not None and f.blendshapes is not None
    assert f.keypoints.shape == (5, 2) and "landmarks=mediapipe_landmarker_v2" in f.notes
    assert t.loads(t.dumps(faces[0])) == faces[0]


def test_refine_records_its_decisions(images, faces):
    (refined,) = RefineLandmarks().refine(images, faces, recrop=1, eyes="on")
    f = refined[0].faces[0]
    assert f.provenance == "refined" and f.landmarks.points.shape == (478, 3)
    assert any(n.startswith("refine.eye.left=") for n in f.notes)
    (auto,) = RefineLandmarks().refine(images, faces, recrop=0, eyes="auto")
    assert "refine.eyes=off:mesh-has-attention-eyes" in auto[0].faces[0].notes


def test_align_select_draw_info(images, faces):
    crops, aligns, masks = AlignFaces().align(images, faces, template="ffhq_512", size=256, margin=0.2)
    assert tuple(crops.shape) == (2, 256, 256, 3) and len(aligns) == 2 and tuple(masks.shape) == (2, 256, 256)
    assert aligns[0].rms < 10 and aligns[1].frame == 1
    (sel,) = SelectFaces().select(faces, mode="index", index=3)
    assert all(len(ff) == 0 for ff in sel)
    (prev,) = DrawLandmarks().draw(images, faces)
    assert tuple(prev.shape) == tuple(images.shape) and float(prev.max()) <= 1.0
    out = FaceInfo().info(faces)
    doc = json.loads(out["result"][0])
    assert out["result"][1] == 2 and "yaw" in doc[0]["faces"][0]["pose"]


def test_converters_round_trip(images, faces):
    (fl,) = ToFaceLandmarks().convert(faces)
    assert fl["image_size"] == (faces[0].size[1], faces[0].size[0])
    assert fl["frames"][0][0]["landmarks_xy"].shape == (478, 2)
    (back,) = FromFaceLandmarks().convert(fl)
    assert np.allclose(back[0].faces[0].landmarks.points, faces[0].faces[0].landmarks.points)
    (bb,) = ToBoundingBox().convert(faces)
    (again,) = FromBoundingBox().convert(bb, images)
    assert np.allclose(again[0].faces[0].box, faces[0].faces[0].box)


def test_fuse_needs_pose_and_pairs_faces(images, faces):
    (td,) = LoadLandmarker().load("tddfa_v2_mb05", "cpu")
    (faces3d,) = FaceLandmarks().landmarks(images, faces, recrop=0, model=td)
    (fused,) = FuseLandmarks().fuse(faces3d, faces)
    f = fused[0].faces[0]
    assert f.landmarks.scheme == "ibug68" and any(n.startswith("fuse.weight3d=") for n in f.notes)
    with pytest.raises(InputError):
        FuseLandmarks().fuse(faces3d, faces, 40.0, 30.0)


def test_wrong_faces_for_images_is_a_clear_error(images, faces):
    with pytest.raises(InputError, match="faces hold 1 frames for 2 images"):
        FaceLandmarks().landmarks(images, faces[:1])


def test_the_chain_as_a_graph(tmp_path, data):
    from facegraph.core.io.images import read_image

    graph = {
        "1": {"class_type": "FacegraphLoadImageSequence", "inputs": {"path": str(data / "stills" / "d8.jpg")}},
        "2": {"class_type": "FacegraphLoadDetector", "inputs": {"model": "yunet_s", "device": "cpu"}},
        "3": {"class_type": "FacegraphDetectFaces", "inputs": {"images": ["1", 0], "detector": ["2", 0]}},
        "4": {"class_type": "FacegraphFaceLandmarks", "inputs": {"images": ["1", 0], "faces": ["3", 0]}},
        "5": {"class_type": "FacegraphRefineLandmarks", "inputs": {"images": ["1", 0], "faces": ["4", 0]}},
        "6": {"class_type": "FacegraphAlignFaces", "inputs": {"images": ["1", 0], "faces": ["5", 0],
                                                              "template": "arcface_112", "size": 112}},
        "7": {"class_type": "FacegraphSaveEXRSequence", "inputs": {"images": ["6", 0], "path":
                                                                   str(tmp_path / "crop.####.exr")}},
    }
    run = Runner().run(graph)
    assert run.order[-1] == "7"
    px, _ = read_image(tmp_path / "crop.1001.exr")
    assert px.shape == (112, 112, 3)


def test_nodes_measure_each_frame_once_and_take_rgba(images, faces):
    """Detect, Landmarks and Refine share each frame's exposure (core.colour.frame_views' cache keyed by the
    IMAGE's identity); no node makes a full-resolution view. An RGBA IMAGE is unpremultiplied for the networks."""
    import torch

    from facegraph.core import colour
    from facegraph.core.tensors import bchw

    (det,) = DetectFaces().detect(images, score_threshold=0.6)
    gains = colour.frame_views(bchw(images))._gains
    assert not np.isnan(gains).any()
    calls = []
    real = colour.FrameViews._measure

    def counting(self, i):
        calls.append(i)
        return real(self, i)

    colour.FrameViews._measure = counting
    try:
        FaceLandmarks().landmarks(images, det, recrop=0)
        RefineLandmarks().refine(images, faces, recrop=1, eyes="off")
    finally:
        colour.FrameViews._measure = real
    assert calls == []
    rgba = torch.cat([images * 0.5, torch.full_like(images[..., :1], 0.5)], -1)  # premultiplied by 0.5
    (found,) = DetectFaces().detect(rgba, score_threshold=0.6)
    assert [len(ff) for ff in found] == [len(ff) for ff in det]
    assert np.abs(found[0].faces[0].box - det[0].faces[0].box).max() < 1.0
