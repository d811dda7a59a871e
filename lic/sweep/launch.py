"""Launching a sweep through submitit: a SLURM job array (plus an evaluation job that waits
for it), or this machine's LocalExecutor one run after another; dry runs print the plan.

Every job's log is submitit's (stdout and stderr in one file); a failed run is reported with
that path and the others go on.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lic.data.files import TooLargeError, read_capped, read_json_capped, safe_name
from lic.errors import InputError, UsageError
from lic.sweep.plan import Run, Sweep

LOCAL_DEFAULTS = {"timeout_min": 7 * 24 * 60, "signal_delay_s": 60, "max_num_timeout": 3}
SLURM_DEFAULTS = {"nodes": 1, "gpus_per_node": 1, "time": 3 * 24 * 60, "signal_delay_s": 120}
EVAL_SLURM_DEFAULTS = {"nodes": 1, "gpus_per_node": 1, "time": 12 * 60}
EVAL_SLURM_INHERITS = ("partition", "account", "qos", "setup", "additional_parameters")
QUEUED_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"}
JOBS_CAP = 1 << 20
"""OUT/slurm/jobs.json maps each run name ever submitted (a file name, at most 255 bytes) to
its job id ('1001_0'): under 300 bytes an entry, so 1 MiB holds over 3,000 runs, more than
any sweep submits; a larger file is refused (exit 2), as lic cannot know what is queued."""
JOB_ID = re.compile(r"[0-9]+(_[0-9]+)?")
"""A SLURM job id as submitit reports it: the job, or the job and its array index."""
SUMMARY_CAP = 1 << 20
"""OUT/eval/summary.md, printed at the end: a few lines per task and metric (kilobytes); a
larger one is named instead of printed."""


def slurm_parameters(sweep: Sweep, evaluation: bool = False) -> tuple[dict[str, Any], int]:
    """submitit SlurmExecutor parameters (sbatch names: partition, nodes, gpus_per_node, time
    in minutes, array_parallelism, cpus_per_task, mem, setup, additional_parameters, ...) and
    the requeue budget. One task per GPU: Lightning's SLURM environment runs DDP over them."""
    settings = {**SLURM_DEFAULTS, **sweep.launcher["slurm"]}
    if evaluation:
        inherited = {k: settings[k] for k in EVAL_SLURM_INHERITS if k in settings}
        settings = {**EVAL_SLURM_DEFAULTS, **inherited, **(sweep.eval or {}).get("slurm", {})}
    retries = int(settings.pop("max_num_timeout", 3))
    settings.setdefault("job_name", f"lic-{'eval' if evaluation else 'sweep'}-{sweep.name}")
    settings.setdefault("ntasks_per_node", max(1, int(settings.get("gpus_per_node") or 0)))
    settings.setdefault("stderr_to_stdout", True)
    return settings, retries


def slurm_train_args(sweep: Sweep) -> tuple[str, ...]:
    """What every SLURM run adds to `lic train`: its nodes and GPUs (one DDP process each)."""
    settings, _ = slurm_parameters(sweep)
    gpus = int(settings.get("gpus_per_node") or 0)
    args = ("--trainer.num_nodes", str(settings["nodes"]))
    return args + (("--trainer.devices", str(gpus)) if gpus else ())


