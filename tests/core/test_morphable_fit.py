"""Morphable-model fitting: pose, identity / expression, perspective, warm start, contour, shot, errors, and
the real models on real labels (../shared)."""
import csv
import dataclasses

import numpy as np
import pytest

from facegraph.core.conventions import from_index_coords
from facegraph.core.errors import EstimationError, InputError
from facegraph.core.landmarks import box_norm, interocular_norm, nme, read_pts
from facegraph.core.morphable import contour
from facegraph.core.morphable.fit import (FitOptions, FitResult, PoseFit, fit, fit_pose, ibug68_from_fit,
                                          rotation_exp, rotation_log, shape_of, vertices_frame)
from facegraph.core.morphable.model import MorphableModel
from facegraph.core.morphable.shot import ShotSmoothing, fit_shot
from facegraph.core.morphable.synthetic import synthetic_model
from facegraph.core.pose import angles_from_rotation, rotation_from_angles

SIZE = (600, 600)


def rot_err(a, b):
    """Angle (degrees) between two rotations (via the rotation vector: exact near zero)."""
    return float(np.degrees(np.linalg.norm(rotation_log(a.T @ b))))


def truth(model, alpha, beta, angles=(25, 8, -4), t=(300.0, 280.0), scale=1.6, persp=None):
    r = rotation_from_angles(*angles)
    if persp is None:
        return FitResult(model.name, np.asarray(alpha, float), np.asarray(beta, float), r,
                         np.array([*t, 0.0]), scale, "orthographic", None, None, 0.0, np.zeros(68),
                         np.zeros(68, int), 0, True)
    f, tr = persp
    return FitResult(model.name, np.asarray(alpha, float), np.asarray(beta, float), r, np.asarray(tr, float),
                     f / tr[2], "perspective", f, np.array([SIZE[0] / 2, SIZE[1] / 2]), 0.0, np.zeros(68),
                     np.zeros(68, int), 0, True)


@pytest.fixture(scope="module")
def model():
    return synthetic_model(n_identity=5, n_expression=3, seed=0)


@pytest.fixture(scope="module")
def coeffs():
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, 5), rng.normal(0, 1, 3)


EXACT = FitOptions(use_contour=False, landmark_noise=0.001)  # a weak prior: the ML fit on exact points


# ------------------------------------------------------------------------------------------------ pose
@pytest.mark.parametrize("angles", [(0, 0, 0), (40, -10, 15), (-70, 20, -5)])
def test_fit_pose_recovers_a_rigid_pose(model, angles):
    r = rotation_from_angles(*angles)
    pts3 = model.mean[model.landmarks["ibug68"]]
    p = PoseFit(r, np.array([200.0, 150.0, 0.0]), 2.0, "orthographic")
    got = fit_pose(pts3, p.project(pts3)[:, :2])
    assert rot_err(got.rotation, r) < 1e-6 and got.scale == pytest.approx(2.0) and got.rms < 1e-6
    assert np.allclose(angles_from_rotation(got.rotation), angles, atol=1e-6)
    pp = PoseFit(r, np.array([20.0, -10.0, 400.0]), 700 / 400, "perspective", 700.0, np.array([300.0, 300.0]))
    gp = fit_pose(pts3, pp.project(pts3)[:, :2], camera="perspective", focal_px=700.0, frame_size=SIZE)
    assert rot_err(gp.rotation, r) < 1e-5 and np.allclose(gp.translation, pp.translation, rtol=1e-5)


def test_fit_pose_degenerate_input_raises(model):
    pts3 = model.mean[model.landmarks["ibug68"]]
    pts2 = pts3[:, :2] * [1, -1] + 300
    with pytest.raises(EstimationError):
        fit_pose(pts3[:3], pts2[:3])                                   # fewer than 4 points
    line = np.stack([np.linspace(0, 100, 68), np.linspace(0, 50, 68)], 1)
    with pytest.raises(EstimationError):
        fit_pose(pts3, line)                                           # collinear image points
    with pytest.raises(EstimationError):
        fit_pose(pts3, np.full_like(pts2, np.nan))                     # nothing valid
    with pytest.raises(InputError):
        fit_pose(pts3, pts2[:10])


