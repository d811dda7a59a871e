"""Per-image results: the per-image state each cell keeps beside its JSON, and per_image.csv.

`cells/<task>__<coder>.images.json.gz` holds the accumulator's per-image state (scores,
sparse confusion matrices, detections, answers) and each image's rates (`ImageRates`): enough
to recompute the cell's metrics and rate on any resample of the images, so a re-run with
another `--bootstrap` or `--rate-mean` reuses the cell. With `--align`, it also holds each
image's alignment metrics (`AlignValues`) and what they were computed with. per_image.csv
has one row per (cell, image): the cell's labels and task `weights` (`random` for random
networks), the image id (its path relative to the data root), its bpp, bpp_file and
pixels, and the task's per-image columns (`Accumulator.per_image`): for metrics that are
means over images (PSNR, top-1, KL, ...) the image's own value, so the column means
equal results.csv; for data-set statistics (mIoU, mAP, POPE F1) the image's own counts or
scores, which do not average to the data-set value; with `--align`, `align_<metric>` per
coded image (lic.evaluation.align_scores).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lic.data.files import gunzip_capped, read_capped, write_bytes_atomic, write_csv_atomic
from lic.errors import InputError
from lic.tasks.base import Accumulator, weights_label

log = logging.getLogger(__name__)
IMAGES_FORMAT = 2  # 2: payload bpp, file bpp and pixels per image (1: the file's bpp only)
LABELS = ("codec", "objective", "lambda", "quality", "task")


@dataclass
class ImageRates:
    """Per image id: payload bpp (the reported rate), file bpp (None: an estimate, no file)
    and unpadded pixels."""

    bpp: dict[str, float] = field(default_factory=dict)
    bpp_file: dict[str, float | None] = field(default_factory=dict)
    pixels: dict[str, int] = field(default_factory=dict)

    def add(self, image: str, payload_bits: float, file_bits: float | None, pixels: int) -> None:
        self.bpp[image] = payload_bits / pixels
        self.bpp_file[image] = None if file_bits is None else file_bits / pixels
        self.pixels[image] = pixels

    def weights(self, rate_mean: str) -> dict[str, float] | None:
        """Each image's weight in the mean (None: equal weights)."""
        return {k: float(v) for k, v in self.pixels.items()} if rate_mean == "pixels" else None

    def mean(self, rate_mean: str, file: bool = False) -> float | None:
        """The cell's bpp (`file`: of whole files) as `rate_mean` averages it
        (lic.evaluation.config.RATE_MEANS);
        None without images, or for file sizes of estimated rates."""
        values = self.bpp_file if file else self.bpp
        if not values or any(v is None for v in values.values()):
            return None
        weights = self.weights(rate_mean) or dict.fromkeys(values, 1.0)
        total = sum(weights[k] for k in values)
        return sum(v * weights[k] for k, v in values.items()) / total

    def to_json(self) -> dict:
        return {"bpp": self.bpp, "bpp_file": self.bpp_file, "pixels": self.pixels}

    @classmethod
    def from_json(cls, data: dict) -> ImageRates:
        def number(v):
            return None if v is None else float(v)

        return cls(
            {str(k): float(v) for k, v in data["bpp"].items()},
            {str(k): number(v) for k, v in data["bpp_file"].items()},
            {str(k): int(v) for k, v in data["pixels"].items()},
        )


