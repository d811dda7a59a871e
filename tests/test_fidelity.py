"""The fidelity task against CompressAI's own way of measuring (per-image PSNR on 8-bit RGB,
averaged; bpp from the file), anchors in bd.csv/summary.md, and CompressAI zoo coders (weights
made here and put in the torch hub cache, since none can be downloaded)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint
from PIL import Image
from pytorch_msssim import ms_ssim

from lic.cli import main
from lic.errors import UsageError
from lic.evaluation import run
from lic.evaluation.coders import ZooCoder, build_coders, parse_zoo_spec
from lic.evaluation.report import bd_table, resolve_anchor
from lic.tasks import create_task
from lic.tasks.fidelity import FidelityTask
from lic.weights import WeightsUnavailableError

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(176, 200), (192, 168), (171, 229)]  # no codec stride divides them; one odd


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fidelity_images")
    for i, (h, w) in enumerate(SIZES):
        save_rgb(root / f"img{i}.png", photo_like(h, w, seed=10 + i))
    return root


def compressai_way(folder: Path, quality: int) -> dict[str, float]:
    """CompressAI's bench (compressai/utils/bench): Pillow JPEG of the RGB file, PSNR with
    max 255 on float pixels per image, MS-SSIM with data_range 255, bpp from the bytes; all
    averaged over images."""
    psnr, msssim, bpp = [], [], []
    for path in sorted(folder.glob("*.png")):
        image = Image.open(path).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="jpeg", quality=quality)
        rec = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        a = torch.from_numpy(np.asarray(image).copy()).float().permute(2, 0, 1)[None]
        b = torch.from_numpy(np.asarray(rec).copy()).float().permute(2, 0, 1)[None]
        psnr.append(20 * math.log10(255) - 10 * math.log10(torch.mean((a - b) ** 2).item()))
        msssim.append(ms_ssim(a, b, data_range=255).item())
        bpp.append(8 * buffer.getbuffer().nbytes / (image.size[0] * image.size[1]))
    return {"psnr": np.mean(psnr), "ms_ssim": np.mean(msssim), "bpp": np.mean(bpp)}


def read_per_image(out: Path) -> list[dict]:
    with (out / "per_image.csv").open() as f:
        return list(csv.DictReader(f))


def read_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_jpeg_points_match_compressai_bench(folder, tmp_path, monkeypatch):
    scored = []
    score = FidelityTask.predict_against

    def counted(self, model, images, *args):
        scored.append(len(images))
        return score(self, model, images, *args)

    monkeypatch.setattr(FidelityTask, "predict_against", counted)
    rows = run(
        checkpoints=[],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path,
        baselines=["jpeg"],
        qualities={"jpeg": [10, 50, 90]},
        workers=0,
        progress=False,
        metrics=["psnr", "ms_ssim"],
    )
    for quality in (10, 50, 90):
        ours = {r["metric"]: r for r in rows if r["quality"] == quality}
        theirs = compressai_way(folder, quality)
        assert ours["psnr"]["bpp"] == pytest.approx(theirs["bpp"], rel=1e-12)
        assert ours["psnr"]["value"] == pytest.approx(theirs["psnr"], abs=1e-4)
        assert ours["ms_ssim"]["value"] == pytest.approx(theirs["ms_ssim"], abs=1e-5)
        db = -10 * math.log10(1 - theirs["ms_ssim"])
        assert ours["ms_ssim_db"]["value"] == pytest.approx(db, abs=1e-3)
        assert ours["psnr"]["n_images"] == len(SIZES)
    # the uncompressed reference is a perfect score, capped finite: known, never computed
    plain = {r["metric"]: r["value"] for r in rows if r["codec"] == "uncompressed"}
    assert plain == {"psnr": 100.0, "ms_ssim": 1.0, "ms_ssim_db": 100.0}
    assert sum(scored) == 3 * len(SIZES)  # the JPEG points' images only
    assert {r["n_images"] for r in rows if r["codec"] == "uncompressed"} == {len(SIZES)}
    per_image = [r for r in read_per_image(tmp_path) if r["codec"] == "uncompressed"]
    assert [float(r["psnr"]) for r in per_image] == [100.0] * len(SIZES)


@pytest.mark.slow
def test_anchor_gives_bd_of_every_curve_against_it(folder, tmp_path):
    rows = run(
        checkpoints=[],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path,
        baselines=["jpeg", "webp"],
        qualities={"jpeg": [20, 50, 80], "webp": [20, 50, 80]},
        workers=0,
        progress=False,
        metrics=["psnr", "ms_ssim"],
        anchor="jpeg",
    )
    with (tmp_path / "bd.csv").open() as f:
        bd = list(csv.DictReader(f))
    assert {(b["curve"], b["reference"]) for b in bd} == {("WebP", "JPEG")}
    assert {b["metric"] for b in bd} == {"psnr", "ms_ssim", "ms_ssim_db"}
    psnr = next(b for b in bd if b["metric"] == "psnr")
    assert float(psnr["bd_rate_percent"]) == pytest.approx(
        next(b for b in bd_table(rows, ("jpeg", "jpeg")) if b["metric"] == "psnr")[
            "bd_rate_percent"
        ]
    )
    summary = (tmp_path / "summary.md").read_text()
    assert "## Bjontegaard deltas against JPEG" in summary
    assert "| fidelity | psnr | WebP | JPEG |" in summary
    assert (tmp_path / "rate_task_fidelity.png").stat().st_size > 0


def test_bd_against_an_anchor_is_exact_on_known_curves():
    """A curve needing half the rate of the anchor at every quality: BD-rate -50%."""
    rows = []
    for codec, scale in (("jpeg", 1.0), ("mlicpp", 0.5), ("compressai:mbt2018-mean", 0.8)):
        objective = codec if codec == "jpeg" else "mse"
        for bpp, value in ((0.25, 28.0), (0.5, 31.0), (1.0, 34.0), (2.0, 37.0)):
            rows.append(
                {
                    "codec": codec,
                    "objective": objective,
                    "task": "fidelity",
                    "metric": "psnr",
                    "bpp": bpp * scale,
                    "value": value,
                }
            )
    table = {b["curve"]: b for b in bd_table(rows, ("jpeg", "jpeg"))}
    assert table["mlicpp / mse"]["bd_rate_percent"] == pytest.approx(-50.0)
    assert table["mbt2018-mean (zoo, mse)"]["bd_rate_percent"] == pytest.approx(-20.0)
    assert table["mlicpp / mse"]["bd_metric"] > 0
    assert {b["reference"] for b in table.values()} == {"JPEG"}
    zoo = table["mbt2018-mean (zoo, mse)"]
    against_zoo = bd_table(rows, ("compressai:mbt2018-mean", "mse"))
    assert {b["curve"] for b in against_zoo} == {"JPEG", "mlicpp / mse"}
    assert zoo["points"] == 4


def test_anchor_names():
    curves = [("uncompressed", "uncompressed"), ("jpeg", "jpeg"), ("mlicpp", "mse")]
    curves += [("compressai:mbt2018-mean", "mse"), ("compressai:mbt2018-mean", "ms-ssim")]
    assert resolve_anchor(None, curves) is None
    assert resolve_anchor("jpeg", curves) == ("jpeg", "jpeg")
    assert resolve_anchor("mlicpp/mse", curves) == ("mlicpp", "mse")
    assert resolve_anchor("mlicpp", curves) == ("mlicpp", "mse")
    assert resolve_anchor("compressai:mbt2018-mean", curves) == curves[3]
    assert resolve_anchor("compressai:mbt2018-mean:1-8:ms-ssim", curves) == curves[4]
    with pytest.raises(UsageError, match="--anchor 'avif' is none of the evaluated curves"):
        resolve_anchor("avif", curves)


def test_zoo_specs():
    entry = parse_zoo_spec("compressai:mbt2018-mean:1-3,6")
    assert (entry.name, entry.qualities, entry.metric) == ("mbt2018-mean", (1, 2, 3, 6), "mse")
    entry = parse_zoo_spec("compressai:bmshj2018-hyperprior:3:ms-ssim")
    assert (entry.qualities, entry.metric) == ((3,), "ms-ssim")
    assert parse_zoo_spec("compressai:cheng2020-anchor").qualities == (1, 2, 3, 4, 5, 6)
    for bad in ("compressai:nope", "compressai:mbt2018:9", "compressai:mbt2018:1:psnr"):
        with pytest.raises(UsageError):
            parse_zoo_spec(bad)


def test_zoo_offline_names_the_file_and_the_cache(hub, tmp_path, folder):
    with pytest.raises(WeightsUnavailableError) as err:
        ZooCoder(parse_zoo_spec("compressai:bmshj2018-factorized:1"), 1)
    assert "bmshj2018-factorized-prior-1-446d5c7f.pth.tar" in str(err.value)
    assert str(hub) in str(err.value)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "LIC_OFFLINE": "1"}
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "eval_rate_task.py"), "--task", "fidelity"),
            *("--data-root", str(folder), "--out", str(tmp_path / "out"), "--metrics", "psnr"),
            *("--ckpt", "compressai:bmshj2018-factorized:1", "--workers", "0"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(hub) in lines[0]


def test_zoo_coder_loads_through_compressai_zoo(hub, folder, tmp_path):
    """Weights put where the message says are loaded by CompressAI's zoo function."""
    from compressai.zoo import bmshj2018_factorized
    from compressai.zoo.image import model_urls

    torch.manual_seed(0)
    model = bmshj2018_factorized(quality=1).eval()
    model.update(force=True)
    hub.mkdir(parents=True)
    url = model_urls["bmshj2018-factorized"]["mse"][1]
    torch.save(model.state_dict(), hub / os.path.basename(url))
    rows = run(
        checkpoints=["compressai:bmshj2018-factorized:1"],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path / "out",
        baselines=["jpeg"],
        qualities={"jpeg": [10, 50]},
        workers=0,
        progress=False,
        metrics=["psnr"],
        anchor="jpeg",
    )
    zoo = next(r for r in rows if r["codec"] == "compressai:bmshj2018-factorized")
    assert zoo["objective"] == "mse" and zoo["quality"] == 1 and zoo["bpp"] > 0
    assert zoo["rate_source"] == "bitstream" and zoo["n_images"] == len(SIZES)
    cell = json.loads(
        (
            tmp_path / "out" / "cells" / "fidelity__zoo-bmshj2018-factorized-mse-q1-bitstream.json"
        ).read_text()
    )
    assert cell["n_failed"] == 0
    assert "bmshj2018-factorized (zoo, mse)" in (tmp_path / "out" / "summary.md").read_text()


