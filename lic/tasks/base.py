"""What a downstream task is to the rate-task harness.

A task reads its dataset in the official layout, prepares each image exactly as its model
expects (in [0, 1], before normalisation, so that the codec sees what the model would),
runs the model on batches of decoded images, and accumulates its metric. Accumulators keep
per-image state (scores, confusion matrices, detections, answers) in lists, so states from
several ranks merge into exactly the single-run result, and the metric can be recomputed on
any resample of the images (the bootstrap intervals of `lic.evaluation.bootstrap`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lic.data.files import file_digest, file_digests
from lic.data.images import DatasetLayoutError
from lic.tasks.models import ModelRef

__all__ = [
    "Accumulator",
    "DatasetLayoutError",
    "Sample",
    "TableAccumulator",
    "Task",
    "weights_label",
]
RANDOM_LABEL = "random"


class Sample(NamedTuple):
    """One task sample: its image file and what else the task reads for it (an ImageNet
    label, a VOC mask file, a COCO image id, VLM questions). A tuple, so `path, label =
    sample` reads it."""

    path: Path
    annotation: Any = None


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

    @abstractmethod
    def image_ids(self) -> list[str]:
        """Sample ids of the images seen, in the order of `per_image` and `resample`."""

    @abstractmethod
    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image columns for per_image.csv (aligned with `image_ids`)."""

    @abstractmethod
    def resample(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of `compute` on each resample: `counts` (B, n) says how often each
        image (in `image_ids` order) is drawn; returns metric -> (B,) values."""

    def resampler(self) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """`resample` with whatever it can prepare once (per-image tables) prepared, for
        calling on many blocks of resamples."""
        return self.resample


class TableAccumulator(Accumulator):
    """A metric that is a function of totals of per-image statistics (sums of scores,
    counts, confusion matrices): `compute` and every bootstrap resample go through the same
    `from_totals`, vectorised over resamples (one matrix product per statistic)."""

    @abstractmethod
    def image_table(self) -> dict[str, np.ndarray]:
        """statistic -> (n, ...) per-image values, rows in `image_ids` order."""

    @abstractmethod
    def from_totals(self, totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """metric -> (B,) values from statistic -> (B, ...) totals over images."""

    def compute(self) -> dict[str, float]:
        everything = np.ones((1, len(self.image_ids())))
        return {k: float(v[0]) for k, v in self.resample(everything).items()}

    def resample(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        return self.resampler()(counts)

    def resampler(self) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        tables = {k: np.asarray(v, dtype=np.float64) for k, v in self.image_table().items()}

        def resample(counts: np.ndarray) -> dict[str, np.ndarray]:
            counts = np.asarray(counts, dtype=np.float64)
            totals = {}
            for name, table in tables.items():
                flat = counts @ table.reshape(len(table), int(np.prod(table.shape[1:])))
                totals[name] = flat.reshape(len(counts), *table.shape[1:])
            return self.from_totals(totals)

        return resample


class PerImageAccumulator(TableAccumulator):
    """Per-image values of metrics that are means over images (top-1 as 0 or 100 per
    image): per_image.csv's columns average to the curve values."""

    names: tuple[str, ...]

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.values: dict[str, list[float]] = {name: [] for name in self.names}

    def add(self, sample_ids: Sequence[str], **columns: Tensor) -> None:
        self.ids += list(sample_ids)
        for name in self.names:
            self.values[name] += columns[name].double().tolist()

    def state(self) -> dict:
        return {"ids": list(self.ids), "values": {k: list(v) for k, v in self.values.items()}}

    def merge(self, state: dict) -> None:
        """Add another state of the same columns (a stored state of other columns, written
        before a column was added, raises KeyError: its cell is recomputed)."""
        if set(state["values"]) != set(self.names):
            raise KeyError(f"per-image columns {sorted(state['values'])}, not {list(self.names)}")
        self.ids += state["ids"]
        for name, values in state["values"].items():
            self.values[name] += values

    def image_ids(self) -> list[str]:
        return self.ids

    def per_image(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(v, dtype=float) for name, v in self.values.items()}

    def image_table(self) -> dict[str, np.ndarray]:
        return {**self.per_image(), "count": np.ones(len(self.ids))}

    def from_totals(self, totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: totals[name] / np.maximum(totals["count"], 1) for name in self.names}


class Task(ABC):
    """One task: dataset, model, predictions and metric.

    Args:
        root: dataset root in the task's official layout.
        model: a name in the task's `model_family` (torchvision: `list_models()`) or
            `FAMILY:NAME` (`timm:convnext_tiny`); see `lic.tasks.models`.
        weights: torchvision weights enum member name (e.g. `IMAGENET1K_V2`), `DEFAULT`, or
            `none` for random weights (tests only). timm and transformers models: anything
            but `none` loads their pretrained weights.
        limit: use only the first `limit` samples.
    """

    name: str
    default_model: str
    default_weights: str
    metrics: tuple[str, ...]
    metric_choices: tuple[str, ...] = ()  # tasks whose metrics `--metrics` selects
    layout_check_args: ClassVar[dict[str, Any]] = {}  # for `lic data check`: no weights
    uses_reference: bool = False  # targets are the model's outputs on the original image
    reference_is_prediction: bool = True  # those outputs are also the uncompressed row
    model_family: str = "torchvision"  # of a model named without a FAMILY: prefix
    protocols: tuple[str, ...] = ()  # answer protocols a task offers (SEED-Bench), first default
    cpu_batch: int | None = None
    """Images per model call on the CPU with --batch-size auto (None: the harness's)."""
    light_model: bool = False
    """Its model costs little next to coding an image (PSNR, MS-SSIM): with one coding
    stream `lic eval` codes in a thread rather than a process (`parallel.task_workers`)."""
    outcomes: tuple[str, ...] = ()
    """Per-image columns (`Accumulator.per_image`) that say what the model kept of each
    decoded image: what metric-task alignment (`lic eval --align`) asks a metric to predict.
    Their direction is their registry record's `lower_better`."""

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
        self.model_ref = ModelRef.parse(self.model_name, self.weights_name, self.model_family)
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
    def find_samples(self) -> list[Sample]:
        """The samples, in a fixed order."""

    @abstractmethod
    def load(self, index: int) -> tuple[Tensor, Any]:
        """(prepared image (3, H, W) in [0, 1], target) of sample `index`; raises on bad
        files (ImageReadError)."""

    def sample_file(self, index: int) -> Path:
        """The image file of sample `index`."""
        return self.samples[index].path

    def sample_id(self, index: int) -> str:
        """Sample `index`'s image file relative to the data root (`n01440764/x.JPEG`), the
        same for any spelling, symlink or copy of the root (per_image.csv's `image`)."""
        return self.relative(self.samples[index].path)

    def relative(self, path: Path) -> str:
        """`path` relative to the data root, or as given when it lies outside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def sample_digest(self, index: int) -> str:
        """SHA-256 of sample `index`'s image file (keys its cached reference outputs)."""
        return self.sample_digests[index]

    @functools.cached_property
    def sample_digests(self) -> list[str]:
        """SHA-256 of every sample's image file, hashed once per run: no cache trusts file
        sizes and times instead of bytes (docs/design.md, rate-task protocol)."""
        return file_digests([sample.path for sample in self.samples])

    def data_files(self) -> list[Path]:
        """Files besides the samples' that the metric reads (COCO's ground truth)."""
        return []

    @functools.cached_property
    def data_digest(self) -> str:
        """SHA-256 of the data as the task reads it: each sample's id, image bytes and
        annotation (files by their bytes), and `data_files`. Equal for any spelling, symlink
        or copy of the same data; different when one image, label or file changes."""
        digests = self.sample_digests
        samples = [
            [self.sample_id(i), digests[i], self._keyed(sample.annotation)]
            for i, sample in enumerate(self.samples)
        ]
        files = [[self.relative(f), file_digest(f)] for f in self.data_files()]
        text = json.dumps({"samples": samples, "files": files}, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _keyed(self, value: Any) -> Any:
        """An annotation as JSON for `data_digest`: files by relative path and SHA-256."""
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, Path):
            return [self.relative(value), file_digest(value)]
        if isinstance(value, (list, tuple)):
            return [self._keyed(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self._keyed(v) for k, v in sorted(value.items())}
        if dataclasses.is_dataclass(value):
            return self._keyed(dataclasses.asdict(value))
        raise TypeError(f"no content key for a {type(value).__name__} annotation")

    def __len__(self) -> int:
        return len(self.samples)

    # ---- model --------------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        """Constructor arguments for random (`none`) weights, e.g. the number of classes."""
        return {}

    def build_model(self, device: torch.device) -> nn.Module:
        return self.model_ref.build(
            device, f"the {self.name} task model", "--task-weights none", **self.model_kwargs()
        )

    @abstractmethod
    def predict(self, model: nn.Module, images: list[Tensor], targets: Sequence = ()) -> list[Any]:
        """Predictions for prepared images already on the model's device; `targets` carry
        what a prediction may need besides the image (a VLM's questions)."""

    def reference_outputs(self, model: nn.Module, originals: list[Tensor]) -> list[Any]:
        """The targets of a task that `uses_reference`: the model's outputs on the original
        images, computed once per image and cached by the harness."""
        return self.predict(model, originals)

    def predict_against(
        self, model: nn.Module, images: list[Tensor], targets: Sequence, references: Sequence
    ) -> list[Any]:
        """Predictions of a task that `uses_reference`, given each image's reference output
        (a task whose references are reference-side features scores against them)."""
        return self.predict(model, images, targets)

    def reference_identity(self) -> dict:
        """Everything reference outputs depend on besides the image: model, weights and
        preprocessing (a cache of them is valid for this identity only)."""
        member = self.model_ref.weights_member()  # DEFAULT resolved: a new default is new
        weights = member.name if member is not None else self.weights_name
        return {"task": self.name, "model": self.model_name, "weights": weights}

    @abstractmethod
    def new_accumulator(self) -> Accumulator: ...

    def known_uncompressed(self) -> dict[str, Any] | None:
        """The prediction on every original when it is known without running anything (a
        full-reference metric's score of an image against itself): the uncompressed row is
        then written from it, not computed. None: the row is computed."""
        return None

    @property
    def random_weights(self) -> bool:
        """Whether the task's numbers come from randomly initialised networks
        (`--task-weights none`): a format check, never a result. The one record every output
        reads (`weights_label`, the log, summary.md, the plots)."""
        return self.model_ref.random

    def description(self) -> dict:
        """The task's part of a cell's record: a finished cell is reused only for an equal
        one (the same data by content, `data_digest`, however its root is spelled)."""
        return {
            "task": self.name,
            "model": self.model_name,
            "weights": self.weights_name,
            "random_weights": self.random_weights,
            "data": self.data_digest,
            "n_samples": len(self),
        }


def weights_label(meta: dict) -> str:
    """results.csv's and per_image.csv's `weights` of a cell: RANDOM_LABEL for random
    networks (`Task.random_weights`), else the task weights' name."""
    return RANDOM_LABEL if meta.get("random_weights") else meta["weights"]
