"""MLICPlusPlus: the published MLIC++ (Jiang et al., ACM TOMM 2025; JiangWeibeta/MLIC,
folder MLIC++, commit 4aa9d2a) with the official module tree and state-dict keys.

y (M channels) is cut into `slice_num` slices; each slice is coded in two checkerboard
passes, anchors then non-anchors. Anchors see the hyperprior and (after the first slice)
the channel and linear-attention inter-slice contexts of the decoded slices; non-anchors
add the window-attention local context over the slice's anchors and the linear-attention
intra-slice context. LRP corrects each pass before the next one sees it. `forward`,
`compress` and `decompress` run one `_code_slices` loop with a different quantiser, so the
three agree by construction: rounding is y -> round(y - mean) + mean in all of them (the
official forward), and one rANS stream carries every slice and pass in the official order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor, nn

from lic.codecs.mlicpp.contexts import (
    LinearGlobalInterContext,
    LinearGlobalIntraContext,
    LocalContext,
    anchor_mask,
    keep,
    squeeze,
    unsqueeze,
    window_mask,
)
from lic.codecs.mlicpp.layers import (
    AnalysisTransform,
    ChannelContext,
    EntropyParameters,
    HyperAnalysis,
    HyperSynthesis,
    LatentResidualPrediction,
    SynthesisTransform,
)

SCALE_TABLE = (0.11, 256.0, 64)  # official get_scale_table(): min, max, levels (log-spaced)
GENERATIONS = ("current", "2023-09")
# Quantiser of one checkerboard pass: (slice index, scales, means, mask, anchor pass?) ->
# decoded values on the mask, zeros elsewhere.
Quantiser = Callable[[int, Tensor, Tensor, Tensor, bool], Tensor]


def official_scale_table() -> Tensor:
    """64 scales log-spaced over [0.11, 256], computed as the official get_scale_table does
    (double-precision logs), so the CDF tables and the indexes match it bit for bit."""
    low, high, levels = SCALE_TABLE
    return torch.exp(torch.linspace(math.log(low), math.log(high), levels))


class MLICPlusPlus(CompressionModel):
    """MLIC++ with N transform channels and M latent channels in `slice_num` slices of at
    least 32 channels. `generation="2023-09"` builds the layout of the README's "Old
    Weights" (LatentResidualPredictionOld, SynthesisTransformOld)."""

    codes_batches = False  # one y string per compress() call: one image at a time

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        slice_num: int = 10,
        context_window: int = 5,
        generation: str = "current",
    ) -> None:
        super().__init__()
        s = M // slice_num
        if s * slice_num != M or s < 32:
            raise ValueError(
                f"MLIC++ needs M={M} to split into slice_num={slice_num} slices of at least "
                "32 channels (the inter-slice attention has slice_ch * i // 32 heads)"
            )
        if generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}, got '{generation}'")
        old = generation == "2023-09"
        self.N, self.M, self.slice_num, self.slice_ch = N, M, slice_num, s
        self.context_window, self.generation = context_window, generation
        self.entropy_bottleneck = EntropyBottleneck(N)  # first, as CompressionModel(N) did
        self.g_a = AnalysisTransform(N, M)
        self.g_s = SynthesisTransform(N, M, old=old)
        self.h_a = HyperAnalysis(M, N)
        self.h_s = HyperSynthesis(M, N)
        self.gaussian_conditional = GaussianConditional(None)
        slices = range(slice_num)
        self.local_context = nn.ModuleList(LocalContext(s, context_window) for _ in slices)
        self.channel_context = nn.ModuleList(
            ChannelContext(s * i, s) if i else None for i in slices
        )
        self.global_inter_context = nn.ModuleList(
            LinearGlobalInterContext(s * i, s * 2, s * i // 32) if i else None for i in slices
        )
        self.global_intra_context = nn.ModuleList(
            LinearGlobalIntraContext(s) if i else None for i in slices
        )
        self.entropy_parameters_anchor = nn.ModuleList(
            EntropyParameters(M * 2 + (s * 6 if i else 0), s * 2) for i in slices
        )
        self.entropy_parameters_nonanchor = nn.ModuleList(
            EntropyParameters(M * 2 + (s * 10 if i else s * 2), s * 2) for i in slices
        )
        self.lrp_anchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, s, old=old) for i in slices
        )
        self.lrp_nonanchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, s, old=old) for i in slices
        )

    def update(self, scale_table: Tensor | None = None, force: bool = False, **kwargs) -> bool:
        """Entropy tables with the official Gaussian scale table by default."""
        table = official_scale_table() if scale_table is None else scale_table
        return super().update(scale_table=table, force=force, **kwargs)

    # ---- the multi-reference entropy model, shared by forward/compress/decompress --------
    def _code_slices(self, hyper: Tensor, quantise: Quantiser) -> Tensor:
        """Decode all slices in order; `quantise` codes (or decodes) each pass."""
        h, w = hyper.shape[-2:]
        anchor = anchor_mask(h, w, hyper.device)
        nonanchor = ~anchor
        windows = window_mask(anchor, self.context_window)
        hyper_means = hyper.chunk(2, 1)[1]
        decoded: list[Tensor] = []
        for i in range(self.slice_num):
            contexts = [hyper]
            if i:
                previous = torch.cat(decoded, dim=1)
                inter = self.global_inter_context[i](previous)
                channel = self.channel_context[i](previous)
                contexts = [inter, channel, hyper]
            scales, means = self.entropy_parameters_anchor[i](torch.cat(contexts, 1)).chunk(2, 1)
            anchors = quantise(i, keep(scales, anchor), keep(means, anchor), anchor, True)
            lrp = self.lrp_anchor[i](torch.cat([hyper_means, *decoded, anchors], dim=1))
            anchors = anchors + keep(lrp, anchor)
            local = [self.local_context[i](anchors, windows)]
            if i:
                local.append(self.global_intra_context[i](decoded[-1], anchors, anchor))
            params = self.entropy_parameters_nonanchor[i](torch.cat(local + contexts, dim=1))
            scales, means = params.chunk(2, 1)
            rest = quantise(i, keep(scales, nonanchor), keep(means, nonanchor), nonanchor, False)
            y_hat = anchors + rest
            lrp = self.lrp_nonanchor[i](torch.cat([hyper_means, *decoded, y_hat], dim=1))
            decoded.append(y_hat + keep(lrp, nonanchor))
        return torch.cat(decoded, dim=1)

    # ---- training / evaluation forward ---------------------------------------------------
    def forward(self, x: Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_offset = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - z_offset) + z_offset
        y_slices = y.chunk(self.slice_num, dim=1)
        likelihoods: list[Tensor] = []
        anchor_params: list[Tensor] = []

        def quantise(i: int, scales: Tensor, means: Tensor, mask: Tensor, _: bool) -> Tensor:
            if not anchor_params:  # anchor pass: keep its parameters for the likelihood
                anchor_params[:] = [scales, means]
            else:
                scales_a, means_a = anchor_params
                anchor_params.clear()
                _, lik = self.gaussian_conditional(y_slices[i], scales_a + scales, means_a + means)
                likelihoods.append(lik)
            return keep(quantize_ste(keep(y_slices[i], mask) - means) + means, mask)

        y_hat = self._code_slices(self.h_s(z_hat), quantise)
        return {
            "x_hat": self.g_s(y_hat),
            "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihoods},
        }

    # ---- real bitstreams ------------------------------------------------------------------
    def _tables(self) -> tuple[list, list, list]:
        gc = self.gaussian_conditional
        return (
            gc.quantized_cdf.tolist(),
            gc.cdf_length.reshape(-1).int().tolist(),
            gc.offset.reshape(-1).int().tolist(),
        )

    def compress(self, x: Tensor) -> dict:
        if x.shape[0] != 1:
            raise ValueError("MLIC++ compresses one image at a time")
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        y_slices = y.chunk(self.slice_num, dim=1)
        gc, encoder = self.gaussian_conditional, BufferedRansEncoder()
        tables = self._tables()

        def quantise(i: int, scales: Tensor, means: Tensor, _: Tensor, anchor: bool) -> Tensor:
            means = squeeze(means, anchor)
            symbols = gc.quantize(squeeze(y_slices[i], anchor), "symbols", means)
            indexes = gc.build_indexes(squeeze(scales, anchor))
            encoder.encode_with_indexes(
                symbols.reshape(-1).tolist(), indexes.reshape(-1).tolist(), *tables
            )
            return unsqueeze(symbols + means, anchor)

        self._code_slices(self.h_s(z_hat), quantise)
        return {"strings": [[encoder.flush()], z_strings], "shape": z.shape[-2:]}

    def decompress(self, strings: list, shape) -> dict:
        """x_hat clamped to [0, 1], as CompressAI's models return it."""
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        gc, decoder = self.gaussian_conditional, RansDecoder()
        decoder.set_stream(strings[0][0])
        tables = self._tables()

        def quantise(i: int, scales: Tensor, means: Tensor, _: Tensor, anchor: bool) -> Tensor:
            means = squeeze(means, anchor)
            indexes = gc.build_indexes(squeeze(scales, anchor))
            values = decoder.decode_stream(indexes.reshape(-1).tolist(), *tables)
            symbols = torch.tensor(values, dtype=means.dtype, device=means.device)
            return unsqueeze(symbols.reshape(means.shape) + means, anchor)

        y_hat = self._code_slices(self.h_s(z_hat), quantise)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}
