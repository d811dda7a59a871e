"""LPIPS (Zhang et al. 2018) from the `lpips` package, frozen and offline-aware."""

from __future__ import annotations

import warnings

import lpips
import torchvision.models as tvm
from torch import Tensor

from lic.metrics.frozen import FrozenNetMetric
from lic.weights import require_hub_file

# lpips builds its backbone with torchvision's ImageNet weights; these enums name the files.
_BACKBONE_WEIGHTS = {
    "alex": tvm.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": tvm.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


class LPIPS(FrozenNetMetric):
    """Learned perceptual distance (lower is better), shape (N,), inputs in [0, 1].

    `pretrained=False` gives a randomly initialised network, for tests only.
    """

    lower_better = True

    def __init__(self, net: str = "alex", pretrained: bool = True) -> None:
        if net not in _BACKBONE_WEIGHTS:
            raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONE_WEIGHTS)}, got '{net}'")
        if pretrained:
            require_hub_file(_BACKBONE_WEIGHTS[net].url, f"LPIPS-{net}'s ImageNet backbone")
        with warnings.catch_warnings():  # lpips still uses torchvision's `pretrained=` API
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(
                net=net, pretrained=pretrained, pnet_rand=not pretrained, verbose=False
            )
        super().__init__(model)
        self.net_name = net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"shapes differ: {tuple(x.shape)} and {tuple(y.shape)}")
        return self.net(x, y, normalize=True).flatten()
