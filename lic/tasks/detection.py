"""COCO 2017 detection: mAP@[.5:.95] and mAP@.5 with pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from lic.data.images import load_image
from lic.tasks.base import Accumulator, DatasetLayoutError, Task


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


class DetectionAccumulator(Accumulator):
    def __init__(self, ground_truth: COCO) -> None:
        self.ground_truth = ground_truth
        self.detections: list[dict] = []
        self.image_ids: list[int] = []

    def update(self, predictions, targets, sample_ids) -> None:
        """`predictions`: per image, COCO results without ids; `targets`: the image ids."""
        for pred, image_id in zip(predictions, targets, strict=True):
            self.image_ids.append(int(image_id))
            self.detections.extend({**det, "image_id": int(image_id)} for det in pred)

    def state(self) -> dict:
        return {"detections": self.detections, "image_ids": self.image_ids}

    def merge(self, state: dict) -> None:
        self.detections.extend(state["detections"])
        self.image_ids.extend(state["image_ids"])

    def compute(self) -> dict[str, float]:
        return coco_map(self.ground_truth, self.detections, self.image_ids)


class COCODetectionTask(Task):
    """COCO 2017 val: `val2017/*.jpg` and `annotations/instances_val2017.json`. Detectors
    resize inside the model (their own policy), so the codec gets the original image."""

    name = "coco"
    default_model = "fasterrcnn_resnet50_fpn_v2"
    default_weights = "COCO_V1"
    metrics = ("map", "map50")

    def layout_hint(self) -> str:
        return "expected val2017/*.jpg and annotations/instances_val2017.json"

    def find_samples(self) -> list[tuple[Path, int]]:
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
        return [(self.root / "val2017" / im["file_name"], int(im["id"])) for im in images]

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
