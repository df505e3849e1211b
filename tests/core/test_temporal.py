"""Filters against analytic cases: noise reduction on a constant, no lag on steps and ramps, gaps."""
import numpy as np
import pytest

from facegraph.core.errors import InputError
from facegraph.core.temporal import (FilterOptions, kalman, one_euro, rts, second_difference_rms, smooth)

RATE = 25.0
OPTS = FilterOptions(noise=0.01, accel=0.3, jump=0.1, min_cutoff=0.3, beta=2.0)
METHODS = ["one-euro", "kalman", "rts"]


def _noisy(truth, sigma=0.01, seed=0):
    return truth + np.random.default_rng(seed).normal(0, sigma, truth.shape)


@pytest.mark.parametrize("method", METHODS)
def test_constant_signal_loses_its_jitter(method):
    x = _noisy(np.zeros(200))
    y = smooth(x, RATE, method, OPTS)[:, 0]
    assert second_difference_rms(y[20:]) < second_difference_rms(x[20:]) / 3
    assert np.abs(y[20:]).mean() < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_a_step_settles_within_one_frame(method):
    truth = np.where(np.arange(100) < 50, 0.0, 0.5)
    for seed in range(5):
        y = smooth(_noisy(truth, seed=seed), RATE, method, OPTS)[:, 0]
        assert np.all(np.abs(y[51:] - 0.5) < 0.04), (method, seed, y[48:56])
        assert np.all(np.abs(y[:49]) < 0.04)  # and nothing leaks backwards (RTS does not smooth across a cut)


@pytest.mark.parametrize("method", ["kalman", "rts"])
def test_a_fast_turn_is_followed_without_lag(method):
    """A head turning at 0.2 face sizes per frame (well above the jump threshold per frame)."""
    truth = np.clip((np.arange(80) - 30) * 0.2, 0, 6.0)
    y = smooth(_noisy(truth), RATE, method, OPTS)[:, 0]
    assert np.abs(y - truth)[30:60].max() < 0.2 * 1.01  # at most one frame of motion behind, once


def test_constant_velocity_has_no_steady_state_lag():
    truth = np.arange(200) * 0.004  # slow drift, below the jump threshold
    for f in (kalman, rts):
        y = f(_noisy(truth), RATE, OPTS)[:, 0]
        assert np.abs(y - truth)[50:].mean() < 0.006


def test_gaps_are_predicted_through_and_dimensions_are_independent():
    t = np.arange(60, dtype=float)
    x = np.stack([t * 0.01, np.zeros(60)], 1)
    x[20:25] = np.nan
    x[40:, 1] += 1.0  # a cut in dimension 1 only
    for method in METHODS:
        y = smooth(x, RATE, method, OPTS)
        assert np.isfinite(y).all()
        assert np.abs(y[45:, 1] - 1.0).max() < 1e-6  # the cut in dimension 1 restarts only dimension 1
        if method == "one-euro":
            assert np.all(y[20:25, 0] == y[19, 0])  # holds through the gap
        else:
            assert np.abs(y[22, 0] - 0.22) < 0.02  # predicted through the gap
            assert np.abs(y[45:, 0] - t[45:] * 0.01).max() < 0.02


def test_hold_dead_band():
    x = _noisy(np.zeros(100), 0.002)
    y = one_euro(x, RATE, FilterOptions(hold=0.01, noise=0.002, jump=0.1))[:, 0]
    assert len(np.unique(y[10:])) < 5


def test_options_and_methods_are_validated():
    with pytest.raises(InputError):
        FilterOptions(noise=0)
    with pytest.raises(InputError):
        smooth(np.zeros(5), RATE, "median")
    with pytest.raises(InputError):
        smooth(np.zeros(5), 0, "rts")
    assert np.array_equal(smooth(np.arange(4.0), RATE, "none")[:, 0], np.arange(4.0))
