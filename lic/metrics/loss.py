"""A metric as a training loss (the torch half of the registry, kept out of its import path)."""

from __future__ import annotations

from torch import Tensor, nn

from lic.metrics.registry import MetricSpec


class MetricLoss(nn.Module):
    """Batch-mean loss of a metric: `loss(x, x_hat) -> scalar` (e.g. 1 - ML-CLIPSim)."""

    def __init__(self, metric: nn.Module, spec: MetricSpec) -> None:
        super().__init__()
        self.metric, self.spec = metric, spec

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.spec.to_loss(self.metric(x, y)).mean()
