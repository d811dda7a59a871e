"""Metric-task alignment: which fidelity metric predicts what a task model keeps?

From the per-image rows of a rate-task run (per_image.csv: every coded cell of a machine
task, each image's task outcome (`Task.outcomes`) and its `--align` metric values), for each
task, outcome and metric:

- `2afc`: over all pairs of decoded versions of the same image (any two coded cells:
  codecs, objectives, lambdas, baselines) whose outcomes differ, the share of pairs in which
  the metric prefers the version the task model does better on; a tie in the metric counts
  one half (outcomes within OUTCOME_TOLERANCE are equal). PCMP's question, asked of real
  codecs. Chance is 0.5.
- `srcc`: Spearman correlation of metric and outcome over all (image, cell) observations;
  `srcc_given_bpp`: the partial Spearman correlation given the cell's bpp, so that "both
  fall with the rate" is not what is measured; `krcc`: Kendall's tau-b.

Correlations are signed so that a positive value means the metric's better values go with
the task's better outcomes (a lower-is-better metric such as LPIPS, or outcome such as KL,
is negated first); a strictly monotone transform of a metric changes none of the numbers.
Each value has a 95% percentile bootstrap interval over images (every cell of an image drawn
together; `lic.evaluation.bootstrap.draw_blocks`, the run's seed), and `vs_psnr` is its
paired difference to PSNR's value on the same resamples. A resample counts an image as
often as it is drawn: the correlations are exactly those of the replicated observations
(weighted midranks), Kendall's on at most KRCC_RESAMPLES resamples (it is O(n log n) each).
The uncompressed cell is not a decoded version and takes no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

from lic.evaluation.bootstrap import LEVEL, draw_blocks, interval
from lic.evaluation.per_image import LABELS, align_column
from lic.metrics.registry import metric_info

STATISTICS = ("2afc", "srcc", "srcc_given_bpp", "krcc")
REFERENCE = "psnr"
"""Every metric's alignment is also given as a paired difference to this metric's."""
KRCC_RESAMPLES = 200
OUTCOME_TOLERANCE = 1e-9
"""Outcomes closer than this are equal (float noise: two KL values of 1e-17 nats)."""
CHUNK_ELEMENTS = 4_000_000  # resamples x observations held at once by the correlations
COLUMNS = [
    "task",
    "outcome",
    "metric",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "vs_psnr",
    "vs_psnr_ci_low",
    "vs_psnr_ci_high",
    "n_images",
    "n_cells",
    "n",
    "resamples",
    "weights",
]


@dataclass
class TaskValues:
    """One task's per-image values as (cells, images) arrays (NaN where an image failed or
    has no value), each oriented so that higher is better."""

    images: list[str]
    cells: list[tuple]
    outcomes: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    bpp: np.ndarray


def _number(value) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def gather(
    rows: Sequence[Mapping], task: str, outcomes: Sequence[str], metrics: Sequence[str]
) -> TaskValues:
    """The coded cells' rows of `task` as arrays (the uncompressed cell left out)."""
    rows = [r for r in rows if r["task"] == task and r["codec"] != "uncompressed"]
    labels = [tuple(str(r[k]) for k in LABELS) for r in rows]  # the cell of each row
    images = list(dict.fromkeys(str(r["image"]) for r in rows))
    cells = list(dict.fromkeys(labels))
    column = {image: i for i, image in enumerate(images)}
    row_of = {cell: c for c, cell in enumerate(cells)}
    names = [*outcomes, *(align_column(m) for m in metrics), "bpp"]
    arrays = {name: np.full((len(cells), len(images)), math.nan) for name in names}
    for r, cell in zip(rows, labels, strict=True):
        c, i = row_of[cell], column[str(r["image"])]
        for name in arrays:
            arrays[name][c, i] = _number(r.get(name))
    sign = {n: -1.0 if metric_info(n).lower_better else 1.0 for n in [*outcomes, *metrics]}
    return TaskValues(
        images,
        cells,
        {n: sign[n] * arrays[n] for n in outcomes},
        {m: sign[m] * arrays[align_column(m)] for m in metrics},
        arrays["bpp"],
    )


