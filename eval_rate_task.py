"""Rate-task curves: python eval_rate_task.py --ckpt A.ckpt B.ckpt --task consistency ...

Encodes every task image to real bitstreams with each checkpoint or CompressAI zoo model (and
optional classical baselines, JPEG to JPEG XL), decodes, runs the task model (or, for the
fidelity task, the quality metrics) and writes results.csv/json, rate_task_<task>.png/pdf,
bd.csv (against --anchor) and summary.md to --out. Re-running with the same --out skips
finished cells. Under torchrun, images are sharded over ranks (use --device cuda).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys

import torch.distributed as dist

from lic.codecs.classical import CLASSICAL_CODECS, classical_codec
from lic.errors import UsageError, run_entry_point
from lic.evaluation import run
from lic.evaluation.coders import parse_zoo_spec
from lic.evaluation.rate_task import failed_images
from lic.tasks import TASKS
from lic.tasks.fidelity import FidelityTask


def parse_roots(entries: list[str], tasks: list[str]) -> dict[str, str]:
    """`--data-root DIR` for every task, or `--data-root task=DIR ...` per task."""
    roots = {}
    for entry in entries:
        task, sep, path = entry.partition("=")
        if sep and task in TASKS:
            roots[task] = path
        else:
            roots.update({t: entry for t in tasks if t not in roots})
    missing = [t for t in tasks if t not in roots]
    if missing:
        raise SystemExit(f"error: no --data-root for task(s) {missing}")
    return roots


def parse_baselines(entries: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """`NAME[=Q1,Q2,...]` entries -> names in order and the grids that replace defaults."""
    names, qualities = [], {}
    for entry in entries:
        name, sep, grid = entry.partition("=")
        codec = classical_codec(name)
        if sep:
            try:
                qualities[name] = [codec.check_quality(int(q)) for q in grid.split(",")]
            except ValueError:
                raise UsageError(
                    f"--baselines {entry}: expected {name}=Q1,Q2,... with integer qualities"
                ) from None
        names += [name] if name not in names else []
    return names, qualities


def parse_ckpt_meta(entries: list[str]) -> dict[str, tuple[str, float | None]]:
    """`PATH=OBJECTIVE[:LAMBDA]` entries -> {path: (objective, lambda)}."""
    meta = {}
    for entry in entries:
        path, sep, label = entry.partition("=")
        objective, _, lmbda = label.partition(":")
        try:
            if not sep or not path or not objective:
                raise ValueError
            meta[path] = (objective, float(lmbda) if lmbda else None)
        except ValueError:
            raise UsageError(
                f"--ckpt-meta {entry}: expected PATH=OBJECTIVE[:LAMBDA], e.g. a.pth.tar=mse:0.0067"
            ) from None
    return meta


def main(argv: list[str] | None = None) -> int:
    """Errors follow lic.errors: one line, exit 2 for usage/input, 1 for runtime failures."""
    return run_entry_point(lambda: evaluate(argv))


def evaluate(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--ckpt",
        nargs="*",
        default=[],
        help="lic checkpoints (one per lambda), or CompressAI zoo models as "
        "compressai:NAME[:QUALITIES][:METRIC], e.g. compressai:mbt2018-mean:1-8 (all "
        "qualities if omitted; metric mse or ms-ssim)",
    )
    p.add_argument(
        "--ckpt-glob",
        action="append",
        default=[],
        help="glob of checkpoints, e.g. 'runs/*/checkpoints/last.ckpt'",
    )
    p.add_argument(
        "--ckpt-meta",
        nargs="*",
        default=[],
        metavar="PATH=OBJECTIVE[:LAMBDA]",
        help="objective and lambda of a --ckpt file that does not record them (an official "
        "MLIC++ .pth.tar), e.g. mlicpp_q3.pth.tar=mse:0.0067; without it the file name labels it",
    )
    p.add_argument(
        "--task",
        nargs="+",
        required=True,
        choices=sorted(TASKS),
        help="downstream tasks (`lic data` lists each one's data layout and download page)",
    )
    p.add_argument(
        "--data-root",
        nargs="+",
        required=True,
        metavar="[TASK=]DIR",
        help="one folder for every task, or TASK=DIR per task "
        "(`lic data check TASK DIR` validates a layout in seconds)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder; re-running with the same folder skips finished cells",
    )
    p.add_argument("--limit", type=int, help="first N images of each task")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=[],
        metavar="NAME[=Q1,Q2,...]",
        help=f"classical codecs ({', '.join(CLASSICAL_CODECS)}), each on its default grid "
        "or the qualities given (jpeg2000: compression ratios), e.g. jpeg=5,10,20 avif",
    )
    p.add_argument(
        "--anchor",
        metavar="CURVE",
        help="the curve BD numbers refer to: a baseline (jpeg), a zoo entry "
        "(compressai:NAME[:METRIC]) or CODEC/OBJECTIVE; default each codec's mse curve",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        choices=FidelityTask.metric_choices,
        help="fidelity task metrics (default all; ms_ssim also reports its dB form)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="decoded images per task-model call")
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="coding processes (0: code in this process, on --device)",
    )
    p.add_argument(
        "--device", default="auto", help="task-model device: auto (a GPU if any), cpu, cuda:1"
    )
    p.add_argument(
        "--coding",
        choices=["workers", "device"],
        default="workers",
        help="code images in the --workers processes on the CPU, or in batches on --device "
        "(transforms batched on the GPU; workers only load)",
    )
    p.add_argument(
        "--estimate-rate",
        action="store_true",
        help="rate from likelihoods instead of real bitstreams",
    )
    p.add_argument(
        "--task-model",
        help="torchvision model name or timm:NAME; for pope/seedbench a transformers VLM "
        "(hub id or local folder, default OpenGVLab/InternVL3-1B-hf)",
    )
    p.add_argument("--task-weights", help="weights enum name, DEFAULT, or none (random)")
    p.add_argument("--wandb", action="store_true", help="log the table and plots to W&B")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    checkpoints = list(args.ckpt) + sorted(f for g in args.ckpt_glob for f in glob.glob(g))
    try:
        if args.metrics and "fidelity" not in args.task:
            raise UsageError("--metrics chooses the fidelity task's metrics; add --task fidelity")
        baselines, qualities = parse_baselines(args.baselines)
        ckpt_meta = parse_ckpt_meta(args.ckpt_meta)
        for spec in (c for c in checkpoints if c.startswith("compressai:")):
            parse_zoo_spec(spec)
    except UsageError as err:
        p.error(str(err))
    if "RANK" in os.environ and not dist.is_initialized():  # launched by torchrun
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        rows = run(
            checkpoints,
            args.task,
            parse_roots(args.data_root, args.task),
            args.out,
            limit=args.limit,
            baselines=baselines,
            qualities=qualities,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            estimate_rate=args.estimate_rate,
            task_model=args.task_model,
            task_weights=args.task_weights,
            use_wandb=args.wandb,
            progress=not args.no_progress,
            coding=args.coding,
            metrics=args.metrics,
            anchor=args.anchor,
            ckpt_meta=ckpt_meta,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    failed = failed_images(rows)
    if failed:  # everything is written; the failures are listed in each cell file
        print(f"error: {failed} image(s) failed (see {args.out}/cells/*.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
