"""`lic` console entry point: one subcommand per job.

lic score --metric mlclipsim REF DIST [REF DIST ...]
lic score --metric lpips --ref-dir A --dist-dir B --out scores.csv
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lic.weights import WeightsUnavailableError


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, lists, null), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _add_score(sub: argparse._SubParsersAction) -> None:
    from lic.metrics import list_metrics

    p = sub.add_parser(
        "score",
        help="score reference/distorted image pairs with a metric",
        description="Score image pairs. Give pairs as REF DIST ... or as two "
        "folders paired by file name (suffix ignored).",
    )
    p.add_argument("--metric", required=True, choices=list_metrics())
    p.add_argument("pairs", nargs="*", metavar="REF DIST", help="reference, distorted, ...")
    p.add_argument("--ref-dir", type=Path)
    p.add_argument("--dist-dir", type=Path)
    p.add_argument(
        "-o",
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metric argument, e.g. -o pretrained=/path/clip.bin -o alpha=0.3",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, help="write a CSV of all pairs here")
    p.set_defaults(run=_run_score, parser=p)


def _run_score(args: argparse.Namespace) -> int:
    from lic.metrics import create_metric
    from lic.metrics.scoring import pair_folders, score_pairs, write_csv

    parser = args.parser
    if bool(args.ref_dir) != bool(args.dist_dir):
        parser.error("--ref-dir and --dist-dir go together")
    if args.ref_dir and args.pairs:
        parser.error("give either REF DIST pairs or --ref-dir/--dist-dir, not both")
    if args.ref_dir:
        try:
            pairs = pair_folders(args.ref_dir, args.dist_dir)
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
    else:
        if not args.pairs or len(args.pairs) % 2:
            parser.error("expected an even number of files: REF DIST [REF DIST ...]")
        pairs = [(Path(a), Path(b)) for a, b in zip(args.pairs[::2], args.pairs[1::2], strict=True)]
    device = resolve_device(args.device)
    try:
        metric = create_metric(args.metric, **dict(args.option)).to(device).eval()
    except (TypeError, ValueError) as err:  # unknown or invalid -o option
        parser.error(f"--metric {args.metric}: {err}")

    rows = score_pairs(metric, pairs, device)
    arrow = "lower is better" if metric.lower_better else "higher is better"
    width = max(len(r.distorted) for r in rows)
    print(f"{'distorted':<{width}}  {args.metric} ({arrow})")
    for r in rows:
        print(f"{r.distorted:<{width}}  " + (f"{r.score:.6f}" if r.error is None else "FAILED"))
    scores = [r.score for r in rows if r.error is None]
    if scores:
        spread = f" ± {statistics.stdev(scores):.6f}" if len(scores) > 1 else ""
        print(f"mean over {len(scores)} pair(s): {statistics.fmean(scores):.6f}{spread}")
    for r in rows:
        if r.error is not None:
            print(f"error: {r.error}", file=sys.stderr)
    if args.out:
        write_csv(rows, args.out, args.metric)
        print(f"wrote {args.out}")
    return 1 if len(scores) < len(rows) else 0


def _add_codec_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_text, inputs in [
        ("compress", "encode images to .lic bitstream files", "images"),
        ("decompress", "decode .lic bitstream files to PNG", "bitstreams"),
    ]:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--ckpt", required=True, type=Path, help="lic training checkpoint")
        p.add_argument("inputs", nargs="+", type=Path, metavar=inputs.upper())
        p.add_argument("--out-dir", required=True, type=Path)
        p.add_argument("--device", default="cpu", help="cpu, cuda, ... (entropy coding is CPU)")
        p.set_defaults(run=_run_codec, parser=p)


def _run_codec(args: argparse.Namespace) -> int:
    from lic.codecs import BitstreamCodec, bitstream_bpp, load_checkpoint
    from lic.codecs.io import Bitstream, BitstreamError
    from lic.data.images import ImageReadError, load_image, save_image

    try:
        model, info = load_checkpoint(args.ckpt, map_location=resolve_device(args.device))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    codec = BitstreamCodec(model)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.inputs:
        try:
            if args.command == "compress":
                image = load_image(path)
                data = codec.encode(image)
                out = args.out_dir / f"{path.stem}.lic"
                out.write_bytes(data)
                bpp = bitstream_bpp(data, *image.shape[-2:])
                print(f"{path} -> {out}: {len(data)} bytes, {bpp:.4f} bpp")
            else:
                data = path.read_bytes()
                stream = Bitstream.from_bytes(data)
                out = save_image(codec.decode(data), args.out_dir / f"{path.stem}.png")
                bpp = bitstream_bpp(data, stream.height, stream.width)
                print(f"{path} -> {out}: {stream.width}x{stream.height}, {bpp:.4f} bpp")
        except (ImageReadError, BitstreamError, OSError, ValueError) as err:
            failed += 1
            print(
                f"error: {path}: {err}" if str(path) not in str(err) else f"error: {err}",
                file=sys.stderr,
            )
    print(
        f"{info.codec} lambda={info.lmbda} ({info.distortion}): "
        f"{len(args.inputs) - failed} done, {failed} failed"
    )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lic", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_score(sub)
    _add_codec_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except WeightsUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