@dataclass
class AlignValues:
    """`--align` metric values of a cell's images: metric -> image id -> value, and per
    metric what they were computed with (`AlignScorer.identity`)."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    identity: dict[str, dict] = field(default_factory=dict)

    def add(self, image_ids: list[str], scores: dict[str, list[float]]) -> None:
        for name, column in scores.items():
            self.values.setdefault(name, {}).update(zip(image_ids, column, strict=True))

    def covers(self, identity: dict[str, dict]) -> bool:
        """Whether it holds every metric of `identity`, computed as `identity` says."""
        return all(self.identity.get(name) == same for name, same in identity.items())

    def to_json(self) -> dict:
        return {"values": self.values, "identity": self.identity}

    @classmethod
    def from_json(cls, data: dict | None) -> AlignValues:
        data = data or {}
        values = {
            str(name): {str(k): float(v) for k, v in column.items()}
            for name, column in data.get("values", {}).items()
        }
        return cls(values, {str(k): dict(v) for k, v in data.get("identity", {}).items()})


def align_column(metric: str) -> str:
    """per_image.csv's column of an `--align` metric."""
    return f"align_{metric}"


def images_path(cell_path: Path) -> Path:
    return cell_path.with_name(cell_path.stem + ".images.json.gz")


IMAGES_BYTES, IMAGES_BYTES_PER_IMAGE = 2**20, 2**16
"""The cap of a per-image file, decompressed: the largest per-image states (a COCO image's
detections, a VOC confusion matrix, a VLM's answers) are a few KB."""


def write_images(
    path: Path, accumulator: Accumulator, rates: ImageRates, align: AlignValues | None = None
) -> str:
    """Write the per-image file; return the SHA-256 of its bytes (the cell file keeps it)."""
    data = {"format": IMAGES_FORMAT, "state": accumulator.state(), "rates": rates.to_json()}
    if align is not None and align.values:
        data["align"] = align.to_json()
    text = json.dumps(data, separators=(",", ":"))
    packed = gzip.compress(text.encode(), compresslevel=6, mtime=0)
    write_bytes_atomic(path, packed)
    return hashlib.sha256(packed).hexdigest()


def read_images(
    path: Path, accumulator: Accumulator, n_images: int, digest: str | None
) -> tuple[ImageRates, AlignValues] | None:
    """Merge the stored per-image state into `accumulator` (a fresh one) and return the
    images' rates and alignment values; None when there is no usable file (the cell is then
    recomputed, and why is logged): absent, of an earlier format (no payload rate), not the
    file whose SHA-256 `digest` its cell recorded, or larger than a real file of `n_images`
    images can be."""
    if not path.is_file():
        return None
    cap = IMAGES_BYTES + IMAGES_BYTES_PER_IMAGE * n_images
    try:
        packed = read_capped(path, cap)
        if digest is None or hashlib.sha256(packed).hexdigest() != digest:
            raise InputError("not the per-image file its cell was written with")
        data = json.loads(gunzip_capped(packed, cap, path))
        if data.get("format") != IMAGES_FORMAT:
            return None
        rates = ImageRates.from_json(data["rates"])
        align = AlignValues.from_json(data.get("align"))
        accumulator.merge(data["state"])
        return rates, align
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: unusable per-image state (%s); recomputing the cell", path, err)
        return None


def per_image_rows(
    meta: dict,
    accumulator: Accumulator,
    rates: ImageRates,
    align: dict[str, dict[str, float]] | None = None,
) -> list[dict]:
    """One row per image of a cell; `align` (metric -> image -> value) adds the columns
    `align_<metric>` (blank for images without a value: the uncompressed cell's)."""
    columns = accumulator.per_image()
    labels = {**{key: meta[key] for key in LABELS}, "weights": weights_label(meta)}
    align = align or {}
    return [
        {
            **labels,
            "image": image,
            "bpp": rates.bpp.get(image),
            "bpp_file": rates.bpp_file.get(image),
            "pixels": rates.pixels.get(image),
            **{name: float(values[i]) for name, values in columns.items()},
            **{align_column(name): values.get(image) for name, values in align.items()},
        }
        for i, image in enumerate(accumulator.image_ids())
    ]


def write_per_image(path: Path, rows: list[dict], root: Path) -> None:
    """per_image.csv; columns are the labels, image, bpp and every task's per-image names."""
    write_csv_atomic(path, rows, list(dict.fromkeys(k for row in rows for k in row)), root)
