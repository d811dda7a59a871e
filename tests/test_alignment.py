"""Metric-task alignment (`lic eval --align`, `lic align`): the statistics against truths known
by construction and against scipy, and a run whose per-image metric values equal `lic score`
on the same decoded task inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint
from scipy.stats import kendalltau, rankdata, spearmanr

from lic.evaluation.alignment import alignment, correlations, kendall, pair_tallies

OUTCOMES = {"consistency": ["top1_agreement", "kl"]}


def synthetic_rows(seed: int = 0, images: int = 30, cells: int = 6) -> list[dict]:
    """Per-image rows where the truth is known: the outcome is a noisy threshold of each
    decoded image's quality q; `good` is q plus a little noise, `bad` unrelated to q,
    `lpips` decreases with q (lower is better); KL falls as q rises."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in range(images):
        hardness = rng.normal()
        for cell in range(cells):
            q = cell + rng.normal(scale=0.7)
            kept = q - hardness + rng.normal(scale=0.5) > 2.5
            rows.append(
                {
                    "task": "consistency",
                    "codec": "c",
                    "objective": "mse",
                    "lambda": cell,
                    "quality": "",
                    "image": f"img{image}",
                    "bpp": 0.1 * (cell + 1),
                    "top1_agreement": 100.0 * kept,
                    "kl": math.exp(-q) + 0.01 * rng.random(),
                    "align_psnr": q + rng.normal(scale=0.3),
                    "align_ms_ssim": rng.normal(),
                    "align_lpips": -q + rng.normal(scale=0.3),
                }
            )
    return rows


def table(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["outcome"], r["metric"], r["statistic"]): r for r in rows}


def test_a_metric_that_tracks_the_outcome_beats_an_unrelated_one():
    rows = alignment(synthetic_rows(), OUTCOMES, ["psnr", "ms_ssim", "lpips"], resamples=200)
    got = table(rows)
    for outcome in OUTCOMES["consistency"]:
        good, bad = got[outcome, "psnr", "2afc"], got[outcome, "ms_ssim", "2afc"]
        assert good["ci_low"] > 0.75 and bad["ci_low"] < 0.5 < bad["ci_high"]
        assert bad["vs_psnr_ci_high"] < 0  # paired: worse than PSNR with confidence
        assert got[outcome, "psnr", "srcc"]["value"] > 0.5
        assert got[outcome, "lpips", "srcc"]["value"] > 0.5  # lower-better metric, signed
    # golden values (seed 0): a change in the statistics' definitions shows here
    assert got["top1_agreement", "psnr", "2afc"]["value"] == pytest.approx(0.986047, abs=1e-6)
    assert got["top1_agreement", "psnr", "2afc"]["n"] == 215
    assert got["kl", "lpips", "srcc"]["value"] == pytest.approx(0.984477, abs=1e-6)
    assert got["kl", "psnr", "srcc_given_bpp"]["value"] == pytest.approx(0.896892, abs=1e-6)


def test_point_values_equal_a_direct_computation():
    """2AFC by looping over pairs, SRCC by scipy, the partial SRCC as the correlation of the
    ranks' residuals after regressing out the rank of bpp."""
    rows = synthetic_rows(seed=2, images=12, cells=5)
    got = table(alignment(rows, OUTCOMES, ["psnr", "lpips"], resamples=0))
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    agree = pairs = 0.0
    for versions in by_image.values():
        for i, a in enumerate(versions):
            for b in versions[i + 1 :]:
                if a["top1_agreement"] != b["top1_agreement"]:
                    pairs += 1
                    better = a if a["top1_agreement"] > b["top1_agreement"] else b
                    worse = b if better is a else a
                    agree += float(better["align_psnr"] > worse["align_psnr"])
    assert got["top1_agreement", "psnr", "2afc"]["value"] == pytest.approx(agree / pairs)
    kl = np.array([-r["kl"] for r in rows])  # lower is better: negated
    lpips = np.array([-r["align_lpips"] for r in rows])
    bpp = np.array([r["bpp"] for r in rows])
    assert got["kl", "lpips", "srcc"]["value"] == pytest.approx(spearmanr(lpips, kl)[0])

    def residual(y, x):
        y, x = rankdata(y), rankdata(x)
        slope, intercept = np.polyfit(x, y, 1)
        return y - (slope * x + intercept)

    partial = np.corrcoef(residual(lpips, bpp), residual(kl, bpp))[0, 1]
    assert got["kl", "lpips", "srcc_given_bpp"]["value"] == pytest.approx(partial)
    assert got["kl", "lpips", "krcc"]["value"] == pytest.approx(kendalltau(lpips, kl)[0])
    assert math.isnan(got["kl", "lpips", "2afc"]["ci_low"])  # no resamples: no interval


