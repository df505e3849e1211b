import numpy as np
import pytest

from facegraph.core.errors import EstimationError, InputError
from facegraph.core.geometry import transform_points
from facegraph.core.landmarks import (MESH_TO_IBUG68, Roi, box_norm, decode_heatmaps, five_from_ibug68,
                                      interocular_norm, mesh_to_ibug68, nme, read_pts, roi_from_box,
                                      roi_from_points, roi_from_segment)


def _gauss(x0, y0, sigma=1.5, n=64):
    j, i = np.mgrid[0:n, 0:n]
    return np.exp(-((i + 0.5 - x0) ** 2 + (j + 0.5 - y0) ** 2) / (2 * sigma ** 2))


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_soft_argmax_recovers_sub_pixel_peaks(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    pts = rng.uniform(8, 56, (100, 2))
    hm = np.stack([_gauss(x, y, sigma) for x, y in pts])[None]  # (1, K, H, W)
    dec, conf = decode_heatmaps(hm)
    assert dec.shape == (1, 100, 2) and conf.shape == (1, 100)
    assert np.linalg.norm(dec[0] - pts, axis=1).max() < 0.05


def test_argmax_quarter_is_the_classic_decoder():
    hm = _gauss(20.3, 11.8)[None]
    p, _ = decode_heatmaps(hm, method="argmax_quarter")
    # argmax pixel (20, 11) -> centre (20.5, 11.5), a quarter step towards the larger neighbour
    assert np.allclose(p[0], [20.25, 11.75])


def test_softmax_and_sigmoid_normalisations():
    logits = np.log(_gauss(30.4, 22.6, 1.5) + 1e-30)  # a log-density map: softmax gives the Gaussian back
    p, _ = decode_heatmaps(logits[None], normalise="softmax", temperature=1.0)
    assert np.linalg.norm(p[0] - [30.4, 22.6]) < 0.05
    scaled = _gauss(30.4, 22.6, 1.5) * 20 - 10  # a sigmoid-trained map
    p, c = decode_heatmaps(scaled[None], normalise="sigmoid")
    assert np.linalg.norm(p[0] - [30.4, 22.6]) < 0.2 and 0.99 < c[0] <= 1.0
    with pytest.raises(InputError):
        decode_heatmaps(logits[None], normalise="max")
    with pytest.raises(InputError):
        decode_heatmaps(logits, method="nope")


def test_roi_maps_its_centre_and_axes():
    roi = Roi(100.0, 50.0, 40.0, np.deg2rad(30))
    m = roi.crop_from_frame(128)
    assert np.allclose(transform_points(m, [[100, 50]]), [[64, 64]])
    along = [100 + 20 * np.cos(np.deg2rad(30)), 50 + 20 * np.sin(np.deg2rad(30))]
    assert np.allclose(transform_points(m, [along]), [[128, 64]])
    back = transform_points(roi.frame_from_crop(128), transform_points(m, [[3, 4]]))
    assert np.allclose(back, [[3, 4]])
    with pytest.raises(EstimationError):
        Roi(0, 0, 0).crop_from_frame(64)


def test_roi_constructors():
    r = roi_from_box((10, 20, 50, 100), scale=1.5)
    assert (r.cx, r.cy, r.size, r.angle) == (30, 60, 120, 0)
    pts = np.array([[0, 0], [10, 10], [4, 2]], float)
    r = roi_from_points(pts, scale=2.0, rotate_from=(0, 1))
    assert r.size == 20 and r.angle == pytest.approx(np.pi / 4)
    s = roi_from_segment(np.array([0, 0]), np.array([0, 10]), scale=2.3)
    assert s.size == pytest.approx(23) and s.angle == pytest.approx(np.pi / 2) and (s.cx, s.cy) == (0, 5)


def test_mesh_mapping_and_five_points():
    assert len(MESH_TO_IBUG68) == 68
    mesh = np.arange(478 * 2, dtype=float).reshape(478, 2)
    p = mesh_to_ibug68(mesh)
    assert p.shape == (68, 2) and np.allclose(p[27], (mesh[168] + mesh[6]) / 2)
    with pytest.raises(InputError):
        mesh_to_ibug68(mesh[:68])
    five = five_from_ibug68(np.tile(np.arange(68, dtype=float)[:, None], (1, 2)))
    assert np.allclose(five[:, 0], [38.5, 44.5, 30, 48, 54])


def test_metrics_and_pts(tmp_path):
    gt = np.zeros((68, 2))
    gt[:, 0] = np.linspace(0, 100, 68)
    gt[:, 1] = np.linspace(0, 25, 68)
    assert box_norm(gt) == pytest.approx(50)
    assert interocular_norm(gt) == pytest.approx(np.linalg.norm(gt[36] - gt[45]))
    assert nme(gt + [3, 4], gt, 10) == pytest.approx(0.5)
    f = tmp_path / "a.pts"
    f.write_text("version: 1\nn_points: 2\n{\n1.5 2\n3 4.25\n}\n")
    assert np.allclose(read_pts(f), [[1.5, 2], [3, 4.25]])
