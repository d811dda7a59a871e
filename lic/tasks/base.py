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

from lic.weights import require_hub_file


class DatasetLayoutError(ValueError):
    """The dataset folder does not have the official layout; the message says what is wrong."""


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
        import torchvision.models as tvm

        if self.model_name.startswith("timm:") or self.weights_name.lower() == "none":
            return None
        enum = tvm.get_model_weights(self.model_name)
        try:
            return enum[self.weights_name] if self.weights_name != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ValueError(
                f"{self.model_name} has no weights '{self.weights_name}'; "
                f"choose from {[w.name for w in enum]} or 'none'"
            ) from None

    def preprocess_reference(self):
        """The weights' transforms, used for sizes and normalisation even when random."""
        import torchvision.models as tvm

        if self.model_name.startswith("timm:"):
            return None
        return (self.weights_enum() or tvm.get_model_weights(self.model_name).DEFAULT).transforms()

    def model_kwargs(self) -> dict:
        """Constructor arguments for random (`none`) weights, e.g. the number of classes."""
        return {}

    def build_model(self, device: torch.device) -> nn.Module:
        if self.model_name.startswith("timm:"):
            import timm

            pretrained = self.weights_name.lower() != "none"
            model = timm.create_model(self.model_name[5:], pretrained=pretrained)
        else:
            import torchvision.models as tvm

            weights = self.weights_enum()
            if weights is not None:
                require_hub_file(weights.url, f"the {self.name} task model {self.model_name}")
                model = tvm.get_model(self.model_name, weights=weights)
            else:  # random weights, the same in every run: resumed runs must match
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = tvm.get_model(self.model_name, weights=None, **self.model_kwargs())
        return model.eval().to(device)

    @abstractmethod
    def predict(self, model: nn.Module, images: list[Tensor]) -> list[Any]:
        """Predictions for prepared images already on the model's device."""

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