# ------------------------------------------------------------------------------------ shape recovery
def test_noise_free_fit_recovers_pose_identity_expression(model, coeffs):
    t = truth(model, *coeffs)
    pts = ibug68_from_fit(model, t, "ibug68_3d")
    r = fit(model, pts, options=EXACT)
    assert rot_err(r.rotation, t.rotation) < 0.5
    assert np.abs(r.identity - t.identity).max() < 0.05 and np.abs(r.expression - t.expression).max() < 0.05
    assert r.rms < 0.05 and r.converged and r.camera.shape == (3, 4)
    # the camera maps model points to the same pixels as vertices_frame
    v = vertices_frame(model, r)
    x = shape_of(model, r) @ r.camera[:, :3].T + r.camera[:, 3]
    assert np.allclose(v, x) and v.shape == (model.n_vertices, 3)
    # screen depth: larger = further (the nose tip is nearest on a near-frontal face)
    assert np.argmin(v[:, 2]) in np.argsort(-model.mean[:, 2])[:40]


def test_noisy_fit_stays_close(model, coeffs):
    t = truth(model, *coeffs)
    rng = np.random.default_rng(1)
    pts = ibug68_from_fit(model, t, "ibug68_3d") + rng.normal(0, 1.0, (68, 2))
    r = fit(model, pts, options=FitOptions(use_contour=False))
    assert rot_err(r.rotation, t.rotation) < 2.0
    assert np.abs(r.expression - t.expression).max() < 0.3 and np.abs(r.identity - t.identity).max() < 1.0
    assert 0.5 < r.rms < 1.5                       # about the noise level (1 px per axis)


def test_perspective_camera_recovery(model, coeffs):
    t = truth(model, *coeffs, angles=(-30, 5, 10), persp=(800.0, (15.0, -10.0, 350.0)))
    pts = ibug68_from_fit(model, t, "ibug68_3d")
    r = fit(model, pts, options=dataclasses.replace(EXACT, camera="perspective", focal_px=800.0),
            frame_size=SIZE)
    assert r.camera_kind == "perspective" and rot_err(r.rotation, t.rotation) < 0.5
    assert np.allclose(r.translation, t.translation, rtol=0.01)
    assert np.abs(r.identity - t.identity).max() < 0.05 and r.rms < 0.05
    v = vertices_frame(model, r)
    hom = np.c_[shape_of(model, r), np.ones(model.n_vertices)] @ r.camera.T
    assert np.allclose(v[:, :2], hom[:, :2] / hom[:, 2:])
    with pytest.raises(InputError):
        fit(model, pts, options=FitOptions(camera="perspective"))   # no frame size: no principal point


def test_warm_start_converges_in_three_iterations(model, coeffs):
    t0 = truth(model, *coeffs)
    r0 = fit(model, ibug68_from_fit(model, t0, "ibug68_3d"), options=EXACT)
    t1 = truth(model, coeffs[0], coeffs[1] + 0.05, angles=(26.5, 7.5, -4), t=(302.0, 279.0))
    p1 = ibug68_from_fit(model, t1, "ibug68_3d")
    r1 = fit(model, p1, options=EXACT, init=r0)
    assert r1.iterations <= 3 and r1.converged
    assert rot_err(r1.rotation, t1.rotation) < 0.5 and r1.rms < 0.1


def test_blendshape_expressions_stay_in_the_box(coeffs):
    m = synthetic_model(n_identity=5, n_expression=3, seed=2, expression_kind="blendshapes")
    beta = np.array([0.0, 0.6, 1.0])
    t = truth(m, coeffs[0], beta)
    rng = np.random.default_rng(4)
    r = fit(m, ibug68_from_fit(m, t, "ibug68_3d") + rng.normal(0, 0.5, (68, 2)),
            options=FitOptions(use_contour=False, landmark_noise=0.005))
    assert (r.expression >= 0).all() and (r.expression <= 1).all()
    assert np.abs(r.expression - beta).max() < 0.2


