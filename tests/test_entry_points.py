"""The error convention of every entry point and a start-up that loads no torch for help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lic.cli import build_parser, main
from lic.errors import InputError, UsageError, run_entry_point
from lic.weights import WeightsUnavailableError

ROOT = Path(__file__).resolve().parents[1]


def test_building_every_parser_imports_no_torch():
    """`lic --help` and `lic CMD --help` stay instant: no torch, open_clip or transformers."""
    code = (
        "import sys, lic.cli\n"
        "parser = lic.cli.build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'transformers', 'lightning')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert build_parser().prog == "lic"


def test_every_help_but_train_s_imports_no_torch():
    """`lic CMD --help` for every command, `lic eval` included (its parser is its own);
    `lic train` is LightningCLI, whose help is built from the classes it trains."""
    commands = [c for c in build_parser()._subparsers._group_actions[0].choices if c != "train"]
    code = (
        "import contextlib, io, sys\n"
        "from lic.cli import main\n"
        f"for command in {commands!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'])\n"
        "    heavy = [m for m in ('torch', 'open_clip', 'transformers', 'lightning')"
        " if m in sys.modules]\n"
        "    assert not heavy, (command, heavy)\n"
    )
    assert "eval" in commands and len(commands) >= 12
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_help_seen_before_is_printed_without_lightning(tmp_path):
    """The first `lic train fit --help` renders LightningCLI's help and keeps it; the next
    prints the same text importing neither Lightning nor torch; a changed config file named
    in the arguments is another help (lic.training.help_cache)."""
    code = (
        "import contextlib, hashlib, io, json, sys\n"
        "from lic.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = main(sys.argv[1:])\n"
        "text = out.getvalue()\n"
        "heavy = 'torch' in sys.modules or 'lightning' in sys.modules\n"
        "print(json.dumps([code, heavy, len(text), hashlib.sha256(text.encode()).hexdigest()]))\n"
    )
    env = {**os.environ, "LIC_CACHE": str(tmp_path / "cache"), "COLUMNS": "100"}
    config = tmp_path / "a.yaml"
    config.write_text("trainer:\n  max_steps: 3\n")

    def help_run(*args: str) -> list:
        argv = [sys.executable, "-c", code, "train", "fit", *args, "--help"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    first, second = help_run(), help_run()
    assert first[:2] == [0, True] and second[:2] == [0, False]
    assert first[2:] == second[2:] and first[2] > 2000  # the same, whole help text
    assert help_run("--config", str(config))[:2] == [0, True]  # not kept yet: rendered
    assert help_run("--config", str(config))[:2] == [0, False]
    config.write_text("trainer:\n  max_steps: 4\n")
    assert help_run("--config", str(config))[:2] == [0, True]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad flag"), 2),
        (InputError("corrupt file"), 2),
        (FileNotFoundError(2, "No such file", "x.png"), 2),
        (WeightsUnavailableError("needs weights\n  copy them to /cache"), 1),
        (RuntimeError("boom"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_errors_are_one_line_with_the_convention_s_exit_code(error, code, capsys, monkeypatch):
    monkeypatch.delenv("LIC_DEBUG", raising=False)

    def fail() -> int:
        raise error

    assert run_entry_point(fail) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_lic_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("LIC_DEBUG", "1")

    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_entry_point(fail)


def test_usage_errors_exit_2_and_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert main(["compress", "--ckpt"]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--data.train_dir", "/nonexistent/photos"], "Directory does not exist"),
        (["--data.train_dir", "EMPTY"], "no images found"),
        (["--model.no_such_key", "3"], "unrecognized arguments"),
        (["--trainer.accelerator", "gpu"], "--trainer.accelerator cpu"),
        (["--model.lmbda", "-0.01"], "--model.lmbda -0.01: give a positive number"),
        (["--model.lr=-1e-4"], "--model.lr -0.0001: give a positive number"),
        (["--model.codec", "nope"], "--model.codec 'nope': one of bmshj2018-factorized"),
        (["--model.distortion", "msee"], "--model.distortion 'msee': unknown metric 'msee'"),
        (["--ckpt_path", "last"], "--ckpt_path last: no last.ckpt in runs/"),
    ],
)
def test_train_py_usage_errors_are_one_line_exit_2(extra, expected, tmp_path):
    extra = [str(tmp_path) if arg == "EMPTY" else arg for arg in extra]
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config"]
    cmd += [str(ROOT / "configs" / "demo.yaml"), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and expected in errors[0] and "Traceback" not in result.stderr


def test_exit_program_keeps_the_code_flushes_and_runs_atexit(tmp_path):
    """The programs end through exit_program: the exit code, buffered output, open files and
    atexit handlers all survive the frozen heap (only the collector's passes are skipped)."""
    out = tmp_path / "written.txt"
    code = (
        "import atexit, gc, sys\n"
        "from lic.errors import exit_program\n"
        f"f = open({str(out)!r}, 'w'); f.write('kept')\n"  # left open: finalised at exit
        "atexit.register(lambda: print('atexit ran', gc.get_freeze_count() > 0))\n"
        "print('buffered', end='')\n"
        "exit_program(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stdout == "bufferedatexit ran True\n"
    assert out.read_text() == "kept"


def test_the_lic_program_ends_through_exit_program():
    """Console script and `python -m lic` both call lic.cli.console (a usage error: exit 2)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'lic = "lic.cli:console"' in pyproject
    done = subprocess.run(
        [sys.executable, "-m", "lic", "score", "--metric", "psnr", "--no-such-flag"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "unrecognized arguments: --no-such-flag" in done.stderr


def test_lic_version_and_help_say_what_lic_is(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("lic ")
    assert build_parser().description.startswith("lic: learned image compression for machines")


def test_lic_train_makes_idle_openmp_threads_sleep_unless_told_otherwise():
    code = "import os, lic.training.cli; print(os.environ['OMP_WAIT_POLICY'])"
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env |= {"OMP_WAIT_POLICY": given} if given else {}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.stdout.strip() == expected, done.stderr[-500:]


@pytest.mark.slow
def test_a_resumed_training_run_continues_its_own_folder_log_and_step_count(tmp_path):
    """Two steps, then `--ckpt_path last` to four: no "directory exists" warning, one log
    version whose metrics.csv holds both parts, a step bar (not "Epoch 1/-2"), the run folder
    printed at start and end."""
    run = Path("runs") / "bmshj2018-hyperprior_mse_lambda0.013"
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config"]
    cmd += [str(ROOT / "configs" / "demo.yaml"), "--data.patch_size", "64"]
    cmd += ["--data.num_workers", "0", "--data.batch_size", "2", "--model.codec_args"]
    cmd += ["{N: 16, M: 24}", "--trainer.val_check_interval", "2"]
    outputs = []
    for extra in (
        ["--trainer.max_steps", "2"],
        ["--trainer.max_steps", "4", "--ckpt_path", "last"],
    ):
        done = subprocess.run(cmd + extra, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done)
    first, resumed = outputs
    assert "is not empty" not in first.stderr + resumed.stderr
    assert "not resumable" not in resumed.stderr
    assert resumed.stdout.startswith(f"run folder: {run}\n")
    assert f"run folder: {run} (step 4)\n" in resumed.stdout
    assert "step: 100%" in resumed.stdout and "| 4/4 [" in resumed.stdout
    assert "Epoch" not in first.stdout + resumed.stdout
    assert sorted(p.name for p in (tmp_path / run / "logs").iterdir()) == ["version_0"]
    rows = (tmp_path / run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    steps = [int(row.split(",")[1]) for row in rows[1:] if row.split(",")[2]]  # training rows
    assert steps[:2] == [0, 1] and steps[-1] == 4
