"""`lic sweep FILE [--launcher local|slurm] [--dry-run] [--out DIR] [--set KEY=VALUE ...]`."""

from __future__ import annotations

import argparse
import importlib.util

from lic.errors import InputError, LicError


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    help_text = "train a grid of runs (SLURM array or local) from a sweep file, then evaluate"
    p = sub.add_parser(
        "sweep",
        help=help_text,
        description=f"{help_text}. Finished runs are skipped, unfinished ones resume from "
        "their last.ckpt; a failed run is reported with its log and the others go on. "
        "Sweep files: configs/sweeps/*.yaml.",
    )
    p.add_argument("file", metavar="FILE", help="sweep YAML (configs/sweeps/demo.yaml)")
    p.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="slurm: one job array through submitit, plus an evaluation job after it; "
        "local: one run after another on this machine (default)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs, their lic train commands and (slurm) the sbatch scripts",
    )
    p.add_argument("--out", help="output root (replaces the file's 'out')")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training argument for every run, e.g. trainer.max_steps=3 (VALUE is YAML; "
        "repeatable)",
    )
    p.set_defaults(run=run_sweep, parser=p)


def run_sweep(args: argparse.Namespace) -> int:
    from lic.sweep.launch import dry_run, launch_local, launch_slurm
    from lic.sweep.plan import load_sweep, missing_eval_data

    if importlib.util.find_spec("submitit") is None and not (
        args.dry_run and args.launcher == "local"
    ):
        raise LicError("lic sweep launches through submitit: pip install 'lic[sweep]'")
    sweep = load_sweep(args.file, args.out, args.sets)
    runs = sweep.runs()
    if args.dry_run:
        return dry_run(sweep, runs, args.launcher)
    missing = missing_eval_data(sweep)
    if missing:  # found now, not after days of training
        raise InputError(f"{args.file}: eval data folder(s) not found: {', '.join(missing)}")
    return (launch_slurm if args.launcher == "slurm" else launch_local)(sweep, runs)
