"""Rate-task curves: python eval_rate_task.py --ckpt A.ckpt B.ckpt --task consistency ...

Encodes every task image to real bitstreams with each checkpoint (and optional JPEG/WebP
baselines), decodes, runs the task model and writes results.csv/json, rate_task_<task>.png/pdf,
bd.csv and summary.md to --out. Re-running with the same --out skips finished cells. Under
torchrun, images are sharded over ranks (use --device cuda).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys

import torch.distributed as dist

from lic.evaluation import run
from lic.evaluation.rate_task import failed_images
from lic.tasks import TASKS, DatasetLayoutError
from lic.weights import WeightsUnavailableError


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", nargs="*", default=[], help="lic checkpoints (one per lambda)")
    p.add_argument(
        "--ckpt-glob",
        action="append",
        default=[],
        help="glob of checkpoints, e.g. 'runs/*/checkpoints/last.ckpt'",
    )
    p.add_argument("--task", nargs="+", required=True, choices=sorted(TASKS))
    p.add_argument("--data-root", nargs="+", required=True, metavar="[TASK=]DIR")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, help="first N images of each task")
    p.add_argument("--baselines", nargs="*", default=[], choices=["jpeg", "webp"])
    p.add_argument("--jpeg-qualities", type=int, nargs="+")
    p.add_argument("--webp-qualities", type=int, nargs="+")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="coding processes (0: code in this process, on --device)",
    )
    p.add_argument("--device", default="auto")
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
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    checkpoints = list(args.ckpt) + sorted(f for g in args.ckpt_glob for f in glob.glob(g))
    qualities = {
        k: v for k, v in (("jpeg", args.jpeg_qualities), ("webp", args.webp_qualities)) if v
    }
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
            baselines=args.baselines,
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
        )
    except (
        DatasetLayoutError,
        WeightsUnavailableError,
        FileNotFoundError,
        ValueError,
        ImportError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
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
