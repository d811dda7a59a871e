"""Rate-task evaluation: coders, the harness, Bjontegaard deltas and reports."""

from lic.evaluation.bd import bd_metric, bd_rate
from lic.evaluation.rate_task import evaluate_cell, run

__all__ = ["bd_metric", "bd_rate", "evaluate_cell", "run"]
