"""IQA benchmark: dataset readers, agreement statistics, scoring with a cache, ablation.

The readers load instantly; scoring and statistics import torch/scipy on first use (PEP 562).
"""

from __future__ import annotations

from lic.iqa.datasets import READERS, PairSet, ScoredSet, read_dataset
from lic.lazy import lazy_exports

_LAZY = {
    "evaluate": "lic.iqa.benchmark",
    "metric_scores": "lic.iqa.benchmark",
    **{
        name: "lic.iqa.stats"
        for name in ("bootstrap_interval", "krcc", "majority_accuracy", "plcc", "srcc", "two_afc")
    },
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "READERS",
    "PairSet",
    "ScoredSet",
    "bootstrap_interval",
    "evaluate",
    "krcc",
    "majority_accuracy",
    "metric_scores",
    "plcc",
    "read_dataset",
    "srcc",
    "two_afc",
]
