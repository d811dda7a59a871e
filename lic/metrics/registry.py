"""Name -> metric registry in the manner of pyiqa: one object is a metric or, wrapped, a loss.

Every metric is an nn.Module called as `metric(reference, distorted) -> Tensor (N,)` and
knows `lower_better`. `create_metric(name, as_loss=True)` wraps it in a module that returns
a scalar to minimise, so training code never needs to know a metric's direction.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from lic.metrics.lpips_metric import LPIPS
from lic.metrics.mlclipsim import MLCLIPSim
from lic.metrics.pixel import MSE, MSSSIM, PSNR


@dataclass(frozen=True)
class MetricSpec:
    name: str
    factory: Callable[..., nn.Module]
    lower_better: bool
    to_loss: Callable[[Tensor], Tensor]
    """Maps per-image scores to per-image losses (lower is better, 0 at best when bounded)."""


_METRICS: dict[str, MetricSpec] = {}


def register_metric(
    name: str, *, lower_better: bool, to_loss: Callable[[Tensor], Tensor] | None = None
):
    """Decorator registering a factory (class or function) that builds the metric."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        loss = to_loss or ((lambda s: s) if lower_better else (lambda s: -s))
        _METRICS[name] = MetricSpec(name, factory, lower_better, loss)
        return factory

    return wrap


def list_metrics(pattern: str = "*") -> list[str]:
    return sorted(n for n in _METRICS if fnmatch.fnmatch(n, pattern))


def metric_spec(name: str) -> MetricSpec:
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}'; known: {', '.join(list_metrics())}") from None


class MetricLoss(nn.Module):
    """Batch-mean loss of a metric: `loss(x, x_hat) -> scalar` (e.g. 1 - ML-CLIPSim)."""

    def __init__(self, metric: nn.Module, spec: MetricSpec) -> None:
        super().__init__()
        self.metric, self.spec = metric, spec

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.spec.to_loss(self.metric(x, y)).mean()


def create_metric(name: str, as_loss: bool = False, **kwargs) -> nn.Module:
    """Build a registered metric; `as_loss=True` returns its scalar loss instead."""
    spec = metric_spec(name)
    metric = spec.factory(**kwargs)
    metric.lower_better = spec.lower_better
    metric.metric_name = name
    return MetricLoss(metric, spec) if as_loss else metric


def _one_minus(score: Tensor) -> Tensor:
    return 1.0 - score


register_metric("mse", lower_better=True)(MSE)
register_metric("psnr", lower_better=False)(PSNR)
register_metric("ms_ssim", lower_better=False, to_loss=_one_minus)(MSSSIM)
register_metric("lpips", lower_better=True)(LPIPS)
register_metric("mlclipsim", lower_better=False, to_loss=_one_minus)(MLCLIPSim)


@register_metric("clip_global", lower_better=False, to_loss=_one_minus)
def clip_global(**kwargs) -> MLCLIPSim:
    """Cosine of global CLIP embeddings only: ML-CLIPSim with alpha = 1."""
    if "alpha" in kwargs:
        raise ValueError("clip_global fixes alpha = 1; use 'mlclipsim' to choose alpha")
    return MLCLIPSim(alpha=1.0, **kwargs)
