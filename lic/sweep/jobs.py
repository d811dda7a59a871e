"""What a sweep's jobs run, inside submitit's worker process: one training run, or the one
evaluation over every finished run. Both are pickled by submitit and called there."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

from lic.data.files import write_text_atomic
from lic.sweep.plan import Run

LOCK_NAME = ".sweep.lock"
# how submitit's signal handler leaves a requeued job: LocalExecutor's code, SLURM's -1
REQUEUE_EXITS = {LOCAL_REQUEUE_RETURN_CODE, -1}


def _global_rank() -> int:
    """This task's rank in its job (SLURM_PROCID under srun); 0 outside submitit."""
    try:
        return submitit.JobEnvironment().global_rank
    except RuntimeError:  # not inside a submitit job
        return 0


@contextlib.contextmanager
def _exclusive(run: Run, rank: int) -> Iterator[None]:
    """Rank 0 holds an flock on the run folder while it trains, so a second sweep (a re-run
    while the first is still going) refuses the run instead of training it twice."""
    if rank != 0:
        yield
        return
    with (run.run_dir / LOCK_NAME).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{run.name} is being trained by another job right now") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def visible_devices() -> dict[str, str | None]:
    """This shell's GPU visibility, for local jobs: submitit's LocalExecutor sets
    CUDA_VISIBLE_DEVICES to its own `gpus_per_node` (none by default), which would hide this
    machine's GPUs from a local run."""
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _restore(environ: dict[str, str | None]) -> None:
    """Set (or unset) variables before torch is imported, so CUDA reads them."""
    for key, value in environ.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class TrainRun(submitit.helpers.Checkpointable):
    """`lic train` for one run, resuming from its last.ckpt when there is one.

    Under SLURM every task (one per GPU) calls this; Lightning's SLURM environment makes them
    one DDP job. On preemption or time-out submitit calls `checkpoint` (rank 0), requeues
    the job and calls this again, which resumes from the latest `last.ckpt` (ModelCheckpoint
    `every_n_train_steps` bounds what is lost).
    """

    def __init__(
        self, run: Run, extra: tuple[str, ...] = (), environ: dict[str, str | None] | None = None
    ) -> None:
        self.run, self.extra, self.environ = run, tuple(extra), dict(environ or {})
        self._requeued = False

    def __call__(self) -> str:
        _restore(self.environ)
        run, rank = self.run, _global_rank()
        run.run_dir.mkdir(parents=True, exist_ok=True)
        from lic.training.cli import main

        with _exclusive(run, rank):
            argv = [*run.args, *self.extra]
            resume = run.last_ckpt.is_file()
            argv += ["--ckpt_path", "last"] if resume else []
            print(f"lic sweep: {run.name}: {'resuming' if resume else 'starting'}", flush=True)
            code = main(argv)
            if self._requeued and code in REQUEUE_EXITS:  # submitit's exit after `checkpoint`
                raise SystemExit(code)
            if code:
                raise RuntimeError(f"{run.name}: lic train exited with {code} (error above)")
            if not run.last_ckpt.is_file():
                raise RuntimeError(
                    f"{run.name}: training wrote no {run.last_ckpt}; the configs must keep a "
                    "ModelCheckpoint with save_last: true"
                )
            if rank == 0:
                stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                record = {"args": list(run.args), "finished": stamp, "extra": list(self.extra)}
                write_text_atomic(run.marker, json.dumps(record, indent=1) + "\n")
        return str(run.last_ckpt)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """submitit's requeue protocol: the requeued job is this same run (it resumes).

        submitit then exits the process from its signal handler (SystemExit inside the
        training loop); `lic train` turns exits into codes, so `__call__` re-raises it."""
        self._requeued = True
        return submitit.helpers.DelayedSubmission(TrainRun(self.run, self.extra, self.environ))


@dataclass
class EvaluateRuns:
    """One `lic eval` (in-process, from an EvalConfig) over the last.ckpt of every finished
    run; unfinished runs are named and left out, so one failed run does not cost the rest."""

    runs: list[Run]
    options: dict[str, Any]
    out: Path
    environ: dict[str, str | None] = field(default_factory=dict)

    def __call__(self) -> str:
        _restore(self.environ)
        from lic.evaluation.config import EvalConfig
        from lic.evaluation.rate_task import run
        from lic.evaluation.report import failures_message

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        done = [r for r in self.runs if r.status() == "done"]
        missing = [r.name for r in self.runs if r not in done]
        if not done:
            raise RuntimeError("no finished run to evaluate")
        if missing:
            print(f"lic sweep: not finished, left out of the evaluation: {missing}", flush=True)
        options = {k: v for k, v in self.options.items() if k != "slurm"}
        checkpoints = [str(r.last_ckpt) for r in done]
        config = EvalConfig.from_mapping({**options, "checkpoints": checkpoints, "out": self.out})
        rows = run(config)
        failed = failures_message(rows, self.out)
        if failed:
            raise RuntimeError(failed)
        return str(self.out)


def tail_error(log: Path | None) -> str:
    """The last `error:` line of a job log (lic's one-line errors), or its last line."""
    try:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines()]
    except (OSError, TypeError):
        return "no log"
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("error:")]
    raised = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
    return (errors or raised or lines or ["empty log"])[-1]
