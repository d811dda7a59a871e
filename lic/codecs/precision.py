"""Keep entropy models in float32 under autocast.

Under bf16/fp16 autocast, the entropy bottleneck's cumulative-logit matmuls and the Gaussian
CDFs would run in low precision and the likelihoods (the rate term) would drift. Each entropy
module of a codec is given a float32 subclass of its own type: no new state, so state dicts
are unchanged and CompressAI's own classes still load them.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn


def _float32(*tensors: Tensor | None) -> list[Tensor | None]:
    return [t.float() if t is not None else None for t in tensors]


class Float32EntropyBottleneck(EntropyBottleneck):
    def forward(self, x: Tensor, training: bool | None = None):
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float(), training)


class Float32GaussianConditional(GaussianConditional):
    def forward(
        self,
        inputs: Tensor,
        scales: Tensor,
        means: Tensor | None = None,
        training: bool | None = None,
    ):
        with torch.autocast(inputs.device.type, enabled=False):
            return super().forward(*_float32(inputs, scales, means), training)


_FLOAT32 = {
    EntropyBottleneck: Float32EntropyBottleneck,
    GaussianConditional: Float32GaussianConditional,
}


def keep_entropy_models_fp32(model: nn.Module) -> nn.Module:
    """Switch every entropy module of `model` to its float32 subclass, in place."""
    for module in model.modules():
        if type(module) in _FLOAT32:
            module.__class__ = _FLOAT32[type(module)]
    return model