def test_missing_metric_weights_stop_the_task_at_creation(hub, folder):
    with pytest.raises(WeightsUnavailableError, match="LPIPS") as err:
        create_task("fidelity", str(folder), metrics=["psnr", "lpips"])
    assert "Without weights, `--metrics psnr ms_ssim` runs offline." in str(err.value)


def test_offline_the_layout_check_runs_and_eval_says_what_runs(hub, folder, tmp_path, capsys):
    """`lic data check fidelity` needs no weights; `lic eval` with the default metrics stops
    in one line naming the offline ones, leaving no OUT behind."""
    assert main(["data", "check", "fidelity", str(folder)]) == 0
    assert (
        capsys.readouterr().out
        == f"fidelity: {folder}: layout ok, 3 samples; first and last decode\n"
    )
    out = tmp_path / "out"
    argv = ["eval", "--task", "fidelity", "--data-root", str(folder), "--out", str(out)]
    assert main([*argv, "--baselines", "jpeg=50", "--workers", "0", "--no-progress"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("error: ") and lines[-1].endswith(
        "`--metrics psnr ms_ssim` runs offline."
    )
    assert not out.exists()  # neither OUT/cells nor config.yaml
    (tmp_path / "empty").mkdir()
    argv[4] = str(tmp_path / "empty")  # a data root the task refuses: exit 2, nothing left
    assert main([*argv, "--baselines", "jpeg=50", "--metrics", "psnr", "--no-progress"]) == 2
    assert "no samples found" in capsys.readouterr().err and not out.exists()


def test_zoo_offline_lists_every_missing_file_at_once(hub):
    with pytest.raises(WeightsUnavailableError) as err:
        build_coders(["compressai:bmshj2018-factorized:1-3", "compressai:mbt2018-mean:2"])
    message = str(err.value)
    assert message.startswith("4 weight files are neither cached nor downloadable from here")
    for name in ("factorized-prior-1-", "factorized-prior-2-", "factorized-prior-3-", "mean-2-"):
        assert name in message
    assert str(hub) in message


def test_all_four_metrics_with_random_networks(folder, tiny_clip):
    task = create_task("fidelity", str(folder), model=tiny_clip, weights="none")
    assert task.metrics == ("psnr", "ms_ssim", "ms_ssim_db", "lpips", "mlclipsim")
    nets = task.build_model(torch.device("cpu"))
    images = [task.load(i)[0] for i in range(len(task))]
    noisy = [(x + 0.05 * torch.randn_like(x)).clamp(0, 1) for x in images]
    same, worse = task.predict(nets, images, images), task.predict(nets, noisy, images)
    for a, b in zip(same, worse, strict=True):
        assert a["lpips"] == pytest.approx(0.0, abs=1e-6) and b["lpips"] > 0
        assert a["mlclipsim"] == pytest.approx(1.0, abs=1e-5) and b["mlclipsim"] < 1
        assert a["psnr"] == 100.0 and 20 < b["psnr"] < 30
    accumulator = task.new_accumulator()
    accumulator.update(worse, images, ["a", "b", "c"])
    means = accumulator.compute()
    assert means["psnr"] == pytest.approx(np.mean([w["psnr"] for w in worse]))
    assert means["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - means["ms_ssim"]))


def test_small_images_fail_alone_and_metrics_need_the_fidelity_task(tmp_path, folder):
    save_rgb(tmp_path / "tiny.png", photo_like(64, 64, seed=1))
    save_rgb(tmp_path / "big.png", photo_like(200, 200, seed=2))
    rows = run(
        checkpoints=[],
        tasks=["fidelity"],
        data_roots={"fidelity": str(tmp_path)},
        out=tmp_path / "out",
        baselines=["jpeg"],
        qualities={"jpeg": [50]},
        workers=0,
        progress=False,
        metrics=["psnr", "ms_ssim"],
    )
    jpeg = next(r for r in rows if r["codec"] == "jpeg")
    assert (jpeg["n_images"], jpeg["n_failed"]) == (1, 1)
    assert (
        "tiny.png: MS-SSIM needs both sides >= 161 px"
        in (tmp_path / "out" / "summary.md").read_text()
    )
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "eval_rate_task.py"), "--task", "consistency"),
            *("--data-root", str(folder), "--out", str(tmp_path / "o2"), "--metrics", "psnr"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "add --task fidelity" in done.stderr


def test_ml_clipsim_reference_features_run_once_per_image_and_are_kept(
    folder, tiny_clip, tmp_path, monkeypatch
):
    """The tower runs once per original over every cell (and not at all for an added one):
    its reference-side features are kept in OUT/references; the scores equal direct ones."""
    from conftest import write_codec_checkpoint

    from lic.metrics.mlclipsim import MLCLIPSim

    calls: list[int] = []
    features = MLCLIPSim.reference_features

    def counted(self, x):
        calls.append(len(x))
        return features(self, x)

    monkeypatch.setattr(MLCLIPSim, "reference_features", counted)
    ckpts = [
        write_codec_checkpoint(tmp_path / f"{i}.ckpt", lmbda=lmbda)
        for i, lmbda in enumerate((0.01, 0.05, 0.1))
    ]

    def evaluate(checkpoints):
        return run(
            checkpoints=checkpoints,
            tasks=["fidelity"],
            data_roots={"fidelity": str(folder)},
            metrics=["psnr", "mlclipsim"],
            out=tmp_path / "out",
            workers=0,
            task_model=tiny_clip,
            task_weights="none",
            progress=False,
        )

    rows = evaluate(ckpts[:2])
    assert sum(calls) == len(SIZES)
    assert list((tmp_path / "out" / "references").glob("fidelity-*.pt"))
    calls.clear()
    again = evaluate(ckpts)
    assert calls == []  # the added checkpoint scored against the kept features
    assert [r for r in again if r["checkpoint"] != str(ckpts[2])] == rows
    uncompressed = [r for r in rows if r["codec"] == "uncompressed" and r["metric"] == "mlclipsim"]
    assert uncompressed[0]["value"] == pytest.approx(1.0, abs=1e-5)
    task = create_task(
        "fidelity", str(folder), model=tiny_clip, weights="none", metrics=["psnr", "mlclipsim"]
    )
    nets = task.build_model(torch.device("cpu"))
    images = [task.load(i)[0] for i in range(len(task))]
    decoded = [(x + 0.05 * torch.randn_like(x)).clamp(0, 1) for x in images]
    kept = task.reference_outputs(nets, images)
    direct = task.predict(nets, decoded, images)
    for a, b in zip(task.predict_against(nets, decoded, images, kept), direct, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_reference_identity_names_an_open_clip_tower_and_its_tag(folder, tiny_clip):
    """A pretrained tower's tag (openai, laion2b_...) is part of the key, not a torchvision
    weights enum (which has no ViT-B-32)."""
    task = create_task("fidelity", str(folder), model=tiny_clip, weights="none")
    from lic.tasks.models import ModelRef

    task.weights_name = "openai"  # as a pretrained run has it (its networks stay random)
    task.model_ref = ModelRef.parse(tiny_clip, "openai", task.model_family)
    identity = task.reference_identity()
    assert identity["weights"] == "openai" and identity["model"] == tiny_clip
    assert identity["features"] == {"mlclipsim": {}}
    task.metric_args = {"mlclipsim": {"layers": [1, 3]}}
    assert task.reference_identity()["features"] == {"mlclipsim": {"layers": [1, 3]}}


def test_the_coding_thread_gives_a_coding_process_numbers(folder, tmp_path, monkeypatch):
    """On 2 cores `auto` codes PSNR/MS-SSIM runs in a thread (one torch thread, as a worker
    process codes): every bitstream and score is the process layout's, to the bit."""
    from lic.evaluation import parallel, rate_task

    threads, coded_in_thread = [], rate_task.coded_in_thread
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    monkeypatch.setattr(
        rate_task, "coded_in_thread", lambda b: threads.append(1) or coded_in_thread(b)
    )
    ckpt = write_codec_checkpoint(tmp_path / "codec.ckpt", seed=0)
    per_image = {}
    for workers in ("auto", 1):
        out = tmp_path / str(workers)
        run(checkpoints=[str(ckpt)], tasks=["fidelity"], data_roots={"fidelity": str(folder)},
            out=out, workers=workers, device="cpu", progress=False, metrics=["psnr", "ms_ssim"],
            bootstrap=0)  # fmt: skip
        per_image[workers] = [
            {k: v for k, v in r.items() if k != "seconds"} for r in read_per_image(out)
        ]
    assert threads == [1]  # auto: the thread; workers=1: the process
    assert per_image["auto"] == per_image[1] and len(per_image[1]) == 2 * len(SIZES)
