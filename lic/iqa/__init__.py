"""IQA benchmark: dataset readers, agreement statistics, scoring with a cache, ablation.

The readers load instantly; scoring and statistics import torch/scipy on first use (PEP 562).
"""

from __future__ import annotations

import importlib

from lic.iqa.datasets import READERS, PairSet, ScoredSet, read_dataset

_LAZY = {
    "evaluate": "lic.iqa.benchmark",
    "metric_scores": "lic.iqa.benchmark",
    **{
        name: "lic.iqa.stats"
        for name in ("bootstrap_interval", "krcc", "majority_accuracy", "plcc", "srcc", "two_afc")
    },
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lic.iqa' has no attribute '{name}'")


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
