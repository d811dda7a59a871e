"""Agreement of a metric with subjective (or machine) judgements."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit


def srcc(x: Sequence[float], y: Sequence[float]) -> float:
    return float(stats.spearmanr(x, y).statistic)


def krcc(x: Sequence[float], y: Sequence[float]) -> float:
    return float(stats.kendalltau(x, y).statistic)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic of the VQEG practice: (b1 - b2) / (1 + e^(-(x-b3)/|b4|)) + b2."""
    return (b1 - b2) * expit((x - b3) / abs(b4)) + b2


MIN_PLCC_POINTS = 5  # one more than the logistic's parameters


class LogisticFitWarning(RuntimeWarning):
    """The 4-parameter logistic did not converge: PLCC is NaN for these scores."""


def plcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation between the scores and the metric after the 4-parameter fit.

    When the fit does not converge, PLCC is NaN with a LogisticFitWarning: a linear Pearson
    in its place would be a different statistic under the same name (and a signed one).
    With fewer than `MIN_PLCC_POINTS` distinct metric values it is NaN too: four parameters
    pass through four points, so PLCC would be 1 by construction, and the fit's optimum is
    not unique (bootstrap resamples of small sets: their values depended on float rounding).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < MIN_PLCC_POINTS:
        return math.nan
    start = [y.max(), y.min(), float(np.median(x)), float(x.std()) or 1.0]
    if np.corrcoef(x, y)[0, 1] < 0:
        start[0], start[1] = start[1], start[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(logistic4, x, y, p0=start, maxfev=20000)
        except RuntimeError as err:
            warnings.warn(
                f"PLCC is NaN: the 4-parameter logistic fit did not converge ({err})",
                LogisticFitWarning,
                stacklevel=2,
            )
            return math.nan
    return float(stats.pearsonr(logistic4(x, *params), y).statistic)


def bootstrap_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    x,
    y,
    samples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over resampled (x, y) items."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(x), len(x))
        value = statistic(x[idx], y[idx])
        if math.isfinite(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def two_afc(
    score_a: Sequence[float],
    score_b: Sequence[float],
    p_a: Sequence[float],
    higher_better: bool = True,
) -> float:
    """Mean of p(A) where the metric prefers A, 1 - p(A) where it prefers B, 0.5 on ties."""
    a, b, p = (np.asarray(v, dtype=float) for v in (score_a, score_b, p_a))
    if not higher_better:
        a, b = -a, -b
    return float(np.mean(np.where(a > b, p, np.where(a < b, 1 - p, 0.5))))


def majority_accuracy(score_a, score_b, p_a, higher_better: bool = True) -> float:
    """Share of pairs with a majority (p != 0.5) where the metric picks the majority's side."""
    a, b, p = (np.asarray(v, dtype=float) for v in (score_a, score_b, p_a))
    if not higher_better:
        a, b = -a, -b
    decided = p != 0.5
    if not decided.any():
        return math.nan
    agree = np.where(a > b, p > 0.5, np.where(a < b, p < 0.5, False))
    return float(np.mean(agree[decided]))
