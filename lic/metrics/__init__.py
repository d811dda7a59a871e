"""Full-reference quality metrics: ML-CLIPSim, LPIPS, PSNR, MS-SSIM, MSE, and their registry.

The registry loads no torch; the metric classes are imported on first use (PEP 562), so
`from lic.metrics import list_metrics` stays instant for command-line help.
"""

from __future__ import annotations

import importlib

from lic.metrics.registry import create_metric, list_metrics, metric_spec, register_metric

_LAZY = {
    "ClipTower": "lic.metrics.clip_tower",
    "load_clip_tower": "lic.metrics.clip_tower",
    "LPIPS": "lic.metrics.lpips_metric",
    "MLCLIPSim": "lic.metrics.mlclipsim",
    "MSE": "lic.metrics.pixel",
    "MSSSIM": "lic.metrics.pixel",
    "PSNR": "lic.metrics.pixel",
    "MetricLoss": "lic.metrics.loss",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lic.metrics' has no attribute '{name}'")


__all__ = [
    "LPIPS",
    "MSE",
    "MSSSIM",
    "PSNR",
    "ClipTower",
    "MLCLIPSim",
    "MetricLoss",
    "create_metric",
    "list_metrics",
    "load_clip_tower",
    "metric_spec",
    "register_metric",
]
