"""Rate-distortion loss: bpp + lambda * D, with D one metric or a weighted mix of them."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lic.metrics import create_metric, metric_spec
from lic.metrics.loss import MetricLoss
from lic.metrics.objective import distortion_weights

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)
"""CompressAI's lambda grid for 255^2-scaled MSE (the registry's `mse` loss scale)."""


def estimated_bits(likelihoods: Mapping[str, Tensor]) -> Tensor:
    """sum(-log2 p) over every entropy model's likelihoods, in float32."""
    return sum(torch.log(p.float()).sum() for p in likelihoods.values()) / -math.log(2)


def estimated_bpp(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated bits per pixel: sum(-log2 p) / (N * H * W)."""
    return estimated_bits(likelihoods) / num_pixels


class RateDistortionLoss(nn.Module):
    """`loss = bpp + lmbda * sum_k w_k D_k(x, x_hat)`.

    Args:
        distortion: a metric name (`mse`, `lpips`, `mlclipsim`, `ms_ssim`, ...) or a mapping
            of names to weights, e.g. `{mse: 1.0, mlclipsim: 0.5}`. Each term is its registry
            loss (`MetricSpec.to_loss`: 255^2-scaled MSE, LPIPS distance, 1 - ML-CLIPSim, ...).
        lmbda: rate-distortion trade-off.
        metric_args: per-metric constructor arguments, e.g. `{mlclipsim: {pretrained: ...}}`.
        metrics: metrics built already (shared with validation), used instead of building.

    MS-SSIM has no gradient for reconstructions far from the target (pytorch_msssim clamps
    negative contrast terms to 0), so fine-tune MS-SSIM codecs from MSE ones (`init`), as
    CompressAI does.
    """

    def __init__(
        self,
        distortion: str | Mapping[str, float] = "mse",
        lmbda: float = 0.0130,
        metric_args: Mapping[str, Mapping] | None = None,
        metrics: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        weights = distortion_weights(distortion)
        metric_args, metrics = dict(metric_args or {}), dict(metrics or {})
        unknown = set(metric_args) - set(weights)
        if unknown:
            raise ValueError(f"metric_args for metrics not in the distortion: {sorted(unknown)}")
        self.lmbda, self.weights = float(lmbda), weights
        self.terms = nn.ModuleDict()
        for name in weights:
            metric = metrics.get(name) or create_metric(name, **metric_args.get(name, {}))
            self.terms[name] = MetricLoss(metric, metric_spec(name))

    def forward(
        self, output: Mapping[str, object], target: Tensor, lmbda: float | None = None
    ) -> dict[str, Tensor]:
        """Returns `loss`, `bpp`, `distortion` and one `d_<name>` entry per term; `lmbda`
        replaces the trade-off for this call (a variable-rate codec's level)."""
        n, _, h, w = target.shape
        out = {"bpp": estimated_bpp(output["likelihoods"], n * h * w)}
        x_hat = output["x_hat"]
        distortion = torch.zeros((), device=target.device)
        for name, term in self.terms.items():
            out[f"d_{name}"] = value = term(target, x_hat).float()
            distortion = distortion + self.weights[name] * value
        out["distortion"] = distortion
        out["loss"] = out["bpp"] + (self.lmbda if lmbda is None else lmbda) * distortion
        return out
