"""Fitted forgetting curves: exponential and power-law decay towards chance, half-lives with
bootstrap confidence intervals, AIC model comparison and effective length.

Models, with the floor c fixed at chance level:

- exponential: R(d) = c + a exp(-d / tau)   (Ebbinghaus-style retention)
- power law:   R(d) = c + a (1 + d)^(-b)    (Wixted & Ebbesen, 1991)

The half-life is the distance at which recall has fallen halfway from its d = 0 value to chance:
tau ln 2 for the exponential and 2^(1/b) - 1 for the power law. AIC uses the Gaussian
least-squares form n ln(RSS / n) + 2k (Burnham & Anderson, 2002).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

log = logging.getLogger(__name__)


def exponential(d: np.ndarray, a: float, tau: float, chance: float) -> np.ndarray:
    return chance + a * np.exp(-d / tau)


def power_law(d: np.ndarray, a: float, b: float, chance: float) -> np.ndarray:
    return chance + a * (1.0 + d) ** (-b)


@dataclass
class CurveFit:
    """The fit of one recall curve, as a paper would report it.

    ``half_life`` is None when recall does not fall halfway to chance within the grid: the
    half-life is beyond the largest distance measured, not a number we can claim.
    """

    half_life: float | None
    half_life_ci: tuple[float | None, float | None]
    best_fit: str  # "exp" or "power"
    aic_exp: float
    aic_power: float
    params_exp: tuple[float, float]  # (a, tau)
    params_power: tuple[float, float]  # (a, b)
    effective_length: float | None
    chance: float
    grid_max: float

    def predict(self, d: np.ndarray, model: str | None = None) -> np.ndarray:
        """Fitted recall at distances ``d`` for ``model`` ("exp", "power"; default the best)."""
        model = model or self.best_fit
        d = np.asarray(d, dtype=float)
        if model == "exp":
            return exponential(d, *self.params_exp, self.chance)
        return power_law(d, *self.params_power, self.chance)


def _fit_one(kind: str, d: np.ndarray, y: np.ndarray, chance: float) -> tuple[tuple, float]:
    """Least-squares fit of one model; returns (params, AIC). Parameters stay positive."""
    a0 = max(float(y[d == d.min()].mean() - chance), 1e-3)
    span = max(float(d.max()), 1.0)
    if kind == "exp":
        function, starts, upper = exponential, [(a0, span / 4), (a0, span), (a0, 1.0)], 1e6
    else:
        function, starts, upper = power_law, [(a0, 0.5), (a0, 2.0), (a0, 0.1)], 50.0
    best, best_rss = (a0, upper), math.inf
    for start in starts:
        try:
            params, _ = curve_fit(
                lambda x, a, s: function(x, a, s, chance),
                d,
                y,
                p0=start,
                bounds=([0.0, 1e-6], [1.5, upper]),
                maxfev=4000,
            )
        except (RuntimeError, ValueError) as error:
            log.debug("%s fit from %s failed: %s", kind, start, error)
            continue
        rss = float(np.sum((function(d, *params, chance) - y) ** 2))
        if rss < best_rss:
            best, best_rss = tuple(float(p) for p in params), rss
    n = len(y)
    aic = n * math.log(max(best_rss, 1e-12) / n) + 2 * 2
    return best, aic


def _half_life(kind: str, params: tuple[float, float]) -> float:
    if kind == "exp":
        return params[1] * math.log(2.0)
    exponent = 1.0 / params[1]
    return math.inf if exponent > 1000 else 2.0**exponent - 1.0  # b near 0: no decay


def effective_length(
    distances: Sequence[float], recall: Sequence[float], threshold: float = 0.85
) -> float | None:
    """The longest distance up to which mean recall stays at or above ``threshold``.

    Returns None when recall is below the threshold already at the smallest distance.
    """
    order = np.argsort(distances)
    longest = None
    for d, r in zip(np.asarray(distances)[order], np.asarray(recall)[order], strict=True):
        if r < threshold:
            break
        longest = float(d)
    return longest


def fit_curve(
    distances: Sequence[float],
    values: Sequence[float],
    chance: float,
    threshold: float = 0.85,
    n_boot: int = 200,
    seed: int = 0,
) -> CurveFit:
    """Fit both models to per-sample recall values (0/1 correctness or probabilities).

    Args:
        distances: [n] the distance of each sample.
        values: [n] the recall of each sample.
        chance: the floor both models decay to (e.g. 1/6 for six locations).
        threshold: recall level that defines the effective length.
        n_boot: bootstrap resamples (within each distance) for the half-life CI.
    """
    d = np.asarray(distances, dtype=float)
    y = np.asarray(values, dtype=float)
    grid = np.unique(d)
    means = np.array([y[d == g].mean() for g in grid])
    params_exp, aic_exp = _fit_one("exp", d, y, chance)
    params_power, aic_power = _fit_one("power", d, y, chance)
    best = "exp" if aic_exp <= aic_power else "power"
    best_params = params_exp if best == "exp" else params_power
    grid_max = float(grid.max())

    def within_grid(half: float) -> float | None:
        return half if half <= grid_max else None

    half = within_grid(_half_life(best, best_params))
    if means[0] - chance <= 0.05:
        half = None  # recall starts at chance: there is nothing to forget
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(d == g) for g in grid]
    boots = []
    for _ in range(n_boot):
        index = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        params, _ = _fit_one(best, d[index], y[index], chance)
        boots.append(_half_life(best, params))
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
    ci = (within_grid(float(low)), within_grid(float(high)))
    return CurveFit(
        half_life=half,
        half_life_ci=ci,
        best_fit=best,
        aic_exp=aic_exp,
        aic_power=aic_power,
        params_exp=params_exp,
        params_power=params_power,
        effective_length=effective_length(grid, means, threshold),
        chance=chance,
        grid_max=grid_max,
    )
