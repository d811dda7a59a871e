"""Task models from torchvision, timm or transformers: one factory for the harness's tasks,
PCMP's voters and the consistency task.

A model is named `NAME` (its family's default: torchvision for vision tasks, transformers for
VLM tasks) or `FAMILY:NAME` (`timm:convnext_tiny`); weights are a torchvision enum member
name, `DEFAULT` (pretrained) or `none` (random, seeded: pipeline checks and tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lic.weights import random_weights, require_hub_file


@dataclass(frozen=True)
class ModelRef:
    """One task model: family, name and weights, and how to build it."""

    family: str
    name: str
    weights: str = "DEFAULT"

    @classmethod
    def parse(cls, spec: str, weights: str, default_family: str = "torchvision") -> ModelRef:
        family, sep, name = spec.partition(":")
        if sep and family in FAMILIES:
            return cls(family, name, weights)
        return cls(default_family, spec, weights)

    @property
    def random(self) -> bool:
        return random_weights(self.weights)

    def weights_member(self):
        """The torchvision weights enum member, or None (random weights, other families)."""
        if not FAMILIES[self.family].weight_enums or self.random:
            return None
        import torchvision.models as tvm

        enum = tvm.get_model_weights(self.name)
        try:
            return enum.DEFAULT if self.weights == "DEFAULT" else enum[self.weights]
        except KeyError:
            raise ValueError(
                f"{self.name} has no weights '{self.weights}'; choose from "
                f"{[w.name for w in enum]} or 'none'"
            ) from None

    def transform(self):
        """The torchvision weights' transforms (sizes, mean/std), also for random weights;
        None for other families."""
        if not FAMILIES[self.family].weight_enums:
            return None
        import torchvision.models as tvm

        return (self.weights_member() or tvm.get_model_weights(self.name).DEFAULT).transforms()

    def build(self, device: torch.device, who: str, random_flag: str, **random_kwargs) -> nn.Module:
        """The eval-mode model on `device`. `random_flag` is the option that asks for random
        weights, named when pretrained weights are missing; `random_kwargs` shape a random
        torchvision model (e.g. its number of classes)."""
        return FAMILIES[self.family].build(self, device, who, random_flag, **random_kwargs)


def _torchvision(
    ref: ModelRef, device: torch.device, who: str, random_flag: str, **random_kwargs
) -> nn.Module:
    import torchvision.models as tvm

    member = ref.weights_member()
    if member is not None:
        require_hub_file(
            member.url,
            f"{who} {ref.name}",
            f"; or pass {random_flag} to check the pipeline with random weights "
            "(its numbers then mean nothing)",
        )
        return tvm.get_model(ref.name, weights=member).eval().to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random models are the same in every run
        return tvm.get_model(ref.name, weights=None, **random_kwargs).eval().to(device)


def _timm(ref: ModelRef, device: torch.device, *_, **__) -> nn.Module:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random models are the same in every run (cached references)
        return timm.create_model(ref.name, pretrained=not ref.random).eval().to(device)


def _transformers(ref: ModelRef, device: torch.device, *_, **__) -> nn.Module:
    from lic.tasks.vlm import load_vlm

    return load_vlm(ref.name, ref.weights, device)


@dataclass(frozen=True)
class ModelFamily:
    """What the factory knows of a model library."""

    build: Callable[..., nn.Module]
    weight_enums: bool
    """Weights are torchvision enum members whose transforms give the model's input sizes."""


FAMILIES: dict[str, ModelFamily] = {
    "torchvision": ModelFamily(_torchvision, weight_enums=True),
    "timm": ModelFamily(_timm, weight_enums=False),
    "transformers": ModelFamily(_transformers, weight_enums=False),
}
