"""The 3DMM nodes (load, fit, UV texture extract / render, region masks) on a real photo with the real models,
called directly and through the headless runner."""
import dataclasses

import numpy as np
import pytest
import torch

from facegraph.core.errors import GraphError, InputError
from facegraph.core.types import Face
from facegraph.nodes import NODE_CLASSES
from facegraph.nodes.analysis import DetectFaces, FaceLandmarks
from facegraph.nodes.face_model import (NODES, ExtractUVTexture, FaceRegionMask, FitFaceModel, LoadFaceModel,
                                        RenderUVTexture)
from facegraph.plugin.runner import Runner

pytestmark = pytest.mark.shared

#: texture size of the tests: the face in s0.jpg is about 100 px wide, so 256 texels hold all its detail
T = 256


def _result(out):
    return out["result"] if isinstance(out, dict) else out


def _text(out) -> str:
    return "\n".join(out["ui"]["text"])


def _psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    err = float(((a - b) ** 2)[where].mean())
    return 10 * np.log10(1.0 / max(err, 1e-12))  # peak 1: the sRGB-decoded still is in [0, 1]


@pytest.fixture(scope="module")
def images(data):
    from facegraph.core.io.images import read_image
    from facegraph.nodes.types import numpy_to_image

    px, _ = read_image(data / "stills" / "s0.jpg")
    return numpy_to_image(np.stack([px[..., :3], px[..., :3]]))


@pytest.fixture(scope="module")
def faces(images, mirror):
    (det,) = DetectFaces().detect(images[:1], score_threshold=0.6)
    (lm,) = FaceLandmarks().landmarks(images[:1], det, recrop=0)
    # frame 1: the same face, plus a box-only face (no landmarks): it must be skipped with a note
    box_only = Face(box=np.array([0, 0, 40, 40], np.float32), score=0.9)
    return [lm[0], lm[0].replace(frame=1, faces=lm[0].faces + (box_only,))]


@pytest.fixture(scope="module")
def mesh(mirror):
    out = LoadFaceModel().load("mediapipe_canonical", "cpu")
    assert "Apache-2.0" in _text(out) and "NON-COMMERCIAL" not in _text(out)
    return _result(out)[0]


def test_load_shows_the_licence(mirror):
    spec = LoadFaceModel.INPUT_TYPES()["required"]["model"]
    assert spec[0] == ["mediapipe_canonical", "bfm_3ddfa", "sfm_3448"] and spec[1]["default"] == "mediapipe_canonical"
    assert "NON-COMMERCIAL" in LoadFaceModel.DESCRIPTION
    out = LoadFaceModel().load("sfm_3448", "cpu")
    assert "NON-COMMERCIAL" in _text(out) and "Surrey" in _text(out)


def test_fit_per_frame_marks_faces_without_landmarks(faces, mesh):
    out = FitFaceModel().fit(faces, mesh)
    fitted, fits = _result(out)
    f0 = fitted[0].faces[0]
    assert f0.morphable is not None and f0.morphable.model == "mediapipe_canonical"
    assert f0.morphable.camera.shape == (3, 4) and fits[0][0].rms < 5.0
    skipped = fitted[1].faces[1]
    assert fits[1][1] is None and skipped.morphable is None
    assert skipped.notes[-1].startswith("fit=mediapipe_canonical:skipped:no landmarks")
    assert "1 skipped" in _text(out)


def test_fit_shot_shares_one_identity(faces, mirror):
    (sfm,) = _result(LoadFaceModel().load("sfm_3448", "cpu"))
    fitted, fits = _result(FitFaceModel().fit(faces, sfm, mode="shot", use_contour=True))
    a, b = fits[0][0], fits[1][0]
    assert a.identity.shape == (63,) and np.array_equal(a.identity, b.identity)
    assert a.rms < 5.0 and fits[1][1] is None
    assert np.allclose(fitted[1].faces[0].morphable.shape, a.identity.astype(np.float32))
    assert "NON-COMMERCIAL" in _text(FitFaceModel().fit(faces[:1], sfm))


