"""Temporal filters for per-frame measurements: online One-Euro and constant-velocity Kalman, offline
Rauch-Tung-Striebel smoothing. Pure numpy over series (T, D), NaN rows = missing frames.

None of them may lag a real move: One-Euro raises its cutoff with speed (Casiez, Roussel & Vogel, CHI 2012,
"1 Euro Filter"); all three treat a measurement further than ``jump`` from the prediction as a cut (an edit, a
whip pan, a re-detection): the state restarts there with the raw velocity, and the RTS backward pass never
smooths across it. ``jump`` is absolute (in the series' units) and set above anything a face does between two
frames, so ordinary motion is smoothed and only true discontinuities restart. An optional hold (dead band)
keeps the output still until the filtered value moves by more than ``hold``.

Missing samples (NaN rows): the Kalman filter and the RTS smoother predict through them with their
constant-velocity model; One-Euro holds its last estimate. (The shot code fills gaps before filtering.)

Units: whatever the series is in; the shot code feeds parameters normalised by face size, so one set of
defaults serves any resolution.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from .errors import InputError

SmoothMethod = Literal["none", "one-euro", "kalman", "rts"]
SMOOTH_METHODS: tuple[str, ...] = ("none", "one-euro", "kalman", "rts")


@dataclasses.dataclass(frozen=True)
class FilterOptions:
    """One set of knobs for every method.

    min_cutoff (Hz) / beta / d_cutoff (Hz): One-Euro. noise: measurement standard deviation; accel: process
    noise, the standard deviation of acceleration per second squared (Kalman / RTS, constant velocity: the
    smaller, the smoother); jump: a measurement further than this from the prediction is a cut, not noise;
    hold: dead band (0 = off).
    """

    min_cutoff: float = 0.5
    beta: float = 4.0
    d_cutoff: float = 1.0
    noise: float = 0.01
    accel: float = 0.5
    jump: float = 0.1
    hold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff", "noise", "accel", "jump"):
            if getattr(self, name) <= 0:
                raise InputError(f"filter option {name} must be positive, got {getattr(self, name)}")
        if self.beta < 0 or self.hold < 0:
            raise InputError("filter options beta and hold must be >= 0")


def _series(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"a series must be (T,) or (T, D), got {np.shape(x)}")
    return a


def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau * rate)


def one_euro(x: np.ndarray, rate: float, options: FilterOptions = FilterOptions()) -> np.ndarray:
    """One-Euro filter per dimension. x: (T, D) (NaN rows: held). rate: samples per second.

    With the same jump gate as the Kalman filter: a dimension whose measurement lands more than ``jump``
    from its estimate restarts there (with the raw velocity of its last two
    measurements), so a cut or a whip pan is followed at once instead of being eased into."""
    a = _series(x)
    out = np.full_like(a, np.nan)
    prev = dprev = last = None
    for t in range(len(a)):
        xt = a[t]
        if not np.isfinite(xt).all():
            # a zero-order filter has no velocity of its own (its derivative is taken against its lagged
            # estimate, as in the reference design), so it holds through a gap
            out[t] = prev if prev is not None else np.nan
            continue
        if prev is None:
            prev, dprev = xt.copy(), np.zeros_like(xt)
        else:
            jump = np.abs(xt - prev) > options.jump
            dx = (xt - prev) * rate
            dprev = dprev + _alpha(options.d_cutoff, rate) * (dx - dprev)
            cutoff = options.min_cutoff + options.beta * np.abs(dprev)
            prev = prev + _alpha(cutoff, rate) * (xt - prev)
            if jump.any():
                prev = np.where(jump, xt, prev)
                dprev = np.where(jump, (xt - last) * rate, dprev)
        last = xt.copy()
        out[t] = prev
    return _hold(out, options.hold)


def _hold(y: np.ndarray, hold: float) -> np.ndarray:
    if hold <= 0:
        return y
    out = y.copy()
    last = None
    for t in range(len(y)):
        if not np.isfinite(y[t]).all():
            continue
        if last is not None and np.max(np.abs(y[t] - last)) < hold:
            out[t] = last
        else:
            last = y[t].copy()
    return out


@dataclasses.dataclass
class KalmanTrace:
    """What the forward pass keeps for RTS: predicted and filtered means/variances per frame and dimension
    (state [position, velocity]), and where each dimension's state restarted (cuts)."""

    x_pred: np.ndarray   # (T, D, 2)
    p_pred: np.ndarray   # (T, D, 2, 2)
    x_filt: np.ndarray
    p_filt: np.ndarray
    cuts: np.ndarray     # (T, D) bool: that dimension restarted at t


