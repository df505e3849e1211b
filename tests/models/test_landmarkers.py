"""Every landmark model on real annotated faces, plus pose, blendshapes, 3DMM camera, iris patches."""
import numpy as np
import pytest

from facegraph.core.landmarks import Roi, mesh_to_ibug68, nme
from facegraph.core.pose import angles_from_rotation
from facegraph.models.loader import load_model
from facegraph.plugin.evaluate import aflw_samples, face_box_from_roi_box, view_of

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def faces(data):
    """Two frontal and one profile AFLW2000-3D faces with their crop boxes."""
    s = {x.name: x for x in aflw_samples(data / "aflw2000_dev")}
    return [s["image00042.jpg"], s["image00052.jpg"], s["image00022.jpg"]]


def _nme(sample, pts):
    from facegraph.core.landmarks import box_norm

    return nme(mesh_to_ibug68(pts) if len(pts) > 68 else pts, sample.gt, box_norm(sample.gt))


@pytest.mark.parametrize("model_id, frontal_max", [("mediapipe_landmarker_v2", 0.04), ("mediapipe_facemesh_v1", 0.05),
                                                   ("pfld", 0.05), ("tddfa_v2_mb05", 0.03)])
def test_landmarks_on_frontal_faces(model_id, frontal_max, faces):
    m = load_model(model_id)
    for s in faces[:2]:
        res = m.predict(view_of(s.image), [m.roi_for(face_box_from_roi_box(s.box))])[0]
        assert res.points.shape[1] == 3 and res.points.dtype == np.float32
        assert _nme(s, res.points[:, :2]) < frontal_max, model_id
        assert 0.5 < res.presence <= 1.0


