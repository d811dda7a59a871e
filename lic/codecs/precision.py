"""Keep entropy models at full precision under autocast.

Under bf16/fp16 autocast, the entropy bottleneck's cumulative-logit matmuls and the Gaussian
CDFs would run in low precision and the likelihoods (the rate term) would drift. Each entropy
module gets two forward hooks: before its forward, autocast is switched off and its floating
inputs are raised to at least float32 (float64 stays float64); after it (also when the forward
raises), autocast is restored. Classes, state dicts and parameters stay CompressAI's own.
"""

from __future__ import annotations

import threading

import torch
from compressai.entropy_models import EntropyModel
from compressai.entropy_models.entropy_models_vbr import EntropyModelVbr
from torch import Tensor, nn

_MARK = "_lic_full_precision"
_open = threading.local()  # autocast contexts of the entropy forwards running in this thread


def _full_precision(value: object) -> object:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(torch.promote_types(value.dtype, torch.float32))
    return value


def _autocast_off(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
    context = torch.autocast(device, enabled=False)
    context.__enter__()
    _open.__dict__.setdefault("stack", []).append(context)
    return tuple(map(_full_precision, args)), {k: _full_precision(v) for k, v in kwargs.items()}


def _autocast_restore(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
    _open.stack.pop().__exit__(None, None, None)


def keep_entropy_models_fp32(model: nn.Module) -> nn.Module:
    """Hook every entropy module of `model` (once) so it runs at full precision; in place."""
    for module in model.modules():
        entropy = isinstance(module, (EntropyModel, EntropyModelVbr))
        if entropy and not getattr(module, _MARK, False):
            module.register_forward_pre_hook(_autocast_off, with_kwargs=True)
            module.register_forward_hook(_autocast_restore, with_kwargs=True, always_call=True)
            setattr(module, _MARK, True)
    return model
