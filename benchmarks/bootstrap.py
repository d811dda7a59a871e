"""What the bootstrap intervals cost: resampling each kind of per-image state, and the paired
BD recomputation, on synthetic data of the official data sets' sizes (no data needed).

    python benchmarks/bootstrap.py [--resamples 1000] [--points 6]

Reported per case: seconds for all resamples of one cell (one curve point). Cases: a mean
metric over the 24 Kodak images and over the 50,000 ImageNet val images (one matrix product
per block of resamples), VOC's 1,449 confusion matrices (21 classes), POPE's 9,000 answers on
500 images, and a paired BD-rate + BD-metric between two curves of `--points` points
(all resamples in one vectorised PCHIP pass).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lic.evaluation.bootstrap import paired_bd, resample_cell
from lic.tasks.classification import TopKAccumulator
from lic.tasks.fidelity import FidelityAccumulator
from lic.tasks.segmentation import ConfusionAccumulator
from lic.tasks.vqa import Question, YesNoAccumulator


def timed(label: str, fn) -> object:
    start = time.perf_counter()
    out = fn()
    print(f"{label:<44} {time.perf_counter() - start:8.3f} s")
    return out


def cases(resamples: int) -> None:
    rng = np.random.default_rng(0)
    kodak = FidelityAccumulator(["psnr", "ms_ssim"])
    ids = [f"kodim{i:02d}" for i in range(24)]
    kodak.update([{"psnr": 30 + rng.normal(), "ms_ssim": 0.97} for _ in ids], [None] * 24, ids)
    bpp = {i: 0.5 + 0.1 * rng.random() for i in ids}
    timed("kodak fidelity, 24 images", lambda: resample_cell(kodak, bpp, ids, resamples, 0))

    ids = [str(i) for i in range(50_000)]
    imagenet = TopKAccumulator()
    imagenet.update(list(torch.randn(50_000, 10)), rng.integers(0, 10, 50_000).tolist(), ids)
    timed(
        "imagenet top-1/top-5, 50,000 images",
        lambda: resample_cell(imagenet, None, ids, resamples, 0),
    )

    ids = [str(i) for i in range(1449)]
    voc = ConfusionAccumulator()
    masks = [torch.randint(0, 21, (64, 64), dtype=torch.uint8) for _ in range(2 * len(ids))]
    voc.update(masks[: len(ids)], masks[len(ids) :], ids)
    timed("voc mIoU, 1,449 confusion matrices", lambda: resample_cell(voc, None, ids, resamples, 0))

    ids = [str(i) for i in range(500)]
    pope = YesNoAccumulator()
    labels = ("yes", "no")
    questions = [
        [
            Question(
                f"{i}-{j}", "q", labels[(i + j) % 2], ("random", "popular", "adversarial")[j % 3]
            )
            for j in range(18)
        ]
        for i in range(500)
    ]
    answers = [[labels[rng.integers(0, 2)] for _ in range(18)] for _ in range(500)]
    pope.update(answers, questions, ids)
    timed(
        "pope F1 etc., 9,000 answers on 500 images",
        lambda: resample_cell(pope, None, ids, resamples, 0),
    )


def bd_case(resamples: int, points: int) -> None:
    rng = np.random.default_rng(1)
    rate = np.geomspace(0.2, 2.0, points)

    def curve(offset: float):
        return [(r * (1 + 0.02 * rng.standard_normal(resamples)), 30 + 5 * np.log(r) + offset
                 + 0.3 * rng.standard_normal(resamples)) for r in rate]  # fmt: skip

    reference, test = curve(0.0), curve(0.8)
    timed(
        f"paired BD-rate + BD-metric, 2 x {points} points",
        lambda: (paired_bd(reference, test, True), paired_bd(reference, test, False)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--points", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases(args.resamples)
    bd_case(args.resamples, args.points)


if __name__ == "__main__":
    main()
