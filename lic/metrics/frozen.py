"""Base class for metrics that wrap a pretrained network which must never train or be saved."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class FrozenNetMetric(nn.Module):
    """Holds `net` outside the module tree.

    The network is invisible to `parameters()` (so no optimizer or DDP ever sees it) and to
    `state_dict()` (so a codec checkpoint never carries CLIP or AlexNet weights), yet it
    follows `.to()`, `.cuda()` and `.half()` and stays in eval mode whatever `train()` says.
    """

    lower_better: bool

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.requires_grad_(False).eval()
        object.__setattr__(self, "net", net)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        super()._apply(fn, recurse)
        self.net._apply(fn, recurse)
        return self

    @property
    def net_dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype
