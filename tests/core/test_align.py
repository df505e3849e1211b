import numpy as np
import pytest

from facegraph.core.align import AlignOptions, align, crop_mask, face_points, warp_to_crop
from facegraph.core.errors import EstimationError, InputError
from facegraph.core.geometry import invert_affine, similarity_matrix, transform_points
from facegraph.core.landmarks import five_from_ibug68
from facegraph.core.templates import MEAN68, TEMPLATES, template_points
from facegraph.core.types import Face, Landmarks


def test_templates_are_normalised_and_consistent():
    for t in TEMPLATES.values():
        assert t.points.shape[1] == 2 and t.source
        assert 0 < t.points[:, 0].min() and t.points[:, 0].max() < 1
    # the derived 68-point shape agrees with arcface's five points (same framing)
    assert np.abs(five_from_ibug68(MEAN68) - TEMPLATES["arcface_112"].points).max() < 0.02
    assert np.allclose(template_points("arcface_112", (112, 112))[0], [38.7946, 52.1963])
    assert np.allclose(template_points("ffhq_512", (512, 512), margin=1.0).mean(0),
                       (TEMPLATES["ffhq_512"].points.mean(0) - 0.5) * 256 + 256)


def _face_at(m, template="ffhq_512", size=(512, 512)):
    """A face whose keypoints are the template mapped into a frame by ``m`` (frame_from_crop)."""
    kps = transform_points(m, template_points(template, size))
    return Face(box=[0, 0, 10, 10], keypoints=kps)


def test_align_recovers_the_known_transform():
    frame_from_crop = similarity_matrix(0.3, 0.4, 200, 120)
    a = align(_face_at(frame_from_crop), AlignOptions(template="ffhq_512", size=(512, 512)))
    assert np.allclose(a.crop_from_frame, invert_affine(frame_from_crop), atol=1e-4)
    assert a.rms < 1e-4 and a.crop_size == (512, 512)  # keypoints are stored as float32


def test_align_uses_landmarks_when_it_can():
    m = similarity_matrix(2.0, -0.2, 50, 60)
    pts = transform_points(m, MEAN68 * 256)
    face = Face(box=[0, 0, 1, 1], landmarks=Landmarks(points=pts, scheme="ibug68"))
    a = align(face, AlignOptions(template="mean68", size=(256, 256)))
    assert a.rms < 1e-4
    assert face_points(face, "five").shape == (5, 2)
    with pytest.raises(InputError, match="68-point"):
        align(Face(box=[0, 0, 1, 1], keypoints=np.zeros((5, 2))), AlignOptions(template="mean68"))
    with pytest.raises(InputError, match="neither"):
        align(Face(box=[0, 0, 1, 1]), AlignOptions())


def test_a_poor_fit_cannot_be_ignored():
    face = _face_at(similarity_matrix(1, 0, 0, 0), "arcface_112", (112, 112))
    bad = face.replace(keypoints=np.asarray(face.keypoints) + [[0, 0], [0, 0], [30, 0], [0, 0], [0, 0]])
    with pytest.raises(EstimationError, match="residual"):
        align(bad, AlignOptions(template="arcface_112", max_rms=2.0))


def _paste_back(frame, crop, a, mask=None, interpolation="linear"):
    """core.blend.paste_back (the one paste-back) on numpy (H, W, 3) arrays."""
    import torch

    from facegraph.core.blend import PasteOptions, paste_back

    h, w = crop.shape[:2]
    m = np.ones((h, w), np.float32) if mask is None else mask
    out = paste_back(torch.from_numpy(frame).permute(2, 0, 1)[None], torch.from_numpy(crop).permute(2, 0, 1)[None],
                     torch.from_numpy(a.frame_from_crop[None]), torch.from_numpy(m)[None, None],
                     torch.zeros(1, dtype=torch.long),
                     options=PasteOptions(feather_px=0.0 if mask is not None else 8.0, interpolation=interpolation))
    return out[0].permute(1, 2, 0).numpy()


def test_warp_and_paste_back_round_trip():
    rng = np.random.default_rng(1)
    frame = (rng.random((200, 300, 3)) * 3).astype(np.float32)  # linear, above 1
    a = align(_face_at(similarity_matrix(0.25, 0.1, 150, 100), "ffhq_512", (256, 256)),
              AlignOptions(template="ffhq_512", size=(256, 256)))
    crop = warp_to_crop(frame, a)
    assert crop.shape == (256, 256, 3) and crop.max() > 1.0
    same = _paste_back(frame, crop, a, np.ones((256, 256), np.float32), interpolation="linear")
    inside = transform_points(a.frame_from_crop, [[128, 128]])[0].astype(int)
    y, x = inside[1], inside[0]
    assert np.abs(same[y - 5:y + 5, x - 5:x + 5] - frame[y - 5:y + 5, x - 5:x + 5]).mean() < 0.35
    outside = _paste_back(frame, crop * 0, a)
    assert np.allclose(outside[0, 0], frame[0, 0])  # far from the face: untouched
    m = crop_mask((64, 32), 0.25)
    assert m.shape == (32, 64) and m.max() == 1 and m[0, 0] < 0.2
