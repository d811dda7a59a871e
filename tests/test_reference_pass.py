"""Each task-model pass once per image: the reference pass (the model on the originals) gives
both the uncompressed row and every cell's targets, and is cached in --out by image content."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint

from lic.data.files import file_digest
from lic.evaluation import run
from lic.evaluation.references import ReferenceStore
from lic.tasks import create_task
from lic.tasks.classification import ConsistencyTask

N_IMAGES = 3
CKPT = "demo-bmshj2018-hyperprior-mse-0.013.ckpt"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(N_IMAGES):
        save_rgb(folder / f"{i}.png", photo_like(64, 80, seed=40 + i))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return [
        write_codec_checkpoint(folder / f"{i}.ckpt", lmbda=lmbda, distortion="mse", seed=i)
        for i, lmbda in enumerate((0.0035, 0.013, 0.0483, 0.1))
    ]


@pytest.fixture
def model_images(monkeypatch) -> list[int]:
    """Counts the images the task model sees, over every model the harness builds."""
    seen: list[int] = []
    build = ConsistencyTask.build_model

    def counted(self, device):
        model = build(self, device)
        model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
        return model

    monkeypatch.setattr(ConsistencyTask, "build_model", counted)
    return seen


def evaluate(images: Path, checkpoints: list[Path], out: Path, workers: int = 0) -> list[dict]:
    return run(
        checkpoints=checkpoints,
        tasks=["consistency"],
        data_roots={"consistency": str(images)},
        out=out,
        workers=workers,
        batch_size=2,
        device="cpu",
        task_model="mobilenet_v3_small",
        task_weights="none",
        progress=False,
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_three_checkpoints_run_the_model_four_times_per_image(
    images, checkpoints, model_images, tmp_path, workers
):
    rows = evaluate(images, checkpoints[:3], tmp_path, workers)
    assert sum(model_images) == 4 * N_IMAGES
    assert {r["codec"] for r in rows} >= {"uncompressed"} and len(rows) == 4 * 2
    perfect = {r["metric"]: r["value"] for r in rows if r["codec"] == "uncompressed"}
    assert perfect["top1_agreement"] == 100.0 and perfect["kl"] == 0.0


def test_added_checkpoint_runs_no_reference_pass(images, checkpoints, model_images, tmp_path):
    first = evaluate(images, checkpoints[:3], tmp_path)
    model_images.clear()
    again = evaluate(images, checkpoints, tmp_path)
    assert sum(model_images) == N_IMAGES  # the added checkpoint's decoded images only
    assert [r for r in again if r["checkpoint"] != str(checkpoints[3])] == first


def test_cached_references_equal_the_model_on_the_originals(images, checkpoints, tmp_path):
    evaluate(images, checkpoints[:1], tmp_path)
    task = ConsistencyTask(images, model="mobilenet_v3_small", weights="none")
    identity = task.reference_identity() | {"device": "cpu"}
    store = ReferenceStore(tmp_path / "references", identity)
    model = task.build_model(torch.device("cpu"))
    with torch.inference_mode():
        for i in range(len(task)):
            expected = task.predict(model, [task.load(i)[0]])[0]
            torch.testing.assert_close(store[file_digest(task.sample_file(i))], expected)
    other = ReferenceStore(tmp_path / "references", identity | {"weights": "IMAGENET1K_V1"})
    assert not other.keys()  # another model's outputs are another store


def test_unreadable_reference_cache_is_recomputed(images, checkpoints, model_images, tmp_path):
    evaluate(images, checkpoints[:1], tmp_path)
    (cache,) = (tmp_path / "references").iterdir()
    cache.write_bytes(cache.read_bytes()[:50])
    model_images.clear()
    evaluate(images, checkpoints[:2], tmp_path)
    assert sum(model_images) == 2 * N_IMAGES  # the references once more, and the new cell


def test_thread_plans_split_the_cores_between_model_and_coders():
    from lic.evaluation.parallel import ThreadPlan, plan_threads

    assert plan_threads("auto", "auto", "cpu", cores=2) == ThreadPlan(1, 2, batch_size=8)
    assert plan_threads("auto", "auto", "cpu", cores=16) == ThreadPlan(4, 16, batch_size=8)
    assert plan_threads("auto", "auto", "cuda", cores=16) == ThreadPlan(8, 8, batch_size=16)
    assert plan_threads("auto", "auto", "cuda", cores=2) == ThreadPlan(1, 1, batch_size=16)
    assert plan_threads(0, 3, "cpu", cores=2, batch_size=4) == ThreadPlan(0, 3, batch_size=4)


def test_a_light_task_with_one_coding_stream_codes_in_a_thread():
    from lic.evaluation.parallel import task_workers

    assert task_workers(1, "cpu", light_model=True) == 0  # PSNR/MS-SSIM on a small CPU
    assert task_workers(1, "cpu", light_model=False) == 1  # ResNet-50: the process wins
    assert task_workers(4, "cpu", light_model=True) == 4  # several streams need processes
    assert task_workers(1, "cuda", light_model=True) == 1
    light = create_task("fidelity", ".", metrics=["psnr", "ms_ssim"])
    assert (
        light.light_model
        and not create_task("fidelity", ".", metrics=["lpips"], weights="none").light_model
    )
    assert not ConsistencyTask(".", weights="none").light_model


@pytest.mark.parametrize(
    "option", [{"workers": -1}, {"threads": 0}, {"workers": "many"}, {"batch_size": 0}]
)
def test_bad_worker_or_thread_counts_are_usage_errors(option, tmp_path):
    from lic.errors import UsageError
    from lic.evaluation.config import EvalConfig

    with pytest.raises(UsageError, match=f"--{next(iter(option)).replace('_', '-')}"):
        EvalConfig(tasks=["consistency"], data_roots={"consistency": "x"}, out=tmp_path, **option)


def test_workers_and_threads_from_the_command_line(tmp_path):
    from lic.evaluation.cli import build_parser, config_from_args

    def config(*flags: str):
        args = ["--task", "consistency", "--data-root", str(tmp_path), "--out", str(tmp_path)]
        return config_from_args(build_parser().parse_args([*args, *flags]))

    assert (config().workers, config().threads) == ("auto", "auto")
    explicit = config("--workers", "0", "--threads", "2")
    assert (explicit.workers, explicit.threads) == (0, 2)
    with pytest.raises(SystemExit):
        config("--workers", "many")


def test_lic_compress_imports_no_metric_or_training_library(tmp_path):
    """`lic compress` loads the codec stack only (CompressAI itself imports transformers
    through torch_geometric, so that one is CompressAI's, not lic's)."""
    root = Path(__file__).resolve().parents[1]
    save_rgb(tmp_path / "a.png", photo_like(64, 64, seed=1))
    code = (
        "import sys\n"
        "from lic.cli import main\n"
        f"rc = main(['compress', '--ckpt', {str(root / 'checkpoints' / CKPT)!r}, "
        f"{str(tmp_path / 'a.png')!r}, '--out-dir', {str(tmp_path / 'out')!r}])\n"
        "heavy = sorted(m for m in ('open_clip', 'timm', 'lpips', 'lightning', 'matplotlib')"
        " if m in sys.modules)\n"
        "assert rc == 0 and not heavy, (rc, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_one_loader_streams_every_cell_with_the_results_of_separate_cells(
    images, checkpoints, tmp_path, monkeypatch
):
    """evaluate_cells starts its worker once for all cells (no refill between cells), its
    batches never span two cells, and each cell equals the same cell evaluated alone."""
    from lic.evaluation import rate_task
    from lic.evaluation.coders import build_coders

    starts = tmp_path / "worker_starts"

    def counted(worker_id: int) -> None:
        with open(starts, "a") as f:
            f.write(f"{worker_id}\n")

    monkeypatch.setattr(rate_task, "worker_threads", counted)
    task = ConsistencyTask(images, model="mobilenet_v3_small", weights="none")
    coders = build_coders(checkpoints[:3])[1:]
    dataset = rate_task.CodedImages(task, coders, range(N_IMAGES), batch_size=2)
    assert dataset.batches() == [[0, 1], [2], [3, 4], [5], [6, 7], [8]]

    def results(*cells):
        references = ReferenceStore(tmp_path / f"refs{len(cells)}", task.reference_identity())
        return list(
            rate_task.evaluate_cells(
                task, cells, model, torch.device("cpu"), 2, 1, False, references=references
            )
        )

    torch.manual_seed(0)
    model = task.build_model(torch.device("cpu"))
    streamed = results(*coders)
    assert starts.read_text() == "0\n"
    alone = [results(coder)[0] for coder in coders]
    for one, other in zip(streamed, alone, strict=True):
        assert one.meta == other.meta and one.bpp == other.bpp
        assert one.metrics == pytest.approx(other.metrics, abs=1e-6)
        assert one.rates == other.rates and one.n_images == N_IMAGES


def test_lic_eval_help_imports_no_codec_library():
    """Building `lic eval`'s parser (its --help) loads no CompressAI (its import chain)."""
    code = (
        "import sys\n"
        "from lic.evaluation.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = sorted(m for m in ('compressai', 'torch_geometric', 'transformers', 'open_clip')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def forged_architecture(folder: Path) -> Path:
    """A hyperprior checkpoint whose hyper-parameters promise other channel counts."""
    path = write_codec_checkpoint(folder / "forged.ckpt", lmbda=0.02)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["codec_args"] = {"N": 24, "M": 24}
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_codec_that_cannot_be_built_stops_the_run_with_its_line(
    images, checkpoints, tmp_path, capsys, workers
):
    """Built where it codes (a worker, here or in the main process), a checkpoint of another
    architecture still stops lic eval at once: one line, exit 2, the good cells kept."""
    from lic.cli import main

    bad = forged_architecture(tmp_path)
    argv = ["eval", "--task", "consistency", "--data-root", str(images), "--out", str(tmp_path)]
    argv += ["--ckpt", str(checkpoints[0]), str(bad), "--task-weights", "none"]
    argv += ["--task-model", "mobilenet_v3_small", "--workers", workers, "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "forged.ckpt does not hold weights of codec 'bmshj2018-hyperprior'" in err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert not list((tmp_path / "cells").glob("*forged*"))


def test_each_image_is_loaded_once_for_every_cell_and_the_main_process_codes_nothing(
    images, checkpoints, tmp_path
):
    """With one worker, the uncompressed cell's loads serve all three coded cells, and the
    main process (the task model's) never imports CompressAI: the worker builds the codecs."""
    root = Path(__file__).resolve().parents[1]
    loads = tmp_path / "loads"
    code = (
        "import sys\n"
        "from lic.tasks.classification import ConsistencyTask\n"
        "load = ConsistencyTask.load\n"
        "def counted(self, index):\n"
        f"    with open({str(loads)!r}, 'a') as f:\n"
        "        f.write(f'{index}\\n')\n"
        "    return load(self, index)\n"
        "ConsistencyTask.load = counted\n"
        "from lic.evaluation import run\n"
        f"rows = run(checkpoints={[str(c) for c in checkpoints[:3]]!r}, tasks=['consistency'],"
        f" data_roots={{'consistency': {str(images)!r}}}, out={str(tmp_path / 'out')!r},"
        " workers=1, batch_size=2, task_model='mobilenet_v3_small', task_weights='none',"
        " progress=False)\n"
        "assert len(rows) == 8, rows\n"
        "assert 'compressai' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert sorted(loads.read_text().split()) == [str(i) for i in range(N_IMAGES)]


def test_a_full_reference_store_keeps_what_fits_and_the_rest_is_recomputed(
    images, checkpoints, model_images, tmp_path, monkeypatch
):
    """Past its budget the store keeps no more outputs; the cells still get every image's
    reference (computed again in each cell) and the same numbers."""
    from lic.evaluation import references

    full = evaluate(images, checkpoints[:2], tmp_path / "full")
    monkeypatch.setattr(references, "MAX_BYTES", 1)  # room for none
    model_images.clear()
    capped = evaluate(images, checkpoints[:2], tmp_path / "capped")
    assert sum(model_images) == 5 * N_IMAGES  # two coded cells, each with its references
    same = ("codec", "lambda", "metric", "bpp", "value", "ci_low", "ci_high", "n_images")
    assert [[r[k] for k in same] for r in capped] == [[r[k] for k in same] for r in full]


def test_a_coding_process_holds_the_codecs_of_its_current_and_next_cell_only(images, checkpoints):
    """Cells come in order: entering one frees the codecs of those before it (a worker
    holds at most two codecs, not one per checkpoint)."""
    from lic.evaluation import rate_task
    from lic.evaluation.coders import build_coders

    task = ConsistencyTask(images, model="mobilenet_v3_small", weights="none")
    coders = build_coders(checkpoints[:3])[1:]
    assert all(c._model is None for c in coders)  # read here, built where they code
    dataset = rate_task.CodedImages(task, coders, range(N_IMAGES))
    dataset[0]
    assert coders[0]._model is not None
    dataset[2 * N_IMAGES]  # the third cell
    assert coders[0]._model is None and coders[1]._model is None
    assert coders[2]._model is not None
