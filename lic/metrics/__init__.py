"""Full-reference quality metrics: ML-CLIPSim, LPIPS, PSNR, MS-SSIM, MSE, and their registry."""

from lic.metrics.clip_tower import ClipTower, load_clip_tower
from lic.metrics.lpips_metric import LPIPS
from lic.metrics.mlclipsim import MLCLIPSim
from lic.metrics.pixel import MSE, MSSSIM, PSNR
from lic.metrics.registry import (
    MetricLoss,
    create_metric,
    list_metrics,
    metric_spec,
    register_metric,
)

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