def test_nan_points_are_missing_not_fatal(model, coeffs):
    t = truth(model, *coeffs)
    pts = ibug68_from_fit(model, t, "ibug68_3d")
    holes = pts.copy()
    holes[[3, 20, 40, 61]] = np.nan
    w = np.ones(68)
    w[[3, 20, 40, 61]] = 0
    a = fit(model, holes, options=EXACT)
    b = fit(model, pts, options=EXACT, weights=w)
    assert np.allclose(a.rotation, b.rotation, atol=1e-9) and np.allclose(a.identity, b.identity, atol=1e-7)
    assert np.isnan(a.residuals[[3, 20, 40, 61]]).all() and "missing_points=4" in a.notes
    with pytest.raises(EstimationError):
        fit(model, np.full((68, 2), np.nan), options=EXACT)
    few = np.full((68, 2), np.nan)
    few[:3] = pts[:3]
    with pytest.raises(EstimationError):
        fit(model, few, options=EXACT)
    with pytest.raises(InputError):
        fit(model, pts[:60], options=EXACT)


def test_options_are_validated():
    with pytest.raises(InputError):
        FitOptions(camera="fisheye")
    with pytest.raises(InputError):
        FitOptions(scheme="ibug98")
    with pytest.raises(InputError):
        FitOptions(landmark_noise=0)


def test_rotation_log_exp_round_trip():
    for ang in [(0, 0, 0), (30, -20, 10), (170, 5, 5)]:
        r = rotation_from_angles(*ang)
        assert np.allclose(rotation_exp(rotation_log(r)), r, atol=1e-9)


