"""Per-image results: the per-image state each cell keeps beside its JSON, and per_image.csv.

`cells/<task>__<coder>.images.json.gz` holds the accumulator's per-image state (scores,
sparse confusion matrices, detections, answers) and each image's bpp: enough to recompute
the cell's metrics on any resample of the images, so a re-run with another `--bootstrap`
reuses the cell. per_image.csv has one row per (cell, image): the cell's labels, the image
id, its bpp and the task's per-image columns (`Accumulator.per_image`): for metrics that
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
from pathlib import Path

from lic.data.files import write_bytes_atomic
from lic.tasks.base import Accumulator

log = logging.getLogger(__name__)
IMAGES_FORMAT = 1
LABELS = ("codec", "objective", "lambda", "quality", "task")


def images_path(cell_path: Path) -> Path:
    return cell_path.with_name(cell_path.stem + ".images.json.gz")


def write_images(path: Path, accumulator: Accumulator, image_bpp: dict[str, float]) -> None:
    data = {"format": IMAGES_FORMAT, "state": accumulator.state(), "bpp": image_bpp}
    text = json.dumps(data, separators=(",", ":"))
    write_bytes_atomic(path, gzip.compress(text.encode(), compresslevel=6, mtime=0))


def read_images(path: Path, accumulator: Accumulator) -> dict[str, float] | None:
    """Merge the stored per-image state into `accumulator` (a fresh one) and return each
    image's bpp; None when there is no usable file (the cell is then recomputed)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        if data.get("format") != IMAGES_FORMAT:
            return None
        accumulator.merge(data["state"])
        return {str(k): float(v) for k, v in data["bpp"].items()}
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as err:
        log.warning("%s: unreadable per-image state (%s); recomputing the cell", path, err)
        return None


def per_image_rows(meta: dict, accumulator: Accumulator, image_bpp: dict[str, float]) -> list[dict]:
    columns = accumulator.per_image()
    labels = {key: meta[key] for key in LABELS}
    return [
        {
            **labels,
            "image": image,
            "bpp": image_bpp.get(image),
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
