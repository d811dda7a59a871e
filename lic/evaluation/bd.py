"""Bjontegaard deltas between rate-quality curves (PCHIP, Akima or cubic-fit interpolation).

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

Methods. `method` picks the interpolant, as in the `bjontegaard` package: "pchip" (the
default, and the only one `bd_many` vectorises), "akima" (scipy's Akima1DInterpolator; a
straight line through 2 points) or "cubic" (a degree-3 least-squares polynomial through all
points, integrated exactly: the VCEG-M33 original). The package fits log10-rate, lic the
natural log; every method is linear in the fitted values and unchanged by scaling the
abscissa, so the numbers are the same (tests compare to 1e-9). lic fits the cubic on the
abscissa mapped to [-1, 1], the same polynomial with far less rounding: on a curve spanning
a narrow quality range the package's raw fit is off by a few parts per million (checked
against 50-digit arithmetic). Cubic needs 4 points per curve: through fewer, a cubic is
not unique (the package fits one anyway, with numpy's RankWarning, and its pick changes
with the scale of the rate axis). All three keep lic's checks above (distinct rates;
monotone quality for BD-rate), although the package's cubic would fit a zig-zag: a curve
that doubles back has no rate at a given quality to average.

Overlap. BD averages only where both curves have points: over the overlap of their quality
ranges (BD-rate) or log-rate ranges (BD-metric); nothing is extrapolated. `bd_overlap` gives
that interval and its share of the two curves' joint range; the package warns below
MIN_OVERLAP, where the average speaks for a narrow band of the curves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

METHODS = ("pchip", "cubic", "akima")
MIN_OVERLAP = 0.75
"""The `bjontegaard` package's warning threshold on the overlap fraction."""
CUBIC_POINTS = 4


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


def _check_method(method: str, n_points: Sequence[int]) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown BD method '{method}'; known: {', '.join(METHODS)}")
    if method == "cubic" and 2 <= min(n_points) < CUBIC_POINTS:
        raise ValueError(
            f"cubic BD needs {CUBIC_POINTS} points per curve (has {min(n_points)}): a cubic "
            "through fewer is not unique; use pchip or akima"
        )