# ------------------------------------------------------------------------------------------- contour
def _normals(v, tri):
    fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    n = np.zeros_like(v)
    for j in range(3):
        np.add.at(n, tri[:, j], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def test_contour_picks_the_silhouette_of_a_yawed_head(coeffs):
    m = synthetic_model(n_identity=5, n_expression=3, seed=0, fixed_jaw=False)
    t = truth(m, *coeffs, angles=(45, 0, 0))
    screen = vertices_frame(m, t)
    pts = ibug68_from_fit(m, t, "ibug68_2d")
    # the subject's right (model -x) is turned away at yaw +45 (conventions: Angles)
    assert contour.turned_away(t.rotation, "right") and not contour.turned_away(t.rotation, "left")
    found = contour.contour_correspondences(m, screen, t.rotation, pts)
    assert set(found) == set(range(8)) | set(range(9, 17))
    normal_cam = _normals(shape_of(m, t), m.triangles) @ t.rotation.T
    right = np.array([found[j] for j in range(8)])
    assert np.abs(normal_cam[right, 2]).max() < 0.35           # on the silhouette: normals across the view
    # mesh-only silhouette (no candidate lines): edges between front- and back-facing triangles
    sil = contour.silhouette_vertices(screen, m.triangles, include_boundary=False)
    assert len(sil) and np.abs(normal_cam[sil, 2]).max() < 0.5
    bare = dataclasses.replace(m, contours={})
    found2 = contour.contour_correspondences(bare, screen, t.rotation, pts)
    assert {j for j in range(8)} <= set(found2)
    assert np.abs(normal_cam[[found2[j] for j in range(8)], 2]).max() < 0.5
    # a contour-aware fit to 2D-convention points recovers the pose; the fixed-jaw fit does not do better
    r = fit(m, pts, options=dataclasses.replace(EXACT, use_contour=True))
    assert rot_err(r.rotation, t.rotation) < 1.0 and r.rms < 1.0
    fixed = synthetic_model(n_identity=5, n_expression=3, seed=0, fixed_jaw=True)
    r_fixed = fit(fixed, pts, options=EXACT)
    assert r.rms < r_fixed.rms


def test_ibug68_conventions(model, coeffs):
    t = truth(model, *coeffs, angles=(40, 0, 0))
    p3 = ibug68_from_fit(model, t, "ibug68_3d")
    p2 = ibug68_from_fit(model, t, "ibug68_2d")
    assert p3.shape == p2.shape == (68, 2)
    assert np.allclose(p3[17:], p2[17:])                        # only the jaw moves
    idx = model.landmarks["ibug68"]
    assert np.allclose(p3, vertices_frame(model, t)[idx, :2])
    assert np.abs(p2[:17] - p3[:17]).max() > 1.0                # a turned head's outline is not the 3D jaw
    with pytest.raises(InputError):
        ibug68_from_fit(model, t, "ibug68_4d")


# ------------------------------------------------------------------------------------------ basis-free
def test_basis_free_model_procrustes_and_residual(model):
    m = MorphableModel(name="canon", mean=model.mean, identity_basis=np.zeros((0, model.n_vertices, 3)),
                       expression_basis=np.zeros((0, model.n_vertices, 3)), triangles=model.triangles,
                       landmarks=model.landmarks, contours=model.contours)
    rng = np.random.default_rng(5)
    bump = np.zeros((model.n_vertices, 3))
    idx = m.landmarks["ibug68"]
    bump[idx] = rng.normal(0, 1.5, (68, 3))
    t = truth(m, np.zeros(0), np.zeros(0), angles=(20, -5, 3))
    pose = t.pose
    pts = pose.project(m.mean[idx] + bump[idx])
    r = fit(m, pts[:, :2], options=FitOptions())
    assert rot_err(r.rotation, t.rotation) < 2.0 and r.expression.shape == (3 * m.n_vertices,)
    assert np.allclose(vertices_frame(m, r)[idx, :2], pts[:, :2], atol=1e-6)  # the residual closes the gap
    r3 = fit(m, pts, options=FitOptions())                                      # with depth: 3D Procrustes
    assert "procrustes_3d" in r3.notes and rot_err(r3.rotation, t.rotation) < 2.0


# ---------------------------------------------------------------------------------------------- shot
def _clip(model, alpha, n=16, noise=2.0, seed=3):
    rng = np.random.default_rng(seed)
    pts, poses = [], []
    for k in range(n):
        beta = 0.6 * np.sin(np.arange(3) + k / 4)
        t = truth(model, alpha, beta, angles=(25 * np.sin(k / 5), 5, 0), t=(300.0 + k, 280.0))
        poses.append(t)
        pts.append(ibug68_from_fit(model, t, "ibug68_3d") + rng.normal(0, noise, (68, 2)))
    return pts, poses


def test_shot_fit_shares_one_identity(model, coeffs):
    alpha = coeffs[0]
    pts, poses = _clip(model, alpha)
    pts[6] = None
    sh = fit_shot(model, pts, options=FitOptions(use_contour=False), smoothing=ShotSmoothing(rounds=2))
    assert sh.identity.shape == (5,)
    assert all(f is None or np.array_equal(f.identity, sh.identity) for f in sh.frames)
    assert sh.filled[6] and sh.frames[6] is not None and "filled" in sh.frames[6].notes
    assert "skipped_frames=1" in sh.notes
    ind = sh.independent[np.isfinite(sh.independent).all(1)]
    per_frame_err = np.sqrt(((ind - alpha) ** 2).sum(1)).mean()
    assert np.sqrt(((sh.identity - alpha) ** 2).sum()) < per_frame_err
    # the identity of independent fits spreads; the shared one does not move between frames at all
    assert ind.std(0).max() > 0.05
    # with 2 px noise a frame's pose is good to a few degrees; the shared identity makes it better
    rot = [rot_err(f.rotation, p.rotation) for f, p in zip(sh.frames, poses) if f is not None]
    solo = [rot_err(fit(model, q, options=FitOptions(use_contour=False)).rotation, p.rotation)
            for q, p in zip(pts, poses) if q is not None]
    assert np.median(rot) < min(np.median(solo), 3.0)


def test_shot_without_any_fit_raises(model):
    with pytest.raises(EstimationError):
        fit_shot(model, [None, None])


# ------------------------------------------------------------------------------------- real models
def _aflw(data, n):
    root = data / "aflw2000_dev"
    rows = list(csv.DictReader(open(root / "index.csv")))
    rows = sorted(rows, key=lambda r: float(r["abs_yaw_deg"]))
    pick = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, n)]
    return [(from_index_coords(read_pts(root / r["pts"])), float(r["abs_yaw_deg"])) for r in pick]