def test_monotone_transforms_change_nothing():
    rows = synthetic_rows(seed=1)
    for r in rows:  # ms_ssim := exp(psnr): a strictly increasing transform of it
        r["align_ms_ssim"] = math.exp(r["align_psnr"])
    got = table(alignment(rows, OUTCOMES, ["psnr", "ms_ssim"], resamples=100))
    for outcome in OUTCOMES["consistency"]:
        for statistic in ("2afc", "srcc", "srcc_given_bpp", "krcc"):
            a, b = got[outcome, "psnr", statistic], got[outcome, "ms_ssim", statistic]
            assert a["value"] == pytest.approx(b["value"], abs=1e-12)
            assert (a["ci_low"], a["ci_high"]) == pytest.approx((b["ci_low"], b["ci_high"]))
            assert b["vs_psnr"] == pytest.approx(0, abs=1e-12)


def test_metric_ties_count_one_half_and_equal_outcomes_no_pair():
    outcome = np.array([[1.0], [0.0], [0.0], [1.0]])  # 4 cells, one image
    metric = np.array([[2.0], [2.0], [1.0], [3.0]])
    agree, pairs = pair_tallies(outcome, metric)
    # pairs with different outcomes: (0,1) tie -> 1/2, (0,2) right, (1,3) right, (2,3) right
    assert pairs.tolist() == [4.0] and agree.tolist() == [3.5]


def test_resampled_correlations_are_those_of_the_replicated_sample():
    rng = np.random.default_rng(3)
    metric, outcome = rng.integers(0, 5, 50).astype(float), rng.integers(0, 3, 50).astype(float)
    bpp = rng.normal(size=50)
    weights = rng.integers(0, 3, (4, 50))
    got = correlations(metric, outcome, bpp, weights)
    tau = kendall(metric, outcome, weights)
    for row, w in enumerate(weights):
        drawn = np.repeat(np.arange(50), w)
        assert got["srcc"][row] == pytest.approx(spearmanr(metric[drawn], outcome[drawn])[0])
        assert tau[row] == pytest.approx(kendalltau(metric[drawn], outcome[drawn])[0])


def test_the_weights_column_names_the_random_networks_and_only_them():
    from lic.evaluation.alignment_report import networks_note

    assert networks_note(["psnr", "lpips", "mlclipsim"], "none") == (
        "random LPIPS and ML-CLIPSim: format check only"
    )
    assert networks_note(["psnr", "lpips"], None) == "pretrained"
    assert networks_note(["psnr", "ms_ssim"], "none") == ""  # no network: nothing is random


def test_degenerate_inputs_give_nan_not_errors():
    """No coded cell: no rows; one cell of one image: no pairs, no correlation; no metric
    value at all: NaN everywhere."""
    rows = synthetic_rows(images=1, cells=1)
    only_uncompressed = [r | {"codec": "uncompressed"} for r in rows]
    assert alignment(only_uncompressed, OUTCOMES, ["psnr"], resamples=10) == []
    single = alignment(rows, OUTCOMES, ["psnr"], resamples=10)
    assert len(single) == 8 and all(math.isnan(r["value"]) for r in single)
    missing = [r | {"align_psnr": None} for r in synthetic_rows(images=3, cells=2)]
    got = alignment(missing, OUTCOMES, ["psnr"], resamples=10)
    assert all(math.isnan(r["value"]) for r in got) and {r["n"] for r in got} == {0}


