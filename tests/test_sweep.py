"""`lic sweep`: sweep files become named runs, dry runs print what would be submitted, and
real sweeps run through submitit's own LocalExecutor (no mock): failed runs are reported with
their log while the others finish, finished runs are skipped, changed ones resume from their
last.ckpt, a killed sweep re-runs only what is missing, and one evaluation covers every run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import photo_like, save_rgb

from lic.cli import main
from lic.sweep.plan import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "configs" / "sweeps"


def write_sweep(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def tiny_sweep(tmp_path: Path, lambdas=(0.01, 0.02), evaluate: bool = True) -> Path:
    """The demo config on a few 64x64 images: a run is about 2 s of training."""
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(4):
        save_rgb(train / f"t{i}.png", photo_like(64, 64, seed=i))
    for i in range(2):
        save_rgb(val / f"v{i}.png", photo_like(64, 64, seed=10 + i))
    fixed = {"data.train_dir": str(train), "data.val_dir": str(val), "data.patch_size": 64}
    fixed |= {"data.batch_size": 2, "data.num_workers": 0, "trainer.max_steps": 2}
    fixed |= {"trainer.enable_progress_bar": False}
    values = {
        "base": [str(ROOT / "configs" / "demo.yaml")],
        "out": str(tmp_path / "out"),
        "grid": {"model.lmbda": list(lambdas)},
        "fixed": fixed,
    }
    if evaluate:
        values["eval"] = {
            "tasks": ["fidelity"],
            "data_roots": {"fidelity": "val"},  # relative to the sweep file
            "metrics": ["psnr"],
            "workers": 0,
            "device": "cpu",
        }
    return write_sweep(tmp_path / "sweep.yaml", **values)


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lic", "sweep", *args]


def sweep_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_demo_sweep_is_two_objectives_by_two_lambdas_named_as_lic_train_names_them():
    sweep = load_sweep(SWEEPS / "demo.yaml", sets=["trainer.max_steps=3"])
    names = [r.name for r in sweep.runs()]
    assert names == [
        "bmshj2018-hyperprior_mse_lambda0.0067",
        "bmshj2018-hyperprior_mse_lambda0.013",
        "bmshj2018-hyperprior_ms_ssim3000_lambda0.0067",
        "bmshj2018-hyperprior_ms_ssim3000_lambda0.013",
    ]
    run = sweep.runs()[2]
    assert run.run_dir == sweep.out / run.name
    assert run.args[:3] == ("fit", "--config", str(ROOT / "configs" / "demo.yaml"))
    assert run.args[-8:] == (
        "--data.num_workers",
        "0",
        "--model.distortion",
        '{"ms_ssim": 3000.0}',
        "--model.lmbda",
        "0.0067",
        "--trainer.max_steps",
        "3",
    )
    assert sweep.eval["data_roots"] == {"fidelity": str(ROOT / "data" / "demo" / "val")}
    assert sweep.eval["baselines"] == ["jpeg"]
    assert sweep.eval["qualities"] == {"jpeg": [10, 30, 50, 70, 90]}


def test_objectives_sweep_is_the_paper_grid_and_its_slurm_dry_run_prints_the_array(capsys):
    sweep = load_sweep(SWEEPS / "objectives.yaml")
    runs = sweep.runs()
    assert len(runs) == len({r.name for r in runs}) == 36
    assert {r.name.split("_lambda")[0] for r in runs} == {
        f"{codec}_{objective}"
        for codec in ("bmshj2018-hyperprior", "mlicpp")
        for objective in ("mse", "lpips500", "mlclipsim2000")
    }
    assert set(sweep.eval["tasks"]) == {"imagenet", "voc", "coco"}

    assert main(["sweep", str(SWEEPS / "objectives.yaml"), "--launcher", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-35%12" in out  # 36 runs, 12 at a time
    assert "#SBATCH --gpus-per-node=4" in out and "#SBATCH --ntasks-per-node=4" in out
    assert "#SBATCH --signal=USR2@120" in out  # submitit's requeue signal
    assert "#SBATCH --dependency=afterany:<ARRAY_JOB_ID>" in out.replace("'", "")
    assert out.count("--trainer.num_nodes 1 --trainer.devices 4") == 36
    assert "dry run: nothing submitted (36 of 36 run(s) to train)" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {"model.lr": [1e-3, 1e-4]}}, "both train bmshj2018-hyperprior_mse_lambda0.013"),
        ({"fixed": {"trainer.default_root_dir": "x"}}, "that is set by out"),
        ({"epochs": 3}, "unknown key(s) ['epochs']"),
        ({"base": ["missing.yaml"]}, "missing.yaml does not exist"),
        ({"eval": {"tasks": ["fidelity"]}}, "no data root for task(s) ['fidelity']"),
        ({"eval": {"tasks": ["fidelity"], "data_roots": {"fidelity": "."}, "bogus": 1}}, "bogus"),
        ({"eval": {"tasks": ["fidelity"], "data_roots": {"fidelity": "."}, "baselines": ["x"]}},
         "unknown baseline 'x'"),
        ({"eval": {"tasks": ["imagenett"], "data_roots": {"imagenett": "."}}},
         "eval.tasks ['imagenett'] unknown"),
        ({"eval": {"tasks": ["fidelity"], "data_roots": {"fidelity": "."}, "metrics": ["psnrr"]}},
         "eval.metrics ['psnrr'] unknown"),
    ],
)  # fmt: skip
def test_a_wrong_sweep_file_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    values = {"base": [str(ROOT / "configs" / "demo.yaml")], "grid": {"model.lmbda": [0.01]}}
    path = write_sweep(tmp_path / "s.yaml", **(values | change))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_missing_eval_data_stops_the_sweep_before_any_training(tmp_path, capsys):
    path = tiny_sweep(tmp_path)
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    assert main(["sweep", str(path), "--dry-run"]) == 0  # a plan, e.g. for a cluster's paths
    capsys.readouterr()
    assert main(["sweep", str(path)]) == 2
    assert "eval data folder(s) not found: fidelity=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_set_overrides_every_run_and_status_follows_the_marker(tmp_path):
    path = tiny_sweep(tmp_path, evaluate=False)
    runs = load_sweep(path, sets=["trainer.max_steps=5", "model.distortion={ms_ssim: 3}"]).runs()
    assert [r.name for r in runs] == [
        "bmshj2018-hyperprior_ms_ssim3_lambda0.01",
        "bmshj2018-hyperprior_ms_ssim3_lambda0.02",
    ]
    for r in runs:  # a --set replaces a fixed value in place, and adds what is not there
        flags = dict(zip(r.args[1::2], r.args[2::2], strict=True))
        assert flags["--trainer.max_steps"] == "5" and r.args.count("--trainer.max_steps") == 1
        assert r.args[-2:] == ("--model.distortion", '{"ms_ssim": 3}')
    run = runs[0]
    assert run.status() == "new"
    run.last_ckpt.parent.mkdir(parents=True)
    run.last_ckpt.write_bytes(b"x")
    assert run.status() == "resume"
    run.marker.write_text(json.dumps({"args": list(run.args)}))
    assert run.status() == "done"
    other = load_sweep(path, sets=["trainer.max_steps=6", "model.distortion={ms_ssim: 3}"]).runs()
    assert other[0].run_dir == run.run_dir and other[0].status() == "resume"  # new arguments


def test_a_requeued_job_is_the_same_run(tmp_path):
    """submitit's checkpointing protocol: on preemption or time-out the job resubmits itself."""
    from lic.sweep.jobs import TrainRun

    run = load_sweep(tiny_sweep(tmp_path, evaluate=False)).runs()[0]
    job = TrainRun(run, ("--trainer.devices", "4"))
    delayed = job.checkpoint()
    assert job._requeued  # so the exit submitit raises next is not taken for a failure
    assert isinstance(delayed.function, TrainRun) and delayed.args == ()
    assert delayed.function.run == run and delayed.function.extra == ("--trainer.devices", "4")


