"""Pixel-domain full-reference metrics on (N, 3, H, W) images in [0, 1], one score per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, per scale
SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 1-D Gaussian, computed in float32 as pytorch_msssim does (its values,
    cast to the input's dtype, are the ones CompressAI's MS-SSIM uses)."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(maps: Tensor, window: Tensor) -> Tensor:
    """Valid separable Gaussian filtering of every channel: rows, then columns."""
    k, taps = maps.shape[1], window.numel()
    maps = F.conv2d(maps, window.view(1, 1, taps, 1).expand(k, 1, taps, 1), groups=k)
    return F.conv2d(maps, window.view(1, 1, 1, taps).expand(k, 1, 1, taps), groups=k)


BAND_PIXELS = 64 * 768
"""Map pixels (over the batch) blurred at once without autograd on the CPU: 64 rows of a
Kodak image keep the working set in cache (2 cores: 30 ms an image and 32 MB, against 43 ms
and 150 MB unbanded). With autograd, or on a GPU, a scale is one band: bands would save
their overlapping rows for backward and multiply kernel launches."""


def _mean_maps(
    x: Tensor, y: Tensor, window: Tensor, c: tuple[float, float], ssim: bool, banded: bool
) -> Tensor:
    """Per (image, channel) mean of the contrast-structure map (`ssim`: the SSIM map) of
    one scale, in bands of rows when `banded` (valid filtering: a band reads `taps - 1`
    rows more than it gives); summed in at least float32 (a float16 sum overflows)."""
    (c1, c2), channels, taps = c, x.shape[1], window.numel()
    rows, cols = x.shape[2] - taps + 1, x.shape[3] - taps + 1
    band = max(1, BAND_PIXELS // max(1, x.shape[0] * cols)) if banded else rows
    total = x.new_zeros(x.shape[:2], dtype=torch.promote_types(x.dtype, torch.float32))
    for top in range(0, rows, band):
        a, b = x[:, :, top : top + band + taps - 1], y[:, :, top : top + band + taps - 1]
        stats = _blur(torch.cat([a, b, a * a, b * b, a * b], dim=1), window)
        mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)
        mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
        cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
        if ssim:
            cs_map = ((2 * mu_xy + c1) / (mu_xx + mu_yy + c1)) * cs_map
        total = total + cs_map.flatten(2).sum(-1, dtype=total.dtype)
    return (total / (rows * cols)).to(x.dtype)


def ms_ssim(x: Tensor, y: Tensor, window: Tensor, data_range: float = 1.0) -> Tensor:
    """MS-SSIM per image of (N, C, H, W) tensors: pytorch_msssim's `ms_ssim(...,
    size_average=False)` (CompressAI's metric) to float rounding, faster: a scale's five
    local statistics are blurred in one grouped convolution (on the CPU without autograd, in
    bands of rows: 3.5x faster in a fifth of the memory, `BAND_PIXELS`)."""
    c = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    window, last = window.to(x.device, x.dtype), len(MS_SSIM_WEIGHTS) - 1
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    banded = x.device.type == "cpu" and not needs_grad
    scales = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        scales.append(torch.relu(_mean_maps(x, y, window, c, level == last, banded)))
        padding = [side % 2 for side in x.shape[2:]]
        x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    weights = x.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1, 1)
    return torch.prod(torch.stack(scales) ** weights, dim=0).mean(1)


class MSSSIM(nn.Module):
    """Multi-scale SSIM (Wang et al. 2003) as CompressAI reports it (pytorch_msssim's
    definition: 11-tap Gaussian, sigma 1.5, valid filtering, five scales)."""

    lower_better = False

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range
        self.register_buffer("window", gaussian_window(), persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_pair(x, y)
        if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
            raise ValueError(
                f"MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} px, got {tuple(x.shape[-2:])}"
            )
        return ms_ssim(x, y, self.window, self.data_range)
