"""Score a dataset with metrics (cached per metric configuration) and report agreement.

The score cache is read back as untrusted: with a size cap proportional to the dataset, and
checked to map 'ref|dist' to numbers whose SHA-256 the file records (a truncated, bit-flipped
or hand-edited cache is detected); anything else is warned about and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from lic.data.files import inside, read_json_capped, safe_name, write_text_atomic
from lic.errors import InputError
from lic.iqa.datasets import PairSet, ScoredSet
from lic.iqa.stats import bootstrap_interval, krcc, majority_accuracy, plcc, srcc, two_afc
from lic.metrics import create_metric, metric_spec
from lic.metrics.scoring import score_pairs

log = logging.getLogger(__name__)

CACHE_ENTRY_BYTES = 2 * 4096 + 64
"""A cache entry at its largest: '"<ref>|<dist>": <score>, ' with two paths of PATH_MAX.
Real entries are about 200 bytes, so entries of other datasets sharing the folder fit too."""
CACHE_SLACK = 1 << 20
"""Cap slack for a small dataset's cache (thousands of other entries)."""


def _cache_path(cache_dir: Path, metric: str, kwargs: Mapping) -> Path:
    config = json.dumps({"metric": metric, **kwargs}, sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode()).hexdigest()[:12]
    return inside(cache_dir, f"{safe_name(metric, 'metric')}-{digest}.json")


CACHE_FORMAT = 1


def _digest(scores: Mapping[str, float]) -> str:
    return hashlib.sha256(json.dumps(scores, sort_keys=True).encode()).hexdigest()


def read_cache(cache_file: Path, count: int) -> dict[str, float]:
    """The cached scores of `cache_file` ({} if none), read with a cap of `count` entries
    (the pairs to score) at their largest; one too large, not a mapping of 'ref|dist' to
    numbers, or not matching its recorded SHA-256 is warned about and recomputed ({})."""
    if not cache_file.is_file():
        return {}
    try:
        cache = read_json_capped(cache_file, CACHE_SLACK + CACHE_ENTRY_BYTES * count)
        if not isinstance(cache, dict) or cache.get("format") != CACHE_FORMAT:
            raise InputError(f"{cache_file}: not a lic score cache of format {CACHE_FORMAT}")
        scores = cache.get("scores")
        if not isinstance(scores, dict):
            raise InputError(f"{cache_file}: field 'scores' is not a mapping of 'ref|dist'")
        for key, score in scores.items():
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise InputError(f"{cache_file}: field {key!r} holds {score!r}, not a score")
        if cache.get("sha256") != _digest(scores):
            raise InputError(f"{cache_file}: scores do not match their SHA-256 (edited or corrupt)")
    except (InputError, OSError) as err:
        log.warning("%s; recomputing its scores", err)
        return {}
    return scores


def write_cache(cache_file: Path, scores: Mapping[str, float], root: Path) -> None:
    """The cache with its format and the SHA-256 of its scores; atomic (a kill never
    truncates it)."""
    record = {"format": CACHE_FORMAT, "sha256": _digest(scores), "scores": scores}
    write_text_atomic(cache_file, json.dumps(record), root)


def metric_scores(
    metric_name: str,
    pairs: Sequence[tuple[Path, Path]],
    metric_kwargs: Mapping | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, bool, list[str]]:
    """Scores of (ref, dist) pairs (NaN where a file failed), the metric's direction, and the
    errors. Scores already in the cache for this exact configuration are not recomputed."""
    kwargs = dict(metric_kwargs or {})
    cache_file = _cache_path(cache_dir, metric_name, kwargs) if cache_dir else None
    cache = read_cache(cache_file, len(pairs)) if cache_file else {}
    keys = [f"{r}|{d}" for r, d in pairs]
    todo = sorted(
        {(str(r), str(d)) for (r, d), k in zip(pairs, keys, strict=True) if k not in cache}
    )
    errors = []
    if todo:
        metric = create_metric(metric_name, **kwargs).to(device).eval()  # only when needed
        for row in score_pairs(metric, [(Path(r), Path(d)) for r, d in todo], device):
            if row.error is None:
                cache[f"{row.reference}|{row.distorted}"] = row.score
            else:
                errors.append(row.error)
        if cache_file:
            write_cache(cache_file, cache, cache_dir)
    scores = np.array([cache.get(k, math.nan) for k in keys], dtype=float)
    return scores, metric_spec(metric_name).lower_better, errors


def _afc_of_difference(difference: np.ndarray, p: np.ndarray) -> float:
    """2AFC from oriented score differences A - B (positive: the metric prefers A)."""
    return two_afc(difference, np.zeros_like(difference), p)


def _pair_row(dataset: PairSet, scores: np.ndarray, lower: bool, bootstrap: int) -> dict:
    n = len(dataset.pairs)
    a, b = scores[:n], scores[n:]
    p = np.array([pair[3] for pair in dataset.pairs])
    ok = np.isfinite(a) & np.isfinite(b)
    difference = (b - a if lower else a - b)[ok]
    low, high = bootstrap_interval(_afc_of_difference, difference, p[ok], bootstrap)
    return {
        "n": int(ok.sum()),
        "n_failed": int((~ok).sum()),
        "2afc": _afc_of_difference(difference, p[ok]),
        "2afc_ci_low": low,
        "2afc_ci_high": high,
        "majority_acc": majority_accuracy(difference, np.zeros_like(difference), p[ok]),
    }


def _scored_row(dataset: ScoredSet, scores: np.ndarray, lower: bool, bootstrap: int) -> dict:
    target = np.array([s for _, _, s in dataset.items], dtype=float)
    ok = np.isfinite(scores)
    # orient both so that higher is better: correlations come out positive when good
    x = -scores[ok] if lower else scores[ok]
    y = target[ok] if dataset.higher_better else -target[ok]
    row = {"n": int(ok.sum()), "n_failed": int((~ok).sum())}
    for name, fn in (("srcc", srcc), ("plcc", plcc), ("krcc", krcc)):
        row[name] = fn(x, y)
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = bootstrap_interval(fn, x, y, bootstrap)
    return row


def evaluate(
    dataset: ScoredSet | PairSet,
    metrics: Sequence[str],
    metric_kwargs: Mapping[str, Mapping] | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
    bootstrap: int = 1000,
) -> list[dict]:
    """One row per metric: SRCC, PLCC, KRCC (+ 95% bootstrap intervals) for scored sets;
    2AFC (+ interval) and majority accuracy for pair sets."""
    rows = []
    for name in metrics:
        kwargs = (metric_kwargs or {}).get(name, {})
        if isinstance(dataset, PairSet):
            pairs = [(r, a) for r, a, _, _ in dataset.pairs] + [
                (r, b) for r, _, b, _ in dataset.pairs
            ]
        else:
            pairs = [(r, d) for r, d, _ in dataset.items]
        scores, lower, errors = metric_scores(name, pairs, kwargs, device, cache_dir)
        row_of = _pair_row if isinstance(dataset, PairSet) else _scored_row
        rows.append({"metric": name, **row_of(dataset, scores, lower, bootstrap), "errors": errors})
    return rows
