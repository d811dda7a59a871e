"""Bjontegaard deltas between rate-quality curves, with piecewise cubic (PCHIP) interpolation.

BD-rate: mean difference of log-rate at equal quality over the overlapping quality range, as
a percentage (negative: the test curve needs less rate). BD-metric: mean difference of the
quality at equal log-rate over the overlapping rate range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x with duplicate x averaged (PCHIP needs strictly increasing x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    xs, inverse = np.unique(x[keep], return_inverse=True)
    ys = np.bincount(inverse, weights=y[keep]) / np.bincount(inverse)
    return xs, ys


def _mean_gap(x_ref, y_ref, x_test, y_test) -> float:
    """Mean of (y_test(x) - y_ref(x)) over the overlap of the two x ranges."""
    (xr, yr), (xt, yt) = _curve(x_ref, y_ref), _curve(x_test, y_test)
    if len(xr) < 2 or len(xt) < 2:
        return math.nan
    low, high = max(xr[0], xt[0]), min(xr[-1], xt[-1])
    if high <= low:
        return math.nan
    ref, test = PchipInterpolator(xr, yr), PchipInterpolator(xt, yt)
    return float((test.integrate(low, high) - ref.integrate(low, high)) / (high - low))


def bd_rate(rate_ref, metric_ref, rate_test, metric_test) -> float:
    """Percent rate change of the test curve at equal metric (NaN without overlap)."""
    gap = _mean_gap(metric_ref, np.log(rate_ref), metric_test, np.log(rate_test))
    return 100.0 * (math.exp(gap) - 1.0) if math.isfinite(gap) else math.nan


def bd_metric(rate_ref, metric_ref, rate_test, metric_test) -> float:
    """Metric change of the test curve at equal rate (NaN without overlap)."""
    return _mean_gap(np.log(rate_ref), metric_ref, np.log(rate_test), metric_test)