def sbatch_script(sweep: Sweep, count: int, evaluation: bool = False) -> str:
    """The sbatch file submitit writes for the training array (or the evaluation job)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params, _ = slurm_parameters(sweep, evaluation)
    folder = _slurm_folder(sweep)
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(folder)}"
    if evaluation:
        params = {**params, "dependency": "afterany:<ARRAY_JOB_ID>"}
    try:
        return _make_sbatch_string(
            command=command, folder=folder, map_count=None if evaluation else count, **params
        )
    except TypeError as err:
        raise UsageError(f"{sweep.source}: launcher.slurm: {err}") from None


def _slurm_folder(sweep: Sweep) -> str:
    return str(sweep.out / "slurm" / "%j")


def print_plan(sweep: Sweep, runs: list[Run], launcher: str) -> None:
    extra = slurm_train_args(sweep) if launcher == "slurm" else ()
    print(f"sweep {sweep.name}: {len(runs)} run(s) in {sweep.out} (launcher {launcher})")
    for run in runs:
        print(f"  {run.status():<6}  {run.name}\n          {run.command(extra)}")
    if sweep.eval:
        tasks = " ".join(sweep.eval.get("tasks") or [])
        print(f"  eval    lic eval of every finished run -> {sweep.out / 'eval'} (tasks: {tasks})")


def dry_run(sweep: Sweep, runs: list[Run], launcher: str) -> int:
    print_plan(sweep, runs, launcher)
    todo = [r for r in runs if r.status() != "done"]
    if launcher == "slurm":
        if todo:
            script = sbatch_script(sweep, len(todo))
            print(f"\n# training: a job array of {len(todo)} run(s)\n{script}")
        if sweep.eval:
            print(f"# evaluation: one job after the array\n{sbatch_script(sweep, 1, True)}")
    print(f"dry run: nothing submitted ({len(todo)} of {len(runs)} run(s) to train)")
    return 0


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """`kill` of the sweep stops its running job too (as Ctrl-C does), instead of orphaning it."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_local_job(function: Any, folder: Path, params: dict[str, Any]) -> tuple[str | None, Path]:
    """Submit one job to submitit's LocalExecutor and wait: (error line or None, log path)."""
    import submitit

    from lic.sweep.jobs import tail_error

    settings = dict(params)
    executor = submitit.LocalExecutor(folder, max_num_timeout=int(settings.pop("max_num_timeout")))
    executor.update_parameters(stderr_to_stdout=True, **settings)
    job = executor.submit(function)
    log = job.paths.stdout
    print(f"    log: {log}", flush=True)
    try:
        job.wait()
    except KeyboardInterrupt:
        job.cancel()  # the controller stops its tasks, then exits
        deadline = time.monotonic() + 60
        while not job.done() and time.monotonic() < deadline:
            time.sleep(0.2)
        raise
    return (tail_error(log) if job.exception() is not None else None), log


def launch_local(sweep: Sweep, runs: list[Run]) -> int:
    """Train the runs not done, one after another, then evaluate; report each outcome."""
    from lic.sweep.jobs import EvaluateRuns, TrainRun, visible_devices

    params = {**LOCAL_DEFAULTS, **sweep.launcher["local"]}
    environ = {} if "gpus_per_node" in params else visible_devices()
    print_plan(sweep, runs, "local")
    outcomes: dict[str, str] = {}
    with _terminate_as_interrupt():
        for i, run in enumerate(runs, 1):
            status = run.status()
            if status == "done":
                outcomes[run.name] = "done (skipped)"
                continue
            verb = "resuming" if status == "resume" else "training"
            print(f"[{i}/{len(runs)}] {run.name}: {verb}", flush=True)
            job = TrainRun(run, environ=environ)
            error, log = _run_local_job(job, run.run_dir / "submitit", params)
            outcomes[run.name] = f"FAILED: {error} (log: {log})" if error else "done"
            print(f"    {outcomes[run.name]}", flush=True)
        eval_error = None
        if sweep.eval and any(r.status() == "done" for r in runs):
            out = sweep.out / "eval"
            print(f"evaluation -> {out}")
            evaluation = EvaluateRuns(runs, sweep.eval, out, environ)
            eval_error, log = _run_local_job(evaluation, out / "submitit", params)
            if eval_error:
                print(f"    evaluation FAILED: {eval_error} (log: {log})")
    return report(sweep, runs, outcomes, eval_error)


def report(sweep: Sweep, runs: list[Run], outcomes: dict[str, str], eval_error: str | None) -> int:
    """One line per run, then the evaluation's summary; exit 1 if anything failed."""
    print(f"\nsweep {sweep.name}: {sweep.out}")
    width = max(len(r.name) for r in runs)
    for run in runs:
        print(f"  {run.name:<{width}}  {outcomes.get(run.name, run.status())}")
    summary = sweep.out / "eval" / "summary.md"
    if sweep.eval and summary.is_file() and not eval_error:
        try:
            text = read_capped(summary, SUMMARY_CAP).decode(errors="replace").rstrip()
        except TooLargeError as err:
            text = f"({err})"
        print(f"\nevaluation: {summary.parent}\n\n{text}")
    failed = [name for name, outcome in outcomes.items() if outcome.startswith("FAILED")]
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    if eval_error:
        print(f"error: evaluation failed: {eval_error}", file=sys.stderr)
    return 1 if failed or eval_error else 0


