"""Forgetting-curve fits recover known half-lives from sampled recall."""

import math

import numpy as np
import pytest

from stmem_viz.analysis.fits import effective_length, exponential, fit_curve, power_law

GRID = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
CHANCE = 1 / 6


def _bernoulli_samples(curve, n_per_point: int, seed: int):
    rng = np.random.default_rng(seed)
    d = np.repeat(GRID, n_per_point)
    return d, (rng.random(d.shape) < curve(d)).astype(float)


@pytest.mark.parametrize("tau", [3.0, 12.0, 40.0])
def test_exponential_half_life_is_recovered_within_ten_percent(tau):
    d, y = _bernoulli_samples(lambda x: exponential(x, 0.8, tau, CHANCE), 600, seed=1)
    fit = fit_curve(d, y, CHANCE, n_boot=50)
    expected = tau * math.log(2)
    assert fit.best_fit == "exp"
    assert fit.half_life == pytest.approx(expected, rel=0.10)
    low, high = fit.half_life_ci
    assert low <= fit.half_life <= high


@pytest.mark.parametrize("b", [0.5, 1.0])
def test_power_law_half_life_is_recovered_within_ten_percent(b):
    d, y = _bernoulli_samples(lambda x: power_law(x, 0.8, b, CHANCE), 600, seed=2)
    fit = fit_curve(d, y, CHANCE, n_boot=50)
    expected = 2 ** (1 / b) - 1
    assert fit.best_fit == "power"
    assert fit.half_life == pytest.approx(expected, rel=0.10)


def test_curve_that_does_not_fall_within_the_grid_reports_no_half_life():
    d, y = _bernoulli_samples(lambda x: exponential(x, 0.8, 5000.0, CHANCE), 200, seed=3)
    fit = fit_curve(d, y, CHANCE, n_boot=30)
    assert fit.half_life is None
    assert fit.effective_length == 128.0


def test_effective_length_is_the_longest_distance_above_threshold():
    assert effective_length([0, 1, 2, 4, 8], [1.0, 0.95, 0.9, 0.7, 0.9], 0.85) == 2.0
    assert effective_length([0, 1], [0.5, 0.4], 0.85) is None


def test_fit_reports_both_aics_and_predicts_the_curve():
    d, y = _bernoulli_samples(lambda x: exponential(x, 0.8, 10.0, CHANCE), 300, seed=4)
    fit = fit_curve(d, y, CHANCE, n_boot=20)
    assert math.isfinite(fit.aic_exp) and math.isfinite(fit.aic_power)
    predicted = fit.predict(np.array([0.0, 1000.0]))
    assert predicted[0] == pytest.approx(CHANCE + 0.8, abs=0.05)
    assert predicted[1] == pytest.approx(CHANCE, abs=0.01)


def test_a_flat_power_law_has_an_infinite_half_life_not_an_overflow():
    from stmem_viz.analysis.fits import _half_life

    assert _half_life("power", (0.5, 1e-6)) == math.inf
    assert _half_life("power", (0.5, 1.0)) == pytest.approx(1.0)
