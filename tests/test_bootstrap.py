"""Bootstrap intervals: seeded draws (golden numbers), vectorised resamples equal to
recomputing each resample by hand, paired BD intervals, and a harness run whose
per_image.csv averages to results.csv with an interval around every point."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb
from pycocotools.coco import COCO

from lic.evaluation import run
from lic.evaluation.bd import bd_many, bd_metric, bd_rate
from lic.evaluation.bootstrap import draw_blocks, interval, paired_bd, resample_cell
from lic.tasks.classification import AgreementAccumulator
from lic.tasks.detection import DetectionAccumulator
from lic.tasks.fidelity import FidelityAccumulator
from lic.tasks.segmentation import ConfusionAccumulator
from lic.tasks.vqa import Question, YesNoAccumulator

PSNR = [31.2, 28.4, 35.0, 30.1, 26.7, 33.3, 29.9, 32.5]  # eight images' PSNR (dB)


def fidelity(values=PSNR, ids=None) -> FidelityAccumulator:
    acc = FidelityAccumulator(["psnr"])
    ids = ids or [f"im{i}" for i in range(len(values))]
    acc.update([{"psnr": v} for v in values], [None] * len(values), ids)
    return acc


def test_draws_are_seeded_counts_of_n_images():
    blocks = list(draw_blocks(8, 250, seed=0))
    assert [len(b) for b in blocks] == [100, 100, 50]
    counts = np.concatenate(blocks)
    assert counts.shape == (250, 8) and (counts.sum(1) == 8).all()
    again = np.concatenate(list(draw_blocks(8, 250, seed=0)))
    assert (counts == again).all()
    assert not (counts == np.concatenate(list(draw_blocks(8, 250, seed=1)))).all()


def test_golden_interval_of_a_mean_on_fixed_data():
    ids = [f"im{i}" for i in range(8)]
    values = resample_cell(fidelity(), None, ids, 1000, seed=0)["psnr"]
    assert values.shape == (1000,)
    low, high = interval(values)
    # pinned: seed 0, 1000 resamples of these eight values (mean 30.8875)
    assert (low, high) == pytest.approx((GOLDEN_LOW, GOLDEN_HIGH), abs=1e-9)
    assert low < np.mean(PSNR) < high


def test_rate_resamples_weighted_by_pixels_are_total_bits_over_total_pixels():
    """--rate-mean pixels: each resample's bpp is its drawn images' bits over their pixels."""
    ids = [f"im{i}" for i in range(8)]
    bpp = {i: 0.1 + 0.05 * n for n, i in enumerate(ids)}
    pixels = {i: 1000.0 * (1 + n % 3) for n, i in enumerate(ids)}  # three image sizes
    weighted = resample_cell(fidelity(), bpp, ids, 40, seed=2, weights=pixels)["bpp"]
    equal = resample_cell(fidelity(), bpp, ids, 40, seed=2)["bpp"]
    for b, counts in enumerate(next(draw_blocks(8, 40, seed=2))):
        drawn = np.repeat(ids, counts)
        bits = sum(bpp[i] * pixels[i] for i in drawn)
        assert weighted[b] == pytest.approx(bits / sum(pixels[i] for i in drawn), rel=1e-12)
        assert equal[b] == pytest.approx(np.mean([bpp[i] for i in drawn]), rel=1e-12)
    assert not np.allclose(weighted, equal)


def test_vectorised_resamples_equal_recomputing_each_by_hand():
    ids = [f"im{i}" for i in range(8)]
    counts = next(draw_blocks(8, 20, seed=3))
    # consistency: per-image logits; each resample rebuilt as a new accumulator
    generator = torch.Generator().manual_seed(0)
    decoded, reference = (
        torch.randn(8, 10, generator=generator),
        torch.randn(8, 10, generator=generator),
    )
    acc = AgreementAccumulator()
    acc.update(list(decoded), list(reference), ids)
    fast = acc.resample(counts)
    for b in range(len(counts)):
        drawn = np.repeat(np.arange(8), counts[b])
        slow = AgreementAccumulator()
        slow.update(
            [decoded[i] for i in drawn], [reference[i] for i in drawn], [ids[i] for i in drawn]
        )
        for name, value in slow.compute().items():
            assert fast[name][b] == pytest.approx(value, abs=1e-9), name
    # segmentation: confusion matrices
    masks = [torch.randint(0, 4, (6, 6), generator=generator) for _ in range(16)]
    seg = ConfusionAccumulator(num_classes=4)
    seg.update(masks[:8], masks[8:], ids)
    fast = seg.resample(counts)
    for b in range(len(counts)):
        drawn = np.repeat(np.arange(8), counts[b])
        slow = ConfusionAccumulator(num_classes=4)
        slow.update(
            [masks[i] for i in drawn], [masks[8 + i] for i in drawn], [ids[i] for i in drawn]
        )
        for name, value in slow.compute().items():
            assert fast[name][b] == pytest.approx(value, abs=1e-9), name


def test_pope_resamples_equal_recomputing_each_by_hand():
    answers = [["Yes", "no"], ["There is not a dog."], ["hmm", "Yes"], ["No", "yes", "no"]]
    truths = [["yes", "no"], ["yes"], ["no", "yes"], ["no", "no", "yes"]]
    questions = [
        [Question(f"{i}-{j}", "q", t, "random" if j % 2 else "popular") for j, t in enumerate(ts)]
        for i, ts in enumerate(truths)
    ]
    ids = ["a", "b", "c", "d"]
    acc = YesNoAccumulator()
    acc.update(answers, questions, ids)
    assert acc.compute() == pytest.approx(YesNoAccumulator.compute(acc))
    counts = next(draw_blocks(4, 30, seed=1))
    fast = acc.resample(counts)
    for b in range(len(counts)):
        drawn = np.repeat(np.arange(4), counts[b])
        slow = YesNoAccumulator()
        slow.update(
            [answers[i] for i in drawn], [questions[i] for i in drawn], [ids[i] for i in drawn]
        )
        expected = slow.compute()
        for name in ("accuracy", "f1", "yes_ratio", "unparsed"):
            assert fast[name][b] == pytest.approx(expected[name], abs=1e-9), name


def make_coco(root: Path) -> COCO:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in (1, 2, 3)]
    boxes = {1: [10, 10, 40, 30], 2: [15, 15, 30, 30], 3: [50, 20, 30, 40]}
    annotations = [
        {
            "id": i,
            "image_id": i,
            "category_id": 1 + i % 2,
            "bbox": b,
            "area": b[2] * b[3],
            "iscrowd": 0,
        }
        for i, b in boxes.items()
    ]
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1}, {"id": 2}]}
    path = root / "gt.json"
    path.write_text(__import__("json").dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_map_resample_equals_cocoeval_on_the_drawn_images(tmp_path):
    gt = make_coco(tmp_path)
    detections = [
        [{"category_id": 2, "bbox": [11.0, 12.0, 40.0, 29.0], "score": 0.9}],
        [{"category_id": 1, "bbox": [14.0, 15.0, 30.0, 30.0], "score": 0.8}],
        [{"category_id": 2, "bbox": [60.0, 20.0, 30.0, 40.0], "score": 0.7}],
    ]
    acc = DetectionAccumulator(gt)
    acc.update(detections, [1, 2, 3], ["1", "2", "3"])
    whole = acc.resample(np.ones((1, 3), dtype=int))
    assert whole["map"][0] == pytest.approx(acc.compute()["map"])
    # drawing image 1 twice and 3 once equals COCOeval on a data set with those three images
    twice = acc.resample(np.array([[2, 0, 1]]))
    copy = DetectionAccumulator(make_coco_copy(tmp_path, gt, [1, 1, 3]))
    copy.update([detections[0], detections[0], detections[2]], [1, 4, 3], ["1", "1b", "3"])
    assert twice["map"][0] == pytest.approx(copy.compute()["map"])
    assert twice["map"][0] != pytest.approx(whole["map"][0])


def make_coco_copy(root: Path, gt: COCO, image_ids: list[int]) -> COCO:
    """The ground truth with image 1 duplicated as image 4."""
    import json

    data = json.loads(json.dumps(gt.dataset))
    data["images"].append({**data["images"][0], "id": 4, "file_name": "4.jpg"})
    data["annotations"].append({**data["annotations"][0], "id": 4, "image_id": 4})
    data["images"] = [im for im in data["images"] if im["id"] != 2]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2]
    path = root / "gt_copy.json"
    path.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_paired_bd_interval_uses_the_same_images_for_both_curves():
    ids = [f"im{i}" for i in range(8)]
    rates = (0.2, 0.4, 0.8)
    rng = np.random.default_rng(0)
    # per image, per point: the test codec is the reference plus 0.5 dB on every image
    base = [np.asarray(PSNR) - 4 + 3 * k + rng.normal(0, 0.05, 8) for k in range(3)]
    reference, test = [], []
    for k, rate in enumerate(rates):
        bpp = {i: rate * (1 + 0.1 * n) for n, i in enumerate(ids)}
        ref = resample_cell(fidelity(base[k]), bpp, ids, 300, seed=0)
        tst = resample_cell(fidelity(base[k] + 0.5), bpp, ids, 300, seed=0)
        reference.append((ref["bpp"], ref["psnr"]))
        test.append((tst["bpp"], tst["psnr"]))
    low, high, undefined, total = paired_bd(reference, test, rate=True)
    curve_rates = [1.35 * r for r in rates]  # mean over images of rate * (1 + 0.1 n)
    means = [b.mean() for b in base]
    point = bd_rate(curve_rates, means, curve_rates, [m + 0.5 for m in means])
    assert undefined == 0 and total == 300
    assert low < point < high < 0
    assert high - low < 0.2 * abs(point)  # paired: image-to-image variation cancels


GOLDEN_LOW, GOLDEN_HIGH = 29.1865625, 32.7


@pytest.mark.slow
def test_harness_writes_per_image_rows_and_intervals(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        save_rgb(folder / f"{i}.png", photo_like(168, 176, seed=i))
    options = dict(
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path / "out",
        baselines=["jpeg", "webp"],
        qualities={"jpeg": [20, 50, 80], "webp": [20, 50, 80]},
        anchor="jpeg",
        metrics=["psnr", "ms_ssim"],
        workers=0,
        device="cpu",
        progress=False,
        bootstrap=200,
    )
    rows = run(**options)
    per_image = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    assert len(per_image) == 6 * 7  # six images in each of seven cells (one uncompressed)
    for row in rows:
        cell = [
            r
            for r in per_image
            if (r["codec"], r["quality"]) == (row["codec"], str(row["quality"] or ""))
        ]
        if row["metric"] in (
            "psnr",
            "ms_ssim",
        ):  # means over images: per_image.csv averages to them
            assert np.mean([float(r[row["metric"]]) for r in cell]) == pytest.approx(row["value"])
        if row["bpp"] is not None:
            assert np.mean([float(r["bpp"]) for r in cell]) == pytest.approx(row["bpp"])
            assert row["ci_low"] < row["value"] < row["ci_high"], row
    (bd,) = [
        b for b in csv.DictReader((tmp_path / "out" / "bd.csv").open()) if b["metric"] == "psnr"
    ]
    rate, low, high = (
        float(bd[k]) for k in ("bd_rate_percent", "bd_rate_ci_low", "bd_rate_ci_high")
    )
    assert low < rate < high
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"[{low:.1f}, {high:.1f}]".replace("-", "\u2212") in summary
    # another --bootstrap reuses every cell (per-image state on disk); 0 disables intervals
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "cells").iterdir()}
    rows = run(**{**options, "bootstrap": 0})
    assert all(r["ci_low"] is None for r in rows)
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "cells").iterdir()}


def test_vectorised_bd_equals_the_scalar_functions_on_noisy_resamples():
    """bd_many (all resamples in one PCHIP pass) against bd_rate/bd_metric row by row,
    including rows the scalar functions refuse (zig-zags, repeated rates, NaN, no overlap)."""
    rng = np.random.default_rng(1)
    grid = np.geomspace(0.2, 2.0, 5)
    rate_ref = grid * np.clip(1 + 0.3 * rng.standard_normal((300, 5)), 0.05, None)
    q_ref = 30 + 5 * np.log(grid) + 2 * rng.standard_normal((300, 5))
    rate_test = grid * np.exp(rng.normal(0, 1, (300, 1)))
    q_test = 31 + 5 * np.log(grid) + 2 * rng.standard_normal((300, 5))
    q_test[0, 1], rate_ref[1, 0] = np.nan, rate_ref[1, 1]
    for rate, scalar in ((True, bd_rate), (False, bd_metric)):
        for higher_better in (True, False):
            sign = 1 if higher_better else -1
            many = bd_many(rate_ref, sign * q_ref, rate_test, sign * q_test, rate, higher_better)
            one_by_one = []
            for b in range(300):
                extra = {"higher_better": higher_better} if rate else {}
                try:
                    one_by_one.append(
                        scalar(
                            rate_ref[b], sign * q_ref[b], rate_test[b], sign * q_test[b], **extra
                        )
                    )
                except ValueError:
                    one_by_one.append(np.nan)
            assert np.allclose(many, one_by_one, rtol=1e-9, atol=1e-9, equal_nan=True)
            assert 0 < np.isnan(many).sum() < 300  # both kinds of rows are exercised
