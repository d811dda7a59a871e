"""Rate-task harness: tasks in their official layouts, metrics against independent
computations, Bjontegaard deltas, resume, failures, and the eval_rate_task.py script."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lic.evaluation import bd_metric, bd_rate, run
from lic.tasks import DatasetLayoutError, create_task
from lic.tasks.classification import AgreementAccumulator, TopKAccumulator
from lic.tasks.detection import DetectionAccumulator
from lic.tasks.segmentation import ConfusionAccumulator

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODELS = {
    "imagenet": "mobilenet_v3_small",
    "consistency": "mobilenet_v3_small",
    "voc": "lraspp_mobilenet_v3_large",
    "coco": "fasterrcnn_mobilenet_v3_large_320_fpn",
}


# ---- tiny datasets in the official layouts --------------------------------------------------
def make_imagenet(root: Path) -> Path:
    for label, wnid in enumerate(["n01440764", "n01443537"]):
        (root / wnid).mkdir(parents=True)
        for i in range(2):
            save_rgb(
                root / wnid / f"ILSVRC2012_val_{label}{i}.JPEG", photo_like(80, 100, 2 * label + i)
            )
    return root


def make_voc(root: Path, n: int = 2) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    names = [f"2007_00000{i}" for i in range(n)]
    for i, name in enumerate(names):
        save_rgb(voc / "JPEGImages" / f"{name}.jpg", photo_like(60, 80, seed=i))
        mask = np.zeros((60, 80), dtype=np.uint8)
        mask[10:40, 20:60] = 15  # person
        mask[38:42, :] = 255  # boundary: ignored
        palette = Image.fromarray(mask, mode="P")
        palette.putpalette([0, 0, 0, 128, 0, 0] * 128)
        palette.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")
    return root / "VOCdevkit"


def make_coco(root: Path, n: int = 2) -> Path:
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(n):
        name = f"{i + 1:012d}.jpg"
        save_rgb(root / "val2017" / name, photo_like(96, 128, seed=i))
        images.append({"id": i + 1, "file_name": name, "height": 96, "width": 128})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1 + i % 2,
                "bbox": [10.0, 12.0, 40.0, 30.0],
                "area": 1200.0,
                "iscrowd": 0,
            }
        )
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    kodak_like = base / "folder"
    kodak_like.mkdir()
    for i in range(3):
        save_rgb(kodak_like / f"kodim{i:02d}.png", photo_like(72, 96, seed=30 + i))
    return {
        "imagenet": make_imagenet(base / "imagenet"),
        "voc": make_voc(base / "voc"),
        "coco": make_coco(base / "coco"),
        "consistency": kodak_like,
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return [
        write_codec_checkpoint(folder / f"{name}.ckpt", lmbda=lmbda, distortion=dist, seed=seed)
        for name, lmbda, dist, seed in [
            ("a", 0.0035, "mse", 0),
            ("b", 0.013, "mse", 1),
            ("c", 8.73, "ms_ssim", 2),
            ("d", 31.7, "ms_ssim", 3),
        ]
    ]


def run_tasks(tasks, datasets, checkpoints, out, **kwargs):
    model = SMALL_MODELS[tasks[0]]
    return run(
        checkpoints=checkpoints,
        tasks=tasks,
        data_roots={t: str(datasets[t]) for t in tasks},
        out=out,
        workers=0,
        batch_size=2,
        device="cpu",
        task_model=model,
        task_weights="none",
        progress=False,
        **kwargs,
    )


# ---- end to end -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("task", ["imagenet", "voc", "coco", "consistency"])
def test_every_task_runs_end_to_end(task, datasets, checkpoints, tmp_path):
    rows = run_tasks(
        [task],
        datasets,
        checkpoints[:2],
        tmp_path,
        baselines=["jpeg"],
        qualities={"jpeg": [30, 80]},
    )
    task_metrics = create_task(
        task, str(datasets[task]), model=SMALL_MODELS[task], weights="none"
    ).metrics
    assert {r["metric"] for r in rows} == set(task_metrics)
    assert {(r["codec"], r["lambda"], r["quality"]) for r in rows} == {
        ("uncompressed", None, None),
        ("bmshj2018-hyperprior", 0.0035, None),
        ("bmshj2018-hyperprior", 0.013, None),
        ("jpeg", None, 30),
        ("jpeg", None, 80),
    }
    for r in rows:
        assert r["n_failed"] == 0 and r["n_images"] == len(
            create_task(task, str(datasets[task]), model=SMALL_MODELS[task], weights="none")
        )
        assert (r["bpp"] is None) == (r["codec"] == "uncompressed")
    jpeg = {r["quality"]: r["bpp"] for r in rows if r["codec"] == "jpeg"}
    assert 0 < jpeg[30] < jpeg[80]
    for name in (
        "results.csv",
        "results.json",
        "bd.csv",
        "summary.md",
        f"rate_task_{task}.png",
        f"rate_task_{task}.pdf",
    ):
        assert (tmp_path / name).is_file(), name


@pytest.mark.slow
def test_any_baseline_and_anchor_for_a_machine_task(datasets, checkpoints, tmp_path):
    """A VOC mIoU curve of AVIF against JPEG is as easy as a PSNR curve."""
    run_tasks(
        ["voc"],
        datasets,
        checkpoints[:2],
        tmp_path,
        baselines=["jpeg", "avif"],
        qualities={"jpeg": [20, 60], "avif": [20, 60]},
        anchor="jpeg",
    )
    with (tmp_path / "bd.csv").open() as f:
        bd = list(csv.DictReader(f))
    assert {(b["curve"], b["reference"]) for b in bd} == {
        ("AVIF", "JPEG"),
        ("bmshj2018-hyperprior / mse", "JPEG"),
    }
    assert {b["metric"] for b in bd} == {"miou", "pixel_acc"}
    assert "against JPEG" in (tmp_path / "summary.md").read_text()


def test_consistency_of_the_uncompressed_image_is_perfect(datasets, checkpoints, tmp_path):
    rows = run_tasks(["consistency"], datasets, [], tmp_path)
    values = {r["metric"]: r["value"] for r in rows}
    assert values["top1_agreement"] == 100.0 and values["kl"] == pytest.approx(0, abs=1e-9)


@pytest.mark.slow
def test_real_and_estimated_rates_are_close(datasets, checkpoints, tmp_path):
    real = run_tasks(["consistency"], datasets, checkpoints[:1], tmp_path / "real")
    est = run_tasks(
        ["consistency"], datasets, checkpoints[:1], tmp_path / "est", estimate_rate=True
    )
    bpp = {r["rate_source"]: r["bpp"] for r in real + est if r["codec"] != "uncompressed"}
    assert set(bpp) == {"bitstream", "estimate"}
    assert bpp["bitstream"] > 0 and bpp["estimate"] > 0


@pytest.mark.slow
def test_resumed_run_equals_the_uninterrupted_one(datasets, checkpoints, tmp_path):
    run_tasks(["consistency"], datasets, checkpoints, tmp_path / "full")
    partial = tmp_path / "resumed"
    run_tasks(["consistency"], datasets, checkpoints[:2], partial)  # "killed" after two
    done = {p.name: p.stat().st_mtime_ns for p in (partial / "cells").iterdir()}
    run_tasks(["consistency"], datasets, checkpoints, partial)
    assert all(
        (partial / "cells" / name).stat().st_mtime_ns == mtime for name, mtime in done.items()
    )  # finished cells were not recomputed
    for name in ("results.csv", "bd.csv"):
        assert (partial / name).read_text() == (tmp_path / "full" / name).read_text()


def test_corrupt_image_is_counted_not_fatal(datasets, checkpoints, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        save_rgb(folder / f"{i}.png", photo_like(64, 64, seed=i))
    (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:100])
    rows = run(
        checkpoints=checkpoints[:1],
        tasks=["consistency"],
        data_roots={"consistency": str(folder)},
        out=tmp_path / "o",
        workers=0,
        device="cpu",
        task_model="mobilenet_v3_small",
        task_weights="none",
        progress=False,
    )
    assert all(r["n_images"] == 2 and r["n_failed"] == 1 for r in rows)
    failures = json.loads((tmp_path / "o" / "results.json").read_text())["failures"]
    assert len(failures) == 2 and all(f["image"] == "1.png" for f in failures)
    assert "## Failures: 1 image in 2 cells" in (tmp_path / "o" / "summary.md").read_text()


@pytest.mark.slow
def test_coding_on_the_device_in_batches_equals_coding_in_workers(datasets, checkpoints, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):  # two sizes: batches mix them; one corrupt file fails alone
        save_rgb(folder / f"{i}.png", photo_like(64 + 16 * (i % 2), 80, seed=i))
    (folder / "3.png").write_bytes((folder / "3.png").read_bytes()[:100])
    results = {}
    for coding in ("workers", "device"):
        rows = run(
            checkpoints=checkpoints[:2],
            tasks=["consistency"],
            data_roots={"consistency": str(folder)},
            out=tmp_path / coding,
            baselines=["jpeg"],
            qualities={"jpeg": [50]},
            workers=1,
            batch_size=4,
            device="cpu",
            task_model="mobilenet_v3_small",
            task_weights="none",
            progress=False,
            coding=coding,
        )
        results[coding] = rows
    for device_row, worker_row in zip(results["device"], results["workers"], strict=True):
        assert device_row["bpp"] == worker_row["bpp"]  # the same bitstreams
        for key in ("value", "ci_low", "ci_high"):  # the same resamples of the same images
            assert device_row[key] == pytest.approx(worker_row[key], abs=1e-6)
        numbers = ("value", "ci_low", "ci_high")
        assert {k: v for k, v in device_row.items() if k not in numbers} == {
            k: v for k, v in worker_row.items() if k not in numbers
        }
    assert all(r["n_images"] == 4 and r["n_failed"] == 1 for r in results["device"])


def test_bd_table_compares_each_objective_with_mse(datasets, checkpoints, tmp_path):
    run_tasks(["consistency"], datasets, checkpoints, tmp_path)
    table = list(csv.DictReader((tmp_path / "bd.csv").open()))
    assert {(r["metric"], r["curve"], r["reference"]) for r in table} == {
        (m, "bmshj2018-hyperprior / ms_ssim", "bmshj2018-hyperprior / mse")
        for m in ("top1_agreement", "kl")
    }


# ---- metrics against independent computations -------------------------------------------
def test_top1_top5_match_hand_computation():
    logits = torch.tensor(
        [[0.1, 0.9, 0.0, 0, 0, 0], [0.5, 0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]]
    )
    labels = [1, 5, 0]  # hit; rank 6 (miss in top 5); rank 6 (miss)
    acc = TopKAccumulator()
    acc.update(list(logits), labels, ["a", "b", "c"])
    p_true = logits.double().softmax(1)[[0, 1, 2], labels]  # alignment's outcome
    assert acc.compute() == {
        "top1": pytest.approx(100 / 3),
        "top5": pytest.approx(100 / 3),
        "p_true": pytest.approx(float(p_true.mean())),
    }
    assert acc.per_image()["p_true"] == pytest.approx(p_true.numpy())
    acc.update([torch.tensor([0.0, 0.2, 0.9, 0.3, 0.4, 0.5])], [5], ["d"])  # rank 2
    assert {k: acc.compute()[k] for k in ("top1", "top5")} == {"top1": 25.0, "top5": 50.0}


def test_miou_matches_hand_computation():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]], dtype=torch.uint8)
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 2, 2]], dtype=torch.uint8)
    acc = ConfusionAccumulator(num_classes=3)
    acc.update([pred], [target], ["x"])
    # class 0: tp 3, fp 0, fn 1 -> 3/4; class 1: tp 2, fp 1, fn 1 -> 2/4; class 2: tp 0,
    # fp 1 (the 255 pixel is ignored) -> 0/1
    out = acc.compute()
    assert out["miou"] == pytest.approx(100 * (3 / 4 + 2 / 4 + 0) / 3)
    assert out["pixel_acc"] == pytest.approx(100 * 5 / 7)


def test_map_equals_a_direct_cocoeval(tmp_path):
    root = make_coco(tmp_path, n=3)
    gt_file = root / "annotations" / "instances_val2017.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
    detections = {
        1: [
            {"category_id": 1, "bbox": [11.0, 12.0, 40.0, 29.0], "score": 0.9},
            {"category_id": 2, "bbox": [50.0, 50.0, 20.0, 20.0], "score": 0.4},
        ],
        2: [{"category_id": 2, "bbox": [14.0, 15.0, 30.0, 30.0], "score": 0.8}],
        3: [],
    }
    acc = DetectionAccumulator(gt)
    acc.update(list(detections.values()), list(detections), ["1", "2", "3"])
    flat = [{**d, "image_id": i} for i, dets in detections.items() for d in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        direct = COCOeval(gt, gt.loadRes(flat), "bbox")
        direct.params.imgIds = [1, 2, 3]
        direct.evaluate(), direct.accumulate(), direct.summarize()
    ours = acc.compute()
    assert ours["map"] == pytest.approx(100 * direct.stats[0])
    assert ours["map50"] == pytest.approx(100 * direct.stats[1])
    assert 0 < ours["map"] < 100


@pytest.mark.parametrize(
    "make", [TopKAccumulator, AgreementAccumulator, lambda: ConfusionAccumulator(num_classes=4)]
)
def test_sharded_states_merge_to_the_single_run(make):
    """What torchrun ranks do: each accumulates a shard, rank 0 merges the states."""
    generator = torch.Generator().manual_seed(0)
    if isinstance(make(), ConfusionAccumulator):
        preds = [torch.randint(0, 4, (5, 5), generator=generator) for _ in range(6)]
        targets = [torch.randint(0, 4, (5, 5), generator=generator) for _ in range(6)]
    else:
        preds = list(torch.randn(6, 10, generator=generator))
        targets = (
            list(torch.randint(0, 10, (6,), generator=generator).tolist())
            if make is TopKAccumulator
            else list(torch.randn(6, 10, generator=generator))
        )
    single, merged = make(), make()
    single.update(preds, targets, [str(i) for i in range(6)])
    for rank in range(3):
        shard = make()
        shard.update(preds[rank::3], targets[rank::3], [str(i) for i in range(6)][rank::3])
        merged.merge(json.loads(json.dumps(shard.state())))
    for key, value in single.compute().items():
        assert merged.compute()[key] == pytest.approx(value)


# ---- Bjontegaard -------------------------------------------------------------------------
def test_bd_rate_of_a_curve_against_itself_and_a_shifted_copy():
    rate, value = [0.12, 0.25, 0.5, 0.9], [61.0, 68.5, 73.0, 75.5]
    assert bd_rate(rate, value, rate, value) == pytest.approx(0, abs=1e-9)
    assert bd_metric(rate, value, rate, value) == pytest.approx(0, abs=1e-9)
    assert bd_rate(rate, value, [0.9 * r for r in rate], value) == pytest.approx(-10, abs=1e-6)
    assert bd_metric(rate, value, rate, [v + 2 for v in value]) == pytest.approx(2)
    assert np.isnan(bd_rate(rate, value, [r * 10 for r in rate], [v + 30 for v in value]))


# ---- dataset layouts ----------------------------------------------------------------------
def test_imagenet_flat_layouts(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        save_rgb(flat / f"ILSVRC2012_val_0000000{i}.JPEG", photo_like(40, 40, seed=i))
    (flat / "val.txt").write_text(
        "".join(f"ILSVRC2012_val_0000000{i}.JPEG {i * 7}\n" for i in range(3))
    )
    task = create_task("imagenet", str(flat), model="mobilenet_v3_small", weights="none")
    assert [label for _, label in task.samples] == [0, 7, 14]
    (flat / "val.txt").unlink()
    (flat / "LOC_synset_mapping.txt").write_text("n0 tench\nn1 goldfish\nn2 shark\n")
    (flat / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        + "".join(f"ILSVRC2012_val_0000000{i},n{2 - i} 1 2 3 4\n" for i in range(3))
    )
    task = create_task("imagenet", str(flat), model="mobilenet_v3_small", weights="none")
    assert [label for _, label in task.samples] == [2, 1, 0]
    image, label = task.load(0)
    assert image.shape == (3, 224, 224) and label == 2


@pytest.mark.parametrize(
    ("task", "damage", "message"),
    [
        (
            "voc",
            lambda r: (r / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").unlink(),
            "val.txt: missing",
        ),
        (
            "voc",
            lambda r: (r / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png").unlink(),
            "are missing",
        ),
        (
            "coco",
            lambda r: (r / "annotations/instances_val2017.json").write_text("{not json"),
            "instances_val2017.json",
        ),
        ("imagenet", lambda r: None, "no such directory"),
    ],
)
def test_malformed_datasets_are_clear_errors(tmp_path, task, damage, message):
    makers = {"voc": make_voc, "coco": make_coco, "imagenet": lambda r: r / "missing"}
    root = makers[task](tmp_path)
    damage(tmp_path)
    with pytest.raises(DatasetLayoutError, match=message):
        create_task(
            task,
            str(root if task != "voc" else tmp_path / "VOCdevkit"),
            model=SMALL_MODELS[task],
            weights="none",
        )


@pytest.mark.slow
def test_script_writes_everything_and_fails_cleanly(datasets, checkpoints, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "eval_rate_task.py"),
        "--ckpt",
        *map(str, checkpoints[:2]),
        "--task",
        "consistency",
        "--data-root",
        str(datasets["consistency"]),
        "--out",
        str(out),
        "--task-model",
        "mobilenet_v3_small",
        "--task-weights",
        "none",
        "--workers",
        "2",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "rate_task_consistency.png").is_file()
    bad_args = ["--out", str(out), "--data-root", str(tmp_path / "nope"), "--workers", "0"]
    bad = subprocess.run(
        [*cmd[:4], "--task", "consistency", *bad_args, "--task-weights", "none"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "no such directory" in bad.stderr  # an input error
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_torchrun_shards_and_merges_like_one_process(datasets, checkpoints, tmp_path):
    """Two gloo ranks on the CPU: same rows as one process (KL up to float rounding, since
    the batches the model sees differ)."""
    args = [
        "--ckpt",
        str(checkpoints[0]),
        "--task",
        "consistency",
        "--data-root",
        str(datasets["consistency"]),
        "--task-model",
        "mobilenet_v3_small",
        "--task-weights",
        "none",
        "--workers",
        "0",
        "--no-progress",
        "--align",
        "psnr",
    ]
    script = str(ROOT / "eval_rate_task.py")
    single = subprocess.run(
        [sys.executable, script, *args, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        check=False,
    )
    multi = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            script,
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert single.returncode == 0 and multi.returncode == 0, multi.stderr[-2000:]
    one, two = (list(csv.DictReader((tmp_path / d / "results.csv").open())) for d in ("one", "two"))
    numbers = ("value", "ci_low", "ci_high")  # intervals: the same resamples, merged shards
    for a, b in zip(one, two, strict=True):
        assert {k: v for k, v in a.items() if k not in numbers} == {
            k: v for k, v in b.items() if k not in numbers
        }
        for key in numbers:
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6)
    aligned = [  # --align values of both ranks' images, merged on rank 0
        {(r["codec"], r["image"]): r["align_psnr"] for r in csv.DictReader(f)}
        for f in ((tmp_path / d / "per_image.csv").open() for d in ("one", "two"))
    ]
    assert aligned[0].keys() == aligned[1].keys()
    for key, value in aligned[0].items():  # batches differ: float rounding
        assert float(value or "nan") == pytest.approx(float(aligned[1][key] or "nan"), nan_ok=True)
        assert (value != "") == (key[0] != "uncompressed")


def test_coded_in_thread_keeps_order_raises_errors_and_ends_when_left():
    import threading
    import time

    from lic.evaluation.rate_task import coded_in_thread

    seen = []

    def batches(n, fail_at=None):
        for k in range(n):
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            if k == fail_at:
                raise OSError(f"image {k} unreadable")
            yield [k]

    def join_coding_threads():
        for thread in threading.enumerate():
            if thread.name == "lic-coding":
                thread.join(timeout=5)
                assert not thread.is_alive()

    caller_threads = torch.get_num_threads()
    stream = coded_in_thread(batches(5))
    for _ in range(500):  # coding starts at once, before the caller asks
        if seen:
            break
        time.sleep(0.01)
    assert seen
    assert list(stream) == [[k] for k in range(5)]
    assert set(seen) == {("lic-coding", 1)}  # a thread coding as a worker process does
    assert torch.get_num_threads() == caller_threads  # the caller's own setting
    join_coding_threads()
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [caller_threads]  # threads started afterwards: the default restored
    stream = coded_in_thread(batches(5, fail_at=2))
    assert next(stream) == [0]
    with pytest.raises(OSError, match="image 2 unreadable"):
        list(stream)
    left = coded_in_thread(batches(100))
    assert next(left) == [0]
    left.close()  # a caller that stops early: the thread stops too
    join_coding_threads()


@pytest.mark.parametrize("coding", ["workers", "device"])
def test_without_workers_each_codec_is_built_once(
    datasets, checkpoints, tmp_path, monkeypatch, coding
):
    """The coding thread runs a cell ahead of the model: it builds the next codec ahead and
    frees the ones behind it only when it codes itself (device coding keeps them: the main
    thread still codes with them)."""
    from lic.evaluation.coders import CheckpointCoder

    builds, build = [], CheckpointCoder.build
    monkeypatch.setattr(CheckpointCoder, "build", lambda c: builds.append(c.key) or build(c))
    rows = run(checkpoints=checkpoints[:3], tasks=["fidelity"], metrics=["psnr"],
               data_roots={"fidelity": str(datasets["consistency"])}, out=tmp_path, workers=0,
               batch_size=1, device="cpu", progress=False, coding=coding)  # fmt: skip
    assert sorted(builds) == sorted(set(builds)) and len(builds) == 3
    coded = [r for r in rows if r["codec"] != "uncompressed"]
    assert len({r["checkpoint"] for r in coded}) == 3 and {r["n_images"] for r in coded} == {3}