@pytest.mark.shared
@pytest.mark.parametrize("model_id,limit", [("bfm_3ddfa", 0.03), ("sfm_3448", 0.04),
                                            ("mediapipe_canonical", 0.10)])
def test_real_models_fit_aflw2000_ground_truth(mirror, data, monkeypatch, model_id, limit):
    monkeypatch.setenv("FACEGRAPH_MODEL_MIRROR", str(mirror))
    from facegraph.models.morphable import load_morphable_model

    m = load_morphable_model(model_id)
    for gt, yaw in _aflw(data, 4):
        r = fit(m, gt, options=FitOptions(use_contour=False))
        assert r.rms / box_norm(gt) < limit, (model_id, yaw, r.rms)    # MediaPipe: the rigid Procrustes rms
        # a frontal face yaws little; a profile a lot (|yaw| from the benchmark's labels)
        assert abs(abs(r.angles[0]) - yaw) < 25, (model_id, yaw, r.angles)
        assert nme(ibug68_from_fit(m, r, "ibug68_3d"), gt, box_norm(gt)) < limit * 1.5


@pytest.mark.shared
def test_real_model_contour_fit_on_300w_labels(mirror, data, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODEL_MIRROR", str(mirror))
    from facegraph.models.morphable import load_morphable_model

    m = load_morphable_model("sfm_3448")
    for name in ("einstein", "breakingbad"):
        gt = from_index_coords(read_pts(data / "landmarks68" / f"{name}.pts"))
        r = fit(m, gt, options=FitOptions(use_contour=True))
        # (measured: 6.5 % / 8.1 % rms, 4-5 % NME; the jaw's silhouette points carry most of it)
        assert (r.correspondences[:8] >= 0).all() and r.rms / interocular_norm(gt) < 0.10
        assert nme(ibug68_from_fit(m, r, "ibug68_2d"), gt, interocular_norm(gt)) < 0.10


def test_bounded_least_squares_matches_a_general_solver():
    from scipy.optimize import minimize

    from facegraph.core.morphable.fit import _box_qp

    rng = np.random.default_rng(0)
    lo = np.r_[np.full(3, -np.inf), np.zeros(5)]
    hi = np.r_[np.full(3, np.inf), np.ones(5)]
    for _ in range(20):
        a = rng.normal(size=(12, 8))
        h, b = a.T @ a + 0.1 * np.eye(8), rng.normal(size=8) * 3
        x = _box_qp(h, b, lo, hi)
        ref = minimize(lambda z: 0.5 * z @ h @ z - b @ z, np.clip(np.zeros(8), lo, hi), jac=lambda z: h @ z - b,
                       bounds=list(zip(lo, hi)), method="L-BFGS-B", options=dict(ftol=1e-15, gtol=1e-12))
        assert (x >= lo).all() and (x <= hi).all()
        assert 0.5 * x @ h @ x - b @ x <= ref.fun + 1e-9


def test_init_from_a_regressors_camera(model, coeffs):
    """3DDFA_V2-style start: coefficients and a 3x4 scaled-orthographic camera become a FitResult whose
    camera is the same map, and a warm fit from it converges in the warm iterations."""
    from facegraph.core.morphable.fit import init_from_camera

    t = truth(model, *coeffs, angles=(20.0, -5.0, 8.0))
    init = init_from_camera(model, t.identity, t.expression, t.camera)
    assert np.allclose(init.camera, t.camera, atol=1e-9)
    noisy = init_from_camera(model, t.identity * 0.8, t.expression * 0.8,
                             t.camera + np.r_[np.full((2, 4), 0.01), np.zeros((1, 4))])
    r = fit(model, ibug68_from_fit(model, t, "ibug68_3d"), options=EXACT, init=noisy)
    assert r.iterations <= EXACT.warm_iterations and r.rms < 0.5
    with pytest.raises(EstimationError):
        init_from_camera(model, t.identity, t.expression, np.zeros((3, 4)))
