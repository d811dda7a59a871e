"""MLIC++ (Jiang et al., "MLIC++: Linear complexity multi-reference entropy modeling for
learned image compression", ACM TOMM 2025) as a CompressAI `CompressionModel`.

The latent y (M channels) is coded in `slices` channel slices. Each slice is coded in two
checkerboard passes (anchors, then non-anchors), and its Gaussian parameters come from the
multi-reference entropy model:

- hyperprior: h_s(z_hat), shared by all slices;
- local channel context: convolutions over the slices already decoded;
- global inter-slice context: linear attention from the hyperprior (queries) to the
  slices already decoded (keys, values);
- local spatial context: checkerboard-masked convolution over the slice's anchors
  (non-anchor pass only);
- global intra-slice context: linear attention from the hyperprior to the slice's anchors
  (non-anchor pass only);
- latent residual prediction (LRP) corrects each decoded slice before later slices see it.

All attention is "efficient attention" (softmax over channels for queries, over positions
for keys), so cost is linear in the number of latent positions. Encoder and decoder run the
same `_slice_parameters` code on the same decoded values, so `decompress(compress(x))`
equals the eval-mode forward pass exactly. One rANS stream carries every slice and pass.

This is a re-implementation from the paper's description, not the authors' code: layer
widths are chosen by us, so parameter counts differ from the paper's 83.5M: the default
N=192, M=320, 10 slices has 52,946,028 parameters here (tests/test_mlicpp.py prints and
pins it).
"""

