"""Per-image results: the per-image state each cell keeps beside its JSON, and per_image.csv.

`cells/<task>__<coder>.images.json.gz` holds the accumulator's per-image state (scores,
sparse confusion matrices, detections, answers) and each image's rates (`ImageRates`): enough
to recompute the cell's metrics and rate on any resample of the images, so a re-run with
another `--bootstrap` or `--rate-mean` reuses the cell. per_image.csv has one row per (cell,
image): the cell's labels, the image id, its bpp, bpp_file and pixels, and the task's
per-image columns (`Accumulator.per_image`): for metrics that
are means over images (PSNR, top-1, KL, ...) the image's own value, so the column means
equal results.csv; for data-set statistics (mIoU, mAP, POPE F1) the image's own counts or
scores, which do not average to the data-set value.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lic.data.files import write_bytes_atomic
from lic.tasks.base import Accumulator

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


def images_path(cell_path: Path) -> Path:
    return cell_path.with_name(cell_path.stem + ".images.json.gz")


def write_images(path: Path, accumulator: Accumulator, rates: ImageRates) -> None:
    data = {"format": IMAGES_FORMAT, "state": accumulator.state(), "rates": rates.to_json()}
    text = json.dumps(data, separators=(",", ":"))
    write_bytes_atomic(path, gzip.compress(text.encode(), compresslevel=6, mtime=0))


def read_images(path: Path, accumulator: Accumulator) -> ImageRates | None:
    """Merge the stored per-image state into `accumulator` (a fresh one) and return the
    images' rates; None when there is no usable file (the cell is then recomputed; files of
    an earlier format, which lack the payload rate, too)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        if data.get("format") != IMAGES_FORMAT:
            return None
        rates = ImageRates.from_json(data["rates"])
        accumulator.merge(data["state"])
        return rates
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as err:
        log.warning("%s: unreadable per-image state (%s); recomputing the cell", path, err)
        return None


def per_image_rows(meta: dict, accumulator: Accumulator, rates: ImageRates) -> list[dict]:
    columns = accumulator.per_image()
    labels = {key: meta[key] for key in LABELS}
    return [
        {
            **labels,
            "image": image,
            "bpp": rates.bpp.get(image),
            "bpp_file": rates.bpp_file.get(image),
            "pixels": rates.pixels.get(image),
            **{name: float(values[i]) for name, values in columns.items()},
        }
        for i, image in enumerate(accumulator.image_ids())
    ]


def write_per_image(path: Path, rows: list[dict]) -> None:
    """per_image.csv; columns are the labels, image, bpp and every task's per-image names."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names, restval="")
        writer.writeheader()
        writer.writerows(rows)
