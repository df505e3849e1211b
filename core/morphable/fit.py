"""Fitting a linear morphable model to 2D landmarks: pose, identity and expression.

The fit minimises, over the pose and the coefficients c = (identity alpha, expression beta),

    E = sum_k w_k |x_k - proj(mean_k + B_k c)|^2 / sigma^2 + identity_prior |alpha|^2 + expression_prior |beta|^2

where the bases are unit-variance directions (core.morphable.model), so the priors are the MAP weights of an
N(0, 1) prior and sigma = ``landmark_noise`` x the face's size in pixels makes the balance independent of
resolution. Minimised by damped Gauss-Newton (Levenberg-Marquardt) over pose and coefficients jointly,
started from a closed-form pose (:func:`fit_pose`), with blendshape weights held in [0, 1] (bounded least
squares). This is the linear-camera / linear-shape scheme of eos (Huber et al., VISAPP 2016) done jointly
instead of alternated; nothing is taken from its code.

Cameras:
    ``orthographic`` (scaled orthographic, the default): x = s (R X)[:2] + t, s in pixels per model unit.
    ``perspective``: x = f (R X + t)[:2] / (R X + t)[2] + principal point, f = ``focal_px`` or, by default,
    a 35 mm lens on a 36 mm-wide (full-frame) sensor over the frame width: f = 35 / 36 x width (a common
    normal-to-wide camera; state the real one when it is known). Principal point = frame centre.

Models without any basis (the MediaPipe canonical mesh: K_id = K_exp = 0) are fitted as MediaPipe's face
geometry pipeline does: a weighted Procrustes pose of the canonical mesh onto the points (3D when the points
carry depth, else the scaled-orthographic pose); the free-form shape offset (the canonicalised points minus
the mean, in model units, zero at unobserved vertices) is the "expression", flattened to (3 V,); such a
model's "identity" is a (3 V,) offset too, given by the shot (core.morphable.shot) or zero.

Convention:
    Image points: (K, 2) float frame pixels, pixel-area convention (core.conventions), in the order of the
    scheme (``ibug68``: iBUG 0-67; ``mediapipe478`` / ``mediapipe468``: mesh order); NaN rows = missing.
    Model space: x right for a frontal face, y up, z towards the camera. ``rotation`` maps model to camera
    (camera x right, y down, z forward), so a frontal face has R = diag(1, -1, -1) and
    core.pose.angles_from_rotation gives yaw / pitch / roll (conventions: Angles).
    ``camera`` (3, 4) maps model points [X, 1] to frame pixels: orthographic: rows (x, y, depth) directly,
    depth = s (R X)_z in pixels relative to the model origin, larger = further; perspective: the projective
    K [R | t], (x, y) = (P X)[:2] / (P X)[2].
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import numpy as np

from ..errors import EstimationError, InputError
from ..pose import angles_from_rotation, fit_rigid_3d
from ..geometry import umeyama
from ..types import HeadPose, MorphableParams
from . import contour as _contour
from .model import MorphableModel

log = logging.getLogger(__name__)

Camera = Literal["orthographic", "perspective"]
CAMERAS: tuple[str, ...] = ("orthographic", "perspective")
Scheme = Literal["ibug68", "mediapipe478", "mediapipe468"]
SCHEMES: tuple[str, ...] = ("ibug68", "mediapipe478", "mediapipe468")
Convention = Literal["ibug68_3d", "ibug68_2d"]
CONVENTIONS: tuple[str, ...] = ("ibug68_3d", "ibug68_2d")

#: 35 mm lens on a 36 mm-wide full-frame sensor: focal in pixels = 35 / 36 x frame width
DEFAULT_FOCAL_MM, SENSOR_WIDTH_MM = 35.0, 36.0
#: fewest valid points a pose is estimated from (8 unknowns of an affine camera need 4 points)
MIN_POINTS = 4
FLIP_YZ = np.diag([1.0, -1.0, -1.0])
#: iBUG inner mouth corners 60 / 64, which eos's ibug_to_sfm.txt leaves unmapped, fall back to the outer
#: corners 48 / 54 (about 2-5 mm apart on a neutral mouth) in :func:`ibug68_from_fit`
INNER_FALLBACK = {60: 48, 64: 54}


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Options of :func:`fit`.

    camera: "orthographic" | "perspective"; focal_px: perspective focal in pixels (None = 35 / 36 x frame
    width, see module doc). identity_prior / expression_prior: Tikhonov weights on the N(0, 1) coefficients
    (1 = the MAP estimate under the model's prior; larger = closer to the mean). landmark_noise: sigma of a
    landmark as a fraction of the face size in pixels (sqrt of the area of the box around the model's
    landmark vertices, projected): 0.02 (2 %, about 3 px on a 150 px face: the spread of human 68-point
    labels plus the model's own error; tuned on ../shared/data/aflw2000_dev by bench/fit.py).
    iterations / warm_iterations: Gauss-Newton iterations at most from a cold start / from ``init``;
    tolerance: stop when the objective drops by less than this fraction (1e-4: the rms then moves by
    about 0.005 %). use_contour: jaw points 0-7 / 9-16
    of ``ibug68`` follow the silhouette (core.morphable.contour) instead of fixed vertices. scheme: the
    points' order. point_weights: (K,) per-point weights multiplied with any per-call weights (None = 1).
    fit_identity / fit_expression: solve for them (False = hold them at ``init``'s / zero).
    use_depth: with (K, 3) points on a basis-free model, Procrustes in 3D (MediaPipe's pipeline).
    contour_updates: the jaw's contour correspondences are re-chosen at the start of this many Gauss-Newton
    iterations, then held so the solver converges (5, as eos's default number of contour passes).
    """

    camera: Camera = "orthographic"
    focal_px: float | None = None
    identity_prior: float = 1.0
    expression_prior: float = 1.0
    landmark_noise: float = 0.02
    iterations: int = 30
    warm_iterations: int = 3
    tolerance: float = 1e-4
    use_contour: bool = True
    scheme: Scheme = "ibug68"
    point_weights: tuple[float, ...] | None = None
    fit_identity: bool = True
    fit_expression: bool = True
    use_depth: bool = True
    contour_updates: int = 5

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise InputError(f"FitOptions.camera must be one of {CAMERAS}, got {self.camera!r}")
        if self.scheme not in SCHEMES:
            raise InputError(f"FitOptions.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.focal_px is not None and not (np.isfinite(self.focal_px) and self.focal_px > 0):
            raise InputError(f"FitOptions.focal_px must be a positive number of pixels, got {self.focal_px}")
        for name in ("identity_prior", "expression_prior"):
            if not getattr(self, name) >= 0:
                raise InputError(f"FitOptions.{name} must be >= 0, got {getattr(self, name)}")
        if not self.landmark_noise > 0:
            raise InputError(f"FitOptions.landmark_noise must be > 0, got {self.landmark_noise}")
        if self.iterations < 1 or self.warm_iterations < 1:
            raise InputError("FitOptions.iterations and warm_iterations must be >= 1")


@dataclasses.dataclass(frozen=True, eq=False)
class PoseFit:
    """A camera pose (see module doc): ``rotation`` model -> camera, ``translation`` (3,) (orthographic:
    (tx, ty, 0) pixels; perspective: camera-space model units), ``scale`` pixels per model unit (perspective:
    f / t_z, the scale at the model origin), ``focal`` / ``principal`` (perspective only, else None),
    ``rms`` weighted reprojection rms in pixels."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    camera_kind: str
    focal: float | None = None
    principal: np.ndarray | None = None
    rms: float = float("nan")

    @property
    def camera(self) -> np.ndarray:
        """(3, 4) model -> frame pixels (module doc)."""
        if self.camera_kind == "orthographic":
            return np.concatenate([self.scale * self.rotation, self.translation[:, None]], 1)
        k = np.array([[self.focal, 0, self.principal[0]], [0, self.focal, self.principal[1]], [0, 0, 1.0]])
        return k @ np.concatenate([self.rotation, self.translation[:, None]], 1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) model points -> (N, 3) screen space: frame pixels x, y and depth (pixels relative to the
        model origin at the face's scale, larger = further)."""
        y = np.asarray(points, np.float64) @ self.rotation.T
        if self.camera_kind == "orthographic":
            out = self.scale * y
            out[:, :2] += self.translation[:2]
            return out
        zc = y[:, 2] + self.translation[2]
        out = np.empty_like(y)
        out[:, :2] = self.focal * (y[:, :2] + self.translation[:2]) / zc[:, None] + self.principal
        out[:, 2] = (zc - self.translation[2]) * self.focal / self.translation[2]
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """One frame's fit.

    identity (K_id,) / expression (K_exp,) float64 coefficients (basis-free models: (3 V,) offsets in model
    units, see module doc); rotation (3, 3) model -> camera; translation (3,); scale; focal / principal
    (perspective); camera (3, 4) (module doc); rms: weighted reprojection rms in pixels over the points used;
    residuals (K,) per-point distance in pixels (NaN = not used); correspondences (K,) the vertex each point
    was matched to (-1 = none; the contour points' choice of this fit); iterations: Gauss-Newton iterations
    run; converged; notes: what happened (missing points, bounds hit, fallbacks).
    """

    model: str
    identity: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    camera_kind: str
    focal: float | None
    principal: np.ndarray | None
    rms: float
    residuals: np.ndarray
    correspondences: np.ndarray
    iterations: int
    converged: bool
    scheme: str = "ibug68"
    notes: tuple[str, ...] = ()

    @property
    def pose(self) -> PoseFit:
        return PoseFit(self.rotation, self.translation, self.scale, self.camera_kind, self.focal,
                       self.principal, self.rms)

    @property
    def camera(self) -> np.ndarray:
        return self.pose.camera

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) degrees, conventions: Angles."""
        return angles_from_rotation(self.rotation)

    def head_pose(self) -> HeadPose:
        """The record a Face carries: angles and the 4x4 model -> camera transform (scale folded in for the
        orthographic camera: pixels)."""
        yaw, pitch, roll = self.angles
        m = np.eye(4)
        if self.camera_kind == "orthographic":
            m[:3, :3] = self.scale * self.rotation
        else:
            m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return HeadPose(yaw=yaw, pitch=pitch, roll=roll, matrix=m, method=f"morphable:{self.model}",
                        residual=0.0)

    def morphable_params(self) -> MorphableParams:
        """The record a Face carries. Its camera is scaled-orthographic (3, 4) frame pixels; a perspective
        fit gives its weak-perspective approximation at the model origin (scale f / t_z)."""
        cam = self.camera
        if self.camera_kind == "perspective":
            t = self.pose.project(np.zeros((1, 3)))[0]
            cam = np.concatenate([self.scale * self.rotation, np.array([t[0], t[1], 0.0])[:, None]], 1)
        return MorphableParams(model=self.model, shape=self.identity.astype(np.float32),
                               expression=self.expression.astype(np.float32), camera=cam)


# ------------------------------------------------------------------------------------------- helpers
def default_focal(frame_size: tuple[int, int]) -> float:
    """Focal in pixels of a 35 mm lens on a 36 mm-wide sensor over the frame width (module doc)."""
    return DEFAULT_FOCAL_MM / SENSOR_WIDTH_MM * float(frame_size[0])


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    if th < 1e-12:
        return np.eye(3) + k
    return np.eye(3) + np.sin(th) / th * k + (1 - np.cos(th)) / th ** 2 * (k @ k)


def rotation_log(r: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (axis x angle, radians) of a 3x3 rotation (inverse of Rodrigues' formula)."""
    r = np.asarray(r, np.float64)
    c = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    th = float(np.arccos(c))
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if th < 1e-8:
        return v / 2
    if np.pi - th < 1e-6:  # near 180 degrees: axis from the symmetric part
        b = (r + np.eye(3)) / 2
        axis = b[np.argmax(np.diag(b))]
        return axis / np.linalg.norm(axis) * th
    return v * th / (2 * np.sin(th))


