"""Rate-task evaluation: coders, the harness, Bjontegaard deltas and reports.

The harness is imported on first use (PEP 562), so `lic.evaluation.config` (EvalConfig,
read by `lic sweep` to check an eval section) loads no torch.
"""

from __future__ import annotations

from lic.lazy import lazy_exports

_LAZY = {
    "bd_metric": "lic.evaluation.bd",
    "bd_rate": "lic.evaluation.bd",
    "evaluate_cell": "lic.evaluation.rate_task",
    "run": "lic.evaluation.rate_task",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = ["bd_metric", "bd_rate", "evaluate_cell", "run"]
