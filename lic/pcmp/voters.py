"""A panel of pretrained classifiers that vote on which of two distortions keeps more of
what each model sees in the reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lic.pcmp.defaults import CONSISTENCY_MODES, DEFAULT_VOTERS
from lic.tasks.classification import ClassifierInput
from lic.tasks.models import ModelRef

# Different families: residual, depthwise-efficient, transformer, modernised ConvNet.


def consistency(p_ref: Tensor, p_dist: Tensor, mode: str = "prob") -> Tensor:
    """Per image: how much of the model's reference prediction survives the distortion.

    prob: probability on the distorted image of the reference's top-1 class; top1: 1 if
    the top-1 class is unchanged; neg_kl: -KL(p_ref || p_dist).
    """
    if mode == "prob":
        return p_dist.gather(1, p_ref.argmax(1, keepdim=True))[:, 0]
    if mode == "top1":
        return (p_dist.argmax(1) == p_ref.argmax(1)).double()
    if mode == "neg_kl":
        return -(p_ref * (p_ref.clamp_min(1e-12).log() - p_dist.clamp_min(1e-12).log())).sum(1)
    raise ValueError(f"consistency mode must be one of {CONSISTENCY_MODES}, got '{mode}'")


def soft_label(consistency_a: Mapping[str, float], consistency_b: Mapping[str, float]) -> float:
    """p(A): the fraction of voters whose consistency is higher on A (a tie is half a vote)."""
    votes = [
        1.0
        if consistency_a[v] > consistency_b[v]
        else 0.5
        if consistency_a[v] == consistency_b[v]
        else 0.0
        for v in consistency_a
    ]
    return sum(votes) / len(votes)


class VoterPanel:
    """Classifiers by torchvision name (or `timm:NAME`); `weights='none'` gives random ones
    (tests only)."""

    def __init__(
        self,
        names: Sequence[str] = DEFAULT_VOTERS,
        weights: str = "DEFAULT",
        device: str | torch.device = "cpu",
    ) -> None:
        self.names, self.device = list(names), torch.device(device)
        self.models, self.inputs = {}, {}
        for name in self.names:
            ref = ModelRef.parse(name, weights)
            self.models[name] = ref.build(self.device, "the voter", "--voter-weights none")
            self.inputs[name] = ClassifierInput(ref.transform())

    @torch.inference_mode()
    def probabilities(self, images: Sequence[Tensor]) -> dict[str, Tensor]:
        """Softmax outputs (B, classes) of every voter, float64 on the CPU."""
        out = {}
        for name, model in self.models.items():
            prepared = [self.inputs[name].prepare(img).to(self.device) for img in images]
            out[name] = F.softmax(self.inputs[name].logits(model, prepared).double(), 1).cpu()
        return out
