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
