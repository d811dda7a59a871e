"""PASCAL VOC 2012 semantic segmentation: mIoU over 21 classes, 255 ignored."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode

from lic.data.images import ImageReadError, load_image, open_image
from lic.tasks.base import Accumulator, DatasetLayoutError, Sample, TableAccumulator, Task

NUM_CLASSES = 21
IGNORE = 255


class ConfusionAccumulator(TableAccumulator):
    """One confusion matrix per image (kept sparse: flat index, count); mIoU and pixel
    accuracy come from their sum, so a resample sums the drawn images' matrices."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.ids: list[str] = []
        self.matrices: list[list[list[int]]] = []  # per image: [flat index, count] pairs

    def update(self, predictions, targets, sample_ids) -> None:
        n = self.num_classes
        for pred, target, sample_id in zip(predictions, targets, sample_ids, strict=True):
            keep = target != IGNORE
            counts = torch.bincount(target[keep].long() * n + pred[keep].long(), minlength=n * n)
            nonzero = counts.nonzero().flatten()
            self.matrices.append(torch.stack([nonzero, counts[nonzero]], 1).tolist())
            self.ids.append(sample_id)

    def state(self) -> dict:
        return {"ids": list(self.ids), "matrices": list(self.matrices)}

    def merge(self, state: dict) -> None:
        self.ids += state["ids"]
        self.matrices += state["matrices"]

    def image_ids(self) -> list[str]:
        return self.ids

    def image_table(self) -> dict[str, np.ndarray]:
        n = self.num_classes
        table = np.zeros((len(self.ids), n * n))
        for row, pairs in enumerate(self.matrices):
            if pairs:
                index, count = np.asarray(pairs).T
                table[row, index] = count
        return {"confusion": table.reshape(-1, n, n)}

    def from_totals(self, totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = totals["confusion"]  # (B, truth, predicted)
        diag = np.diagonal(m, axis1=1, axis2=2)
        union = m.sum(1) + m.sum(2) - diag
        present = union > 0
        iou = np.divide(diag, union, out=np.zeros_like(diag), where=present)
        n_present = present.sum(1)
        miou = np.where(n_present > 0, iou.sum(1) / np.maximum(n_present, 1), math.nan)
        pixel_acc = diag.sum(1) / np.maximum(m.sum((1, 2)), 1)
        return {"miou": 100.0 * miou, "pixel_acc": 100.0 * pixel_acc}

    def per_image(self) -> dict[str, np.ndarray]:
        """Each image's own mIoU (classes in it or predicted in it) and pixel accuracy; the
        task's values come from summed matrices, not from these means."""
        values = self.from_totals(self.image_table())
        return {"image_miou": values["miou"], "image_pixel_acc": values["pixel_acc"]}


class VOCSegmentationTask(Task):
    """VOC2012: `JPEGImages/`, `SegmentationClass/` (palette PNGs), and
    `ImageSets/Segmentation/val.txt`. `root` is VOC2012 or the VOCdevkit above it."""

    name = "voc"
    default_model = "deeplabv3_resnet50"
    default_weights = "COCO_WITH_VOC_LABELS_V1"
    metrics = ("miou", "pixel_acc")
    outcomes = ("image_miou",)

    def layout_hint(self) -> str:
        return (
            "expected VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, "
            "ImageSets/Segmentation/val.txt}"
        )

    def find_samples(self) -> list[Sample]:
        if (self.root / "VOC2012").is_dir():
            self.root = self.root / "VOC2012"
        split = self.root / "ImageSets" / "Segmentation" / "val.txt"
        if not split.is_file():
            raise DatasetLayoutError(f"{split}: missing ({self.layout_hint()})")
        names = [line.strip() for line in split.read_text().splitlines() if line.strip()]
        samples = [
            Sample(
                self.root / "JPEGImages" / f"{n}.jpg", self.root / "SegmentationClass" / f"{n}.png"
            )
            for n in names
        ]
        missing = [str(p) for pair in samples for p in pair if not p.is_file()]
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} file(s) listed in {split} are missing, "
                f"e.g. {missing[0]} ({self.layout_hint()})"
            )
        return samples

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ref = self.model_ref.transform()
        self.resize = int(ref.resize_size[0]) if ref is not None else 520
        self.mean = torch.tensor(ref.mean if ref is not None else (0.485, 0.456, 0.406))
        self.std = torch.tensor(ref.std if ref is not None else (0.229, 0.224, 0.225))

    def model_kwargs(self) -> dict:
        return {"num_classes": NUM_CLASSES, "weights_backbone": None}

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, mask_path = self.samples[index]
        image = TF.resize(load_image(image_path), [self.resize], antialias=True)
        try:
            with open_image(mask_path) as mask_file:
                if mask_file.mode not in ("P", "L"):
                    raise ImageReadError(
                        mask_path,
                        f"mask mode {mask_file.mode}, expected a palette PNG of class indices",
                    )
                mask = torch.from_numpy(np.array(mask_file, dtype=np.uint8))
        except OSError as err:
            raise ImageReadError(mask_path, f"unreadable mask ({err})") from None
        mask = TF.resize(
            mask[None], list(image.shape[-2:]), interpolation=InterpolationMode.NEAREST
        )[0]
        return image, mask

    def predict(
        self, model: nn.Module, images: list[Tensor], targets: Sequence = ()
    ) -> list[Tensor]:
        out = []
        for image in images:  # sizes differ after the short-side resize
            x = (image[None] - self.mean.view(1, 3, 1, 1).to(image.device)) / self.std.view(
                1, 3, 1, 1
            ).to(image.device)
            out.append(model(x)["out"][0].argmax(0).to(torch.uint8).cpu())
        return out

    def new_accumulator(self) -> Accumulator:
        return ConfusionAccumulator()