# ---- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory, tiny_clip):
    """Two checkpoints and JPEG/WebP on 256x256 images (the classifier's crop keeps 8-bit
    pixels), consistency with random networks, --align psnr lpips mlclipsim."""
    from lic.evaluation import run

    base = tmp_path_factory.mktemp("aligned")
    images = base / "images"
    images.mkdir()
    for i in range(3):
        save_rgb(images / f"im{i}.png", photo_like(256, 256, seed=40 + i))
    checkpoints = [
        write_codec_checkpoint(base / f"{n}.ckpt", lmbda=lmbda, seed=seed)
        for n, lmbda, seed in (("a", 0.0035, 0), ("b", 0.013, 1))
    ]
    options = dict(
        checkpoints=checkpoints,
        tasks=["consistency"],
        data_roots={"consistency": str(images)},
        out=base / "out",
        baselines=["jpeg", "webp"],
        qualities={"jpeg": [10, 60], "webp": [20]},
        workers=0,
        batch_size=2,
        device="cpu",
        task_model="mobilenet_v3_small",
        task_weights="none",
        progress=False,
        bootstrap=100,
        align=["psnr", "lpips", "mlclipsim"],
        metric_args={"mlclipsim": {"model": tiny_clip}},
    )
    run(**options)
    return base / "out", images, options


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_alignment_with_intervals(aligned_run):
    out, _, _ = aligned_run
    rows = read_csv(out / "alignment.csv")
    keys = {(r["outcome"], r["metric"], r["statistic"]) for r in rows}
    assert len(rows) == len(keys) == 2 * 3 * 4  # outcomes x metrics x statistics
    assert {r["n_cells"] for r in rows} == {"5"}  # coded cells only: 2 checkpoints + 3
    assert {r["weights"] for r in rows} == {"random LPIPS and ML-CLIPSim: format check only"}
    lpips = next(r for r in rows if r["metric"] == "lpips" and r["statistic"] == "srcc")
    assert lpips["vs_psnr"] != "" and lpips["ci_low"] != ""
    summary = (out / "summary.md").read_text()
    assert "## Metric-task alignment" in summary and "random LPIPS and ML-CLIPSim" in summary
    assert (out / "alignment.png").stat().st_size > 0


def test_per_image_values_equal_lic_score_on_the_task_inputs(aligned_run, tmp_path, capsys):
    """The jpeg-q10 cell's align_psnr is `lic score --metric psnr` on the classifier's input
    (resize 256, crop 224) and its JPEG, written as PNG files."""
    from lic.cli import main
    from lic.codecs.classical import classical_codec
    from lic.metrics.scoring import score_pairs
    from lic.tasks import create_task
    from lic.tasks.fidelity import build_metrics

    out, images, options = aligned_run
    task = create_task("consistency", str(images), model="mobilenet_v3_small", weights="none")
    names = ["psnr", "lpips", "mlclipsim"]  # as the run built them: same seed, same order
    networks = build_metrics(names, "ViT-B-32", "none", options["metric_args"])
    del networks["psnr"]
    rows = [r for r in read_csv(out / "per_image.csv") if r["codec"] == "jpeg"]
    assert {r["quality"] for r in rows} == {"10", "60"}
    for row in (r for r in rows if r["quality"] == "10"):
        index = next(i for i in range(len(task)) if task.sample_id(i) == row["image"])
        prepared, _ = task.load(index)
        decoded, _ = classical_codec("jpeg").roundtrip(prepared, 10)
        assert torch.equal(prepared, (prepared * 255).round() / 255)  # 8-bit: PNG holds it
        ref = save_rgb(tmp_path / "ref.png", prepared)
        dist = save_rgb(tmp_path / "dist.png", decoded)
        scores = tmp_path / f"{index}.csv"
        assert main(["score", "--metric", "psnr", str(ref), str(dist), "--out", str(scores)]) == 0
        score = float(read_csv(scores)[0]["psnr"])
        assert float(row["align_psnr"]) == pytest.approx(score, abs=1e-9)
        for name, metric in networks.items():  # scored from cached features in the run
            [pair] = score_pairs(metric, [(ref, dist)])
            assert float(row[f"align_{name}"]) == pytest.approx(pair.score, abs=1e-5)
    uncompressed = [r for r in read_csv(out / "per_image.csv") if r["codec"] == "uncompressed"]
    assert {r["align_psnr"] for r in uncompressed} == {""}  # not a decoded version


