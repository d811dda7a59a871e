"""`lic eval --align`: fidelity metrics of each decoded image against the task's own input.

Metric-task alignment asks which fidelity metric predicts what a task model keeps. Its
metric values are computed in every coded cell of a machine task on the very tensors the
task model sees: the prepared input the codec was given (after the task's resize and crop)
and its decoded version, before the model's normalisation; not a separate pass at native
resolution. The metrics run on the task model's device in the main process. Metrics that
score against reference-side features (ML-CLIPSim, CLIP cosine) compute them once per
input image and keep them in OUT/references (`ReferenceStore`), like the fidelity task.

Weights: the metrics' own pretrained weights (ML-CLIPSim and CLIP cosine: open_clip
ViT-B-32 `openai` unless `-o mlclipsim.model=...`/`pretrained=...` say otherwise), or random
networks when the run's `--task-weights none` (format checks only; every output says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from lic.evaluation.alignment import REFERENCE
from lic.evaluation.references import ReferenceStore
from lic.metrics import metric_spec
from lic.tasks.base import Task
from lic.tasks.fidelity import build_metrics, featured_metrics, reference_features
from lic.weights import random_weights

CLIP_TOWER, CLIP_TAG = "ViT-B-32", "openai"


def align_metric_names(names: Sequence[str]) -> list[str]:
    """The metrics an `--align` list computes: PSNR first (the paired differences refer to
    it), then the others as given, each once; unknown or no-reference metrics raise
    ValueError."""
    chosen = list(dict.fromkeys([REFERENCE, *names]))
    for name in chosen:
        if not metric_spec(name).full_reference:
            raise ValueError(f"--align {name}: not a full-reference metric")
    return chosen


class AlignScorer:
    """The `--align` metrics, built once per run (pretrained, or random for `weights`
    'none'), scoring (input, decoded) pairs on their device, the pairs of one size in one
    batch."""

    def __init__(
        self,
        names: Sequence[str],
        weights: str | None = None,
        metric_args: Mapping[str, Mapping] | None = None,
    ) -> None:
        self.names = align_metric_names(names)
        self.random = random_weights(weights)
        self.metric_args = {n: dict(a) for n, a in (metric_args or {}).items() if n in self.names}
        tag = "none" if self.random else CLIP_TAG
        self.nets = build_metrics(self.names, CLIP_TOWER, tag, self.metric_args)
        self.featured = featured_metrics(self.nets)

    def identity(self) -> dict[str, dict]:
        """Per metric, what its values depend on besides the images (a stored value is
        reused only under the same identity)."""
        weights = "random" if self.random else "pretrained"
        return {n: {"args": self.metric_args.get(n, {}), "weights": weights} for n in self.names}

    def to(self, device: torch.device) -> AlignScorer:
        self.nets.to(device)
        return self

    def score(
        self, inputs: Sequence[Tensor], decoded: Sequence[Tensor], features: Sequence[Mapping]
    ) -> dict[str, list[float]]:
        """metric -> per-pair value, the pairs of one size scored in one batch on the decoded
        images' device; a metric that cannot score a size (MS-SSIM under 161 px) gives NaN,
        which alignment leaves out."""
        values = {n: [math.nan] * len(inputs) for n in self.names}
        by_size: dict[tuple, list[int]] = {}
        for i, image in enumerate(decoded):
            by_size.setdefault(tuple(image.shape), []).append(i)
        for size, indices in by_size.items():
            y = torch.stack([decoded[i] for i in indices]).float()
            x = torch.stack([inputs[i] for i in indices]).to(y.device, torch.float32)
            for name, metric in self.nets.items():
                if min(size[-2:]) < metric_spec(name).min_side:
                    continue
                if name in self.featured and all(name in features[i] for i in indices):
                    scores = metric.score_features([features[i][name] for i in indices], y)
                else:
                    scores = metric(x, y)
                for i, score in zip(indices, scores.double().cpu().tolist(), strict=True):
                    values[name][i] = score
        return values


class TaskAligner:
    """The `--align` scores of one task's cells, with the inputs' features kept in a
    ReferenceStore (OUT/references) keyed by each image file's digest."""

    def __init__(self, scorer: AlignScorer, task: Task, folder: Path, device: torch.device):
        self.scorer = scorer
        self.store = None
        if scorer.featured:
            identity = {"task": f"{task.name}-align", "metrics": scorer.identity()}
            identity |= {"input": task.reference_identity(), "device": device.type}
            identity["features"] = scorer.featured
            self.store = ReferenceStore(folder, identity)

    @property
    def names(self) -> list[str]:
        return self.scorer.names

    def identity(self) -> dict[str, dict]:
        return self.scorer.identity()

    def score(
        self, inputs: Sequence[Tensor], decoded: Sequence[Tensor], keys: Sequence[str]
    ) -> dict[str, list[float]]:
        """Scores of decoded images against their inputs (on the decoded images' device),
        features of inputs not yet in the store computed and added."""
        device = decoded[0].device
        features: list[Mapping] = [{}] * len(inputs)
        if self.store is not None:
            features = []
            for x, key in zip(inputs, keys, strict=True):
                if key not in self.store:
                    [computed] = reference_features(self.scorer.nets, [x.to(device)])
                    self.store.add(key, computed)
                    features.append(computed)
                else:
                    features.append(self.store[key])
        return self.scorer.score(inputs, decoded, features)

    def save(self) -> None:
        if self.store is not None:
            self.store.save()
