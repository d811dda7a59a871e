"""What a downstream task is to the rate-task harness.

A task reads its dataset in the official layout, prepares each image exactly as its model
expects (in [0, 1], before normalisation, so that the codec sees what the model would),
runs the model on batches of decoded images, and accumulates its metric. Accumulators hold
sums and lists only, so states from several ranks merge into exactly the single-run result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lic.data.images import DatasetLayoutError
from lic.weights import require_hub_file

__all__ = ["Accumulator", "DatasetLayoutError", "Task", "build_model"]


def build_model(
    name: str,
    weights,
    weights_name: str,
    device: torch.device,
    who: str,
    random_flag: str = "--task-weights none",
    **random_kwargs,
) -> nn.Module:
    """An eval-mode torchvision model (weights enum member or None: random, seeded so every
    run builds the same one) or `timm:NAME` (pretrained unless weights_name is 'none').
    `random_flag` is the option that asks for random weights, named when weights are missing."""
    if name.startswith("timm:"):
        import timm

        return (
            timm.create_model(name[5:], pretrained=weights_name.lower() != "none").eval().to(device)
        )
    import torchvision.models as tvm

    if weights is not None:
        require_hub_file(
            weights.url,
            f"{who} {name}",
            f"; or pass {random_flag} to check the pipeline with random weights "
            "(its numbers then mean nothing)",
        )
        return tvm.get_model(name, weights=weights).eval().to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return tvm.get_model(name, weights=None, **random_kwargs).eval().to(device)


def weights_member(name: str, weights_name: str):
    """torchvision weights enum member of model `name` ('DEFAULT', a member name), or None
    for 'none' and timm models."""
    import torchvision.models as tvm

    if name.startswith("timm:") or weights_name.lower() == "none":
        return None
    enum = tvm.get_model_weights(name)
    try:
        return enum.DEFAULT if weights_name == "DEFAULT" else enum[weights_name]
    except KeyError:
        raise ValueError(
            f"{name} has no weights '{weights_name}'; choose from "
            f"{[w.name for w in enum]} or 'none'"
        ) from None


def reference_transform(name: str, weights):
    """The weights' transforms (sizes, mean/std), also for random weights; None for timm."""
    import torchvision.models as tvm

    if name.startswith("timm:"):
        return None
    return (weights or tvm.get_model_weights(name).DEFAULT).transforms()


class Accumulator(ABC):
    """Running state of a task metric."""

    @abstractmethod
    def update(
        self, predictions: Sequence[Any], targets: Sequence[Any], sample_ids: Sequence[str]
    ) -> None: ...

    @abstractmethod
    def state(self) -> dict: ...

    @abstractmethod
    def merge(self, state: dict) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...

    def records(self) -> list[dict] | None:
        """Per-question records worth keeping beside the scores (VLM answers), or None."""
        return None


class Task(ABC):
    """One task: dataset, model, predictions and metric.

    Args:
        root: dataset root in the task's official layout.
        model: torchvision model name (`torchvision.models.list_models()`), or `timm:NAME`.
        weights: torchvision weights enum member name (e.g. `IMAGENET1K_V2`), `DEFAULT`, or
            `none` for random weights (tests only). timm models: anything but `none` loads
            timm's pretrained weights.
        limit: use only the first `limit` samples.
    """

    name: str
    default_model: str
    default_weights: str
    metrics: tuple[str, ...]
    metric_choices: tuple[str, ...] = ()  # tasks whose metrics `--metrics` selects

    def __init__(
        self,
        root: str | Path,
        model: str | None = None,
        weights: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"{self.root}: no such directory ({self.layout_hint()})")
        self.model_name = model or self.default_model
        self.weights_name = weights or (self.default_weights if model is None else "DEFAULT")
        self.samples = self.find_samples()
        if limit is not None:
            self.samples = self.samples[:limit]
        if not self.samples:
            raise DatasetLayoutError(f"{self.root}: no samples found ({self.layout_hint()})")

    # ---- dataset ------------------------------------------------------------------------
    @abstractmethod
    def layout_hint(self) -> str:
        """The expected on-disk layout, for error messages."""

    @abstractmethod
    def find_samples(self) -> list:
        """Sample descriptors (paths and annotations), in a fixed order."""

    @abstractmethod
    def load(self, index: int) -> tuple[Tensor, Any]:
        """(prepared image (3, H, W) in [0, 1], target) of sample `index`; raises on bad
        files (ImageReadError)."""

    def sample_id(self, index: int) -> str:
        return str(
            self.samples[index][0]
            if isinstance(self.samples[index], tuple)
            else self.samples[index]
        )

    def __len__(self) -> int:
        return len(self.samples)

    # ---- model --------------------------------------------------------------------------
    def weights_enum(self):
        """The torchvision weights member named by `weights`, or None (random / timm)."""
        return weights_member(self.model_name, self.weights_name)

    def preprocess_reference(self):
        """The weights' transforms, used for sizes and normalisation even when random."""
        return reference_transform(self.model_name, self.weights_enum())

    def model_kwargs(self) -> dict:
        """Constructor arguments for random (`none`) weights, e.g. the number of classes."""
        return {}

    def build_model(self, device: torch.device) -> nn.Module:
        return build_model(
            self.model_name,
            self.weights_enum(),
            self.weights_name,
            device,
            f"the {self.name} task model",
            **self.model_kwargs(),
        )

    @abstractmethod
    def predict(self, model: nn.Module, images: list[Tensor], targets: Sequence = ()) -> list[Any]:
        """Predictions for prepared images already on the model's device; `targets` carry
        what a prediction may need besides the image (a VLM's questions)."""

    def reference_predictions(
        self, model: nn.Module, targets: Sequence[Any], device: torch.device
    ) -> list[Any]:
        """Targets as the accumulator wants them; label-free tasks predict them here."""
        return list(targets)

    @abstractmethod
    def new_accumulator(self) -> Accumulator: ...

    def description(self) -> dict:
        return {
            "task": self.name,
            "model": self.model_name,
            "weights": self.weights_name,
            "root": str(self.root),
            "n_samples": len(self),
        }