def test_extract_then_render_gives_the_face_back(images, faces, mesh):
    out = ExtractUVTexture().extract(images, faces, mesh, texture_size=T, face_index=0, accumulate=True)
    texture, preview = _result(out)
    assert tuple(texture.colour.shape) == (1, 3, T, T) and tuple(preview.shape) == (1, T, T, 3)
    assert 0.3 < float((texture.alpha > 0).float().mean()) < 0.95  # the seen half of the layout, not all
    comp, alpha, render = _result(RenderUVTexture().render(images, faces, mesh, texture=texture))
    assert comp.shape == images.shape and tuple(alpha.shape) == tuple(images.shape[:3])
    assert torch.allclose(comp, render + images * (1 - alpha[..., None]), atol=1e-6)
    (region,) = _result(FaceRegionMask().mask(images, faces, mesh, feather_px=0.0))
    inside = (alpha > 0.99) & (region > 0.5)
    assert int(inside[0].sum()) > 3000
    # measured 49 dB at T = 512 (bilinear resampling frame -> texture -> frame): 35 dB leaves room
    assert _psnr(comp, images, inside) > 35.0
    outside = alpha == 0
    assert torch.equal(comp[outside], images[outside])


def test_per_frame_textures_and_a_decal(images, faces, mesh):
    texture, _ = _result(ExtractUVTexture().extract(images, faces, mesh, texture_size=T, accumulate=False))
    assert tuple(texture.colour.shape) == (2, 3, T, T)
    decal = torch.zeros((1, T, T, 3))
    decal[..., 0] = 2.0  # HDR red paint, half opaque on the upper half of the layout
    decal_mask = torch.zeros((1, T, T))
    decal_mask[:, : T // 2] = 0.5
    comp, alpha, _ = _result(RenderUVTexture().render(images, faces, mesh, texture_image=decal * 0.5,
                                                      texture_mask=decal_mask))
    hit = alpha[0] > 0.49
    assert int(hit.sum()) > 500 and float(alpha.max()) <= 0.5 + 1e-6
    a = alpha[0][hit]  # red: straight 2.0 at alpha 0.5, filtered premultiplied -> 2 a over the plate
    assert torch.allclose(comp[0][hit][:, 0], 2.0 * a + images[0][hit][:, 0] * (1 - a), atol=1e-4)


def test_region_mask_is_soft_and_takes_a_user_mask(images, faces, mesh):
    (soft,) = _result(FaceRegionMask().mask(images, faces, mesh, feather_px=4.0))
    assert tuple(soft.shape) == tuple(images.shape[:3])
    assert float(soft.min()) >= 0.0 and float(soft.max()) == pytest.approx(1.0)
    ramp = int(((soft[0] > 0.05) & (soft[0] < 0.95)).sum())
    assert ramp > 200 and float((soft[0] > 0.5).float().mean()) > 0.01
    user = torch.ones_like(soft)
    user[:, :, : images.shape[2] // 2 + 1] = 0.0  # the left half is occluded
    (cut,) = _result(FaceRegionMask().mask(images, faces, mesh, feather_px=4.0, mask=user))
    assert torch.equal(cut, torch.minimum(soft, user))
    (nose,) = _result(FaceRegionMask().mask(images, faces, mesh, skin=False, eyes=False, brows=False,
                                            lips=False, feather_px=0.0))
    assert 0 < float(nose[0].sum()) < 0.3 * float((soft[0] > 0.5).sum())
    # the mouth interior is the inner lip outline (the mesh leaves it open): empty on this closed mouth, and
    # about the opening's area once the lower inner lip (iBUG 65-67) is moved 8 px down
    mouth_only = dict(skin=False, eyes=False, brows=False, nose=False, lips=False, mouth_interior=True,
                      feather_px=0.0)
    (closed,) = _result(FaceRegionMask().mask(images[:1], faces[:1], mesh, **mouth_only))
    assert float(closed.sum()) < 20
    face = faces[0].faces[0]
    pts = face.landmarks.points.copy()
    lower = mesh.model.landmarks["ibug68"][65:68]
    pts[lower, 1] += 8.0
    opened = [faces[0].replace(faces=(face.replace(landmarks=dataclasses.replace(face.landmarks, points=pts)),))]
    (mouth,) = _result(FaceRegionMask().mask(images[:1], opened, mesh, **mouth_only))
    width = float(np.ptp(pts[mesh.model.landmarks["ibug68"][60:68], 0]))
    assert 0.3 * 8 * width < float(mouth.sum()) < 8 * width
    with pytest.raises(InputError, match="'mask' is 10x10"):
        FaceRegionMask().mask(images, faces, mesh, mask=torch.ones((1, 10, 10)))
    with pytest.raises(InputError, match="no region chosen"):
        FaceRegionMask().mask(images, faces, mesh, skin=False, eyes=False, brows=False, nose=False, lips=False)


def test_bad_input_passes_through_or_names_the_input(images, faces, mesh):
    no_landmarks = [ff.replace(faces=tuple(f.replace(landmarks=None) for f in ff.faces)) for ff in faces]
    tex = torch.ones((1, 3, 16, 16))
    from facegraph.models.pipeline.synthesis import Texture

    out = RenderUVTexture().render(images, no_landmarks, mesh, texture=Texture(tex, tex[:, :1]))
    comp, alpha, _ = _result(out)
    assert torch.equal(comp, images) and float(alpha.max()) == 0.0 and "passed through" in _text(out)
    (empty,) = _result(FaceRegionMask().mask(images, no_landmarks, mesh))
    assert float(empty.max()) == 0.0
    with pytest.raises(InputError, match="no frame has a face 0 with landmarks"):
        ExtractUVTexture().extract(images, no_landmarks, mesh, texture_size=16)
    nan = images.clone()
    nan[0, 5, 5, 1] = float("nan")
    with pytest.raises(InputError, match="'images' contains NaN"):
        ExtractUVTexture().extract(nan, faces, mesh, texture_size=16)
    with pytest.raises(InputError, match="must be square"):
        RenderUVTexture().render(images, faces, mesh, texture_image=torch.ones((1, 16, 32, 3)))
    with pytest.raises(InputError, match="connect a texture"):
        RenderUVTexture().render(images, faces, mesh)
    with pytest.raises(InputError, match="faces hold 1 frames for 2 images"):
        FaceRegionMask().mask(images, faces[:1], mesh)
    with pytest.raises(InputError, match="found in a 600x704 image, these images are 600x100"):
        FaceRegionMask().mask(images[:, :100], faces, mesh)


def test_the_chain_as_a_graph(data, mirror):
    graph = {
        "1": {"class_type": "FacegraphLoadImage", "inputs": {"path": str(data / "stills" / "s0.jpg")}},
        "2": {"class_type": "FacegraphDetectFaces", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "FacegraphFaceLandmarks", "inputs": {"images": ["1", 0], "faces": ["2", 0],
                                                                  "recrop": 0}},
        "4": {"class_type": "FacegraphLoadFaceModel", "inputs": {"model": "mediapipe_canonical", "device": "cpu"}},
        "5": {"class_type": "FacegraphFitFaceModel", "inputs": {"faces": ["3", 0], "face_model": ["4", 0],
                                                                 "mode": "shot", "camera": "perspective"}},
        "6": {"class_type": "FacegraphExtractUVTexture", "inputs": {"images": ["1", 0], "faces": ["5", 0],
                                                                     "face_model": ["4", 0], "texture_size": 128}},
        "7": {"class_type": "FacegraphRenderUVTexture", "inputs": {"images": ["1", 0], "faces": ["5", 0],
                                                                   "face_model": ["4", 0], "texture": ["6", 0]}},
        "8": {"class_type": "FacegraphFaceRegionMask", "inputs": {"images": ["7", 0], "faces": ["5", 0],
                                                                   "face_model": ["4", 0], "feather_px": 3.0}},
    }
    runner = Runner({**NODE_CLASSES, **{k: v[0] for k, v in NODES.items()}})
    run = runner.run(graph)
    assert run.order[-1] == "8" and tuple(run.outputs["8"][0].shape) == (1, 704, 600)
    assert run.outputs["5"][1][0][0].camera_kind == "perspective"
    assert "Apache-2.0" in run.ui["4"]["text"][0]
    graph["5"]["inputs"]["mode"] = "per shot"
    with pytest.raises(GraphError, match="is not one of"):
        runner.run(graph)
