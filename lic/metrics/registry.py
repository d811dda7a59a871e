"""Name -> metric registry in the manner of pyiqa: one object is a metric or, wrapped, a loss.

Every metric is an nn.Module called as `metric(reference, distorted) -> Tensor (N,)` and
knows `lower_better`. `create_metric(name, as_loss=True)` wraps it in a module that returns
a scalar to minimise, so training code never needs to know a metric's direction.

Records are data: a built-in metric's factory is named as "module:attribute" and imported
only when the metric is built, so listing metrics (every `lic ... --help`) loads no torch.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn


LOSS_FORMS = {"score": lambda s: s, "negative": lambda s: -s, "one_minus": lambda s: 1.0 - s}
"""How a metric's per-image score becomes a per-image loss (lower is better, 0 at best when
the metric is bounded)."""


@dataclass(frozen=True)
class MetricInfo:
    """What every consumer (losses, training, reports, IQA, PCMP) reads about a number: one
    record per metric, instead of name tests scattered over the code."""

    name: str
    display: str
    unit: str = ""
    lower_better: bool = False
    full_reference: bool = False
    """Compares a decoded image with its original: the uncompressed value is trivial."""
    is_quality: bool = True
    """False for diagnostics (POPE's yes-ratio): plotted, never given BD numbers."""

    def label(self) -> str:
        return f"{self.display} ({self.unit})" if self.unit else self.display


@dataclass(frozen=True)
class MetricSpec(MetricInfo):
    """A metric lic can build: `factory(**kwargs)(reference, distorted) -> (N,)`."""

    factory: Callable[..., nn.Module] | str = ""
    """The class or function that builds the metric, or its "module:attribute" path."""
    loss_form: str = "score"
    """Key of LOSS_FORMS: the training loss is `loss_scale * form(score)`."""
    loss_scale: float = 1.0
    weights: str = ""
    """The pretrained weights it needs and the argument that supplies them ('' for none)."""
    min_side: int = 1
    """Smallest image side the metric accepts (MS-SSIM's five scales need 161 px)."""
    db_form: str = ""
    """Name under which reports also give -10 log10(1 - score), a similarity in dB ('' none)."""
    full_reference: bool = True
    identity: float | None = None
    """Its score of an image against itself with its default arguments (the uncompressed
    row's value, written without computing it); None when not known exactly."""

    def build(self, **kwargs) -> nn.Module:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        return factory(**kwargs)

    def to_loss(self, score: Tensor) -> Tensor:
        """Per-image loss of per-image scores: `loss_scale * form(score)`."""
        loss = LOSS_FORMS[self.loss_form](score)
        return loss * self.loss_scale if self.loss_scale != 1.0 else loss


_METRICS: dict[str, MetricSpec] = {}
_RESULTS: dict[str, MetricInfo] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a buildable metric (its factory may be a "module:attribute" path)."""
    if spec.name in _METRICS or spec.name in _RESULTS:
        raise ValueError(f"metric '{spec.name}' is already registered")
    if spec.loss_form not in LOSS_FORMS:
        raise ValueError(f"loss_form must be one of {sorted(LOSS_FORMS)}, got '{spec.loss_form}'")
    _METRICS[spec.name] = spec
    return spec


def register_result(info: MetricInfo) -> MetricInfo:
    """Add a number a task reports (top-1, mAP, ...) that is not an image-pair metric."""
    if info.name in _METRICS or info.name in _RESULTS:
        raise ValueError(f"metric '{info.name}' is already registered")
    _RESULTS[info.name] = info
    return info


def metric_info(name: str) -> MetricInfo:
    """The record of any metric lic reports; unknown names get a plain record."""
    return _METRICS.get(name) or _RESULTS.get(name) or MetricInfo(name, name)


def list_metrics(pattern: str = "*") -> list[str]:
    return sorted(n for n in _METRICS if fnmatch.fnmatch(n, pattern))


def metric_spec(name: str) -> MetricSpec:
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}'; known: {', '.join(list_metrics())}") from None


def create_metric(name: str, as_loss: bool = False, **kwargs) -> nn.Module:
    """Build a registered metric; `as_loss=True` returns its scalar loss instead."""
    from lic.metrics.loss import MetricLoss

    spec = metric_spec(name)
    metric = spec.build(**kwargs)
    metric.lower_better = spec.lower_better
    metric.metric_name = name
    return MetricLoss(metric, spec) if as_loss else metric


PSNR_CAP_DB = 100.0  # lic.metrics.pixel.PSNR's default max_db: identical images
MS_SSIM_MIN_SIDE = 161  # four 2x downsamplings of an 11-tap window: pytorch_msssim's bound
# CompressAI's convention: MSE on the 0..255 scale, so its lambda grid applies unchanged.
MSE_LOSS_SCALE = 255.0**2
_CLIP_WEIGHTS = "open_clip pretrained tag or file: pretrained=TAG|PATH (default openai)"

for _spec in (
    MetricSpec("mse", "MSE", lower_better=True, factory="lic.metrics.pixel:MSE",
               loss_scale=MSE_LOSS_SCALE, identity=0.0),
    MetricSpec("psnr", "PSNR", "dB", factory="lic.metrics.pixel:PSNR", loss_form="negative",
               identity=PSNR_CAP_DB),
    MetricSpec("ms_ssim", "MS-SSIM", factory="lic.metrics.pixel:MSSSIM",
               loss_form="one_minus", min_side=MS_SSIM_MIN_SIDE, db_form="ms_ssim_db",
               identity=1.0),
    MetricSpec("lpips", "LPIPS", lower_better=True, factory="lic.metrics.lpips_metric:LPIPS",
               weights="the lpips package's linear layers and torchvision's AlexNet/VGG weights",
               identity=0.0),
    MetricSpec("mlclipsim", "ML-CLIPSim", factory="lic.metrics.mlclipsim:MLCLIPSim",
               loss_form="one_minus", weights=_CLIP_WEIGHTS, identity=1.0),
    MetricSpec("clip_global", "CLIP cosine", factory="lic.metrics.mlclipsim:clip_global",
               loss_form="one_minus", weights=_CLIP_WEIGHTS, identity=1.0),
):  # fmt: skip
    register_metric(_spec)

for _info in (
    MetricInfo("ms_ssim_db", "MS-SSIM", "dB", full_reference=True),
    MetricInfo("top1", "top-1", "%"),
    MetricInfo("top5", "top-5", "%"),
    MetricInfo("miou", "mIoU", "%"),
    MetricInfo("pixel_acc", "pixel accuracy", "%"),
    MetricInfo("map", "mAP@[.5:.95]", "%"),
    MetricInfo("map50", "mAP@.5", "%"),
    MetricInfo("top1_agreement", "top-1 agreement", "%"),
    MetricInfo("kl", "KL to uncompressed", "nats", lower_better=True),
    MetricInfo("accuracy", "accuracy", "%"),
    MetricInfo("precision", "precision", "%"),
    MetricInfo("recall", "recall", "%"),
    MetricInfo("f1", "F1", "%"),
    MetricInfo("yes_ratio", "yes ratio", "%", is_quality=False),
    MetricInfo("unparsed", "unparsed answers", "%", lower_better=True),
    # per-image task outcomes (Task.outcomes) that metric-task alignment predicts
    MetricInfo("p_true", "true-class probability"),
    MetricInfo("image_miou", "image mIoU", "%"),
    MetricInfo("image_recall", "image recall@[.5:.95]", "%"),
    MetricInfo("image_accuracy", "image accuracy", "%"),
):
    register_result(_info)