def test_local_jobs_see_the_gpus_this_shell_sees(tmp_path, monkeypatch):
    """submitit's LocalExecutor sets CUDA_VISIBLE_DEVICES to its gpus_per_node (none by
    default); a local run restores this shell's value before torch loads."""
    from lic.sweep.jobs import TrainRun, _restore, visible_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    environ = visible_devices()
    run = load_sweep(tiny_sweep(tmp_path, evaluate=False)).runs()[0]
    assert TrainRun(run, environ=environ).checkpoint().function.environ == environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what the executor leaves
    _restore(environ)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    _restore({"CUDA_VISIBLE_DEVICES": None})
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def worker_of(controller: int) -> int:
    """The task process that submitit's local controller started (Linux /proc)."""
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.slow
def test_a_preempted_run_is_requeued_by_submitit_and_resumes_from_last_ckpt(tmp_path):
    """SIGUSR2 is submitit's preemption/time-out signal (SLURM sends it before the limit)."""
    import submitit
    import torch

    from lic.sweep.jobs import TrainRun

    sets = ["trainer.max_steps=60"]  # ModelCheckpoint saves last.ckpt every 50 steps
    run = load_sweep(tiny_sweep(tmp_path, lambdas=(0.01,), evaluate=False), sets=sets).runs()[0]
    executor = submitit.LocalExecutor(tmp_path / "jobs", max_num_timeout=3)
    executor.update_parameters(timeout_min=30, stderr_to_stdout=True)
    job = executor.submit(TrainRun(run))
    deadline = time.monotonic() + 180
    while not run.last_ckpt.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(worker_of(int(job.job_id)), signal.SIGUSR2)
    assert job.result() == str(run.last_ckpt)
    log = Path(job.paths.stdout).read_text()
    assert "Requeued job" in log and f"{run.name}: resuming" in log, log[-3000:]
    state = torch.load(run.last_ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 60 and run.status() == "done"  # the final state


def curve_points(results: Path) -> list[tuple[str, str]]:
    with results.open() as f:
        rows = [
            r for r in csv.DictReader(f) if r["metric"] == "psnr" and r["codec"] != "uncompressed"
        ]
    return sorted((r["objective"], r["lambda"]) for r in rows)


@pytest.mark.slow
def test_local_sweep_trains_reports_a_failure_evaluates_and_resumes(tmp_path):
    path = tiny_sweep(tmp_path, lambdas=(0.01, 0.02, 0.04))
    broken = load_sweep(path).runs()[2].run_dir / "checkpoints"
    broken.parent.mkdir(parents=True)
    broken.write_text("a file where checkpoints go")  # this run fails; the others go on

    first = subprocess.run(
        sweep_command(str(path)), capture_output=True, text=True, env=sweep_env(), check=False
    )
    assert first.returncode == 1, first.stdout + first.stderr
    runs = load_sweep(path).runs()
    assert [r.status() for r in runs] == ["done", "done", "new"]
    failed = next(line for line in first.stdout.splitlines() if "FAILED" in line)
    log = Path(failed.split("(log: ")[1].rstrip(")"))
    assert log.is_file() and failed.split("FAILED: ")[1].startswith("error: ")  # lic's line
    assert "error: 1 run(s) failed: bmshj2018-hyperprior_mse_lambda0.04" in first.stderr
    results = tmp_path / "out" / "eval" / "results.csv"
    assert curve_points(results) == [("mse", "0.01"), ("mse", "0.02")]  # one point per run

    broken.unlink()  # fixed: a re-run trains only that run, then evaluates all three
    again = subprocess.run(
        sweep_command(str(path), "--set", "trainer.max_steps=3"),
        capture_output=True,
        text=True,
        env=sweep_env(),
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/3] bmshj2018-hyperprior_mse_lambda0.01: resuming" in again.stdout
    assert "[3/3] bmshj2018-hyperprior_mse_lambda0.04: training" in again.stdout
    import torch

    for run in load_sweep(path, sets=["trainer.max_steps=3"]).runs():
        assert run.status() == "done"
        state = torch.load(run.last_ckpt, map_location="cpu", weights_only=True)
        assert state["global_step"] == 3  # the first two went on from step 2
    assert curve_points(results) == [("mse", "0.01"), ("mse", "0.02"), ("mse", "0.04")]
    assert (tmp_path / "out" / "eval" / "summary.md").read_text().strip() in again.stdout


@pytest.mark.slow
def test_a_killed_local_sweep_re_runs_only_what_is_missing(tmp_path):
    path = tiny_sweep(tmp_path, evaluate=False)
    first, second = load_sweep(path).runs()
    sweep = subprocess.Popen(
        sweep_command(str(path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=sweep_env(),
    )
    deadline = time.monotonic() + 180
    while not list(second.run_dir.glob("submitit/*_log.out")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the second run has started
    assert first.status() == "done"
    time.sleep(1)
    sweep.send_signal(signal.SIGTERM)  # as `kill`: the sweep stops its running job too
    out, err = sweep.communicate(timeout=90)
    assert sweep.returncode == 130, out + err
    time.sleep(10)  # longer than the run takes: no orphaned job finishes it behind our back
    assert second.status() != "done"

    rerun = subprocess.run(
        sweep_command(str(path)), capture_output=True, text=True, env=sweep_env(), check=False
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{first.name}  done (skipped)" in rerun.stdout
    assert f"[2/2] {second.name}: " in rerun.stdout
    assert f"[1/2] {first.name}" not in rerun.stdout
    assert first.status() == second.status() == "done"


def fake_slurm(bin_dir: Path, state: str) -> None:
    """sbatch, srun and sacct stand-ins on PATH: submitit's SlurmExecutor runs for real and
    writes its sbatch files; sbatch keeps them and answers with consecutive job ids."""
    bin_dir.mkdir()
    count = f"$(ls {bin_dir}/job_* 2>/dev/null | wc -l)"
    scripts = {
        "srun": "exit 0",
        "sbatch": f'n=$(({count} + 1001)); cp "$1" {bin_dir}/job_$n; echo "Submitted batch job $n"',
        "sacct": f'echo "JobID|State|NodeList"; echo "1001_[0-1]|{state}|"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)


def test_slurm_launcher_submits_one_array_and_an_evaluation_after_it(tmp_path, monkeypatch, capsys):
    import submitit

    from lic.sweep.jobs import EvaluateRuns, TrainRun

    path = tiny_sweep(tmp_path)
    bin_dir = tmp_path / "bin"
    fake_slurm(bin_dir, "PENDING")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["sweep", str(path), "--launcher", "slurm"]) == 0
    array, evaluation = (bin_dir / "job_1001").read_text(), (bin_dir / "job_1002").read_text()
    assert "#SBATCH --array=0-1%2" in array and "#SBATCH --ntasks-per-node=1" in array
    assert "#SBATCH --dependency=afterany:1001" in evaluation
    out = tmp_path / "out"
    assert json.loads((out / "slurm" / "jobs.json").read_text()) == {
        "bmshj2018-hyperprior_mse_lambda0.01": "1001_0",
        "bmshj2018-hyperprior_mse_lambda0.02": "1001_1",
    }
    job = submitit.helpers.DelayedSubmission.load(out / "slurm" / "1001_1" / "1001_1_submitted.pkl")
    assert isinstance(job.function, TrainRun) and job.function.run.name.endswith("lambda0.02")
    assert job.function.extra == ("--trainer.num_nodes", "1", "--trainer.devices", "1")
    job = submitit.helpers.DelayedSubmission.load(out / "slurm" / "1002" / "1002_submitted.pkl")
    assert isinstance(job.function, EvaluateRuns) and len(job.function.runs) == 2

    capsys.readouterr()  # both runs still pending: a re-run submits only a new evaluation
    assert main(["sweep", str(path), "--launcher", "slurm"]) == 0
    assert "still queued from an earlier submission" in capsys.readouterr().out
    assert sorted(p.name for p in bin_dir.glob("job_*")) == ["job_1001", "job_1002", "job_1003"]
    assert "#SBATCH --dependency=afterany:1001" in (bin_dir / "job_1003").read_text()
