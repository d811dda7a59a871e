"""Rate-distortion as a task: full-reference quality of each decoded image at native resolution.

The first figure of every compression paper, on the same axes as the machine tasks. Every
image of a folder is coded whole (learned codecs pad to their stride and crop back), the
decoded image is rounded to 8 bits (what a decoder writes to disk), and each chosen metric
compares it with the original:

- `psnr`: RGB PSNR in dB, per image, averaged over images (as CompressAI's Kodak curves);
- `ms_ssim`: RGB MS-SSIM per image, averaged; `ms_ssim_db` is -10 log10(1 - mean MS-SSIM),
  the dB form CompressAI plots (derived from the mean, capped at 100 dB);
- `lpips`: LPIPS-Alex (lower is better), averaged;
- `mlclipsim`: ML-CLIPSim with its default layers, averaged; the task model is its open_clip
  tower (default ViT-B-32) and the task weights its open_clip tag (default openai).

The metrics are built when the task is created, so missing weights stop a run before any
image is coded. `weights='none'` builds LPIPS and ML-CLIPSim with random weights (tests only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from lic.data.images import list_images, load_image
from lic.errors import UsageError
from lic.metrics import create_metric, metric_spec
from lic.tasks.base import Accumulator, PerImageAccumulator, Sample, Task
from lic.tasks.catalog import FIDELITY_METRICS
from lic.weights import WeightsUnavailableError, random_weights

METRICS = FIDELITY_METRICS
OFFLINE_METRICS = tuple(m for m in METRICS if not metric_spec(m).weights)
"""The metrics that need no pretrained weights: what runs on a machine without them."""
DB_CAP = 100.0  # the dB forms stay finite for lossless images (PSNR's own cap)


def ms_ssim_db(score: float) -> float:
    """-10 log10(1 - MS-SSIM), capped at DB_CAP."""
    return min(DB_CAP, -10.0 * math.log10(max(1.0 - score, 10 ** (-DB_CAP / 10))))


def build_metrics(
    names: Sequence[str], tower: str, tag: str, metric_args: Mapping[str, Mapping] | None = None
) -> nn.ModuleDict:
    """The metric modules, pretrained (raising WeightsUnavailableError offline) or, for
    tag 'none', random; `metric_args` replace or add constructor arguments."""
    pretrained = not random_weights(tag)
    clip = {"model": tower, "pretrained": tag if pretrained else None}
    options = {"lpips": {"pretrained": pretrained}, "mlclipsim": clip, "clip_global": clip}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random networks (tests) are the same in every run
        return nn.ModuleDict(
            {
                n: create_metric(n, **{**options.get(n, {}), **(metric_args or {}).get(n, {})})
                for n in names
            }
        )


def featured_metrics(nets: nn.ModuleDict) -> list[str]:
    """The metrics of `nets` that score against reference-side features (ML-CLIPSim, CLIP
    cosine): computed once per reference image and kept (OUT/references)."""
    return [n for n, net in nets.items() if hasattr(net, "reference_features")]


def reference_features(nets: nn.ModuleDict, images: Sequence[Tensor]) -> list[dict]:
    """Per reference image (3, H, W), {metric: its features} of the featured metrics."""
    featured = featured_metrics(nets)
    return [{n: nets[n].reference_features(x[None].float())[0] for n in featured} for x in images]


class FidelityAccumulator(PerImageAccumulator):
    """Per-image scores; a metric is their mean over images (its dB form taken from the
    mean), so per_image.csv's columns average to the curve values."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        super().__init__()

    def update(self, predictions, targets, sample_ids) -> None:
        for scores, sample_id in zip(predictions, sample_ids, strict=True):
            for name in self.names:
                self.values[name].append(float(scores[name]))
            self.ids.append(sample_id)

    def from_totals(self, totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = totals["count"]
        means = super().from_totals(totals)
        for name in self.names:
            if db_form := metric_spec(name).db_form:
                floor = 10 ** (-DB_CAP / 10)  # ms_ssim_db, vectorised over resamples
                db = np.minimum(DB_CAP, -10.0 * np.log10(np.maximum(1.0 - means[name], floor)))
                means[db_form] = np.where(count > 0, db, math.nan)
        return means


class FidelityTask(Task):
    """PSNR / MS-SSIM / LPIPS / ML-CLIPSim against bpp on any image folder (e.g. Kodak)."""

    name = "fidelity"
    default_model = "ViT-B-32"  # ML-CLIPSim's tower
    default_weights = "openai"
    metric_choices = METRICS
    cpu_batch = 1  # scored image by image: larger batches only hold more images (24 Kodak
    # images, 2 cores: batch 2 vs 8 150 MB less summed memory; 1 vs 2 35 MB less, as fast)

    def __init__(
        self,
        root: str | Path,
        model: str | None = None,
        weights: str | None = None,
        limit: int | None = None,
        metrics: Sequence[str] | None = None,
        metric_args: Mapping[str, Mapping] | None = None,
    ) -> None:
        chosen = tuple(dict.fromkeys(metrics or METRICS))
        unknown = [m for m in chosen if m not in METRICS]
        if unknown:
            raise UsageError(f"unknown fidelity metric(s) {unknown}; choose from {METRICS}")
        super().__init__(root, model=model, weights=weights, limit=limit)
        self.chosen = chosen
        db_forms = {m: metric_spec(m).db_form for m in chosen}
        self.metrics = tuple(n for m in chosen for n in (m, db_forms[m]) if n)
        self.metric_args = {n: dict(a) for n, a in (metric_args or {}).items() if a}
        unknown = sorted(set(self.metric_args) - set(chosen))
        if unknown:
            raise UsageError(f"metric arguments for metrics not chosen: {unknown}")
        try:
            self._nets = build_metrics(chosen, self.model_name, self.weights_name, self.metric_args)
        except WeightsUnavailableError as err:
            offline = " ".join(OFFLINE_METRICS)
            raise WeightsUnavailableError(
                f"{err}\n  Without weights, `--metrics {offline}` runs offline."
            ) from err

    def __getstate__(self) -> dict:
        """Loader workers only read images: they get the task without its networks."""
        return {k: v for k, v in vars(self).items() if k != "_nets"}

    def layout_hint(self) -> str:
        return "expected a folder of images (any layout)"

    def find_samples(self) -> list[Sample]:
        return [Sample(path) for path in list_images(self.root)]

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        image = load_image(self.samples[index].path)
        for name in self.chosen:
            spec = metric_spec(name)
            if min(image.shape[-2:]) < spec.min_side:
                raise ValueError(
                    f"{self.samples[index].path}: {spec.display} needs both sides >= "
                    f"{spec.min_side} px, got {tuple(image.shape[-2:])}"
                )
        return image, image

    def build_model(self, device: torch.device) -> nn.Module:
        return self._nets.to(device)

    @property
    def featured(self) -> list[str]:
        """The metrics that score against reference-side features (ML-CLIPSim, clip_global)."""
        return featured_metrics(self._nets)

    @property
    def uses_reference(self) -> bool:
        """With a `featured` metric: its features are computed once per image and kept in
        OUT/references for every cell and re-run."""
        return bool(self.featured)

    layout_check_args: ClassVar[dict] = {"metrics": OFFLINE_METRICS}  # no weights to check

    reference_is_prediction = False  # the uncompressed row is scored like any other

    def reference_outputs(self, model: nn.Module, originals: list[Tensor]) -> list[dict]:
        """Per original: {metric: features} of the metrics that score against features."""
        return reference_features(model, originals)

    def reference_identity(self) -> dict:
        """The tower (open_clip name and tag: not a torchvision model) and the options of
        each metric whose features are kept."""
        options = {n: self.metric_args.get(n, {}) for n in self.featured}
        tower = {"task": self.name, "model": self.model_name, "weights": self.weights_name}
        return tower | {"features": options}

    def predict(
        self, model: nn.Module, images: list[Tensor], targets: Sequence = ()
    ) -> list[dict[str, float]]:
        """Per-image scores of the 8-bit decoded images against the originals."""
        return self.predict_against(model, images, targets, [{}] * len(images))

    def predict_against(
        self, model: nn.Module, images: list[Tensor], targets: Sequence, references: Sequence
    ) -> list[dict[str, float]]:
        """`predict`, with the reference features of each original where it has them."""
        scores: dict[str, list[Tensor]] = {name: [] for name in model}
        for decoded, reference, features in zip(images, targets, references, strict=True):
            x = reference[None].to(decoded.device, torch.float32)
            y = (decoded[None].float().clamp(0, 1) * 255).round() / 255
            for name, metric in model.items():
                if name in features:
                    score = metric.score_features([features[name]], y)
                else:
                    score = metric(x, y)
                scores[name].append(score.reshape(()))
        values = {name: torch.stack(s).double().cpu().tolist() for name, s in scores.items()}
        return [{name: v[i] for name, v in values.items()} for i in range(len(images))]

    def new_accumulator(self) -> Accumulator:
        return FidelityAccumulator(self.chosen)

    @property
    def networks(self) -> bool:
        """Whether a chosen metric runs networks (LPIPS, ML-CLIPSim): PSNR and MS-SSIM are
        the same numbers whatever the model and weights options say."""
        return any(metric_spec(name).weights for name in self.chosen)

    @property
    def light_model(self) -> bool:
        """PSNR and MS-SSIM only: scoring costs a fraction of coding."""
        return not self.networks

    @property
    def random_weights(self) -> bool:
        return self.networks and random_weights(self.weights_name)

    def known_uncompressed(self) -> dict[str, float] | None:
        """Each metric's score of an original against itself (its registry `identity`),
        when every chosen metric has one and runs with its default arguments."""
        if self.metric_args:
            return None
        scores = {name: metric_spec(name).identity for name in self.chosen}
        return None if None in scores.values() else scores

    def description(self) -> dict:
        extra = {"metric_args": self.metric_args} if self.metric_args else {}
        if not self.networks:  # cells of PSNR and MS-SSIM serve any --task-model/-weights
            extra |= {"model": "", "weights": ""}
        return super().description() | {"metrics": list(self.chosen)} | extra