def test_3ddfa_holds_profiles_and_its_pose_and_camera_agree(faces):
    m = load_model("tddfa_v2_mb05")
    s = faces[2]  # |yaw| 71.6 degrees
    x0, y0, x1, y1 = s.box
    res = m.predict(view_of(s.image), [Roi((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0)])[0]
    assert _nme(s, res.points[:, :2]) < 0.04
    assert abs(abs(angles_from_rotation(res.rotation)[0]) - s.yaw) < 12
    p = res.extras["params"].astype(np.float64)
    shape = (m.u_base + m.w_shp_base @ p[12:52, None] + m.w_exp_base @ p[52:62, None]).reshape(3, -1, order="F")
    proj = (res.extras["camera"][:, :3] @ shape + res.extras["camera"][:, 3:]).T
    assert np.abs(proj - res.points).max() < 1e-3
    head = res.extras["head68"]
    assert _nme(s, head) < 0.05


def test_mesh_pose_agrees_with_the_annotation_and_blendshapes_are_named(faces):
    m = load_model("mediapipe_landmarker_v2")
    for s in faces:
        res = m.predict(view_of(s.image), [m.roi_for(face_box_from_roi_box(s.box))])[0]
        assert abs(abs(angles_from_rotation(res.rotation)[0]) - s.yaw) < 15
    names, values = res.blendshapes
    assert len(names) == len(values) == 52 and names[25] == "jawOpen"
    assert values.min() >= 0 and values.max() <= 1


def test_iris_patches_land_on_the_eyes(faces):
    m, iris = load_model("mediapipe_landmarker_v2"), load_model("mediapipe_iris")
    s = faces[0]
    view = view_of(s.image)
    mesh = m.predict(view, [m.roi_for(face_box_from_roi_box(s.box))])[0].points
    eyes = iris.eye_rois(mesh)
    out = iris.predict(view, eyes)
    for e, (roi, flipped) in zip(out, eyes):
        centre = e.iris[0, :2]
        assert np.linalg.norm(centre - [roi.cx, roi.cy]) < roi.size * 0.2
        assert e.contour.shape == (71, 3)
    # the two irises sit apart, the mirrored eye on the image right
    assert out[1].iris[0, 0] > out[0].iris[0, 0]


# ------------------------------------------------------------------------------ batched entry points
def _linear_frames(faces):
    """Two linear frames of one size (the first two AFLW faces, 450 x 450) as a FrameViews, and their rois."""
    import torch

    from facegraph.core.colour import FrameViews
    from facegraph.core.io.images import read_image

    frames = [torch.from_numpy(read_image(s.image)[0][..., :3]).permute(2, 0, 1) for s in faces[:2]]
    return FrameViews(frames), [face_box_from_roi_box(s.box) for s in faces[:2]]


@pytest.mark.parametrize("model_id", ["mediapipe_landmarker_v2", "mediapipe_facemesh_v1", "pfld", "tddfa_v2_mb05"])
def test_batched_landmarks_equal_one_by_one(model_id, faces):
    from facegraph.core.landmarks import Roi

    m = load_model(model_id)
    views, boxes = _linear_frames(faces)
    # faces over both frames, one of them twice, one crop partly outside its frame
    index = [0, 1, 1, 0]
    rois = [m.roi_for(boxes[0]), m.roi_for(boxes[1]), m.roi_for(boxes[1]).scaled(1.3), Roi(20.0, 30.0, 160.0)]
    batch = m.predict_frames(views, index, rois)
    for i, r, b in zip(index, rois, batch):
        single = m.predict_frames(views, [i], [r])[0]
        # batched network kernels sum in another order (and a 1e-5 crop difference can flip an 8-bit step):
        # a hundredth of a pixel
        assert np.abs(single.points - b.points).max() < 1e-2, model_id
        assert abs(single.presence - b.presence) < 1e-4
        if b.blendshapes is not None:
            assert np.abs(single.blendshapes[1] - b.blendshapes[1]).max() < 1e-4


def test_batched_iris_equals_one_by_one(faces):
    m, iris = load_model("mediapipe_landmarker_v2"), load_model("mediapipe_iris")
    views, boxes = _linear_frames(faces)
    meshes = m.predict_frames(views, [0, 1], [m.roi_for(b) for b in boxes])
    eyes = [e for r in meshes for e in iris.eye_rois(r.points)]
    index = [0, 0, 1, 1]
    batch = iris.predict_frames(views, index, eyes)
    for i, e, b in zip(index, eyes, batch):
        single = iris.predict_frames(views, [i], [e])[0]
        assert np.abs(single.contour - b.contour).max() < 1e-3 and np.abs(single.iris - b.iris).max() < 1e-3


@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_crop_frames_one_warp_equals_a_warp_per_crop(border, device):
    """The kernel behind every landmark crop: patches + one batched warp == each crop warped from its whole
    frame, on the frames' device, for crops inside, across and wholly outside the frame edge."""
    import torch

    from facegraph.core.colour import FrameViews, ViewOptions
    from facegraph.core.landmarks import Roi
    from facegraph.core.warp import warp_affine
    from facegraph.models.landmarkers import crop_frames

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand((3, 4, 70, 90), generator=g) * 2).to(device)
    frames[:, 3] = frames[:, 3].clamp(0.05, 1)  # RGBA, premultiplied alpha
    views = FrameViews(frames, ViewOptions(exposure="none"))
    index = [0, 2, 1, 2, 0]
    rois = [Roi(40, 30, 25), Roi(5, 60, 40, angle=0.3), Roi(85, 10, 33), Roi(-60, 20, 10), Roi(45, 35, 100)]
    crops, mats = crop_frames(views, index, rois, 32, border)
    assert crops.shape == (5, 3, 32, 32) and crops.device == frames.device
    for k, (i, r) in enumerate(zip(index, rois)):
        lin = warp_affine(frames[i:i + 1], torch.from_numpy(r.crop_from_frame(32)), (32, 32), border=border)
        ref = views.tone(lin, [i])
        assert (crops[k] - ref[0]).abs().max().item() < 1e-4, k
        assert np.allclose(mats[k], r.crop_from_frame(32))
    one = crop_frames(views, [1, 1], rois[:2], 32, border)[0]  # one frame: a batch-expanded view, no patches
    for k, r in enumerate(rois[:2]):
        lin = warp_affine(frames[1:2], torch.from_numpy(r.crop_from_frame(32)), (32, 32), border=border)
        assert (one[k] - views.tone(lin, [1])[0]).abs().max().item() < 1e-4
