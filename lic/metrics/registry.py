"""Name -> metric registry in the manner of pyiqa: one object is a metric or, wrapped, a loss.

Every metric is an nn.Module called as `metric(reference, distorted) -> Tensor (N,)` and
knows `lower_better`. `create_metric(name, as_loss=True)` wraps it in a module that returns
a scalar to minimise, so training code never needs to know a metric's direction.

Records are data: a built-in metric's factory is named as "module:attribute" and imported
only when the metric is built, so listing metrics (every `lic ... --help`) loads no torch.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass(frozen=True)
class MetricSpec:
    name: str
    factory: Callable[..., nn.Module] | str
    """The class or function that builds the metric, or its "module:attribute" path."""
    lower_better: bool
    to_loss: Callable[[Tensor], Tensor]
    """Maps per-image scores to per-image losses (lower is better, 0 at best when bounded)."""

    def build(self, **kwargs) -> nn.Module:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        return factory(**kwargs)


_METRICS: dict[str, MetricSpec] = {}


def register_metric(
    name: str, *, lower_better: bool, to_loss: Callable[[Tensor], Tensor] | None = None
):
    """Decorator registering a factory (class or function) that builds the metric."""

    def wrap(factory: Callable[..., nn.Module] | str) -> Callable[..., nn.Module] | str:
        if name in _METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        loss = to_loss or (_identity if lower_better else _negate)
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


def create_metric(name: str, as_loss: bool = False, **kwargs) -> nn.Module:
    """Build a registered metric; `as_loss=True` returns its scalar loss instead."""
    from lic.metrics.loss import MetricLoss

    spec = metric_spec(name)
    metric = spec.build(**kwargs)
    metric.lower_better = spec.lower_better
    metric.metric_name = name
    return MetricLoss(metric, spec) if as_loss else metric


def _identity(score: Tensor) -> Tensor:
    return score


def _negate(score: Tensor) -> Tensor:
    return -score


def _one_minus(score: Tensor) -> Tensor:
    return 1.0 - score


register_metric("mse", lower_better=True)("lic.metrics.pixel:MSE")
register_metric("psnr", lower_better=False)("lic.metrics.pixel:PSNR")
register_metric("ms_ssim", lower_better=False, to_loss=_one_minus)("lic.metrics.pixel:MSSSIM")
register_metric("lpips", lower_better=True)("lic.metrics.lpips_metric:LPIPS")
register_metric("mlclipsim", lower_better=False, to_loss=_one_minus)(
    "lic.metrics.mlclipsim:MLCLIPSim"
)
register_metric("clip_global", lower_better=False, to_loss=_one_minus)(
    "lic.metrics.mlclipsim:clip_global"
)
