"""IQA benchmark: dataset readers, agreement statistics, scoring with a cache, ablation."""

from lic.iqa.benchmark import evaluate, metric_scores
from lic.iqa.datasets import READERS, PairSet, ScoredSet, read_dataset
from lic.iqa.stats import bootstrap_interval, krcc, majority_accuracy, plcc, srcc, two_afc

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
