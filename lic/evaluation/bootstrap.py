"""Percentile bootstrap intervals over images, paired across the curves of a task.

A resample draws N images with replacement from the task's N images (all of them, in the
task's order), so every cell of a task (every codec, objective and quality) is resampled
with the same images: curve points and BD values computed from the same resample are
*paired*. An image that failed in a cell is simply absent from that cell's resamples. Draws
depend only on (seed, N, resample index): blocks of BLOCK resamples each get their own
seeded generator, so a run reproduces exactly and memory stays at BLOCK x N counts.

Each resample recomputes the metric from the per-image state the task's accumulator keeps:
for metrics that are functions of per-image totals (means, confusion matrices, answer
tallies) that is one matrix product per block (`lic.tasks.base.TableAccumulator`); COCO mAP
runs one COCOeval `accumulate` per resample and is capped at its accumulator's
`max_resamples` (200). The rate of a resample is the mean bpp of the drawn images, weighted
as the run's `--rate-mean` says (by pixels: total bits over total pixels drawn). BD
values are recomputed on every resample in one vectorised PCHIP pass (`bd.bd_many`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from lic.evaluation.bd import bd_many
from lic.evaluation.per_image import ImageRates, per_image_rows
from lic.tasks.base import Accumulator, Task

LEVEL = 0.95
BLOCK = 100  # resamples per seeded block


def draw_blocks(n_images: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(b, n_images) counts of how often each image is drawn, BLOCK resamples at a time."""
    for block, start in enumerate(range(0, resamples, BLOCK)):
        size = min(BLOCK, resamples - start)
        draws = np.random.default_rng([seed, block]).integers(0, n_images, (size, n_images))
        offsets = (np.arange(size) * n_images)[:, None]
        flat = np.bincount((draws + offsets).ravel(), minlength=size * n_images)
        yield flat.reshape(size, n_images)


def resample_cell(
    accumulator: Accumulator,
    image_bpp: Mapping[str, float] | None,
    task_ids: Sequence[str],
    resamples: int,
    seed: int,
    weights: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """metric -> (B,) values of one cell on each resample (and 'bpp' when the cell has a
    rate, its images weighted by `weights`, equally without); B is `resamples`, or the
    accumulator's `max_resamples` if smaller."""
    resamples = min(resamples, getattr(accumulator, "max_resamples", None) or resamples)
    ids = accumulator.image_ids()
    position = {image: i for i, image in enumerate(task_ids)}
    columns = np.asarray([position[image] for image in ids], dtype=np.int64)
    metrics = accumulator.resampler()
    bpp = np.asarray([image_bpp[i] for i in ids], dtype=float) if image_bpp else None
    weight = np.asarray([weights[i] for i in ids] if weights else np.ones(len(ids)), dtype=float)
    parts: dict[str, list[np.ndarray]] = {}
    for counts in draw_blocks(len(task_ids), resamples, seed):
        cell_counts = counts[:, columns]
        values = dict(metrics(cell_counts))
        if bpp is not None:
            drawn = cell_counts @ weight
            with np.errstate(invalid="ignore", divide="ignore"):
                values["bpp"] = np.where(drawn > 0, cell_counts @ (bpp * weight) / drawn, math.nan)
        for name, value in values.items():
            parts.setdefault(name, []).append(np.asarray(value, dtype=float))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def interval(values: np.ndarray | Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of the finite values (NaN, NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


Points = Sequence[tuple[np.ndarray, np.ndarray]]  # per curve point: (bpp, value) resamples


def paired_bd(
    reference: Points, test: Points, rate: bool, higher_better: bool = True, level: float = LEVEL
) -> tuple[float, float, int, int]:
    """Interval of BD-rate (`rate`) or BD-metric recomputed on each resample, both curves from
    the same resampled images, all resamples at once (`bd.bd_many`): (low, high, resamples
    where it is undefined, resamples)."""
    resamples = min(len(a) for points in (reference, test) for pair in points for a in pair)

    def columns(points: Points, part: int) -> np.ndarray:
        return np.stack([np.asarray(p[part][:resamples], dtype=float) for p in points], axis=1)

    values = bd_many(
        columns(reference, 0), columns(reference, 1), columns(test, 0), columns(test, 1),
        rate, higher_better,
    )  # fmt: skip
    low, high = interval(values, level)
    return low, high, int(np.sum(~np.isfinite(values))), resamples


def add_intervals(
    cell: dict,
    task: Task,
    accumulator: Accumulator,
    rates: ImageRates,
    resamples: int,
    seed: int,
    rate_mean: str = "images",
    align: dict[str, dict[str, float]] | None = None,
) -> None:
    """Attach to a cell (in memory) its per-image rows (with the `align` metric values),
    its resampled metrics and bpp (`resamples`, the rate averaged as `rate_mean`) and the
    interval of every metric (`ci`); `resamples` 0: no intervals."""
    cell["per_image"] = per_image_rows(cell["meta"], accumulator, rates, align)
    if resamples <= 0:
        return
    task_ids = [task.sample_id(i) for i in range(len(task))]
    weights = rates.weights(rate_mean)
    cell["resamples"] = resample_cell(accumulator, rates.bpp, task_ids, resamples, seed, weights)
    cell["ci"] = {name: interval(values) for name, values in cell["resamples"].items()}