def pair_tallies(outcome: np.ndarray, metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (agreements, pairs) over the pairs of cells whose outcomes differ (by more
    than OUTCOME_TOLERANCE); a metric tie is half an agreement."""
    agree, pairs = np.zeros(outcome.shape[1]), np.zeros(outcome.shape[1])
    with np.errstate(invalid="ignore"):
        for a in range(len(outcome) - 1):
            d_outcome, d_metric = outcome[a] - outcome[a + 1 :], metric[a] - metric[a + 1 :]
            differ = np.abs(d_outcome) > OUTCOME_TOLERANCE
            valid = np.isfinite(d_outcome) & np.isfinite(d_metric) & differ
            score = np.where(d_metric == 0, 0.5, np.sign(d_metric) == np.sign(d_outcome))
            agree += np.where(valid, score, 0.0).sum(0)
            pairs += valid.sum(0)
    return agree, pairs


class WeightedRanks:
    """Midranks of one variable in a sample that holds observation k `w[k]` times, for many
    weight vectors at once: the ranks scipy's `rankdata` gives the replicated sample."""

    def __init__(self, values: np.ndarray) -> None:
        self.order = np.argsort(values, kind="stable")
        ordered = values[self.order]
        new = np.r_[True, ordered[1:] != ordered[:-1]]
        self.starts = np.flatnonzero(new)
        self.group = np.cumsum(new) - 1

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """(b, K) weights -> (b, K) midranks."""
        totals = np.add.reduceat(weights[:, self.order], self.starts, axis=1)
        midranks = np.cumsum(totals, axis=1) - totals + (totals + 1) / 2
        ranks = np.empty_like(weights, dtype=float)
        ranks[:, self.order] = midranks[:, self.group]
        return ranks


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (b, K) x and y, observation k counted weights[k]
    times (NaN when a variable is constant)."""
    total = weights.sum(1, keepdims=True)
    dx = x - (weights * x).sum(1, keepdims=True) / total
    dy = y - (weights * y).sum(1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (weights * dx * dy).sum(1)
        return cov / np.sqrt((weights * dx * dx).sum(1) * (weights * dy * dy).sum(1))


def partial(r_xy: np.ndarray, r_xz: np.ndarray, r_yz: np.ndarray) -> np.ndarray:
    """Partial correlation of x and y given z, from the three correlations."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def correlations(
    metric: np.ndarray, outcome: np.ndarray, bpp: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """SRCC and SRCC given bpp of observations (K,) under each row of (b, K) weights (NaN
    without observations)."""
    if not len(metric):
        nan = np.full(len(weights), math.nan)
        return {"srcc": nan, "srcc_given_bpp": nan.copy()}
    ranks = [WeightedRanks(v) for v in (metric, outcome, bpp)]
    step = max(1, CHUNK_ELEMENTS // max(len(metric), 1))
    parts: dict[str, list[np.ndarray]] = {"srcc": [], "srcc_given_bpp": []}
    for start in range(0, len(weights), step):
        w = weights[start : start + step].astype(float)
        rm, ro, rb = (rank(w) for rank in ranks)
        r_mo, r_mb, r_ob = (weighted_pearson(a, b, w) for a, b in ((rm, ro), (rm, rb), (ro, rb)))
        parts["srcc"].append(r_mo)
        parts["srcc_given_bpp"].append(partial(r_mo, r_mb, r_ob))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def kendall(metric: np.ndarray, outcome: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the replicated observations under each row of weights."""
    out = np.full(len(weights), math.nan)
    for b, row in enumerate(weights.astype(np.int64)):
        drawn = np.repeat(np.arange(len(metric)), row)
        if drawn.size > 1:
            out[b] = kendalltau(metric[drawn], outcome[drawn]).statistic
    return out


def statistics(
    values: TaskValues, outcome: str, metric: str, counts: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every statistic of (outcome, metric) on the full set (element 0) and on each resample
    of images (`counts` (B, images): elements 1..B): statistic -> (1 + B,) values; and the
    pairs (`2afc`) and observations (`obs`) they count."""
    o, m, bpp = values.outcomes[outcome], values.metrics[metric], values.bpp
    counts = np.vstack([np.ones(len(values.images)), counts])
    agree, pairs = pair_tallies(o, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"2afc": (counts @ agree) / (counts @ pairs)}
    finite = np.isfinite(o) & np.isfinite(m) & np.isfinite(bpp)
    image = np.broadcast_to(np.arange(len(values.images)), o.shape)[finite]
    weights = counts[:, image]
    out |= correlations(m[finite], o[finite], bpp[finite], weights)
    out["krcc"] = kendall(m[finite], o[finite], weights[: 1 + KRCC_RESAMPLES])
    sizes = {"2afc": int(pairs.sum()), "obs": int(finite.sum())}
    return out, sizes


def align_task(
    values: TaskValues, task: str, resamples: int, seed: int, weights: str = ""
) -> list[dict]:
    """alignment.csv's rows of one task: every outcome x metric x statistic."""
    counts = (
        np.vstack(list(draw_blocks(len(values.images), resamples, seed)))
        if resamples > 0 and values.images
        else np.zeros((0, len(values.images)))
    )
    rows = []
    for outcome in values.outcomes:
        stats = {m: statistics(values, outcome, m, counts) for m in values.metrics}
        reference = stats[REFERENCE][0] if REFERENCE in stats else {}
        for metric, (found, sizes) in stats.items():
            for name in STATISTICS:
                rows.append(
                    {"task": task, "outcome": outcome, "metric": metric, "statistic": name}
                    | _row(found[name], reference.get(name), metric)
                    | {"n_images": len(values.images), "n_cells": len(values.cells)}
                    | {"n": sizes["2afc" if name == "2afc" else "obs"]}
                    | {"resamples": len(found[name]) - 1, "weights": weights}
                )
    return rows


def _row(found: np.ndarray, reference: np.ndarray | None, metric: str) -> dict:
    """Value, interval, and the paired difference to the reference metric's."""
    low, high = interval(found[1:], LEVEL) if len(found) > 1 else (math.nan, math.nan)
    row = {"value": float(found[0]), "ci_low": low, "ci_high": high}
    if reference is None or metric == REFERENCE:
        return row | dict.fromkeys(("vs_psnr", "vs_psnr_ci_low", "vs_psnr_ci_high"), math.nan)
    diff = found - reference
    d_low, d_high = interval(diff[1:], LEVEL) if len(diff) > 1 else (math.nan, math.nan)
    return row | {"vs_psnr": float(diff[0]), "vs_psnr_ci_low": d_low, "vs_psnr_ci_high": d_high}


def alignment(
    rows: Sequence[Mapping],
    outcomes: Mapping[str, Sequence[str]],
    metrics: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    weights: str = "",
) -> list[dict]:
    """alignment.csv's rows: per task of `outcomes` (task -> its outcome columns) found in
    the per-image `rows`, every outcome x `metrics` x STATISTICS with intervals over
    `resamples` resamples of the images; `weights` says what the metrics' networks were
    (`alignment_report.networks_note`)."""
    out = []
    tasks = dict.fromkeys(r["task"] for r in rows if r["task"] in outcomes)
    for task in tasks:
        values = gather(rows, task, outcomes[task], metrics)
        if values.cells:  # (a task whose every coded cell failed has nothing to align)
            out += align_task(values, task, resamples, seed, weights)
    return out
