"""`lic eval` / `lic train`: one typed harness config saved as YAML and re-run from it, and
the same usage convention (exit 2) in every entry point."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import photo_like, save_rgb

from lic.cli import main
from lic.evaluation.config import CONFIG_NAME, EvalConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(2):
        save_rgb(images / f"im{seed}.png", photo_like(96, 128, seed=seed))
    return images


def eval_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        *("--task", "fidelity", "--metrics", "psnr", "--data-root", str(folder)),
        *("--out", str(out), "--workers", "0", "--device", "cpu", "--no-progress", *extra),
    ]


def test_eval_saves_its_config_and_reruns_from_it(folder, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="lic.evaluation.rate_task"):
        assert main(eval_args(folder, out, "--baselines", "jpeg=30,70")) == 0
    assert caplog.messages[-1] == (  # the run's last line names what it wrote
        f"reports in {out}: results.csv/.json, per_image.csv, bd.csv, "
        "rate_task_fidelity.png/.pdf, summary.md"
    )
    config = EvalConfig.load(out / CONFIG_NAME)
    assert config.tasks == ["fidelity"] and config.metrics == ["psnr"]
    assert config.baselines == ["jpeg"] and config.qualities == {"jpeg": [30, 70]}
    assert config.data_roots == {"fidelity": str(folder.absolute())} and config.workers == 0
    cells = sorted((out / "cells").glob("*.json"))
    assert [c.stem for c in cells] == [f"fidelity__{k}" for k in ("jpeg-q30", "jpeg-q70")] + [
        "fidelity__uncompressed"
    ]
    stamps = {c: c.stat().st_mtime_ns for c in cells}
    results = (out / "results.csv").read_text()

    monkeypatch.chdir(tmp_path.parent)  # the saved paths are absolute: any folder will do
    assert main(["eval", "--config", str(out / CONFIG_NAME)]) == 0
    assert {c: c.stat().st_mtime_ns for c in cells} == stamps  # nothing recomputed
    assert (out / "results.csv").read_text() == results

    # a flag replaces the file's value; only the new cell is computed
    assert main(["eval", "--config", str(out / CONFIG_NAME), "--baselines", "jpeg=30,50"]) == 0
    assert (out / "cells" / "fidelity__jpeg-q50.json").is_file()
    assert (out / "cells" / "fidelity__jpeg-q30.json").stat().st_mtime_ns == stamps[cells[0]]
    assert EvalConfig.load(out / CONFIG_NAME).qualities == {"jpeg": [30, 50]}


def test_python_api_and_cli_share_the_record(folder, tmp_path):
    from lic.evaluation import run

    config = EvalConfig(tasks=["fidelity"], data_roots={"fidelity": folder}, out=tmp_path)
    assert yaml.safe_load(config.to_yaml())["data_roots"] == {"fidelity": str(folder)}
    options = {"baselines": ["jpeg"], "qualities": {"jpeg": [50]}}
    rows = run(config, metrics=["psnr"], workers=0, device="cpu", progress=False, **options)
    assert sorted(r["codec"] for r in rows) == ["jpeg", "uncompressed"]
    assert EvalConfig.load(tmp_path / CONFIG_NAME).metrics == ["psnr"]


def test_interval_and_protocol_flags_reach_the_record():
    from lic.evaluation.cli import build_parser, config_from_args

    argv = ["--task", "seedbench", "--data-root", ".", "--out", "x", "--bootstrap", "0"]
    argv += ["--bootstrap-seed", "7", "--seed-protocol", "likelihood"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.bootstrap, config.bootstrap_seed, config.seed_protocol) == (0, 7, "likelihood")
    defaults = EvalConfig(tasks=[], out="x")
    assert (defaults.bootstrap, defaults.bootstrap_seed, defaults.seed_protocol) == (
        1000,
        0,
        "generate",
    )


def test_convention_flags_reach_the_record():
    from lic.evaluation.cli import build_parser, config_from_args

    argv = ["--task", "fidelity", "--data-root", ".", "--out", "x", "--pad", "replicate"]
    argv += ["--rate-mean", "pixels", "--anchor", "published:vtm", "--published", "hm", "bpg"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.pad, config.rate_mean, config.anchor) == ("replicate", "pixels", "published:vtm")
    assert config.published == ["hm", "bpg"]
    defaults = config_from_args(build_parser().parse_args(argv[:6]))
    assert (defaults.pad, defaults.rate_mean, defaults.published) == ("zeros", "images", [])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--out", "x"], "give --task"),
        (
            ["eval", "--task", "fidelity", "--data-root", ".", "--out", "x"],
            "nothing to evaluate besides the uncompressed images: give --ckpt",
        ),
        (
            ["eval", "--task", "fidelity", "--data-root", ".", "--ckpt-glob", "none/*.ckpt"],
            "--ckpt-glob 'none/*.ckpt' matches no file",
        ),
        (
            ["eval", "--task", "fidelity", "--data-root", ".", "--pad", "reflect"],
            "invalid choice: 'reflect'",
        ),
        (["eval", "--task", "fidelity", "--out", "x"], "no data root"),
        (
            ["eval", "--task", "fidelity", "--data-root", ".", "--out", "x", "--limit", "0"],
            "--limit",
        ),
        (["eval", "--config", "missing.yaml"], "cannot read it"),
        (["eval", "--config", "BAD"], "unknown option(s) ['no_such_option']"),
        (["eval", "--task", "consistency", "--data-root", ".", "--metrics", "psnr"], "--metrics"),
        (
            ["eval", "--task", "fidelity", "--data-root", ".", "--out", "x", "--bootstrap", "-1"],
            "--bootstrap -1",
        ),
        (["eval", "--task", "seedbench", "--data-root", ".", "--seed-protocol", "ppl"], "ppl"),
    ],
)
def test_eval_usage_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD").write_text("tasks: [fidelity]\nno_such_option: 1\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd",
    [
        ["-m", "lic", "train", "fit", "--no-such-flag"],
        ["train.py", "fit", "--no-such-flag"],
        ["-m", "lic", "eval", "--no-such-flag"],
        ["eval_rate_task.py", "--no-such-flag"],
    ],
)
def test_every_entry_point_exits_2_on_usage_errors(cmd, tmp_path):
    cmd = [str(ROOT / c) if c.endswith(".py") else c for c in cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--no-such-flag" in done.stderr and "Traceback" not in done.stderr


def test_train_and_eval_help(capsys):
    from lic.evaluation.cli import build_parser

    assert "--config" in build_parser().format_help()
    done = subprocess.run(
        [sys.executable, "-m", "lic", "train", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: lic train")


def test_garbage_collection_pauses_over_the_imports_and_resumes_before_coding(
    folder, tmp_path, monkeypatch
):
    """lic's console pauses collection (lic.startup); `lic eval` resumes it, with the
    imports' objects frozen, before coding starts, and on every way out."""
    import gc

    from lic import startup
    from lic.evaluation import rate_task

    frozen, at_coding = gc.get_freeze_count(), []
    coded_in_thread = rate_task.coded_in_thread
    monkeypatch.setattr(
        rate_task,
        "coded_in_thread",
        lambda b: at_coding.append(gc.isenabled()) or coded_in_thread(b),
    )
    try:
        startup.imports_done()  # not paused: nothing happens (a library caller's heap)
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        startup.pause_collection()
        assert not gc.isenabled()
        assert main(eval_args(folder, tmp_path / "out", "--baselines", "jpeg=50")) == 0
        assert at_coding == [True] and gc.get_freeze_count() > frozen
        startup.pause_collection()
        assert main(eval_args(tmp_path / "none", tmp_path / "out2", "--baselines", "jpeg")) == 2
        assert gc.isenabled()  # a refused run resumes it too
    finally:
        gc.enable()
        gc.unfreeze()
