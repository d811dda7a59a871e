"""MLIC++ convolutional building blocks: transforms, entropy parameters, channel context
and latent residual prediction (LRP), with the official module names and GELU activations.

Names (`analysis_transform`, `fushion`, `lrp_transform`, ...) are the official spellings so
released state dicts load unchanged; the arithmetic follows JiangWeibeta/MLIC (MLIC++ folder).
"""

from __future__ import annotations

from itertools import pairwise

from compressai.layers import GDN, conv1x1, conv3x3, subpel_conv3x3
from torch import Tensor, nn


class ResidualBlockWithStride(nn.Module):
    """Strided 3x3 conv, GELU, 3x3 conv, GDN; plus a strided 1x1 skip."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.act = nn.GELU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.gdn = GDN(out_ch)
        changes_shape = stride != 1 or in_ch != out_ch
        self.skip = conv1x1(in_ch, out_ch, stride=stride) if changes_shape else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.gdn(self.conv2(self.act(self.conv1(x))))
        out += x if self.skip is None else self.skip(x)  # in place: full-resolution maps
        return out


class ResidualBlock(nn.Module):
    """Two 3x3 convs each followed by GELU; identity (or 1x1) skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch)
        self.act = nn.GELU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.conv2(self.act(self.conv1(x))))
        return out + (x if self.skip is None else self.skip(x))


class ResidualBlockUpsample(nn.Module):
    """Sub-pixel up-sampling, GELU, 3x3 conv, inverse GDN; sub-pixel skip."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2) -> None:
        super().__init__()
        self.subpel_conv = subpel_conv3x3(in_ch, out_ch, upsample)
        self.act = nn.GELU()
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.upsample = subpel_conv3x3(in_ch, out_ch, upsample)

    def forward(self, x: Tensor) -> Tensor:
        out = self.igdn(self.conv(self.act(self.subpel_conv(x))))
        out += self.upsample(x)  # in place: full-resolution maps
        return out


class AnalysisTransform(nn.Module):
    """g_a: x (3 channels) -> y (M channels) at 1/16 of the resolution."""

    def __init__(self, N: int, M: int) -> None:
        super().__init__()
        self.analysis_transform = nn.Sequential(
            ResidualBlockWithStride(3, N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N),
            ResidualBlock(N, N),
            conv3x3(N, M, stride=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.analysis_transform(x)


class SynthesisTransform(nn.Module):
    """g_s: y_hat -> x_hat. `old=True` is the 2023-09 layout (first block M -> N with a
    1x1 skip) that the README's "Old Weights" need."""

    def __init__(self, N: int, M: int, old: bool = False) -> None:
        super().__init__()
        first = (
            (ResidualBlock(M, N), ResidualBlockUpsample(N, N))
            if old
            else (
                ResidualBlock(M, M),
                ResidualBlockUpsample(M, N),
            )
        )
        self.synthesis_transform = nn.Sequential(
            *first,
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N),
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N),
            ResidualBlock(N, N),
            subpel_conv3x3(N, 3, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.synthesis_transform(x)


def _gelu_stack(convs: list[nn.Module]) -> nn.Sequential:
    """conv, GELU, conv, GELU, ..., conv."""
    layers: list[nn.Module] = []
    for conv in convs[:-1]:
        layers += [conv, nn.GELU()]
    return nn.Sequential(*layers, convs[-1])


class HyperAnalysis(nn.Module):
    """h_a: y (M) -> z (N) at a quarter of y's resolution."""

    def __init__(self, M: int, N: int) -> None:
        super().__init__()
        self.reduction = _gelu_stack(
            [
                conv3x3(M, N),
                conv3x3(N, N),
                conv3x3(N, N, stride=2),
                conv3x3(N, N),
                conv3x3(N, N, stride=2),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(x)


class HyperSynthesis(nn.Module):
    """h_s: z_hat (N) -> hyper-parameters (2M: M "scales" then M "means" features)."""

    def __init__(self, M: int, N: int) -> None:
        super().__init__()
        wide = M * 3 // 2
        self.increase = _gelu_stack(
            [
                conv3x3(N, M),
                subpel_conv3x3(M, M, 2),
                conv3x3(M, wide),
                subpel_conv3x3(wide, wide, 2),
                conv3x3(wide, M * 2),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.increase(x)


class EntropyParameters(nn.Module):
    """1x1 fusion of all contexts into (scales, means): in -> 320 -> 256 -> 128 -> out."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fusion = _gelu_stack(
            [conv1x1(in_dim, 320), conv1x1(320, 256), conv1x1(256, 128), conv1x1(128, out_dim)]
        )

    def forward(self, params: Tensor) -> Tensor:
        return self.fusion(params)


class ChannelContext(nn.Module):
    """Local channel context from the decoded slices: in -> 192 -> 128 -> 4 * out (3x3)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fushion = _gelu_stack(
            [conv3x3(in_dim, 192), conv3x3(192, 128), conv3x3(128, out_dim * 4)]
        )

    def forward(self, decoded: Tensor) -> Tensor:
        return self.fushion(decoded)


class LatentResidualPrediction(nn.Module):
    """0.5 * tanh of a 3x3 stack: in -> 224 -> 128 -> out. `old=True` is the 2023-09 stack
    of four convs narrowing in quarter steps of |in - out|."""

    def __init__(self, in_dim: int, out_dim: int, old: bool = False) -> None:
        super().__init__()
        if old:
            diff = abs(out_dim - in_dim)
            widths = [in_dim, in_dim - diff // 4, in_dim - diff // 2, in_dim - diff * 3 // 4]
        else:
            widths = [in_dim, 224, 128]
        widths.append(out_dim)
        self.lrp_transform = _gelu_stack([conv3x3(a, b) for a, b in pairwise(widths)])

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * self.lrp_transform(x).tanh()