def submitted_jobs(sweep: Sweep) -> dict[str, str]:
    """OUT/slurm/jobs.json, the job id of every run submitted so far ({} before the first
    submission). One that is too large or malformed is refused (InputError naming it): lic
    cannot recompute which runs are still queued, and a guess could submit them twice."""
    state_file = sweep.out / "slurm" / "jobs.json"
    if not state_file.is_file():
        return {}
    hint = "remove it to submit every unfinished run again (check squeue for queued ones)"
    try:
        jobs = read_json_capped(state_file, JOBS_CAP)
    except InputError as err:
        raise InputError(f"{err}; {hint}") from None
    if not isinstance(jobs, dict):
        raise InputError(f"{state_file}: expected a mapping of run names to job ids; {hint}")
    for name, job_id in jobs.items():
        try:
            safe_name(name, "run name")
        except InputError as err:
            raise InputError(f"{state_file}: {err}; {hint}") from None
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise InputError(f"{state_file}: field {name!r}: {job_id!r} is not a job id; {hint}")
    return jobs


def _queued(sweep: Sweep, jobs: dict[str, str]) -> set[str]:
    """Runs whose earlier submission is still pending or running (sacct/squeue via submitit)."""
    import submitit

    if not jobs:
        return set()
    handles = {
        name: submitit.SlurmJob(_slurm_folder(sweep), job_id) for name, job_id in jobs.items()
    }
    submitit.SlurmJob.watcher.update()  # one sacct call for all of them
    states = {
        name: job.watcher.get_state(job.job_id, mode="cache") for name, job in handles.items()
    }
    return {name for name, state in states.items() if state.split()[0] in QUEUED_STATES}


def launch_slurm(sweep: Sweep, runs: list[Run]) -> int:
    """Submit the runs not done (nor still queued) as one job array, and the evaluation as a
    job that starts when the array has ended (afterany: failed runs are left out of it)."""
    import submitit

    from lic.data.files import write_text_atomic
    from lic.sweep.jobs import EvaluateRuns, TrainRun

    print_plan(sweep, runs, "slurm")
    previous = submitted_jobs(sweep)
    queued = _queued(sweep, previous)
    todo = [r for r in runs if r.status() != "done" and r.name not in queued]
    params, retries = slurm_parameters(sweep)
    try:
        executor = submitit.SlurmExecutor(_slurm_folder(sweep), max_num_timeout=retries)
        executor.update_parameters(**params)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"launcher slurm: {' '.join(str(err).split())}") from None
    jobs = (
        executor.submit_array([TrainRun(r, slurm_train_args(sweep)) for r in todo]) if todo else []
    )
    ids = {r.name: j.job_id for r, j in zip(todo, jobs, strict=True)}
    for name, job_id in ids.items():
        print(f"  submitted {name}: job {job_id}")
    state_file = sweep.out / "slurm" / "jobs.json"
    write_text_atomic(state_file, json.dumps({**previous, **ids}, indent=1) + "\n", sweep.out)
    for name in sorted(queued):
        print(f"  still queued from an earlier submission: {name}")
    if sweep.eval:
        eval_params, _ = slurm_parameters(sweep, evaluation=True)
        waits = {jobs[0].job_id.split("_")[0]} if jobs else set()
        waits |= {ids_.split("_")[0] for n, ids_ in previous.items() if n in queued}
        if waits:
            eval_params["dependency"] = "afterany:" + ":".join(sorted(waits))
        eval_ex = submitit.SlurmExecutor(_slurm_folder(sweep), max_num_timeout=0)
        eval_ex.update_parameters(**eval_params)
        eval_job = eval_ex.submit(EvaluateRuns(runs, sweep.eval, sweep.out / "eval"))
        print(f"  submitted evaluation: job {eval_job.job_id} -> {sweep.out / 'eval'}")
    print(f"logs: {sweep.out / 'slurm'}; run `lic sweep {sweep.source}` again for what is missing")
    return 0