def _integral(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Integral over [low, high] of the `method` interpolant of y(x), x strictly increasing
    (scipy is imported here: the harness's processes code images without it)."""
    from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

    if method == "cubic":  # fitted on [-1, 1]: the same polynomial, far less rounding
        mid, half = (x[0] + x[-1]) / 2, (x[-1] - x[0]) / 2
        antiderivative = np.polyint(np.polyfit((x - mid) / half, y, 3))
        ends = np.polyval(antiderivative, (np.array([low, high]) - mid) / half)
        return float(half * (ends[1] - ends[0]))
    if method == "akima" and len(x) > 2:
        return float(Akima1DInterpolator(x, y).integrate(low, high))
    if method == "akima":  # a line through 2 points: the trapezoid of its ends
        ends = np.interp([low, high], x, y)
        return float((high - low) * (ends[0] + ends[1]) / 2)
    return float(PchipInterpolator(x, y).integrate(low, high))


def _mean_gap(
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    method: str = "pchip",
):
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
    test, ref = _integral(xt, yt, low, high, method), _integral(xr, yr, low, high, method)
    return (test - ref) / (high - low)


def _checked(rate_ref, metric_ref, rate_test, metric_test, monotone: bool, method: str):
    """Both curves as (log-rate, quality) sorted by rate, after the checks of the module doc."""
    curves = (_points(rate_ref, metric_ref), _points(rate_test, metric_test))
    for name, (lr, q) in zip(("reference", "test"), curves, strict=True):
        _check_distinct_rates(name, lr, q)
        if monotone:
            _check_monotone(name, lr, q)
    _check_method(method, [len(lr) for lr, _ in curves])
    return curves


def bd_rate(
    rate_ref,
    metric_ref,
    rate_test,
    metric_test,
    higher_better: bool = True,
    method: str = "pchip",
) -> float:
    """Percent rate change of the test curve at equal metric (NaN without overlap or with
    fewer than 2 points); ValueError when a curve's metric is not strictly monotone in rate
    or repeats a rate. `higher_better=False` for a distortion (LPIPS, KL): equal metric
    is still equal metric, but the curves are oriented so that better is up."""
    (lr_ref, q_ref), (lr_test, q_test) = _checked(
        rate_ref, metric_ref, rate_test, metric_test, True, method
    )
    sign = 1.0 if higher_better else -1.0
    gap = _mean_gap(sign * q_ref, lr_ref, sign * q_test, lr_test, method)
    return 100.0 * (math.exp(gap) - 1.0) if math.isfinite(gap) else math.nan


def bd_metric(rate_ref, metric_ref, rate_test, metric_test, method: str = "pchip") -> float:
    """Metric change of the test curve at equal rate (NaN without overlap or with fewer than
    2 points); needs distinct rates only (ValueError otherwise)."""
    (lr_ref, q_ref), (lr_test, q_test) = _checked(
        rate_ref, metric_ref, rate_test, metric_test, False, method
    )
    return _mean_gap(lr_ref, q_ref, lr_test, q_test, method)


class Overlap(NamedTuple):
    """Where both curves have points on BD's integration axis, and its share of their joint
    range (the `bjontegaard` package's overlap; it warns below MIN_OVERLAP)."""

    low: float
    high: float
    fraction: float


def bd_overlap(rate_ref, metric_ref, rate_test, metric_test, axis: str = "quality") -> Overlap:
    """The overlap BD integrates over: `axis` "quality" (BD-rate; low/high in metric units)
    or "rate" (BD-metric; low/high in bpp, the fraction measured in log-rate, as BD
    integrates). (NaN, NaN, 0.0) when the ranges do not overlap."""
    if axis not in ("quality", "rate"):
        raise ValueError(f"axis must be 'quality' or 'rate', not '{axis}'")
    ranges = []
    for lr, q in (_points(rate_ref, metric_ref), _points(rate_test, metric_test)):
        x = q if axis == "quality" else lr
        if not len(x):
            return Overlap(math.nan, math.nan, 0.0)
        ranges.append((float(x.min()), float(x.max())))
    (lo_ref, hi_ref), (lo_test, hi_test) = ranges
    low, high = max(lo_ref, lo_test), min(hi_ref, hi_test)
    union = max(hi_ref, hi_test) - min(lo_ref, lo_test)
    if high <= low or union <= 0:
        return Overlap(math.nan, math.nan, 0.0)
    if axis == "rate":
        return Overlap(math.exp(low), math.exp(high), (high - low) / union)
    return Overlap(low, high, (high - low) / union)


# ---- many curve pairs at once (bootstrap resamples): the same numbers, vectorised --------
def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of scipy's PchipInterpolator (Fritsch-Carlson, with its
    one-sided three-point ends), for rows of strictly increasing x: (B, k) -> (B, k)."""
    h = np.diff(x, axis=1)
    m = np.diff(y, axis=1) / h
    if x.shape[1] == 2:
        return np.repeat(m, 2, axis=1)
    d = np.zeros_like(x)
    w1, w2 = 2 * h[:, 1:] + h[:, :-1], h[:, 1:] + 2 * h[:, :-1]
    flat = (np.sign(m[:, 1:]) != np.sign(m[:, :-1])) | (m[:, 1:] == 0) | (m[:, :-1] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 / m[:, :-1] + w2 / m[:, 1:]) / (w1 + w2)
        d[:, 1:-1] = np.where(flat, 0.0, 1.0 / harmonic)
    for end, (h0, h1, m0, m1) in (
        (0, (h[:, 0], h[:, 1], m[:, 0], m[:, 1])),
        (-1, (h[:, -1], h[:, -2], m[:, -1], m[:, -2])),
    ):
        edge = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        edge = np.where(np.sign(edge) != np.sign(m0), 0.0, edge)
        steep = (np.sign(m0) != np.sign(m1)) & (np.abs(edge) > 3 * np.abs(m0))
        d[:, end] = np.where(steep, 3 * m0, edge)
    return d


def _pchip_integral_to(x: np.ndarray, y: np.ndarray, d: np.ndarray, t: np.ndarray):
    """Integral of each row's PCHIP from x[:, 0] to t (B,), t within the row's range."""
    h = np.diff(x, axis=1)
    whole = h * (y[:, :-1] + y[:, 1:]) / 2 + h**2 * (d[:, :-1] - d[:, 1:]) / 12
    before = np.concatenate([np.zeros((len(x), 1)), np.cumsum(whole, axis=1)], axis=1)
    seg = np.clip((x <= t[:, None]).sum(1) - 1, 0, x.shape[1] - 2)[:, None]

    def at(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, seg, 1)[:, 0]

    hs = at(h)
    s = (t - at(x)) / hs
    s2, s3, s4 = s**2, s**3, s**4
    partial = hs * (
        at(y) * (s - s3 + s4 / 2)
        + hs * at(d) * (s2 / 2 - 2 * s3 / 3 + s4 / 4)
        + np.take_along_axis(y, seg + 1, 1)[:, 0] * (s3 - s4 / 2)
        + hs * np.take_along_axis(d, seg + 1, 1)[:, 0] * (s4 / 4 - s3 / 3)
    )
    return at(before) + partial


def _mean_gaps(x_ref, y_ref, x_test, y_test) -> np.ndarray:
    """`_mean_gap` for each row: x rows strictly monotone (sorted here), NaN without overlap."""
    curves = []
    for x, y in ((x_ref, y_ref), (x_test, y_test)):
        order = np.argsort(x, axis=1)
        curves.append((np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)))
    (xr, yr), (xt, yt) = curves
    low = np.maximum(xr[:, 0], xt[:, 0])
    high = np.minimum(xr[:, -1], xt[:, -1])
    ok = high > low
    gaps = np.full(len(xr), math.nan)
    if ok.any():
        lo, hi = low[ok], high[ok]
        integral = []
        for x, y in ((xr[ok], yr[ok]), (xt[ok], yt[ok])):
            d = _pchip_slopes(x, y)
            integral.append(_pchip_integral_to(x, y, d, hi) - _pchip_integral_to(x, y, d, lo))
        gaps[ok] = (integral[1] - integral[0]) / (hi - lo)
    return gaps


def bd_many(rate_ref, metric_ref, rate_test, metric_test, rate: bool, higher_better=True):
    """BD-rate (`rate` True, percent) or BD-metric of B curve pairs at once, rows of (B, k)
    arrays: the numbers of `bd_rate`/`bd_metric` row by row, NaN where they would raise or
    return NaN. Rows with a non-finite or non-positive value go through the scalar function."""
    arrays = [np.asarray(a, dtype=float) for a in (rate_ref, metric_ref, rate_test, metric_test)]
    out = np.full(len(arrays[0]), math.nan)
    clean = np.all([np.isfinite(a).all(1) for a in arrays], axis=0)
    clean &= (arrays[0] > 0).all(1) & (arrays[2] > 0).all(1)
    if arrays[0].shape[1] < 2 or arrays[2].shape[1] < 2:
        clean[:] = False
    curves = []
    for r, q in (arrays[:2], arrays[2:]):
        order = np.argsort(r, axis=1)
        lr, qs = np.log(np.take_along_axis(r, order, 1)), np.take_along_axis(q, order, 1)
        step = np.diff(qs, axis=1)
        clean &= (np.diff(lr, axis=1) > 0).all(1)
        if rate:
            clean &= (step > 0).all(1) | (step < 0).all(1)
        curves.append((lr, qs))
    (lr_ref, q_ref), (lr_test, q_test) = ((lr[clean], q[clean]) for lr, q in curves)
    if clean.any():
        if rate:
            sign = 1.0 if higher_better else -1.0
            gap = _mean_gaps(sign * q_ref, lr_ref, sign * q_test, lr_test)
            out[clean] = 100.0 * (np.exp(gap) - 1.0)
        else:
            out[clean] = _mean_gaps(lr_ref, q_ref, lr_test, q_test)
    for b in np.flatnonzero(~clean):  # the scalar path decides (and mostly refuses)
        with contextlib.suppress(ValueError):
            row = [a[b] for a in arrays]
            out[b] = bd_rate(*row, higher_better=higher_better) if rate else bd_metric(*row)
    return out
