"""`lic align OUT`: metric-task alignment of a finished `lic eval --align` run, from its
per_image.csv (nothing is recomputed): alignment.csv, alignment.png/pdf, and the table."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from lic.errors import InputError, UsageError

MAX_PER_IMAGE_BYTES = 2**31
"""per_image.csv of a run of ImageNet's 50,000 images in 30 cells is about 300 MB."""


def add_align_command(sub: argparse._SubParsersAction) -> None:
    help_text = "which metric predicts what the task model keeps: alignment of a lic eval run"
    p = sub.add_parser(
        "align",
        help=help_text,
        description=f"{help_text}. Reads OUT/per_image.csv of a `lic eval --align ...` run "
        "(its align_<metric> columns and each task's per-image outcomes), writes "
        "OUT/alignment.csv and OUT/alignment.png/pdf, and prints the table; nothing is "
        "recomputed. docs/alignment.md defines the statistics.",
    )
    p.add_argument("out", metavar="OUT", type=Path, help="the lic eval output folder")
    p.add_argument(
        "--bootstrap", type=int, metavar="N", help="resamples of the images (default: the run's)"
    )
    p.add_argument("--bootstrap-seed", type=int, metavar="SEED", help="default: the run's")
    p.set_defaults(run=run_align, parser=p)


def read_per_image(path: Path) -> list[dict]:
    from lic.data.files import read_capped

    if not path.is_file():
        raise UsageError(f"{path}: no such file (OUT is a lic eval output folder)")
    try:
        text = read_capped(path, MAX_PER_IMAGE_BYTES).decode()
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: unreadable ({err})") from None


def run_align(args: argparse.Namespace) -> int:
    from lic.evaluation.alignment_report import networks_note, write_alignment
    from lic.evaluation.config import CONFIG_NAME, EvalConfig
    from lic.evaluation.per_image import align_column
    from lic.metrics.registry import list_metrics
    from lic.tasks import TASKS

    rows = read_per_image(args.out / "per_image.csv")
    columns = rows[0].keys() if rows else ()
    metrics = [m for m in list_metrics() if align_column(m) in columns]
    metrics.sort(key=lambda m: list(columns).index(align_column(m)))
    if not metrics:
        raise UsageError(
            f"{args.out}/per_image.csv has no align_<metric> columns: run lic eval with "
            "--align METRIC... (e.g. --align psnr lpips mlclipsim) and a machine task"
        )
    config = EvalConfig.load(args.out / CONFIG_NAME)
    tasks = dict.fromkeys(r.get("task") for r in rows)
    outcomes = {t: TASKS[t].outcomes for t in tasks if t in TASKS and TASKS[t].outcomes}
    missing = [(t, o) for t in outcomes for o in outcomes[t] if o not in columns]
    if missing:
        raise InputError(f"{args.out}/per_image.csv: no per-image outcome columns {missing}")
    resamples = config.bootstrap if args.bootstrap is None else args.bootstrap
    seed = config.bootstrap_seed if args.bootstrap_seed is None else args.bootstrap_seed
    if resamples < 0:
        raise UsageError(f"--bootstrap {resamples}: give a number of resamples (0: none)")
    weights = networks_note(metrics, config.task_weights)
    section, written = write_alignment(args.out, rows, outcomes, metrics, resamples, seed, weights)
    print(section.strip())
    print("\nwrote " + ", ".join(str(path) for path in written))
    return 0
