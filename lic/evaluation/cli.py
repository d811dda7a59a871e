"""`lic eval` (and `eval_rate_task.py`): rate-task curves from the command line.

Encodes every task image to real bitstreams with each checkpoint or CompressAI zoo model (and
optional classical baselines, JPEG to JPEG XL), decodes, runs the task model (or, for the
fidelity task, the quality metrics) and writes results.csv/json, rate_task_<task>.png/pdf,
bd.csv (against --anchor), summary.md and the resolved config.yaml to --out. Re-running with
the same --out (or `lic eval --config OUT/config.yaml`) skips finished cells. Under torchrun,
images are sharded over ranks (use --device cuda).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from typing import Any

from lic.devices import passive_openmp_waits
from lic.evaluation.parallel import (
    AUTO,
    CPU_BATCH,
    CPU_CORES_PER_WORKER,
    DEVICE_BATCH,
    MAX_WORKERS,
)

passive_openmp_waits()  # before torch loads: the model's threads share the cores with coders

from lic.codecs.classical import CLASSICAL_CODECS, classical_codec  # noqa: E402
from lic.codecs.padding import PADDINGS  # noqa: E402
from lic.errors import UsageError, run_entry_point  # noqa: E402
from lic.evaluation.config import RATE_MEANS, EvalConfig  # noqa: E402
from lic.metrics.options import add_option_flag, metric_options  # noqa: E402


def parse_roots(entries: list[str], tasks: list[str]) -> dict[str, str]:
    """`--data-root DIR` for every task, or `--data-root task=DIR ...` per task."""
    from lic.tasks import TASKS

    roots = {}
    for entry in entries:
        task, sep, path = entry.partition("=")
        if sep and task in TASKS:
            roots[task] = path
        else:
            roots.update({t: entry for t in tasks if t not in roots})
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


def parse_ckpt_meta(entries: list[str]) -> dict[str, list]:
    """`PATH=OBJECTIVE[:LAMBDA]` entries -> {path: [objective, lambda]}."""
    meta = {}
    for entry in entries:
        path, sep, label = entry.partition("=")
        objective, _, lmbda = label.partition(":")
        try:
            if not sep or not path or not objective:
                raise ValueError
            meta[path] = [objective, float(lmbda) if lmbda else None]
        except ValueError:
            raise UsageError(
                f"--ckpt-meta {entry}: expected PATH=OBJECTIVE[:LAMBDA], e.g. a.pth.tar=mse:0.0067"
            ) from None
    return meta


def parse_levels(text: str) -> list[int]:
    """'0,2,4' -> [0, 2, 4]."""
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts):
        raise UsageError(f"--levels {text}: expected integers separated by commas, e.g. 0,2,4")
    return [int(part) for part in parts]


def _add_inputs(p: argparse.ArgumentParser) -> None:
    from lic.tasks import TASKS

    p.add_argument(
        "--config",
        metavar="YAML",
        help="options from a file (OUT/config.yaml of an earlier run re-runs it); "
        "options given here replace the file's",
    )
    p.add_argument(
        "--ckpt",
        nargs="*",
        help="lic checkpoints (one per lambda), or CompressAI zoo models as "
        "compressai:NAME[:QUALITIES][:METRIC], e.g. compressai:mbt2018-mean:1-8 (all "
        "qualities if omitted; metric mse or ms-ssim)",
    )
    p.add_argument(
        "--ckpt-glob",
        action="append",
        help="glob of checkpoints, e.g. 'runs/*/checkpoints/last.ckpt'",
    )
    p.add_argument(
        "--ckpt-meta",
        nargs="*",
        metavar="PATH=OBJECTIVE[:LAMBDA]",
        help="objective and lambda of a --ckpt file that does not record them (an official "
        "MLIC++ .pth.tar), e.g. mlicpp_q3.pth.tar=mse:0.0067; without it the file name labels it",
    )
    p.add_argument(
        "--levels",
        metavar="L1,L2,...",
        help="levels a variable-rate codec (e.g. bmshj2018-hyperprior-vbr) codes at, one "
        "point of its curve each; default all",
    )
    p.add_argument(
        "--task",
        nargs="+",
        choices=sorted(TASKS),
        help="downstream tasks (`lic data` lists each one's data layout and download page)",
    )
    p.add_argument(
        "--data-root",
        nargs="+",
        metavar="[TASK=]DIR",
        help="one folder for every task, or TASK=DIR per task "
        "(`lic data check TASK DIR` validates a layout in seconds)",
    )
    p.add_argument(
        "--out", help="output folder; re-running with the same folder skips finished cells"
    )
    p.add_argument("--limit", type=int, help="first N images of each task")


def _add_curves(p: argparse.ArgumentParser) -> None:
    from lic.tasks.catalog import FIDELITY_METRICS

    p.add_argument(
        "--baselines",
        nargs="*",
        metavar="NAME[=Q1,Q2,...]",
        help=f"classical codecs ({', '.join(CLASSICAL_CODECS)}), each on its default grid "
        "or the qualities given (jpeg2000: compression ratios), e.g. jpeg=5,10,20 avif",
    )
    p.add_argument(
        "--anchor",
        metavar="CURVE",
        help="the curve BD numbers refer to: a baseline (jpeg), a zoo entry "
        "(compressai:NAME[:METRIC]), CODEC/OBJECTIVE, or a published Kodak curve "
        "(published:vtm; `lic curves` lists them; fidelity on the 24 Kodak images only); "
        "default each codec's mse curve",
    )
    p.add_argument(
        "--published",
        nargs="+",
        metavar="NAME",
        help="published Kodak curves drawn on the fidelity plots (e.g. vtm mlicpp)",
    )
    p.add_argument(
        "--pad",
        choices=PADDINGS,
        help="how learned codecs pad images: zeros (default: CompressAI eval_model's, centred "
        "to a multiple of 64) or replicate (edges repeated bottom-right to the stride)",
    )
    p.add_argument(
        "--rate-mean",
        choices=RATE_MEANS,
        help="a point's bpp: the mean of per-image bpp (images, default, as CompressAI) or "
        "total bits over total pixels (pixels, as MPEG's machine-vision test conditions)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        choices=FIDELITY_METRICS,
        help="fidelity task metrics (default all; ms_ssim also reports its dB form)",
    )
    p.add_argument(
        "--align",
        nargs="+",
        metavar="METRIC",
        help="metric-task alignment: compute these full-reference metrics (e.g. psnr ms_ssim "
        "lpips mlclipsim clip_global; psnr always) on each machine task's input and decoded "
        "image, and write alignment.csv: which one predicts the task's per-image outcome "
        "(2AFC, SRCC, with intervals and paired differences to PSNR)",
    )
    add_option_flag(p)
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="resamples of the images for the 95%% percentile intervals of every point and "
        "(paired) BD value (default 1000; COCO mAP at most 200; 0: no intervals)",
    )
    p.add_argument(
        "--bootstrap-seed", type=int, metavar="SEED", help="seed of the resamples (default 0)"
    )
    p.add_argument(
        "--seed-protocol",
        choices=["generate", "likelihood"],
        help="SEED-Bench answers: generate a letter and parse it (default), or SEED-Bench's "
        "own protocol, the option with the highest log-likelihood under the VLM",
    )


def _add_execution(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        type=_count_or_auto,
        help=f"decoded images per task-model call (default {AUTO}: {CPU_BATCH} on the CPU, "
        f"{DEVICE_BATCH} on a GPU)",
    )
    p.add_argument(
        "--workers",
        type=_count_or_auto,
        help="coding processes beside the task model (0: this process codes, on --device; "
        f"beside PSNR/MS-SSIM in a thread); default {AUTO}: one per {CPU_CORES_PER_WORKER} cores "
        "on a CPU-only run (the model takes every core, coders fill its gaps; for PSNR/MS-SSIM "
        f"a thread instead of a single process), cores - 1 (at most {MAX_WORKERS}) with a GPU",
    )
    p.add_argument(
        "--threads",
        type=_count_or_auto,
        help=f"torch threads of the task model (default {AUTO}: every core on the CPU, the "
        "cores the workers leave with a GPU)",
    )
    p.add_argument(
        "--device", help="task-model device: auto (a GPU if any, the default), cpu, cuda:1"
    )
    p.add_argument(
        "--coding",
        choices=["workers", "device"],
        help="code images in the --workers processes on the CPU (default), or in batches on "
        "--device (transforms batched on the GPU; workers only load)",
    )
    p.add_argument(
        "--estimate-rate",
        action="store_true",
        default=None,
        help="rate from likelihoods instead of real bitstreams",
    )
    p.add_argument(
        "--task-model",
        help="torchvision model name or timm:NAME; for pope/seedbench a transformers VLM "
        "(hub id or local folder, default OpenGVLab/InternVL3-1B-hf)",
    )
    p.add_argument("--task-weights", help="weights enum name, DEFAULT, or none (random)")
    p.add_argument(
        "--wandb", action="store_true", default=None, help="log the table and plots to W&B"
    )
    p.add_argument(
        "--no-progress", action="store_true", default=None, help="no progress bars (logs, CI)"
    )


def _count_or_auto(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or '{AUTO}', got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    """Every option defaults to None: what is not given comes from --config or EvalConfig."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_inputs(p)
    _add_curves(p)
    _add_execution(p)
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig the command line asks for: --config's values, replaced by given flags."""
    values: dict[str, Any] = EvalConfig.load(args.config).__dict__ if args.config else {}
    if args.ckpt is not None or args.ckpt_glob is not None:
        globbed = []
        for pattern in args.ckpt_glob or ():
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise UsageError(f"--ckpt-glob '{pattern}' matches no file")
            globbed += matches
        values["checkpoints"] = list(args.ckpt or ()) + globbed
    if args.task is not None:
        values["tasks"] = args.task
    if args.data_root is not None:
        values["data_roots"] = parse_roots(args.data_root, values.get("tasks", []))
    if args.baselines is not None:
        values["baselines"], values["qualities"] = parse_baselines(args.baselines)
    if args.ckpt_meta is not None:
        values["ckpt_meta"] = parse_ckpt_meta(args.ckpt_meta)
    if args.align is not None:
        values["align"] = args.align
    if args.levels is not None:
        values["levels"] = parse_levels(args.levels)
    if args.option:
        from lic.tasks.catalog import FIDELITY_METRICS

        metrics = args.metrics or values.get("metrics") or FIDELITY_METRICS
        metrics = list(dict.fromkeys([*metrics, *values.get("align", ())]))
        values["metric_args"] = metric_options(args.option, metrics)
    if args.wandb is not None:
        values["use_wandb"] = True
    if args.no_progress is not None:
        values["progress"] = False
    same_name = ("out", "limit", "anchor", "metrics", "batch_size", "workers", "device")
    same_name += ("threads", "coding", "estimate_rate", "task_model", "task_weights", "bootstrap")
    same_name += ("bootstrap_seed", "seed_protocol", "published", "pad", "rate_mean")
    values.update({k: getattr(args, k) for k in same_name if getattr(args, k) is not None})
    if not values.get("tasks"):
        raise UsageError("give --task (or --config)")
    return EvalConfig.from_mapping(values)


def main(argv: list[str] | None = None) -> int:
    """Errors follow lic.errors: one line, exit 2 for usage/input, 1 for runtime failures."""
    return run_entry_point(lambda: evaluate(argv))


def evaluate(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # --help ends here, before torch is loaded

    import torch.distributed as dist

    from lic.evaluation.coders import parse_zoo_spec
    from lic.evaluation.rate_task import run
    from lic.evaluation.report import failures_message

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = config_from_args(args)
        if not (config.checkpoints or config.baselines):  # (the Python API allows it)
            raise UsageError(
                "nothing to evaluate besides the uncompressed images: give --ckpt, "
                "--ckpt-glob or --baselines"
            )
        for spec in (c for c in config.checkpoints if c.startswith("compressai:")):
            parse_zoo_spec(spec, config.levels)
    except UsageError as err:
        parser.error(str(err))
    if "RANK" in os.environ and not dist.is_initialized():  # launched by torchrun
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
        if config.device.startswith("cuda"):
            config.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        rows = run(config)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    failed = failures_message(rows, config.out)
    if failed:  # everything is written; the failures are listed with their cells
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0
