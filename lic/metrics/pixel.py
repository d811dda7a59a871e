"""Pixel-domain full-reference metrics on (N, 3, H, W) images in [0, 1], one score per image."""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor, nn

from lic.metrics.registry import MS_SSIM_MIN_SIDE


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"expected two (N, C, H, W) tensors of one shape, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )


class MSE(nn.Module):
    """Mean squared error per image, in [0, 1]^2 units (training scales it by 255^2)."""

    lower_better = True

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_pair(x, y)
        return (x - y).square().flatten(1).mean(dim=1)


class PSNR(nn.Module):
    """Peak signal-to-noise ratio in dB for peak `data_range`, capped at `max_db`.

    The cap keeps identical images finite, so means over a folder and the loss stay usable.
    Computed and returned in float64: float32 holds a 30 dB value only to 2e-6 dB, and lic's
    numbers are compared with CompressAI's to 1e-6 dB.
    """

    lower_better = False

    def __init__(self, data_range: float = 1.0, max_db: float = 100.0) -> None:
        super().__init__()
        self.data_range, self.max_db = data_range, max_db

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_pair(x, y)
        mse = (x.double() - y.double()).square().flatten(1).mean(dim=1)
        floor = self.data_range**2 * 10 ** (-self.max_db / 10)
        return 10 * torch.log10(self.data_range**2 / mse.clamp_min(floor))


class MSSSIM(nn.Module):
    """Multi-scale SSIM (Wang et al. 2003) through pytorch_msssim, as CompressAI reports it."""

    lower_better = False

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_pair(x, y)
        if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
            raise ValueError(
                f"MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} px, got {tuple(x.shape[-2:])}"
            )
        return ms_ssim(x, y, data_range=self.data_range, size_average=False)