from __future__ import annotations

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import (
    AttentionBlock,
    CheckerboardMaskedConv2d,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models import CompressionModel
from torch import Tensor, nn

from lic.codecs.registry import register_codec


def checkerboard(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(anchor, non-anchor) boolean masks (1, 1, H, W): anchors where row + col is odd."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    anchor = ((rows + cols) % 2 == 1)[None, None]
    return anchor, ~anchor


class LinearAttention(nn.Module):
    """Efficient attention (Shen et al. 2021): O(H*W) in positions, optional key mask."""

    def __init__(self, query_channels: int, kv_channels: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = conv1x1(query_channels, dim)
        self.key = conv1x1(kv_channels, dim)
        self.value = conv1x1(kv_channels, dim)
        self.out = conv1x1(dim, dim)

    def forward(self, query: Tensor, kv: Tensor, kv_mask: Tensor | None = None) -> Tensor:
        b, _, h, w = query.shape
        split = (b, self.heads, -1, h * w)
        q = self.query(query).reshape(split).softmax(dim=2)
        k = self.key(kv).reshape(split)
        if kv_mask is not None:
            k = k.masked_fill(~kv_mask.reshape(1, 1, 1, h * w), float("-inf"))
        k = k.softmax(dim=3)
        v = self.value(kv).reshape(split)
        context = k @ v.transpose(2, 3)  # (b, heads, d, d): the cost is linear in h * w
        return self.out((context.transpose(2, 3) @ q).reshape(b, -1, h, w))


def _entropy_parameters(in_channels: int, slice_channels: int) -> nn.Sequential:
    hidden = max(4 * slice_channels, in_channels // 2)
    return nn.Sequential(
        conv1x1(in_channels, hidden),
        nn.GELU(),
        conv1x1(hidden, hidden // 2),
        nn.GELU(),
        conv1x1(hidden // 2, 2 * slice_channels),
    )


@register_codec("mlicpp")
class MLICPlusPlus(CompressionModel):
    """MLIC++ with N transform channels, M latent channels in `slices` slices.

    Defaults as in the paper (N=192, M=320, 10 slices). A small configuration for tests:
    `MLICPlusPlus(N=32, M=64, slices=4)`.
    """

    codes_batches = False  # compress()/decompress() code one image at a time

    def __init__(self, N: int = 192, M: int = 320, slices: int = 10, heads: int = 4) -> None:
        super().__init__()
        if M % slices:
            raise ValueError(f"M={M} must split into {slices} equal slices")
        self.N, self.M, self.slices = N, M, slices
        s = self.slice_channels = M // slices
        self.downsampling_factor = 64
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, 2),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, 2),
            AttentionBlock(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, 2),
            ResidualBlock(N, N),
            conv3x3(N, M, stride=2),
            AttentionBlock(M),
        )
        self.g_s = nn.Sequential(
            AttentionBlock(M),
            ResidualBlock(M, N),
            ResidualBlockUpsample(N, N, 2),
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2),
            AttentionBlock(N),
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2),
            ResidualBlock(N, N),
            subpel_conv3x3(N, 3, 2),
        )
        self.h_a = nn.Sequential(
            conv3x3(M, N),
            nn.GELU(),
            conv3x3(N, N),
            nn.GELU(),
            conv3x3(N, N, stride=2),
            nn.GELU(),
            conv3x3(N, N),
            nn.GELU(),
            conv3x3(N, N, stride=2),
        )
        self.h_s = nn.Sequential(
            conv3x3(N, N),
            nn.GELU(),
            subpel_conv3x3(N, N, 2),
            nn.GELU(),
            conv3x3(N, 3 * N // 2),
            nn.GELU(),
            subpel_conv3x3(3 * N // 2, 3 * N // 2, 2),
            nn.GELU(),
            conv3x3(3 * N // 2, 2 * M),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        ctx = 2 * s  # width of every context feature
        self.channel_context = nn.ModuleList(
            nn.Sequential(conv3x3(i * s, 4 * s), nn.GELU(), conv3x3(4 * s, ctx))
            for i in range(1, slices)
        )
        self.inter_context = nn.ModuleList(
            LinearAttention(2 * M, i * s, ctx, heads) for i in range(1, slices)
        )
        self.spatial_context = nn.ModuleList(
            CheckerboardMaskedConv2d(s, ctx, kernel_size=5, padding=2) for _ in range(slices)
        )
        self.intra_context = nn.ModuleList(
            LinearAttention(2 * M, s, ctx, heads) for _ in range(slices)
        )
        self.anchor_parameters = nn.ModuleList(
            _entropy_parameters(2 * M + (2 * ctx if i else 0), s) for i in range(slices)
        )
        self.nonanchor_parameters = nn.ModuleList(
            _entropy_parameters(2 * M + (2 * ctx if i else 0) + 2 * ctx, s) for i in range(slices)
        )
        self.lrp = nn.ModuleList(
            nn.Sequential(
                conv3x3(2 * M + s + (2 * ctx if i else 0), 4 * s), nn.GELU(), conv3x3(4 * s, s)
            )
            for i in range(slices)
        )

    # ---- the multi-reference entropy model ---------------------------------------------
    def _slice_contexts(self, i: int, hyper: Tensor, decoded: list[Tensor]) -> list[Tensor]:
        """Hyperprior, local channel and global inter-slice contexts of slice i."""
        if i == 0:
            return [hyper]
        previous = torch.cat(decoded, dim=1)
        return [
            hyper,
            self.channel_context[i - 1](previous),
            self.inter_context[i - 1](hyper, previous),
        ]

    def _anchor_parameters(self, i: int, contexts: list[Tensor]) -> tuple[Tensor, Tensor]:
        scales, means = self.anchor_parameters[i](torch.cat(contexts, dim=1)).chunk(2, 1)
        return scales, means

    def _nonanchor_parameters(
        self, i: int, contexts: list[Tensor], anchors_hat: Tensor, anchor: Tensor
    ) -> tuple[Tensor, Tensor]:
        spatial = self.spatial_context[i](anchors_hat)
        intra = self.intra_context[i](contexts[0], anchors_hat, kv_mask=anchor)
        features = torch.cat([*contexts, spatial, intra], dim=1)
        scales, means = self.nonanchor_parameters[i](features).chunk(2, 1)
        return scales, means

    def _refine(self, i: int, contexts: list[Tensor], y_hat: Tensor) -> Tensor:
        """Latent residual prediction: bounded correction of the decoded slice."""
        return y_hat + 0.5 * torch.tanh(self.lrp[i](torch.cat([*contexts, y_hat], dim=1)))

    # ---- training / eval forward ---------------------------------------------------------
    def forward(self, x: Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        hyper = self.h_s(z_hat)
        anchor, nonanchor = checkerboard(*y.shape[-2:], y.device)
        mode = "noise" if self.training else "dequantize"
        decoded, likelihoods = [], []
        for i, y_slice in enumerate(y.chunk(self.slices, dim=1)):
            contexts = self._slice_contexts(i, hyper, decoded)
            scales_a, means_a = self._anchor_parameters(i, contexts)
            anchors_hat = self.gaussian_conditional.quantize(y_slice, mode, means_a) * anchor
            scales_n, means_n = self._nonanchor_parameters(i, contexts, anchors_hat, anchor)
            rest_hat = self.gaussian_conditional.quantize(y_slice, mode, means_n) * nonanchor
            y_hat = anchors_hat + rest_hat
            scales = torch.where(anchor, scales_a, scales_n)
            means = torch.where(anchor, means_a, means_n)
            with torch.autocast(y.device.type, enabled=False):
                likelihood = self.gaussian_conditional._likelihood(
                    y_hat.float(), scales.float(), means.float()
                )
                if self.gaussian_conditional.use_likelihood_bound:
                    likelihood = self.gaussian_conditional.likelihood_lower_bound(likelihood)
            likelihoods.append(likelihood)
            decoded.append(self._refine(i, contexts, y_hat))
        x_hat = self.g_s(torch.cat(decoded, dim=1))
        return {
            "x_hat": x_hat,
            "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihoods},
        }

    # ---- real bitstreams ------------------------------------------------------------------
    def _tables(self) -> tuple[list, list, list]:
        gc = self.gaussian_conditional
        return gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()

    def compress(self, x: Tensor) -> dict:
        if x.shape[0] != 1:
            raise ValueError("MLIC++ compresses one image at a time")
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        hyper = self.h_s(z_hat)
        anchor, nonanchor = checkerboard(*y.shape[-2:], y.device)
        encoder = BufferedRansEncoder()
        decoded = []
        for i, y_slice in enumerate(y.chunk(self.slices, dim=1)):
            contexts = self._slice_contexts(i, hyper, decoded)
            scales_a, means_a = self._anchor_parameters(i, contexts)
            anchors_hat = self._encode(encoder, y_slice, scales_a, means_a, anchor)
            scales_n, means_n = self._nonanchor_parameters(i, contexts, anchors_hat, anchor)
            rest_hat = self._encode(encoder, y_slice, scales_n, means_n, nonanchor)
            decoded.append(self._refine(i, contexts, anchors_hat + rest_hat))
        return {"strings": [[encoder.flush()], z_strings], "shape": z.shape[-2:]}

    def _encode(
        self, encoder: BufferedRansEncoder, y: Tensor, scales: Tensor, means: Tensor, mask: Tensor
    ) -> Tensor:
        """Code y at `mask`; returns the decoded values there (zeros elsewhere)."""
        symbols = self.gaussian_conditional.quantize(y, "symbols", means)
        indexes = self.gaussian_conditional.build_indexes(scales)
        keep = mask.expand_as(y)
        encoder.encode_with_indexes(symbols[keep].tolist(), indexes[keep].tolist(), *self._tables())
        return self.gaussian_conditional.dequantize(symbols, means) * mask

    def decompress(self, strings: list, shape) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        hyper = self.h_s(z_hat)
        h, w = hyper.shape[-2:]
        anchor, nonanchor = checkerboard(h, w, hyper.device)
        decoder = RansDecoder()
        decoder.set_stream(strings[0][0])
        decoded = []
        for i in range(self.slices):
            contexts = self._slice_contexts(i, hyper, decoded)
            scales_a, means_a = self._anchor_parameters(i, contexts)
            anchors_hat = self._decode(decoder, scales_a, means_a, anchor)
            scales_n, means_n = self._nonanchor_parameters(i, contexts, anchors_hat, anchor)
            rest_hat = self._decode(decoder, scales_n, means_n, nonanchor)
            decoded.append(self._refine(i, contexts, anchors_hat + rest_hat))
        x_hat = self.g_s(torch.cat(decoded, dim=1)).clamp_(0, 1)
        return {"x_hat": x_hat}

    def _decode(self, decoder: RansDecoder, scales: Tensor, means: Tensor, mask: Tensor) -> Tensor:
        keep = mask.expand_as(scales)
        indexes = self.gaussian_conditional.build_indexes(scales)[keep]
        values = decoder.decode_stream(indexes.tolist(), *self._tables())
        symbols = torch.zeros_like(scales)
        symbols[keep] = torch.tensor(values, dtype=scales.dtype, device=scales.device)
        return self.gaussian_conditional.dequantize(symbols, means) * mask
