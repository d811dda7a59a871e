"""Bjontegaard deltas between rate-quality curves, with piecewise cubic (PCHIP) interpolation.

BD-rate: mean difference of log-rate at equal quality over the overlapping quality range, as
a percentage (negative: the test curve needs less rate). BD-metric: mean difference of the
quality at equal log-rate over the overlapping rate range.

Noisy curves. BD-rate integrates log-rate as a function of quality, so it needs that inverse:
the quality of each curve must be strictly monotone in rate (after sorting by rate). A curve
that zig-zags (a small test set, a codec whose quality dips between two points) has no such
function, and sorting its points by quality would integrate a curve that does not exist, so
`bd_rate` raises ValueError naming the curve and its points. `bd_metric` integrates quality
as a function of log-rate and needs only distinct rates; it raises on repeated rates. The
reference implementation, the `bjontegaard` package (FAU-LMS, 1.3), also refuses such
curves, less legibly: it hands the points in the given order to scipy's PCHIP, which raises
"x must be strictly increasing" on a quality axis that is not (and it asserts the curve's
direction when the points come in decreasing order). Reports catch the error and show n/a
with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def _points(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by rate, as (log-rate, quality)."""
    r, q = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
    if r.shape != q.shape:
        raise ValueError(f"{len(r)} rates but {len(q)} quality values")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    order = np.argsort(r[keep], kind="stable")
    return np.log(r[keep][order]), q[keep][order]


def _describe(log_rate: np.ndarray, quality: np.ndarray) -> str:
    return ", ".join(
        f"({math.exp(x):.4g}, {y:.4g})" for x, y in zip(log_rate, quality, strict=True)
    )


def _check_distinct_rates(name: str, log_rate: np.ndarray, quality: np.ndarray) -> None:
    if np.any(np.diff(log_rate) <= 0):
        raise ValueError(
            f"the {name} curve repeats a rate; BD needs distinct rates "
            f"(points (bpp, quality): {_describe(log_rate, quality)})"
        )


def _check_monotone(name: str, log_rate: np.ndarray, quality: np.ndarray) -> None:
    step = np.diff(quality)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise ValueError(
            f"the {name} curve's quality is not strictly monotone in rate, so BD-rate (rate "
            f"as a function of quality) is undefined (points (bpp, quality): "
            f"{_describe(log_rate, quality)})"
        )


def _mean_gap(x_ref: np.ndarray, y_ref: np.ndarray, x_test: np.ndarray, y_test: np.ndarray):
    """Mean of (y_test(x) - y_ref(x)) over the overlap of the two x ranges (NaN without one);
    x strictly monotone."""
    if len(x_ref) < 2 or len(x_test) < 2:
        return math.nan
    curves = []
    for x, y in ((x_ref, y_ref), (x_test, y_test)):
        order = np.argsort(x)
        curves.append((x[order], y[order]))
    (xr, yr), (xt, yt) = curves
    low, high = max(xr[0], xt[0]), min(xr[-1], xt[-1])
    if high <= low:
        return math.nan
    ref, test = PchipInterpolator(xr, yr), PchipInterpolator(xt, yt)
    return float((test.integrate(low, high) - ref.integrate(low, high)) / (high - low))


def bd_rate(rate_ref, metric_ref, rate_test, metric_test, higher_better: bool = True) -> float:
    """Percent rate change of the test curve at equal metric (NaN without overlap or with
    fewer than 2 points); ValueError when a curve's metric is not strictly monotone in rate
    or repeats a rate. `higher_better=False` for a distortion (LPIPS, KL): equal metric
    is still equal metric, but the curves are oriented so that better is up."""
    (lr_ref, q_ref), (lr_test, q_test) = (
        _points(rate_ref, metric_ref),
        _points(rate_test, metric_test),
    )
    for name, (lr, q) in (("reference", (lr_ref, q_ref)), ("test", (lr_test, q_test))):
        _check_distinct_rates(name, lr, q)
        _check_monotone(name, lr, q)
    sign = 1.0 if higher_better else -1.0
    gap = _mean_gap(sign * q_ref, lr_ref, sign * q_test, lr_test)
    return 100.0 * (math.exp(gap) - 1.0) if math.isfinite(gap) else math.nan


def bd_metric(rate_ref, metric_ref, rate_test, metric_test) -> float:
    """Metric change of the test curve at equal rate (NaN without overlap or with fewer than
    2 points); needs distinct rates only (ValueError otherwise)."""
    (lr_ref, q_ref), (lr_test, q_test) = (
        _points(rate_ref, metric_ref),
        _points(rate_test, metric_test),
    )
    for name, (lr, q) in (("reference", (lr_ref, q_ref)), ("test", (lr_test, q_test))):
        _check_distinct_rates(name, lr, q)
    return _mean_gap(lr_ref, q_ref, lr_test, q_test)
