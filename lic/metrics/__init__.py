"""Full-reference quality metrics: ML-CLIPSim, LPIPS, PSNR, MS-SSIM, MSE, and their registry.

The registry loads no torch; the metric classes are imported on first use (PEP 562), so
`from lic.metrics import list_metrics` stays instant for command-line help.
"""

from __future__ import annotations

from lic.lazy import lazy_exports
from lic.metrics.registry import (
    MetricInfo,
    MetricSpec,
    create_metric,
    list_metrics,
    metric_info,
    metric_spec,
    register_metric,
)

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

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "LPIPS",
    "MSE",
    "MSSSIM",
    "PSNR",
    "ClipTower",
    "MLCLIPSim",
    "MetricInfo",
    "MetricLoss",
    "MetricSpec",
    "create_metric",
    "list_metrics",
    "load_clip_tower",
    "metric_info",
    "metric_spec",
    "register_metric",
]