def rotation_exp(w: np.ndarray) -> np.ndarray:
    """3x3 rotation of a (3,) rotation vector (Rodrigues)."""
    return _rodrigues(np.asarray(w, np.float64))


def _nearest_rotation(a: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(a)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _check_points(model_points: np.ndarray, image_points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Valid-point mask; raises EstimationError on too few / collinear points."""
    ok = (np.isfinite(model_points).all(1) & np.isfinite(image_points[:, :2]).all(1) & np.isfinite(weights)
          & (weights > 0))
    n = int(ok.sum())
    if n < MIN_POINTS:
        raise EstimationError(f"a pose needs at least {MIN_POINTS} valid weighted points, got {n}",
                              hint="check the landmarks (NaN rows count as missing)")
    for what, p in (("image", image_points[ok, :2]), ("model", model_points[ok])):
        sv = np.linalg.svd(p - p.mean(0), compute_uv=False)
        if sv[0] <= 1e-12 or sv[1] / sv[0] < 1e-6:
            raise EstimationError(f"the {what} points are collinear or coincident: no pose can be estimated")
    return ok


# -------------------------------------------------------------------------------------------- pose
def _affine_init(x3: np.ndarray, x2: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Scaled-orthographic pose by an affine camera (linear least squares) then the nearest rotation (SVD);
    planar model points (the affine camera is then ambiguous) fall back to a frontal 2D Umeyama."""
    wn = w / w.sum()
    mu3, mu2 = wn @ x3, wn @ x2
    a3, a2 = x3 - mu3, x2 - mu2
    sw = np.sqrt(wn)[:, None]
    sv = np.linalg.svd(a3 * sw, compute_uv=False)
    if sv[2] / sv[0] > 1e-3:
        m, *_ = np.linalg.lstsq(a3 * sw, a2 * sw, rcond=None)    # a2 ~ a3 @ m, m (3, 2)
        a = m.T                                                  # (2, 3) affine camera
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        r2 = u @ vt
        r = np.vstack([r2, np.cross(r2[0], r2[1])])
        scale = float(s.mean())
    else:
        # depth dropped: model (x, y up) against image (x, y down) is a 2D similarity after flipping y
        scale, r2d, _ = umeyama(a3[:, :2] * [1.0, -1.0], a2, wn)
        rz = np.eye(3)
        rz[:2, :2] = r2d
        r = rz @ FLIP_YZ
    t = np.zeros(3)
    t[:2] = mu2 - scale * (r @ mu3)[:2]
    if not (np.isfinite(r).all() and np.isfinite(scale) and scale > 0):
        raise EstimationError("the closed-form pose is degenerate")
    return r, scale, t


def fit_pose(model_points: np.ndarray, image_points: np.ndarray, weights: np.ndarray | None = None, *,
             camera: Camera = "orthographic", focal_px: float | None = None,
             frame_size: tuple[int, int] | None = None, iterations: int = 10) -> PoseFit:
    """Pose of a rigid model from 2D points.

    Closed-form scaled-orthographic start (affine camera by linear least squares, then the nearest rotation
    via SVD; planar model points: 2D Umeyama with depth dropped), refined by Gauss-Newton on the reprojection
    error; perspective: the orthographic pose lifted to a distance f / s, then Gauss-Newton.

    Args: model_points (K, 3) model space; image_points (K, 2) frame pixels (pixel-area); weights (K,) >= 0
    or None; camera; focal_px (perspective; None = :func:`default_focal` of ``frame_size``); frame_size
    (w, h) pixels, needed for a perspective camera (principal point = its centre).
    Raises: InputError on shapes; EstimationError with fewer than 4 valid points, collinear points, or a
    degenerate result. NaN rows count as missing.
    """
    x3 = np.asarray(model_points, np.float64)
    x2 = np.asarray(image_points, np.float64)
    if x3.ndim != 2 or x3.shape[1] != 3 or x2.ndim != 2 or x2.shape[1] < 2 or len(x2) != len(x3):
        raise InputError(f"fit_pose needs model_points (K, 3) and image_points (K, 2), got {x3.shape} and "
                         f"{x2.shape}")
    w = np.ones(len(x3)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != len(x3):
        raise InputError(f"fit_pose: {len(w)} weights for {len(x3)} points")
    ok = _check_points(x3, x2, w)
    focal, principal = _camera_intrinsics(camera, focal_px, frame_size)
    r, s, t = _affine_init(x3[ok], x2[ok, :2], w[ok])
    pose = PoseFit(r, t, s, "orthographic")
    if camera == "perspective":
        pose = _lift_perspective(pose, focal, principal)
    prob = _Problem(x3[ok], np.zeros((0, int(ok.sum()), 3)), x2[ok, :2], w[ok], np.zeros(0), focal, principal,
                    0.02, _extent(x3[ok]))
    state = _State.from_pose(pose, np.zeros(0))
    if iterations > 0:
        state, _, _ = _gauss_newton(prob, state, iterations, 1e-10)
    out = state.pose(camera, focal, principal)
    res = np.linalg.norm(out.project(x3[ok])[:, :2] - x2[ok, :2], axis=1)
    return dataclasses.replace(out, rms=float(np.sqrt(np.average(res ** 2, weights=w[ok]))))


def _camera_intrinsics(camera, focal_px, frame_size):
    if camera not in CAMERAS:
        raise InputError(f"camera must be one of {CAMERAS}, got {camera!r}")
    if camera == "orthographic":
        return None, None
    if frame_size is None:
        raise InputError("a perspective fit needs frame_size=(width, height) for its principal point")
    f = float(focal_px) if focal_px is not None else default_focal(frame_size)
    return f, np.array([frame_size[0] / 2.0, frame_size[1] / 2.0])


def _lift_perspective(pose: PoseFit, focal: float, principal: np.ndarray) -> PoseFit:
    tz = focal / pose.scale
    t = np.array([(pose.translation[0] - principal[0]) * tz / focal,
                  (pose.translation[1] - principal[1]) * tz / focal, tz])
    return PoseFit(pose.rotation, t, pose.scale, "perspective", focal, principal)


def _extent(points: np.ndarray) -> float:
    """sqrt of the x-y box area of model points (the face-size unit of landmark_noise)."""
    span = np.ptp(points[:, :2], axis=0)
    return float(max(np.sqrt(span[0] * span[1]), 1e-12))


# ----------------------------------------------------------------------------------- Gauss-Newton
@dataclasses.dataclass
class _State:
    rotation: np.ndarray
    t: np.ndarray          # (3,): ortho (tx, ty, 0) pixels; persp camera-space model units
    log_s: float           # ortho only
    coeffs: np.ndarray     # the free coefficients

    @staticmethod
    def from_pose(pose: PoseFit, coeffs: np.ndarray) -> "_State":
        return _State(pose.rotation.copy(), pose.translation.copy(), float(np.log(pose.scale)),
                      np.array(coeffs, np.float64))

    def pose(self, camera, focal, principal) -> PoseFit:
        if camera == "orthographic":
            return PoseFit(self.rotation, self.t.copy(), float(np.exp(self.log_s)), "orthographic")
        return PoseFit(self.rotation, self.t.copy(), float(focal / self.t[2]), "perspective", focal, principal)


@dataclasses.dataclass
class _Problem:
    """Points at their correspondences: x0 (K, 3) model positions with the fixed part of the shape,
    basis (C, K, 3) of the free coefficients, targets (K, 2), weights (K,), priors (C,), bounds (C,) lo/hi
    or None, focal / principal (perspective), noise fraction, model extent."""

    x0: np.ndarray
    basis: np.ndarray
    target: np.ndarray
    w: np.ndarray
    prior: np.ndarray
    focal: float | None
    principal: np.ndarray | None
    noise: float
    extent: float
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


def _residual_jacobian(p: _Problem, s: _State, jac: bool = True):
    x = p.x0 + np.tensordot(s.coeffs, p.basis, axes=1) if len(s.coeffs) else p.x0
    y = x @ s.rotation.T                                                     # (K, 3)
    k = len(x)
    if p.focal is None:
        sc = np.exp(s.log_s)
        pred = sc * y[:, :2] + s.t[:2]
        face_px = sc * p.extent
    else:
        zc = y[:, 2] + s.t[2]
        if (zc <= 1e-9).any():
            return None
        pred = p.focal * (y[:, :2] + s.t[:2]) / zc[:, None] + p.principal
        face_px = p.focal / s.t[2] * p.extent
    r = p.target - pred
    if not jac:
        return r, None, face_px
    # d(y)/d(omega) = -[y]x for the left update R <- exp([omega]x) R
    dy = np.zeros((k, 3, 3))
    dy[:, 0, 1], dy[:, 0, 2] = y[:, 2], -y[:, 1]
    dy[:, 1, 0], dy[:, 1, 2] = -y[:, 2], y[:, 0]
    dy[:, 2, 0], dy[:, 2, 1] = y[:, 1], -y[:, 0]
    db = np.einsum("ij,ckj->kic", s.rotation, p.basis) if len(s.coeffs) else np.zeros((k, 3, 0))
    n = 6 + len(s.coeffs)
    j = np.zeros((k, 2, n))
    if p.focal is None:
        j[:, :, 0:3] = sc * dy[:, :2]
        j[:, :, 3] = sc * y[:, :2]
        j[:, 0, 4] = 1.0
        j[:, 1, 5] = 1.0
        j[:, :, 6:] = sc * db[:, :2]
    else:
        f = p.focal
        xc = y + s.t
        proj = np.zeros((k, 2, 3))
        proj[:, 0, 0] = proj[:, 1, 1] = f / zc
        proj[:, 0, 2] = -f * xc[:, 0] / zc ** 2
        proj[:, 1, 2] = -f * xc[:, 1] / zc ** 2
        j[:, :, 0:3] = proj @ dy
        j[:, :, 3:6] = proj
        j[:, :, 6:] = proj @ db
    return r, j, face_px


#: largest m * n * k of one matrix product in :func:`_gram`: OpenBLAS runs a GEMM above 4 x 65536 of it on
#: all its threads (interface/gemm.c, GEMM_MULTITHREAD_THRESHOLD x SMP_THRESHOLD_MIN), which for these small
#: normal equations on a busy 2-core machine was measured here 90x slower (7.2 ms against 0.08 ms for a
#: 136 x 75 product) than one thread
_GEMM_SINGLE = 4 * 65536


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b for tall a (K, n), b (K, m), summed over row blocks small enough for one BLAS thread."""
    rows = max(1, _GEMM_SINGLE // max(a.shape[1] * b.shape[1], 1))
    if len(a) <= rows:
        return a.T @ b
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(0, len(a), rows):
        out += a[i:i + rows].T @ b[i:i + rows]
    return out


def _energy(p: _Problem, s: _State, r: np.ndarray, sigma: float) -> float:
    return float((p.w * (r ** 2).sum(1)).sum() / sigma ** 2 + (p.prior * s.coeffs ** 2).sum())


def _apply(s: _State, d: np.ndarray, ortho: bool) -> _State:
    r = _rodrigues(d[:3]) @ s.rotation
    if ortho:
        return _State(r, s.t + np.array([d[4], d[5], 0.0]), s.log_s + d[3], s.coeffs + d[6:])
    return _State(r, s.t + d[3:6], s.log_s, s.coeffs + d[6:])


def _box_qp(h: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int = 30) -> np.ndarray:
    """argmin 0.5 x'Hx - b'x subject to lo <= x <= hi (H symmetric positive definite; infinite bounds
    allowed): an active-set method on the box (free variables solved exactly, bound ones released when
    their gradient points inwards), clipped at the end."""
    x = np.linalg.solve(h, b)
    if ((x >= lo) & (x <= hi)).all():
        return x
    at_lo, at_hi = x < lo, x > hi
    for _ in range(max_iter):
        free = ~(at_lo | at_hi)
        x = np.where(at_lo, lo, np.where(at_hi, hi, 0.0))
        if free.any():
            fixed = ~free
            rhs = b[free] - h[np.ix_(free, fixed)] @ x[fixed]
            x[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
        eps = 1e-12
        v_lo, v_hi = free & (x < lo - eps), free & (x > hi + eps)
        if v_lo.any() or v_hi.any():
            at_lo |= v_lo
            at_hi |= v_hi
            continue
        g = h @ x - b
        rel = (at_lo & (g < -eps)) | (at_hi & (g > eps))
        if not rel.any():
            break
        k = np.argmax(np.abs(np.where(rel, g, 0.0)))  # release the most attractive one
        at_lo[k] = at_hi[k] = False
    return np.clip(x, lo, hi)


def _gauss_newton(p: _Problem, s: _State, iterations: int, tol: float, *, update=None):
    """Levenberg-Marquardt on E (module doc). ``update(p, s)`` may rebuild the problem (contour
    correspondences) at the start of each iteration. Returns (state, iterations run, converged)."""
    ortho = p.focal is None
    mu = 1e-4
    converged = False
    it = 0
    for it in range(1, iterations + 1):
        if update is not None:
            p = update(p, s)
        out = _residual_jacobian(p, s)
        if out is None:
            raise EstimationError("the perspective fit put points behind the camera")
        r, j, face_px = out
        sigma = p.noise * face_px
        e0 = _energy(p, s, r, sigma)
        j2 = j.reshape(-1, j.shape[2])
        jw = j2 * np.repeat(p.w, 2)[:, None]
        n = j2.shape[1]
        h = _gram(jw, j2) / sigma ** 2
        b = jw.T @ r.reshape(-1) / sigma ** 2
        h[range(6, n), range(6, n)] += p.prior
        b[6:] -= p.prior * s.coeffs
        lo = np.full(n, -np.inf)
        hi = np.full(n, np.inf)
        if p.lo is not None:
            lo[6:] = p.lo - s.coeffs
            hi[6:] = p.hi - s.coeffs
        accepted = False
        dh = np.maximum(h.diagonal(), 1e-9)
        for _ in range(12):
            hd = h.copy()
            hd[range(n), range(n)] += mu * dh
            try:
                d = _box_qp(hd, b, lo, hi)
            except np.linalg.LinAlgError:
                mu *= 10
                continue
            cand = _apply(s, d, ortho)
            o2 = _residual_jacobian(p, cand, jac=False)
            if o2 is not None:
                e1 = _energy(p, cand, o2[0], sigma)
                if e1 <= e0:
                    accepted = True
                    s = cand
                    mu = max(mu / 3, 1e-9)
                    break
            mu *= 6
        if not accepted or (e0 - e1) <= tol * max(e0, 1e-300):
            converged = True
            break
    return s, it, converged


# --------------------------------------------------------------------------------------------- fit
def _as_points(image_points, n: int, scheme: str) -> np.ndarray:
    pts = np.asarray(image_points, np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise InputError(f"image_points must be (K, 2) or (K, 3) frame pixels, got {pts.shape}")
    if len(pts) != n:
        raise InputError(f"image_points has {len(pts)} rows but the {scheme!r} scheme has {n} points",
                         hint="pass FitOptions(scheme=...) matching the landmarks")
    return pts


def _weights(pts: np.ndarray, options: FitOptions, weights) -> np.ndarray:
    w = np.ones(len(pts))
    if options.point_weights is not None:
        pw = np.asarray(options.point_weights, np.float64)
        if pw.shape != (len(pts),):
            raise InputError(f"FitOptions.point_weights has {pw.size} values for {len(pts)} points")
        w = w * pw
    if weights is not None:
        cw = np.asarray(weights, np.float64).reshape(-1)
        if cw.shape != (len(pts),):
            raise InputError(f"weights has {cw.size} values for {len(pts)} points")
        w = w * cw
    if (w < 0).any():
        raise InputError("point weights must be >= 0")
    return np.where(np.isfinite(pts[:, :2]).all(1) & np.isfinite(w), w, 0.0)


def scheme_indices(model: MorphableModel, scheme: str) -> np.ndarray:
    """(K,) int64 vertex per point of ``scheme`` (-1 = none); ``mediapipe468`` is the first 468 rows of a
    model's ``mediapipe478`` when it has no 468 table of its own."""
    if scheme == "mediapipe468" and scheme not in model.landmarks and "mediapipe478" in model.landmarks:
        return np.asarray(model.landmarks["mediapipe478"][:468], np.int64)
    return np.asarray(model.landmark_indices(scheme), np.int64)


def is_free_form(model: MorphableModel) -> bool:
    """A model without identity and expression bases (the MediaPipe canonical mesh)."""
    return model.n_identity == 0 and model.n_expression == 0


def shape_of(model: MorphableModel, result: FitResult) -> np.ndarray:
    """(V, 3) model-space vertices of a fit (coefficients, or the free-form offsets of a basis-free model)."""
    if is_free_form(model):
        v = model.n_vertices
        out = model.mean.copy()
        for off in (result.identity, result.expression):
            if off.size == 3 * v:
                out += off.reshape(v, 3)
        return out
    return model.shape(result.identity, result.expression)


def vertices_frame(model: MorphableModel, result: FitResult, vertices: np.ndarray | None = None) -> np.ndarray:
    """Screen-space vertices of a fit: (V, 3) float64, x, y frame pixels (pixel-area, y down), z depth in
    pixels at the face's scale relative to the model origin (larger = further): what core.render's
    rasteriser takes (batch them as (B, V, 3)). ``vertices``: optional (N,) ids to return only those."""
    shape = shape_of(model, result)
    if vertices is not None:
        shape = shape[np.asarray(vertices, np.int64)]
    return result.pose.project(shape)


def _jaw_contour_points(model: MorphableModel, options: FitOptions) -> list[int]:
    if options.scheme != "ibug68" or not options.use_contour:
        return []
    if not len(model.triangles) and not model.contours:
        return []
    return [j for side in _contour.JAW_SIDES.values() for j in side]


def fit(model: MorphableModel, image_points: np.ndarray, *, options: FitOptions = FitOptions(),
        init: FitResult | None = None, frame_size: tuple[int, int] | None = None,
        weights: np.ndarray | None = None, identity: np.ndarray | None = None) -> FitResult:
    """Fit pose, identity and expression of ``model`` to one face's landmarks (module doc).

    Args:
        model: the linear model (core.morphable.model).
        image_points: (K, 2) frame pixels (pixel-area) in ``options.scheme`` order; NaN rows are missing.
            (K, 3) points (with depth, smaller = nearer, pixels) are used in 3D by basis-free models only.
        options: :class:`FitOptions`.
        init: a previous fit (the last frame's, when tracking): its pose and coefficients start the
            solver, which then runs at most ``options.warm_iterations``.
        frame_size: (w, h) pixels; needed for a perspective camera.
        weights: (K,) per-point confidence >= 0 (multiplied with ``options.point_weights``).
        identity: (K_id,) fixed identity (a shot's shared identity): only pose and expression are solved.
    Returns: :class:`FitResult`.
    Raises: InputError on bad shapes / options; EstimationError when fewer than 4 usable points remain,
    the points are collinear, or the solver leaves the valid domain.
    """
    idx = scheme_indices(model, options.scheme)
    pts = _as_points(image_points, len(idx), options.scheme)
    w = _weights(pts, options, weights)
    notes: list[str] = []
    missing = int((~np.isfinite(pts[:, :2]).all(1)).sum())
    if missing:
        notes.append(f"missing_points={missing}")
    if is_free_form(model):
        return _fit_free_form(model, pts, w, idx, options, init, frame_size, identity, notes)
    focal, principal = _camera_intrinsics(options.camera, options.focal_px, frame_size)
    contour_pts = [j for j in _jaw_contour_points(model, options) if j < len(idx)]
    corr = idx.copy()
    n_id, n_exp = model.n_identity, model.n_expression
    # coefficients: which are solved, their priors and bounds
    id0 = np.zeros(n_id)
    ex0 = np.zeros(n_exp)
    if init is not None:
        if init.identity.shape == (n_id,):
            id0 = init.identity.astype(np.float64).copy()
        if init.expression.shape == (n_exp,):
            ex0 = init.expression.astype(np.float64).copy()
    fit_id = options.fit_identity and identity is None
    if identity is not None:
        id0 = np.asarray(identity, np.float64).reshape(-1)
        if id0.shape != (n_id,):
            raise InputError(f"identity has {id0.size} coefficients, model {model.name} has {n_id}")
    blend = model.expression_kind == "blendshapes"
    if blend:
        ex0 = np.clip(ex0, 0.0, 1.0)
    free = np.r_[np.full(n_id, fit_id), np.full(n_exp, options.fit_expression)]
    coeffs_all = np.r_[id0, ex0]
    prior_all = np.r_[np.full(n_id, options.identity_prior), np.full(n_exp, options.expression_prior)]
    lo_all = np.r_[np.full(n_id, -np.inf), np.full(n_exp, 0.0 if blend else -np.inf)]
    hi_all = np.r_[np.full(n_id, np.inf), np.full(n_exp, 1.0 if blend else np.inf)]
    fixed_coeffs = np.where(free, 0.0, coeffs_all)
    free_idx = np.flatnonzero(free)

    mean_lm = model.mean[idx[idx >= 0]]
    extent = _extent(mean_lm) if len(mean_lm) >= 2 else _extent(model.mean)

    def build(c: np.ndarray) -> _Problem:
        use = (corr >= 0) & (w > 0)
        v = corr[use]
        x0 = model.mean[v].copy()
        fc = fixed_coeffs
        if n_id and fc[:n_id].any():
            x0 += np.tensordot(fc[:n_id], model.identity_basis[:, v], axes=1)
        if n_exp and fc[n_id:].any():
            x0 += np.tensordot(fc[n_id:], model.expression_basis[:, v], axes=1)
        basis = _basis_at(model, v)[free_idx] if len(free_idx) else np.zeros((0, len(v), 3))
        lo = lo_all[free_idx] if blend else None
        hi = hi_all[free_idx] if blend else None
        return _Problem(x0, basis, pts[use, :2], w[use], prior_all[free_idx], focal, principal,
                        options.landmark_noise, extent, lo, hi)

    contour_mode = bool(contour_pts)
    if contour_mode:
        for j in contour_pts:  # until a pose exists: fixed vertices where the model has them, else unused
            corr[j] = idx[j]
    if contour_mode:
        needed = _contour.needed_vertices(model)
        sub_mean = model.mean[needed]
        sub_basis = _basis_at(model, needed)
        screen = np.zeros((model.n_vertices, 3))

    updates = [0]

    def update(prob: _Problem, s: _State) -> _Problem:
        if not contour_mode or updates[0] >= options.contour_updates:
            return prob
        updates[0] += 1
        full = np.where(free, 0.0, coeffs_all)
        full[free_idx] = s.coeffs
        sub = sub_mean + np.tensordot(full, sub_basis, axes=1) if len(full) else sub_mean
        screen[needed] = s.pose(options.camera, focal, principal).project(sub)
        found = _contour.contour_correspondences(model, screen, s.rotation, pts[:68, :2])
        before = corr.copy()
        for j in contour_pts:
            corr[j] = found.get(j, idx[j])
        return prob if np.array_equal(before, corr) and prob is not None else build(s.coeffs)

    c_free = coeffs_all[free_idx]
    _check_points(np.where((corr >= 0)[:, None], model.mean[np.maximum(corr, 0)], np.nan), pts, w)
    if init is not None:
        pose0 = init.pose
        if pose0.camera_kind != options.camera:
            pose0 = (_lift_perspective(_ortho_of(pose0), focal, principal) if options.camera == "perspective"
                     else _ortho_of(pose0))
        iterations = options.warm_iterations
    else:
        use = (corr >= 0) & (w > 0)
        shape0 = model.mean[corr[use]]
        if np.any(coeffs_all):
            shape0 = model.shape(coeffs_all[:n_id], coeffs_all[n_id:])[corr[use]]
        pose0 = fit_pose(shape0, pts[use, :2], w[use], camera="orthographic", iterations=0)
        if options.camera == "perspective":
            pose0 = _lift_perspective(pose0, focal, principal)
        iterations = options.iterations
    state = _State.from_pose(pose0, c_free)
    prob = build(c_free)
    state, it, conv = _gauss_newton(prob, state, iterations, options.tolerance, update=update)
    full = np.where(free, 0.0, coeffs_all)
    full[free_idx] = state.coeffs
    pose = state.pose(options.camera, focal, principal)
    if not (np.isfinite(full).all() and np.isfinite(pose.translation).all() and pose.scale > 0):
        raise EstimationError("the morphable fit diverged", model=model.name)
    if blend and n_exp and ((full[n_id:] <= 1e-9) | (full[n_id:] >= 1 - 1e-9)).any():
        notes.append("expression_bounds_active")
    if not conv:
        notes.append(f"not_converged_after={it}")
    return _finish(model, options, pts, w, corr, full[:n_id], full[n_id:], pose, it, conv, notes)


def _basis_at(model: MorphableModel, v: np.ndarray) -> np.ndarray:
    """(K_id + K_exp, len(v), 3) basis rows at vertices v (gathered per basis: no copy of the whole)."""
    return np.concatenate([model.identity_basis[:, v], model.expression_basis[:, v]])


def _ortho_of(pose: PoseFit) -> PoseFit:
    if pose.camera_kind == "orthographic":
        return pose
    t = pose.project(np.zeros((1, 3)))[0]
    return PoseFit(pose.rotation, np.array([t[0], t[1], 0.0]), pose.scale, "orthographic")


def _finish(model, options, pts, w, corr, identity, expression, pose: PoseFit, it, conv, notes) -> FitResult:
    use = (corr >= 0) & (w > 0)
    res = np.full(len(pts), np.nan)
    v = corr[use]
    shape = model.mean[v] + np.tensordot(np.r_[identity, expression], _basis_at(model, v), axes=1)
    res[use] = np.linalg.norm(pose.project(shape)[:, :2] - pts[use, :2], axis=1)
    rms = float(np.sqrt(np.average(res[use] ** 2, weights=w[use]))) if use.any() else float("nan")
    return FitResult(model=model.name, identity=np.asarray(identity, np.float64),
                     expression=np.asarray(expression, np.float64), rotation=pose.rotation,
                     translation=pose.translation, scale=pose.scale, camera_kind=pose.camera_kind,
                     focal=pose.focal, principal=pose.principal, rms=rms, residuals=res,
                     correspondences=np.where(use, corr, -1), iterations=int(it), converged=bool(conv),
                     scheme=options.scheme, notes=tuple(notes))


# -------------------------------------------------------------------------------- basis-free models
def canonicalise(model: MorphableModel, result: FitResult, image_points: np.ndarray) -> np.ndarray:
    """(V, 3) model-space positions of the observed points under the fit's pose (NaN at unobserved
    vertices): the inverse camera applied to (K, 2|3) points; 2D points take the depth of the fit's own
    shape (the residual then lies in the image plane). Orthographic fits only (perspective: the depth of
    the fit's shape fixes each ray's point)."""
    idx = scheme_indices(model, result.scheme)
    pts = np.asarray(image_points, np.float64)
    out = np.full((model.n_vertices, 3), np.nan)
    ok = (idx >= 0) & np.isfinite(pts[:, :2]).all(1)
    v = idx[ok]
    pose = result.pose
    own = pose.project(shape_of(model, result)[v])
    scr = own.copy()
    scr[:, :2] = pts[ok, :2]
    if pts.shape[1] == 3 and np.isfinite(pts[ok, 2]).all():
        scr[:, 2] = pts[ok, 2] - np.average(pts[ok, 2]) + np.average(own[:, 2])
    if pose.camera_kind == "orthographic":
        y = scr.copy()
        y[:, :2] -= pose.translation[:2]
        out[v] = (y / pose.scale) @ pose.rotation
    else:
        zc = scr[:, 2] * pose.translation[2] / pose.focal + pose.translation[2]
        xc = np.empty_like(scr)
        xc[:, :2] = (scr[:, :2] - pose.principal) * zc[:, None] / pose.focal
        xc[:, 2] = zc
        out[v] = (xc - pose.translation) @ pose.rotation
    return out


def _fit_free_form(model, pts, w, idx, options, init, frame_size, identity, notes) -> FitResult:
    v = model.n_vertices
    ident = np.zeros(3 * v)
    if identity is not None:
        ident = np.asarray(identity, np.float64).reshape(-1)
    elif init is not None and init.identity.size == 3 * v:
        ident = init.identity.astype(np.float64)
    if ident.size != 3 * v:
        raise InputError(f"identity of a basis-free model is a (3 V,) = ({3 * v},) offset, got {ident.size}")
    base = model.mean + ident.reshape(v, 3)
    use = (idx >= 0) & (w > 0)
    x3 = np.where(use[:, None], base[np.maximum(idx, 0)], np.nan)
    _check_points(x3, pts, w)
    focal, principal = _camera_intrinsics(options.camera, options.focal_px, frame_size)
    if pts.shape[1] == 3 and options.use_depth and options.camera == "orthographic" and \
            np.isfinite(pts[use, 2]).all():
        # MediaPipe's geometry pipeline: weighted 3D Procrustes of the canonical mesh onto the points
        # (screen x, y and depth form a right-handed frame, so the model -> screen map is a rotation)
        rf = fit_rigid_3d(x3[use], pts[use], w[use])
        t = rf.translation.copy()
        t[2] = 0.0
        pose = PoseFit(rf.rotation, t, rf.scale, "orthographic")
        it, conv = 1, True
        notes.append("procrustes_3d")
    else:
        pose = fit_pose(x3[use], pts[use, :2], w[use], camera=options.camera, focal_px=options.focal_px,
                        frame_size=frame_size, iterations=options.iterations if init is None
                        else options.warm_iterations)
        it, conv = 1, True
    tmp = FitResult(model.name, ident, np.zeros(3 * v), pose.rotation, pose.translation, pose.scale,
                    pose.camera_kind, pose.focal, pose.principal, float("nan"), np.zeros(len(pts)),
                    np.where(use, idx, -1), it, conv, options.scheme)
    can = canonicalise(model, tmp, np.where(use[:, None], pts, np.nan))
    expr = np.nan_to_num(can - base, nan=0.0).reshape(-1) if options.fit_expression else np.zeros(3 * v)
    res = np.full(len(pts), np.nan)
    shape = base + expr.reshape(v, 3)
    res[use] = np.linalg.norm(pose.project(shape[idx[use]])[:, :2] - pts[use, :2], axis=1)
    rigid = np.linalg.norm(pose.project(base[idx[use]])[:, :2] - pts[use, :2], axis=1)
    rms = float(np.sqrt(np.average(rigid ** 2, weights=w[use])))
    notes.append("rms=rigid_procrustes")
    return FitResult(model=model.name, identity=ident, expression=expr, rotation=pose.rotation,
                     translation=pose.translation, scale=pose.scale, camera_kind=pose.camera_kind,
                     focal=pose.focal, principal=pose.principal, rms=rms, residuals=_scatter(rigid, use), correspondences=np.where(use, idx, -1), iterations=it,
                     converged=conv, scheme=options.scheme, notes=tuple(notes))


def _scatter(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(len(mask), np.nan)
    out[mask] = values
    return out


# ------------------------------------------------------------------------------------- iBUG-68 output
def ibug68_from_fit(model: MorphableModel, result: FitResult, convention: Convention = "ibug68_3d") -> np.ndarray:
    """(68, 2) float64 iBUG-68 points of a fit in frame pixels (pixel-area).

    ``ibug68_3d``: the model's fixed ``ibug68`` vertices projected (the AFLW2000-3D re-annotation's
    convention: jaw points on the face surface whether visible or not); jaw points without a fixed vertex
    (-1) take the frontal outline: per-point contour lines' outermost vertex in model x; a single outline
    per side: vertices spaced evenly along it (point k of 8 at k / 8, top to bottom); else the fit's own
    contour correspondence; the inner mouth corners 60 / 64 where unmapped take :data:`INNER_FALLBACK`.
    ``ibug68_2d``: the same, with jaw points 0-7 /
    9-16 moved to the projected outline (300-W convention, core.morphable.contour.march_jaw).
    Raises InputError when the model has no ``ibug68`` correspondences.
    """
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    idx = np.array(model.landmark_indices("ibug68"), np.int64)
    shape = shape_of(model, result)
    for side, jaw in _contour.JAW_SIDES.items():
        lines = [np.asarray(x, np.int64) for x in model.contours.get(side, [])]
        sign = -1.0 if side == "right" else 1.0
        if len(lines) == len(jaw):  # per-point lines: the frontal outline = the line's outermost in model x
            for j, line in zip(_contour.CONTOUR_POINTS[side], lines):
                if idx[j] < 0 and len(line):
                    idx[j] = line[np.argmax(sign * shape[line, 0])]
            continue
        line = np.concatenate(lines) if lines else np.zeros(0, np.int64)
        for k, j in enumerate(jaw if side == "right" else jaw[::-1]):
            if idx[j] >= 0:
                continue
            if len(line):  # one outline per side, top to bottom: point k of 8 at k / 8 of the line
                idx[j] = line[int(round(k * (len(line) - 1) / 8))]
            elif result.scheme == "ibug68" and result.correspondences[j] >= 0:
                idx[j] = result.correspondences[j]
    for j, k in INNER_FALLBACK.items():
        if idx[j] < 0:
            idx[j] = idx[k]
    if (idx < 0).any():
        raise EstimationError(f"model {model.name} has no vertex for iBUG points {np.flatnonzero(idx < 0).tolist()}")
    pts = result.pose.project(shape[idx])[:, :2]
    if convention == "ibug68_3d":
        return pts
    needed = _contour.needed_vertices(model)
    screen = np.zeros((model.n_vertices, 3))
    screen[needed] = result.pose.project(shape[needed])
    return _contour.march_jaw(model, screen, result.rotation, pts)


def init_from_camera(model: MorphableModel, identity: np.ndarray, expression: np.ndarray,
                     camera: np.ndarray, scheme: str = "ibug68") -> FitResult:
    """A starting :class:`FitResult` from a regressor's estimate (3DDFA_V2's 62 parameters, stored on a face
    as MorphableParams of bfm_3ddfa: N(0, 1) coefficients and a 3x4 scaled-orthographic camera, model ->
    frame pixels). Pass it as ``init`` to :func:`fit`, which then runs only ``warm_iterations``.

    The camera's first two rows are s R[:2] | t: s is their mean norm, R the nearest rotation completed by
    the cross product (core.pose.rotation_from_scaled). Raises EstimationError for a degenerate camera."""
    from ..pose import rotation_from_scaled

    cam = np.asarray(camera, np.float64)
    if cam.shape != (3, 4) or not np.isfinite(cam).all():
        raise EstimationError(f"a starting camera must be a finite 3x4 matrix, got {cam.shape}")
    norms = np.linalg.norm(cam[:2, :3], axis=1)
    if not (norms > 1e-12).all():
        raise EstimationError("the starting camera is degenerate (zero scale)")
    r = rotation_from_scaled(cam[:2, :3])
    ident = np.asarray(identity, np.float64).reshape(-1)
    expr = np.asarray(expression, np.float64).reshape(-1)
    if ident.shape != (model.n_identity,) or expr.shape != (model.n_expression,):
        raise EstimationError(f"starting coefficients {ident.shape} / {expr.shape} do not fit {model.name} "
                              f"({model.n_identity} / {model.n_expression})")
    k = len(model.landmarks.get(scheme, ()))
    return FitResult(model=model.name, identity=ident, expression=expr, rotation=r,
                     translation=np.array([cam[0, 3], cam[1, 3], 0.0]), scale=float(norms.mean()),
                     camera_kind="orthographic", focal=None, principal=None, rms=float("nan"),
                     residuals=np.full(k, np.nan), correspondences=np.full(k, -1), iterations=0, converged=False,
                     scheme=scheme, notes=("init=regressor",))