def _kalman_forward(a: np.ndarray, rate: float, o: FilterOptions) -> KalmanTrace:
    """Per-dimension constant-velocity Kalman filter, vectorised over dimensions; each dimension gates its
    own innovations (a jump in one coordinate restarts that coordinate only)."""
    t_len, d = a.shape
    dt = 1.0 / rate
    f = np.array([[1.0, dt], [0.0, 1.0]])
    q = o.accel ** 2 * np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
    r = o.noise ** 2
    p0 = np.diag([r, (10 * o.noise * rate) ** 2])  # unknown start velocity: loose prior
    xp = np.full((t_len, d, 2), np.nan)
    pp = np.zeros((t_len, d, 2, 2))
    xf = np.full((t_len, d, 2), np.nan)
    pf = np.zeros((t_len, d, 2, 2))
    cuts = np.zeros((t_len, d), bool)
    x = np.full((d, 2), np.nan)
    p = np.broadcast_to(p0, (d, 2, 2)).copy()
    started = np.zeros(d, bool)
    last_z = np.full(d, np.nan)
    last_t = np.full(d, -1)
    for t in range(t_len):
        z = a[t]
        x = x @ f.T
        p = f @ p @ f.T + q
        xp[t], pp[t] = x, p
        seen = np.isfinite(z)
        restart = seen & ~started
        if seen.any():
            s = p[:, 0, 0] + r
            innov = np.where(seen, z - x[:, 0], 0.0)
            restart |= seen & started & (np.abs(innov) > o.jump)
            upd = seen & ~restart
            k = p[:, :, 0] / s[:, None]
            x_u = x + k * innov[:, None]
            p_u = p - k[:, :, None] * p[:, 0:1, :]
            x = np.where(upd[:, None], x_u, x)
            p = np.where(upd[:, None, None], p_u, p)
            if restart.any():  # restart on the measurement, moving as the last two measurements did
                v = np.where(last_t >= 0, (z - last_z) * rate / np.maximum(t - last_t, 1), 0.0)
                v = np.where(started, v, 0.0)
                x[restart] = np.stack([z[restart], v[restart]], -1)
                p[restart] = p0
                cuts[t] = restart
                started |= restart
            last_z = np.where(seen, z, last_z)
            last_t = np.where(seen, t, last_t)
        xf[t], pf[t] = x, p
    return KalmanTrace(xp, pp, xf, pf, cuts)


def kalman(x: np.ndarray, rate: float, options: FilterOptions = FilterOptions()) -> np.ndarray:
    """Online constant-velocity Kalman filter per dimension, with innovation gating (see module doc)."""
    a = _series(x)
    tr = _kalman_forward(a, rate, options)
    return _hold(tr.x_filt[:, :, 0], options.hold)


def rts(x: np.ndarray, rate: float, options: FilterOptions = FilterOptions()) -> np.ndarray:
    """Offline Rauch-Tung-Striebel smoother (constant velocity) per dimension, not smoothing across cuts."""
    a = _series(x)
    tr = _kalman_forward(a, rate, options)
    dt = 1.0 / rate
    f = np.array([[1.0, dt], [0.0, 1.0]])
    xs = tr.x_filt.copy()
    for t in range(len(a) - 2, -1, -1):
        ok = ~tr.cuts[t + 1] & np.isfinite(tr.x_filt[t]).all(1) & np.isfinite(xs[t + 1]).all(1)
        if not ok.any():
            continue
        gain = np.einsum("dij,kj,dkl->dil", tr.p_filt[t], f, np.linalg.inv(tr.p_pred[t + 1]))
        upd = tr.x_filt[t] + np.einsum("dij,dj->di", gain, xs[t + 1] - tr.x_pred[t + 1])
        xs[t] = np.where(ok[:, None], upd, xs[t])
    return _hold(xs[:, :, 0], options.hold)


def smooth(x: np.ndarray, rate: float, method: str, options: FilterOptions = FilterOptions()) -> np.ndarray:
    """Dispatch: ``none`` returns the series (as float64 (T, D)); others per their functions."""
    if method not in SMOOTH_METHODS:
        raise InputError(f"smoothing must be one of {SMOOTH_METHODS}, got {method!r}")
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {rate}")
    if method == "none":
        return _series(x).copy()
    return {"one-euro": one_euro, "kalman": kalman, "rts": rts}[method](x, rate, options)


def second_difference_rms(x: np.ndarray) -> float:
    """RMS over frames and dimensions of x[t+1] - 2 x[t] + x[t-1] (jitter), NaN-aware."""
    a = _series(x)
    d2 = a[2:] - 2 * a[1:-1] + a[:-2]
    d2 = d2[np.isfinite(d2).all(1)]
    return float(np.sqrt(np.mean(d2 ** 2))) if len(d2) else float("nan")