def test_lic_align_reproduces_the_run_and_reuse_keeps_cells(aligned_run, capsys):
    from lic.cli import main
    from lic.evaluation import run

    out, _, options = aligned_run
    written = (out / "alignment.csv").read_text()
    assert main(["align", str(out)]) == 0
    assert (out / "alignment.csv").read_text() == written  # from per_image.csv, same numbers
    assert "Metric-task alignment" in capsys.readouterr().out
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    run(**options)  # nothing to recompute
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    run(**{**options, "align": ["psnr", "lpips"]})  # a subset: still reused
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "align_mlclipsim" not in read_csv(out / "per_image.csv")[0]


def test_alignment_usage_errors(tmp_path, capsys):
    from lic.cli import main
    from lic.evaluation.cli import main as eval_main

    (tmp_path / "per_image.csv").write_text("task,codec,image\nconsistency,jpeg,a\n")
    (tmp_path / "config.yaml").write_text("tasks: [consistency]\n")
    assert main(["align", str(tmp_path)]) == 2
    assert "no align_<metric> columns" in capsys.readouterr().err
    base = ["--ckpt", "x.ckpt", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]
    assert eval_main([*base, "--task", "fidelity", "--align", "psnr"]) == 2
    assert "add a machine task" in capsys.readouterr().err
    assert eval_main([*base, "--task", "consistency", "--align", "top1"]) == 2
    assert "--align top1: choose from" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- per-image outcomes -------------------------------------------------------------------------
def test_coco_image_recall_is_cocoeval_matching_per_image():
    """Image 1: object A found exactly (10 of 10 IoU thresholds), object B at IoU 0.62
    (.5, .55, .6: 3 of 10) -> 65%; image 2: its object missed, its crowd ignored -> 0%;
    image 3: no objects -> NaN."""
    from pycocotools.coco import COCO

    from lic.tasks.detection import DetectionAccumulator

    def box(i, image, bbox, crowd=0):
        area = bbox[2] * bbox[3]
        return {"id": i, "image_id": image, "category_id": 1, "bbox": bbox, "area": area,
                "iscrowd": crowd}  # fmt: skip

    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "height": 100, "width": 100} for i in (1, 2, 3)],
        "annotations": [
            box(1, 1, [10, 10, 30, 30]),
            box(2, 1, [50, 50, 20, 20]),
            box(3, 2, [10, 10, 30, 30]),
            box(4, 2, [60, 60, 30, 30], crowd=1),
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    gt.createIndex()
    acc = DetectionAccumulator(gt)
    found = [
        {"category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"category_id": 1, "bbox": [50, 50, 19, 13], "score": 0.8},  # IoU 247/400
    ]
    acc.update([found, [], []], [1, 2, 3], ["a", "b", "c"])
    recall = acc.per_image()["image_recall"]
    assert recall[:2].tolist() == [65.0, 0.0] and math.isnan(recall[2])


def test_vqa_image_accuracy_is_the_share_of_right_answers():
    from lic.tasks.vqa import Question, YesNoAccumulator

    questions = [
        Question(str(i), "q", truth, "random") for i, truth in enumerate(["yes", "no", "no"])
    ]
    acc = YesNoAccumulator()
    acc.update([["yes", "yes", "no"], ["no"]], [questions, questions[1:2]], ["a", "b"])
    assert acc.per_image()["image_accuracy"].tolist() == pytest.approx([200 / 3, 100.0])
