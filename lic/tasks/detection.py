"""COCO 2017 detection: mAP@[.5:.95] and mAP@.5 with pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from lic.data.images import load_image
from lic.tasks.base import Accumulator, DatasetLayoutError, Sample, Task


def _quiet_coco(annotation_file: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


def coco_map(ground_truth: COCO, detections: list[dict], image_ids: list[int]) -> dict:
    """mAP@[.5:.95] and mAP@.5 (percent) of `detections` on `image_ids`, by COCOeval."""
    if not detections or not image_ids:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {
        "map": 100.0 * max(evaluation.stats[0], 0.0),
        "map50": 100.0 * max(evaluation.stats[1], 0.0),
    }


def _precision_maps(evaluation: COCOeval) -> dict[str, float]:
    """mAP@[.5:.95] and mAP@.5 (percent) from an accumulated COCOeval, as `summarize` reads
    them (all areas, 100 detections; -1 marks categories without ground truth)."""
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    out = {}
    for name, values in (("map", precision), ("map50", precision[0])):
        valid = values[values > -1]
        out[name] = 100.0 * float(valid.mean()) if valid.size else 0.0
    return out


class DetectionAccumulator(Accumulator):
    """Detections per image. A resample is scored by COCOeval on the drawn images (an image
    drawn twice counts twice): matching runs once, `accumulate` once per resample, so the
    bootstrap of mAP costs about one `accumulate` per resample (lic.evaluation.bootstrap
    caps it at `max_resamples`)."""

    max_resamples = 200

    def __init__(self, ground_truth: COCO) -> None:
        self.ground_truth = ground_truth
        self.detections: list[dict] = []
        self.image_ids_: list[int] = []
        self.sample_ids: list[str] = []

    def update(self, predictions, targets, sample_ids) -> None:
        """`predictions`: per image, COCO results without ids; `targets`: the image ids."""
        for pred, image_id, sample_id in zip(predictions, targets, sample_ids, strict=True):
            self.image_ids_.append(int(image_id))
            self.sample_ids.append(sample_id)
            self.detections.extend({**det, "image_id": int(image_id)} for det in pred)

    def state(self) -> dict:
        return {
            "detections": self.detections,
            "image_ids": self.image_ids_,
            "sample_ids": self.sample_ids,
        }

    def merge(self, state: dict) -> None:
        self.detections.extend(state["detections"])
        self.image_ids_.extend(state["image_ids"])
        self.sample_ids.extend(state["sample_ids"])

    def compute(self) -> dict[str, float]:
        return coco_map(self.ground_truth, self.detections, self.image_ids_)

    def image_ids(self) -> list[str]:
        return self.sample_ids

    def per_image(self) -> dict[str, np.ndarray]:
        """Detections per image and its recall (`image_recall`, percent): the share of its
        ground-truth objects (crowds aside) that COCOeval matches to a detection, averaged
        over the IoU thresholds .5:.95, all areas, 100 detections: mAP's matching, per
        image (mAP itself is a data-set statistic with no per-image value). NaN for an image
        without objects."""
        counts = Counter(d["image_id"] for d in self.detections)
        detections = np.asarray([counts[i] for i in self.image_ids_], dtype=float)
        return {"detections": detections, "image_recall": self._image_recall()}

    def _image_recall(self) -> np.ndarray:
        gt = self.ground_truth
        objects = np.asarray(
            [len(gt.getAnnIds(imgIds=[i], iscrowd=False)) for i in self.image_ids_], dtype=float
        )
        if not self.detections:
            return np.where(objects > 0, 0.0, math.nan)
        evaluation = self._matched()
        images = evaluation.params.imgIds
        column = {image_id: i for i, image_id in enumerate(images)}
        matched, total = np.zeros(len(images)), np.zeros(len(images))
        thresholds = len(evaluation.params.iouThrs)
        for k, entry in enumerate(evaluation.evalImgs):
            area, image = divmod(k % (len(evaluation.params.areaRng) * len(images)), len(images))
            if entry is None or area != 0:  # area 0: "all"
                continue
            counted = ~np.asarray(entry["gtIgnore"], dtype=bool)
            matched[image] += (np.asarray(entry["gtMatches"])[:, counted] > 0).sum()
            total[image] += thresholds * counted.sum()
        recall = np.divide(
            100.0 * matched, total, out=np.full(len(images), math.nan), where=total > 0
        )
        return np.asarray([recall[column[i]] for i in self.image_ids_])

    def _matched(self) -> COCOeval:
        """COCOeval of the detections after `evaluate` (the per-image matching)."""
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(
                self.ground_truth, self.ground_truth.loadRes(self.detections), "bbox"
            )
            evaluation.params.imgIds = sorted(set(self.image_ids_))
            evaluation.evaluate()
        return evaluation

    def resample(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        return self.resampler()(counts)

    def resampler(self) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """Matching (COCOeval.evaluate) once; each resample lays out the drawn images'
        per-image results (an image drawn twice, twice) and runs `accumulate`."""
        if not self.detections or not self.image_ids_:
            return lambda counts: {"map": np.zeros(len(counts)), "map50": np.zeros(len(counts))}
        evaluation = self._matched()
        params = copy.deepcopy(evaluation.params)
        column = {image_id: i for i, image_id in enumerate(params.imgIds)}
        position = np.asarray([column[i] for i in self.image_ids_])
        table = np.empty(len(evaluation.evalImgs), dtype=object)
        table[:] = evaluation.evalImgs
        blocks = np.arange(len(params.catIds) * len(params.areaRng))[:, None] * len(column)

        def resample(counts: np.ndarray) -> dict[str, np.ndarray]:
            out = {"map": np.full(len(counts), math.nan), "map50": np.full(len(counts), math.nan)}
            for b, row in enumerate(np.asarray(counts, dtype=np.int64)):
                drawn = np.repeat(position, row)
                if not drawn.size:  # every drawn image failed in this cell
                    continue
                evaluation.params = copy.copy(params)
                evaluation.params.imgIds = [params.imgIds[i] for i in drawn]
                evaluation._paramsEval = evaluation.params
                evaluation.evalImgs = table[(blocks + drawn[None, :]).ravel()].tolist()
                with contextlib.redirect_stdout(io.StringIO()):
                    evaluation.accumulate()
                for name, value in _precision_maps(evaluation).items():
                    out[name][b] = value
            return out

        return resample


class COCODetectionTask(Task):
    """COCO 2017 val: `val2017/*.jpg` and `annotations/instances_val2017.json`. Detectors
    resize inside the model (their own policy), so the codec gets the original image."""

    name = "coco"
    default_model = "fasterrcnn_resnet50_fpn_v2"
    default_weights = "COCO_V1"
    metrics = ("map", "map50")
    outcomes = ("image_recall",)

    def layout_hint(self) -> str:
        return "expected val2017/*.jpg and annotations/instances_val2017.json"

    def find_samples(self) -> list[Sample]:
        annotations = self.root / "annotations" / "instances_val2017.json"
        if not annotations.is_file() or not (self.root / "val2017").is_dir():
            raise DatasetLayoutError(f"{self.root}: {self.layout_hint()}")
        try:
            self.ground_truth = _quiet_coco(annotations)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DatasetLayoutError(
                f"{annotations}: not a COCO instances file ({err!r})"
            ) from None
        images = sorted(self.ground_truth.dataset.get("images", []), key=lambda im: im["id"])
        return [Sample(self.root / "val2017" / im["file_name"], int(im["id"])) for im in images]

    def data_files(self) -> list[Path]:
        return [self.root / "annotations" / "instances_val2017.json"]

    def model_kwargs(self) -> dict:
        return {"num_classes": 91, "weights_backbone": None}

    def load(self, index: int) -> tuple[Tensor, int]:
        path, image_id = self.samples[index]
        return load_image(path), image_id

    def predict(
        self, model: nn.Module, images: list[Tensor], targets: Sequence = ()
    ) -> list[list[dict]]:
        results = []
        for output in model(images):  # torchvision detectors take a list of images
            boxes = output["boxes"].float().cpu()
            boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
            results.append(
                [
                    {
                        "category_id": int(label),
                        "bbox": [round(float(v), 2) for v in box],
                        "score": float(score),
                    }
                    for box, label, score in zip(
                        boxes, output["labels"].cpu(), output["scores"].cpu(), strict=True
                    )
                ]
            )
        return results

    def new_accumulator(self) -> Accumulator:
        return DetectionAccumulator(self.ground_truth)
