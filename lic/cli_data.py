"""`lic data` (list, fetch, check data sets) and `lic export` (codec-only checkpoints)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from lic.data.catalog import SOURCES, task_names


def add_data_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="list, fetch and check evaluation data sets",
        description="Without a verb: every data set's layout under --data-root and where to "
        "get it.",
    )
    verbs = p.add_subparsers(dest="verb")
    fetch = verbs.add_parser("fetch", help="download a set lic can fetch, verified by pixels")
    fetch.add_argument("name", choices=[s.name for s in SOURCES.values() if s.files])
    fetch.add_argument("--to", type=Path, help="target folder (default: ~/.cache/lic/data/NAME)")
    check = verbs.add_parser(
        "check", help="validate a task's data layout in seconds (files, annotations, count)"
    )
    check.add_argument("task", choices=task_names())
    check.add_argument("root", type=Path, metavar="DIR")
    p.set_defaults(run=_run_data, parser=p)


def _run_data(args: argparse.Namespace) -> int:
    if args.verb == "fetch":
        from lic.data.fetch import fetch

        folder = fetch(args.name, args.to)
        print(f"{args.name}: {len(SOURCES[args.name].files)} images verified in {folder}")
        return 0
    if args.verb == "check":
        from lic.tasks.check import check_task_data

        print("\n".join(check_task_data(args.task, args.root)))
        return 0
    for source in SOURCES.values():
        size = f"{source.full_size} samples" if source.full_size else source.note
        print(f"{source.name} (task: {', '.join(source.tasks)}; {size})")
        print(f"  layout:   {source.layout}")
        print(f"  download: {source.download}")
        if source.files:
            print(f"  fetch:    lic data fetch {source.name} [--to DIR]")
    print("any image folder works for the consistency and fidelity tasks")
    return 0


def add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a codec-only checkpoint (no optimizer state) from a training checkpoint",
        description="Keeps the codec with its entropy tables, its name, constructor arguments, "
        "lambda and objective: what `--ckpt` needs, a fraction of the training file.",
    )
    p.add_argument(
        "ckpt", type=Path, metavar="CKPT", help="training checkpoint (e.g. runs/.../last.ckpt)"
    )
    p.add_argument(
        "out", type=Path, metavar="OUT", help="output file, e.g. checkpoints/demo_mse_0.013.ckpt"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=_run_export, parser=p)


def _run_export(args: argparse.Namespace) -> int:
    from lic.codecs import load_checkpoint
    from lic.codecs.checkpoint import save_codec_checkpoint
    from lic.data.files import check_output_file

    check_output_file(args.out, args.overwrite, [args.ckpt], name="OUT")
    model, info = load_checkpoint(args.ckpt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # staged under the final name (torch.save names its archive after the file, so the bytes
    # do not depend on a temporary name), then renamed: never half a file at `out`
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".lic-export-") as folder:
        staged = Path(folder) / args.out.name
        save_codec_checkpoint(model, staged, lmbda=info.lmbda, distortion=info.distortion)
        os.replace(staged, args.out)
    size = args.out.stat().st_size / 1e6
    print(f"{args.ckpt} -> {args.out}: {info.codec} lambda={info.lmbda}, {size:.2f} MB")
    return 0
