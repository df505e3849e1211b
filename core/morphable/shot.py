"""One identity for a whole shot (or a track): stacked morphable fitting over frames, then temporal smoothing
of the per-frame pose and expression.

A face's identity does not change within a shot, but a single frame's landmarks constrain it poorly (noise,
expression and identity trade against each other), so per-frame fits flicker in shape. :func:`fit_shot`
alternates (block coordinate descent on the summed objective of core.morphable.fit):

1. per frame, pose and expression with the identity held (warm-started from the frame's last fit);
2. the identity given every frame's pose, expression and correspondences: one regularised linear least
   squares stacked over all frames (the identity prior counted once per frame by default, see
   :class:`ShotSmoothing`; for a perspective camera one Gauss-Newton step per round),

starting from the mean of independent per-frame fits. Then each parameter group is smoothed over time with
core.temporal (rotation as the rotation vector relative to the shot's mean rotation, so the filter runs in
a proper 3-dimensional chart; translation in face sizes; scale as log; expression per coefficient).
Frames without landmarks (None) or whose fit fails are skipped in the fit, filled by linear interpolation
of the parameters inside gaps of at most ``max_fill`` frames (marked ``filled`` in the result's notes),
and left None otherwise.

Basis-free models (the MediaPipe canonical mesh): identity = the per-vertex trimmed mean of the frames'
canonicalised meshes (core.morphable.fit.canonicalise) minus the model mean, as a (3 V,) offset; each
frame's pose is then refitted onto mean + identity and its expression is its residual offset.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from .. import temporal
from ..errors import EstimationError, InputError
from ..shot import SmoothOptions
from . import fit as _fit
from .fit import FitOptions, FitResult
from .model import MorphableModel

log = logging.getLogger(__name__)

_DEFAULT_SMOOTH = SmoothOptions()


def _group(noise: float, accel: float, jump: float, min_cutoff: float, beta: float) -> temporal.FilterOptions:
    return temporal.FilterOptions(min_cutoff=min_cutoff, beta=beta, noise=noise, accel=accel, jump=jump)


@dataclasses.dataclass(frozen=True)
class ShotSmoothing:
    """Temporal smoothing of a shot fit's parameters (core.temporal; method none | one-euro | kalman | rts).

    rotation (radians, rotation vector about the shot's mean rotation), translation (face sizes), scale
    (log): core.shot.SmoothOptions' calibrated groups of the same units. expression: N(0, 1) coefficients
    (or [0, 1] blendshape weights): noise 0.1 (a tenth of the prior's sigma), accel 10, jump 2.0 (two
    sigmas between frames is a cut) - provisional, bench/fit.py reports the jitter they leave. offsets: a
    basis-free model's per-vertex offsets in face sizes: core.shot's ``points`` group. max_fill: longest
    gap (frames) filled by interpolation. rounds: identity / per-frame alternations. trim: fraction cut at
    each end of a basis-free model's per-vertex trimmed mean. identity_prior_per_frame: the identity prior
    counts once per fitted frame (prior x T), as if the frames' landmark errors were fully correlated - a
    network's bias follows the face more than the frame; counted once (False: the MAP under independent
    errors), three 20-frame chunks of ../shared/data/video/d0.mp4 (bfm_3ddfa, 478 predicted points) gave
    identities of mean |coefficient| 2.0 that moved 0.66 between chunks, against 0.60 and 0.16 per frame."""

    method: str = "rts"
    fps: float = 25.0
    rotation: temporal.FilterOptions = _DEFAULT_SMOOTH.rotation
    translation: temporal.FilterOptions = _DEFAULT_SMOOTH.translation
    scale: temporal.FilterOptions = _DEFAULT_SMOOTH.scale
    expression: temporal.FilterOptions = _group(0.1, 10.0, 2.0, 1.0, 0.7)
    offsets: temporal.FilterOptions = _DEFAULT_SMOOTH.points
    max_fill: int = 12
    rounds: int = 3
    trim: float = 0.2
    identity_prior_per_frame: bool = True

    def __post_init__(self) -> None:
        if self.method not in temporal.SMOOTH_METHODS:
            raise InputError(f"smoothing method must be one of {temporal.SMOOTH_METHODS}, got {self.method!r}")
        if self.fps <= 0:
            raise InputError(f"fps must be positive, got {self.fps}")
        if self.rounds < 1 or self.max_fill < 0 or not 0 <= self.trim < 0.5:
            raise InputError("rounds must be >= 1, max_fill >= 0 and trim in [0, 0.5)")


@dataclasses.dataclass(frozen=True, eq=False)
class ShotFit:
    """identity: the shared (K_id,) coefficients ((3 V,) offset for a basis-free model); frames: per-frame
    smoothed fits (None where a frame has no fit and no fill); raw: the per-frame fits with the shared
    identity before smoothing; independent: (T, K_id) identities of independent per-frame fits (NaN rows
    where none), the baseline a shared identity is judged against; filled: (T,) bool; notes."""

    identity: np.ndarray
    frames: tuple[FitResult | None, ...]
    raw: tuple[FitResult | None, ...]
    independent: np.ndarray
    filled: np.ndarray
    notes: tuple[str, ...] = ()


def fit_shot(model: MorphableModel, points_per_frame: Sequence[np.ndarray | None], *,
             options: FitOptions = FitOptions(), smoothing: ShotSmoothing = ShotSmoothing(),
             frame_size: tuple[int, int] | None = None,
             weights_per_frame: Sequence[np.ndarray | None] | None = None) -> ShotFit:
    """Fit one identity to a shot's landmarks and smooth the per-frame pose and expression (module doc).

    Args:
        model: the linear model.
        points_per_frame: T entries, each (K, 2) frame pixels (pixel-area, ``options.scheme`` order; NaN rows
            missing) or None for a frame without landmarks.
        options: per-frame :class:`FitOptions` (``fit_identity`` is ignored: the identity is the shot's).
        smoothing: :class:`ShotSmoothing` (method "none" keeps the raw per-frame fits).
        frame_size: (w, h) pixels (perspective cameras).
        weights_per_frame: optional T entries of (K,) point weights or None.
    Returns: :class:`ShotFit`. Raises EstimationError when no frame can be fitted.
    """
    t_len = len(points_per_frame)
    if weights_per_frame is not None and len(weights_per_frame) != t_len:
        raise InputError(f"weights_per_frame has {len(weights_per_frame)} entries for {t_len} frames")
    wts = list(weights_per_frame) if weights_per_frame is not None else [None] * t_len
    notes: list[str] = []
    free_form = _fit.is_free_form(model)

    # 1. independent per-frame fits (the start, and the baseline for identity spread)
    indep: list[FitResult | None] = []
    for t, pts in enumerate(points_per_frame):
        if pts is None:
            indep.append(None)
            continue
        try:
            indep.append(_fit.fit(model, pts, options=options, frame_size=frame_size, weights=wts[t]))
        except EstimationError as exc:
            notes.append(f"frame {t}: {exc.message}")
            indep.append(None)
    ok = [t for t, r in enumerate(indep) if r is not None]
    if not ok:
        raise EstimationError("no frame of the shot could be fitted", hint="check the landmarks")
    skipped = t_len - len(ok)
    if skipped:
        notes.append(f"skipped_frames={skipped}")
    k_id = 3 * model.n_vertices if free_form else model.n_identity
    independent = np.full((t_len, k_id), np.nan)
    for t in ok:
        independent[t] = indep[t].identity if not free_form else np.nan

    if free_form:
        identity, raw = _free_form_identity(model, points_per_frame, indep, options, smoothing, frame_size, wts)
        independent[:] = np.nan  # a single frame's canonicalised offset is its "expression", not an identity
    else:
        identity = np.mean([indep[t].identity for t in ok], axis=0) if k_id else np.zeros(0)
        raw = list(indep)
        for _ in range(smoothing.rounds):
            raw = [None if raw[t] is None else _refit(model, points_per_frame[t], options, raw[t], identity,
                                                      frame_size, wts[t], notes, t) for t in range(t_len)]
            if k_id and options.fit_identity:
                identity = _identity_step(model, points_per_frame, raw, identity, options, wts,
                                          smoothing.identity_prior_per_frame)
        raw = [None if raw[t] is None else _refit(model, points_per_frame[t], options, raw[t], identity,
                                                  frame_size, wts[t], notes, t) for t in range(t_len)]
    frames, filled = _smooth(model, raw, identity, smoothing, points_per_frame, options, wts)
    if filled.any():
        notes.append(f"filled_frames={int(filled.sum())}")
    return ShotFit(identity=np.asarray(identity, np.float64), frames=tuple(frames), raw=tuple(raw),
                   independent=independent, filled=filled, notes=tuple(notes))


def _refit(model, pts, options, prev: FitResult, identity, frame_size, w, notes, t) -> FitResult | None:
    try:
        return _fit.fit(model, pts, options=options, init=prev, identity=identity, frame_size=frame_size,
                        weights=w)
    except EstimationError as exc:
        notes.append(f"frame {t}: {exc.message}")
        return None


def _identity_step(model: MorphableModel, points, fits, identity, options: FitOptions, wts,
                   per_frame: bool = True) -> np.ndarray:
    """One stacked (Gauss-Newton) step on the identity over all frames, poses / expressions held."""
    n_id = model.n_identity
    h = np.zeros((n_id, n_id))
    b = np.zeros(n_id)
    idx = _fit.scheme_indices(model, options.scheme)
    mean_lm = model.mean[idx[idx >= 0]]
    extent = _fit._extent(mean_lm)
    for t, r in enumerate(fits):
        if r is None:
            continue
        pts = np.asarray(points[t], np.float64)
        w = _fit._weights(pts, options, wts[t])
        use = (r.correspondences >= 0) & (w > 0)
        v = r.correspondences[use]
        x0 = model.mean[v] + (np.tensordot(r.expression, model.expression_basis[:, v], axes=1)
                              if model.n_expression else 0.0)
        pose = r.pose
        prob = _fit._Problem(x0, model.identity_basis[:, v], pts[use, :2], w[use], np.zeros(n_id),
                             pose.focal if pose.camera_kind == "perspective" else None, pose.principal,
                             options.landmark_noise, extent)
        state = _fit._State.from_pose(pose, identity)
        res, j, face_px = _fit._residual_jacobian(prob, state)
        sigma = options.landmark_noise * face_px
        jc = j[:, :, 6:].reshape(-1, n_id)
        ww = np.repeat(w[use], 2)
        h += _fit._gram(jc * ww[:, None], jc) / sigma ** 2
        b += (jc * ww[:, None]).T @ res.reshape(-1) / sigma ** 2
    n = sum(r is not None for r in fits)
    lam = options.identity_prior * (n if per_frame else 1)
    delta = np.linalg.solve(h + lam * np.eye(n_id), b - lam * identity)
    return identity + delta


def _free_form_identity(model, points, indep, options, smoothing: ShotSmoothing, frame_size, wts):
    v = model.n_vertices
    can = np.full((len(points), v, 3), np.nan)
    for t, r in enumerate(indep):
        if r is not None:
            can[t] = _fit.canonicalise(model, r, points[t])
    offsets = can - model.mean[None]
    identity = _trimmed_mean(offsets, smoothing.trim)
    identity = np.nan_to_num(identity, nan=0.0).reshape(-1)
    raw = []
    for t, r in enumerate(indep):
        if r is None:
            raw.append(None)
            continue
        raw.append(_fit.fit(model, points[t], options=options, identity=identity, frame_size=frame_size,
                            weights=wts[t]))
    return identity, raw


def _trimmed_mean(x: np.ndarray, trim: float) -> np.ndarray:
    """NaN-aware trimmed mean over axis 0 (trim = fraction cut at each end; 0 = mean)."""
    s = np.sort(x, axis=0)                   # NaN sort last
    n = np.isfinite(x).sum(0)
    lo = np.floor(trim * n).astype(int)
    hi = n - lo
    idx = np.arange(len(x)).reshape((-1,) + (1,) * (x.ndim - 1))
    keep = (idx >= lo) & (idx < hi)
    total = np.where(keep, np.nan_to_num(s), 0.0).sum(0)
    cnt = keep.sum(0)
    return np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)


# ---------------------------------------------------------------------------------------- smoothing
def _mean_rotation(rs: list[np.ndarray]) -> np.ndarray:
    """Chordal L2 mean: the rotation nearest (Frobenius) to the mean matrix."""
    u, _, vt = np.linalg.svd(np.mean(rs, axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _fill(series: np.ndarray, max_fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over interior NaN gaps of at most max_fill rows. Returns (filled, was_filled)."""
    out = series.copy()
    ok = np.isfinite(series).all(1)
    was = np.zeros(len(series), bool)
    idx = np.flatnonzero(ok)
    if len(idx) < 2 or max_fill <= 0:
        return out, was
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_fill + 1:
            f = (np.arange(a + 1, b) - a) / (b - a)
            out[a + 1:b] = series[a] * (1 - f[:, None]) + series[b] * f[:, None]
            was[a + 1:b] = True
    return out, was


def _smooth(model: MorphableModel, raw, identity, sm: ShotSmoothing, points, options: FitOptions, wts):
    t_len = len(raw)
    ok = [t for t, r in enumerate(raw) if r is not None]
    filled = np.zeros(t_len, bool)
    if sm.method == "none" or not ok:
        return list(raw), filled
    ref = _mean_rotation([raw[t].rotation for t in ok])
    first = raw[ok[0]]
    persp = first.camera_kind == "perspective"
    idx = _fit.scheme_indices(model, options.scheme)
    extent = _fit._extent(model.mean[idx[idx >= 0]])
    n_exp = first.expression.size
    rot = np.full((t_len, 3), np.nan)
    trans = np.full((t_len, 3 if persp else 2), np.nan)
    logs = np.full((t_len, 1), np.nan)
    expr = np.full((t_len, n_exp), np.nan)
    for t in ok:
        r = raw[t]
        rot[t] = _fit.rotation_log(ref.T @ r.rotation)
        face = extent if persp else r.scale * extent   # translation in face sizes (model units / pixels)
        trans[t] = r.translation[:3] / face if persp else r.translation[:2] / face
        logs[t] = np.log(r.scale)
        expr[t] = r.expression
    series = {"rotation": rot, "translation": trans, "scale": logs, "expression": expr}
    out = {}
    for name, x in series.items():
        x_f, was = _fill(x, sm.max_fill)
        filled |= was
        group = sm.offsets if (name == "expression" and _fit.is_free_form(model)) else getattr(sm, name)
        if name == "expression" and _fit.is_free_form(model):
            x_f = x_f / extent
        y = temporal.smooth(x_f, sm.fps, sm.method, group) if x_f.shape[1] else x_f
        if name == "expression" and _fit.is_free_form(model):
            y = y * extent
        out[name] = y
    frames: list[FitResult | None] = []
    blend = model.expression_kind == "blendshapes"
    for t in range(t_len):
        if raw[t] is None and not filled[t]:
            frames.append(None)
            continue
        if not (np.isfinite(out["rotation"][t]).all() and np.isfinite(out["translation"][t]).all()):
            frames.append(raw[t])
            continue
        base = raw[t] if raw[t] is not None else raw[min(ok, key=lambda k: abs(k - t))]
        rmat = ref @ _fit.rotation_exp(out["rotation"][t])
        scale = float(np.exp(out["scale"][t, 0]))
        e = out["expression"][t] if n_exp else base.expression
        if blend:
            e = np.clip(e, 0.0, 1.0)
        if persp:
            tr = out["translation"][t] * extent
            scale = base.focal / tr[2]
        else:
            tr = np.array([*(out["translation"][t] * scale * extent), 0.0])
        res = dataclasses.replace(base, identity=np.asarray(identity, np.float64), expression=e, rotation=rmat,
                                  translation=tr, scale=scale,
                                  notes=base.notes + (("filled",) if raw[t] is None else ("smoothed",)))
        frames.append(_rescore(model, res, points[t], options, wts[t]))
    return frames, filled


def _rescore(model: MorphableModel, r: FitResult, pts, options: FitOptions, w) -> FitResult:
    """Residuals and rms of a result at its own correspondences (NaN where the frame has no points)."""
    if pts is None:
        return dataclasses.replace(r, rms=float("nan"), residuals=np.full(len(r.residuals), np.nan))
    p = np.asarray(pts, np.float64)
    wt = _fit._weights(p, options, w)
    use = (r.correspondences >= 0) & (wt > 0)
    shape = _fit.shape_of(model, r)
    res = np.full(len(p), np.nan)
    res[use] = np.linalg.norm(r.pose.project(shape[r.correspondences[use]])[:, :2] - p[use, :2], axis=1)
    if _fit.is_free_form(model):  # free-form residual offsets absorb the points: score the rigid base
        base = model.mean + r.identity.reshape(-1, 3)
        res[use] = np.linalg.norm(r.pose.project(base[r.correspondences[use]])[:, :2] - p[use, :2], axis=1)
    rms = float(np.sqrt(np.average(res[use] ** 2, weights=wt[use]))) if use.any() else float("nan")
    return dataclasses.replace(r, rms=rms, residuals=res)
