"""`lic` console entry point: one subcommand per job (DESCRIPTION says what lic is).

lic train fit --config configs/demo.yaml
lic eval --ckpt checkpoints/*.ckpt --task fidelity --data-root data/demo/val --out results
lic sweep configs/sweeps/demo.yaml --launcher local
lic score --metric mlclipsim REF DIST [REF DIST ...]
lic score --metric lpips --ref-dir A --dist-dir B --out scores.csv
lic curves
lic bd published:mlicpp results/kodak/results.csv:JPEG --anchor published:vtm --out bd.csv
lic align results/consistency
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lic.cli_data import add_data_command, add_export_command
from lic.codecs.padding import FIELD_PADDING, PADDINGS
from lic.devices import resolve_device
from lic.errors import UsageError, exit_program, run_entry_point
from lic.evaluation.align_cli import add_align_command
from lic.metrics.options import add_option_flag, metric_options
from lic.startup import imports_done, pause_collection
from lic.sweep.cli import add_sweep_command
from lic.weights import random_weights


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
    add_option_flag(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, help="write a CSV of all pairs here")
    _add_limits(p, "replace an existing --out CSV (atomically)")
    p.set_defaults(run=_run_score, parser=p)


def _run_score(args: argparse.Namespace) -> int:
    from lic.data.files import check_output_file
    from lic.data.images import set_pixel_limit
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
    check_output_file(args.out, args.overwrite, [p for pair in pairs for p in pair])
    set_pixel_limit(args.max_pixels)
    device = resolve_device(args.device)
    try:
        options = metric_options(args.option, [args.metric]).get(args.metric, {})
        metric = create_metric(args.metric, **options).to(device).eval()
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


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return int(text)


def _add_limits(p: argparse.ArgumentParser, overwrite: str) -> None:
    """--max-pixels and --overwrite, as every command that reads images or writes files has."""
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        help="largest height x width read (images, bitstreams); default: Pillow's "
        "Image.MAX_IMAGE_PIXELS",
    )
    p.add_argument("--overwrite", action="store_true", help=overwrite)


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
        if name == "compress":  # a .lic file records its padding: decompress reads it there
            p.add_argument(
                "--pad",
                choices=PADDINGS,
                default=FIELD_PADDING,
                help="zeros: centred to a multiple of 64, as CompressAI eval_model pads "
                "(default); replicate: repeat the bottom and right edges (smaller files)",
            )
            p.add_argument(
                "--level",
                type=int,
                help="the rate level of a variable-rate codec (0: lowest rate; the file "
                "records it)",
            )
        _add_limits(p, "replace existing output files (atomically; inputs never)")
        p.set_defaults(run=_run_codec, parser=p)


def _run_codec(args: argparse.Namespace) -> int:
    """Every check that can refuse the whole command runs before the first file is coded;
    then a file that fails is one line and the others go on (exit 1 if any failed)."""
    from lic.codecs import BitstreamCodec, load_checkpoint
    from lic.data.files import plan_outputs
    from lic.data.images import set_pixel_limit
    from lic.errors import LicError

    set_pixel_limit(args.max_pixels)
    device = resolve_device(args.device)
    suffix = ".lic" if args.command == "compress" else ".png"
    outputs = plan_outputs(args.inputs, args.out_dir, suffix, args.overwrite)
    model, info = load_checkpoint(args.ckpt, map_location=device)
    codec = _bitstream_codec(BitstreamCodec, model, info, args)
    code_one = _compress_one if args.command == "compress" else _decompress_one
    failed = 0
    for path, out in zip(args.inputs, outputs, strict=True):
        try:
            print(code_one(codec, path, out))
        except (LicError, ValueError, OSError, RuntimeError) as err:
            failed += 1
            text = " ".join(str(err).split())
            print(
                f"error: {text}" if str(path) in text else f"error: {path}: {text}", file=sys.stderr
            )
    print(f"{info.label()}: {len(args.inputs) - failed} done, {failed} failed")
    return 1 if failed else 0


def _bitstream_codec(factory, model, info, args: argparse.Namespace):
    """The codec's BitstreamCodec; compress codes a variable-rate codec at --level."""
    from lic.errors import UsageError

    level = getattr(args, "level", None)
    if args.command == "compress" and (level is None) != (info.lambdas is None):
        if level is None:
            top = len(info.lambdas) - 1
            raise UsageError(f"{args.ckpt} is variable-rate: give --level (0 to {top})")
        raise UsageError(f"--level {level}: {args.ckpt} is a fixed-rate codec")
    try:
        return factory(model, padding=getattr(args, "pad", FIELD_PADDING), level=level)
    except ValueError as err:
        raise UsageError(f"--level: {err}") from None


def _add_conformance(sub: argparse._SubParsersAction) -> None:
    help_text = "encode and decode under every device and thread setting: identical or refused"
    p = sub.add_parser(
        "conformance",
        help=help_text,
        description=f"{help_text}. Prints the matrix (rows: encoded on; columns: decoded on) "
        "and exits 1 if any file decodes to a different image without an error.",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="lic training checkpoint")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGES")
    p.add_argument("--devices", nargs="+", default=["cpu"], help="e.g. cpu cuda (default: cpu)")
    p.add_argument("--threads", nargs="+", type=_positive_int, default=[1, 2], help="default: 1 2")
    p.add_argument("--level", type=int, help="the level a variable-rate codec codes at")
    p.set_defaults(run=_run_conformance, parser=p)


def _run_conformance(args: argparse.Namespace) -> int:
    from lic.codecs import load_checkpoint
    from lic.codecs.conformance import OUTCOMES, conformance, settings_of
    from lic.data.images import load_image

    settings = settings_of(args.devices, args.threads)
    images = [load_image(path) for path in args.images]
    model, info = load_checkpoint(args.ckpt)
    if (args.level is None) != (info.lambdas is None):
        if args.level is None:
            top = len(info.lambdas) - 1
            raise UsageError(f"{args.ckpt} is variable-rate: give --level (0 to {top})")
        raise UsageError(f"--level {args.level}: {args.ckpt} is a fixed-rate codec")
    if args.level is not None:
        from lic.codecs.vbr import check_level

        try:
            check_level(args.level, len(info.lambdas))
        except ValueError as err:
            raise UsageError(f"--level: {err}") from None
    matrix = conformance(model, images, settings, args.level)
    labels = [s.label for s in settings]
    print(f"{info.label()}: {len(images)} image(s); rows encoded on, columns decoded on")
    _print_aligned([{"encoded on": e} | {d: matrix[(e, d)].text() for d in labels} for e in labels])
    for (encoder, decoder), cell in matrix.items():
        for reason in cell.reasons:
            print(f"{encoder} -> {decoder}: {reason}")
    silent = sum(cell.counts[OUTCOMES[-1]] for cell in matrix.values())
    if silent:
        print(f"error: {silent} decode(s) silently different", file=sys.stderr)
    return 1 if silent else 0


def _compress_one(codec, path: Path, out: Path) -> str:
    from lic.codecs import bitstream_bpp, payload_bpp
    from lic.data.files import write_bytes_atomic
    from lic.data.images import load_image

    image = load_image(path)
    data = codec.encode(image)
    write_bytes_atomic(out, data)
    file_bpp = bitstream_bpp(data, *image.shape[-2:])
    return f"{path} -> {out}: {len(data)} bytes, {payload_bpp(data):.4f} bpp ({file_bpp:.4f} file)"


def _decompress_one(codec, path: Path, out: Path) -> str:
    from lic.codecs import bitstream_bpp
    from lic.codecs.io import Bitstream, read_bitstream_file
    from lic.data.images import save_image

    data = read_bitstream_file(path)
    stream = Bitstream.from_bytes(data)
    save_image(codec.decode(data), out)
    bpp = bitstream_bpp(data, stream.height, stream.width)
    rate = 8 * stream.payload_bytes / (stream.height * stream.width)
    return f"{path} -> {out}: {stream.width}x{stream.height}, {rate:.4f} bpp ({bpp:.4f} file)"


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not int(index) < int(count):
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, got '{text}'")
    return int(index), int(count)


def _add_pcmp(sub: argparse._SubParsersAction) -> None:
    from lic.pcmp.defaults import (
        CONSISTENCY_MODES,
        DEFAULT_FAMILIES,
        DEFAULT_TARGETS,
        DEFAULT_VOTERS,
        FAMILY_NAMES,
    )

    p = sub.add_parser("pcmp", help="build PSNR-matched consistency pairs")
    verbs = p.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build", help="distort, PSNR-match, vote (resumable, shardable)")
    b.add_argument("--refs", required=True, type=Path, help="folder of reference images")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--psnr", type=float, nargs="+", default=list(DEFAULT_TARGETS))
    b.add_argument("--families", nargs="+", default=list(DEFAULT_FAMILIES), choices=FAMILY_NAMES)
    b.add_argument(
        "--codec-ckpt",
        nargs="*",
        default=[],
        help="lic checkpoints, low to high rate, for the 'codec' family",
    )
    b.add_argument(
        "--voters", nargs="+", default=list(DEFAULT_VOTERS), help="torchvision classifier names"
    )
    b.add_argument(
        "--voter-weights", default="DEFAULT", help="DEFAULT, or none (random: a format demo only)"
    )
    b.add_argument("--consistency", default="prob", choices=CONSISTENCY_MODES)
    b.add_argument("--tolerance", type=float, default=0.25, help="dB")
    b.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N")
    b.add_argument("--limit", type=_positive_int, help="first N references")
    b.add_argument("--device", default="auto")
    m = verbs.add_parser("merge", help="write pairs.csv and stats.json from all shards")
    m.add_argument("--out", required=True, type=Path)
    p.set_defaults(run=_run_pcmp, parser=p)


def _run_pcmp(args: argparse.Namespace) -> int:
    from lic.pcmp import build, merge

    if args.verb == "merge":
        stats = merge(args.out)
    else:
        stats = build(
            args.refs,
            args.out,
            targets=args.psnr,
            families=args.families,
            voters=args.voters,
            voter_weights=args.voter_weights,
            mode=args.consistency,
            shard=args.shard,
            device=resolve_device(args.device),
            codec_checkpoints=args.codec_ckpt,
            tolerance=args.tolerance,
            limit=args.limit,
        )
    print(json.dumps(stats, indent=1))
    return 0


def _add_iqa(sub: argparse._SubParsersAction) -> None:
    from lic.iqa import READERS
    from lic.metrics import list_metrics

    for name in ("iqa", "ablate"):
        help_text = (
            "score an IQA dataset: SRCC/PLCC/KRCC or 2AFC"
            if name == "iqa"
            else "ML-CLIPSim configurations (towers, layers, alpha, resize) on a pair set"
        )
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dataset", required=True, choices=sorted(READERS))
        p.add_argument("--root", required=True, type=Path, help="dataset folder or CSV file")
        p.add_argument("--device", default="auto")
        p.add_argument("--out", type=Path, help="write the table as CSV here")
        if name == "iqa":
            p.add_argument("--metrics", nargs="+", required=True, choices=list_metrics())
            add_option_flag(p)
            p.add_argument("--bootstrap", type=int, default=1000)
            p.add_argument(
                "--cache",
                type=Path,
                help="score cache folder (default: ~/.cache/lic/iqa/<dataset>)",
            )
            p.set_defaults(run=_run_iqa, parser=p)
        else:
            p.add_argument(
                "--towers",
                nargs="+",
                default=["ViT-B-32:openai", "ViT-B-16:openai"],
                help="MODEL:PRETRAINED (tag, file, or none)",
            )
            p.add_argument(
                "--layers",
                nargs="+",
                default=["default", "11", "2,5,8,11", "8,9,10,11"],
                help="comma-separated blocks, or 'default'",
            )
            p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
            p.add_argument(
                "--resize",
                nargs="+",
                default=["squash"],
                choices=["squash", "center_crop", "tiles"],
            )
            p.set_defaults(run=_run_ablate, parser=p)


def _print_table(rows: list[dict], columns: list[str], out: Path | None) -> None:
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))
    if out:
        import csv

        from lic.data.files import atomic_path

        with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out}")


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _run_iqa(args: argparse.Namespace) -> int:
    from lic.data.images import DatasetLayoutError
    from lic.iqa import PairSet, evaluate, read_dataset

    try:
        dataset = read_dataset(args.dataset, args.root)
        options = metric_options(args.option, args.metrics)
    except (DatasetLayoutError, UsageError) as err:
        args.parser.error(str(err))
    cache = args.cache or Path.home() / ".cache" / "lic" / "iqa" / args.dataset
    rows = evaluate(
        dataset, args.metrics, options, resolve_device(args.device), cache, args.bootstrap
    )
    if isinstance(dataset, PairSet):
        columns = ["metric", "2afc", "2afc_ci_low", "2afc_ci_high", "majority_acc", "n", "n_failed"]
    else:
        columns = [
            "metric",
            "srcc",
            "srcc_ci_low",
            "srcc_ci_high",
            "plcc",
            "plcc_ci_low",
            "plcc_ci_high",
            "krcc",
            "krcc_ci_low",
            "krcc_ci_high",
            "n",
            "n_failed",
        ]
    size = len(dataset.pairs) if isinstance(dataset, PairSet) else len(dataset.items)
    print(f"{dataset.name}: {size} {'pairs' if isinstance(dataset, PairSet) else 'images'}")
    _print_table(rows, columns, args.out)
    for row in rows:
        for error in row["errors"]:
            print(f"error: {row['metric']}: {error}", file=sys.stderr)
    return 1 if any(row["n_failed"] for row in rows) else 0


def _run_ablate(args: argparse.Namespace) -> int:
    from lic.data.images import DatasetLayoutError
    from lic.iqa import PairSet, read_dataset
    from lic.iqa.ablation import ablate

    try:
        dataset = read_dataset(args.dataset, args.root)
    except DatasetLayoutError as err:
        args.parser.error(str(err))
    if not isinstance(dataset, PairSet):
        args.parser.error(f"{args.dataset} is a scored set; ablation needs a pair set")
    towers = []
    for spec in args.towers:
        model, _, pretrained = spec.partition(":")
        towers.append((model, None if not pretrained or random_weights(pretrained) else pretrained))
    layer_sets = [None if s == "default" else [int(i) for i in s.split(",")] for s in args.layers]
    rows = ablate(
        dataset, towers, layer_sets, args.alphas, args.resize, resolve_device(args.device)
    )
    _print_table(rows, ["tower", "pretrained", "resize", "layers", "alpha", "2afc", "n"], args.out)
    return 0


BD_METHODS = ("pchip", "cubic", "akima")  # lic.evaluation.bd.METHODS, without loading scipy
CURVE_SPECS = "published:NAME (lic curves), FILE.json, FILE.csv or RESULTS.csv:CURVE"


def _add_bd_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "curves",
        help="list the published Kodak curves that lic bd compares with (published:NAME)",
        description="The catalogue of published rate-distortion curves: points, source "
        "repository and commit, licence.",
    )
    c.add_argument("--metric", help="only the curves with points of this metric (psnr, ms_ssim)")
    c.set_defaults(run=_run_curves, parser=c)
    b = sub.add_parser(
        "bd",
        help="BD-rate and BD-metric of curves against an anchor (published, files, runs)",
        description="Bjontegaard deltas of each TEST curve against --anchor, as the "
        "bjontegaard package computes them. A curve is " + CURVE_SPECS + ": a CompressAI "
        "results JSON or {bpp, psnr, ...} lists, a CSV with a bpp column, or a curve of a lic "
        "eval results.csv by its label (JPEG, 'bmshj2018-hyperprior / mse') or codec/objective.",
    )
    b.add_argument("tests", nargs="+", metavar="TEST", help=CURVE_SPECS)
    b.add_argument("--anchor", required=True, metavar="CURVE", help="the reference curve")
    b.add_argument(
        "--metric", default="psnr", help="psnr (default), ms_ssim, ms_ssim_db, or any column"
    )
    b.add_argument(
        "--method",
        choices=BD_METHODS,
        default="pchip",
        help="interpolation: pchip (default; lic eval's), akima, or cubic (a least-squares "
        "cubic, VCEG-M33's original; needs 4 points per curve)",
    )
    b.add_argument("--task", help="task of RESULTS.csv curves, when several have the metric")
    b.add_argument("--out", type=Path, help="write the table as CSV here")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out CSV")
    b.set_defaults(run=_run_bd, parser=b)


def _run_curves(args: argparse.Namespace) -> int:
    from lic.evaluation.curves import (
        CATALOGUE,
        PUBLISHED,
        catalogue_metrics,
        has_metric,
        load_catalogue,
        metric_name,
        source_text,
    )

    catalogue = load_catalogue()
    wanted = metric_name(args.metric) if args.metric else None
    rows = []
    for record in catalogue["curves"]:
        metrics = catalogue_metrics(record)
        if wanted and not has_metric(metrics, wanted):
            continue
        bpp = record["points"].get("bpp") or []
        rows.append(
            {
                "name": PUBLISHED + record["name"],
                "label": record.get("label", ""),
                "kind": record.get("kind", ""),
                "points": len(bpp),
                "bpp": _span(bpp),
                "metrics": ",".join(metrics),
                "source": source_text(record),
                "licence": (record.get("source") or {}).get("licence", ""),
            }
        )
    dataset = catalogue.get("dataset") or {}
    name = dataset.get("name", CATALOGUE.stem) if isinstance(dataset, dict) else CATALOGUE.stem
    print(f"{len(rows)} published curve(s) on {name} ({CATALOGUE})")
    _print_aligned(rows)
    print("compare: lic bd published:NAME ... --anchor published:NAME [--metric M]")
    return 0


def _print_aligned(rows: list[dict]) -> None:
    """Rows of strings as a plain table under their keys, columns two spaces apart."""
    if not rows:
        return
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    for cells in [columns, *([str(r[c]) for c in columns] for r in rows)]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _span(values: list) -> str:
    try:
        return f"{min(map(float, values)):.3g}..{max(map(float, values)):.3g}"
    except (TypeError, ValueError):
        return "?"


def _run_bd(args: argparse.Namespace) -> int:
    from lic.data.files import check_output_file
    from lic.evaluation.curves import compare, load_curve

    specs = [*args.tests, args.anchor]
    check_output_file(args.out, args.overwrite, [Path(s.partition(":")[0]) for s in specs])
    anchor = load_curve(args.anchor, args.metric, args.task)
    tests = [load_curve(spec, args.metric, args.task) for spec in args.tests]
    results = [compare(test, anchor, args.method) for test in tests]
    print(f"anchor {anchor.name}: {anchor.source}, {len(anchor.bpp)} points")
    for test in tests:
        print(f"test   {test.name}: {test.source}, {len(test.bpp)} points")
    _print_aligned([_bd_cells(row) for row, _ in results])
    for row, notes in results:
        for note in notes:
            print(f"note: {row['curve']}: {note}")
    if args.out:
        _write_bd_csv(args.out, [row for row, _ in results])
        print(f"wrote {args.out}")
    return 0


def _bd_cells(row: dict) -> dict[str, str]:
    """The printed row of `lic bd`: true minus signs, units, n/a for a missing value."""
    from lic.metrics import metric_info

    info = metric_info(row["metric"])
    unit = f" {info.unit}" if info.unit else ""
    digits = ".3f" if info.unit else ".4g"  # dB, %: fixed; a linear MS-SSIM: significant

    def signed(value: float, text: str) -> str:
        return "n/a" if math.isnan(value) else text.replace("-", "\u2212")

    low, high, fraction = (row[k] for k in ("overlap_low", "overlap_high", "overlap_fraction"))
    overlap = f"{low:.4g}..{high:.4g}{unit} ({fraction:.0%})" if fraction > 0 else "none"
    return {
        "curve": row["curve"],
        "BD-rate": signed(row["bd_rate"], f"{row['bd_rate']:.2f}%"),
        f"BD-{info.display}": signed(row["bd_metric"], f"{row['bd_metric']:+{digits}}{unit}"),
        f"{info.display} overlap": overlap,
        "points": f"{row['n_points_test']} vs {row['n_points_anchor']}",
        "method": row["method"],
    }


def _write_bd_csv(out: Path, rows: list[dict]) -> None:
    """The BD_COLUMNS of each row; floats in full (repr), a missing value as an empty cell."""
    import csv

    from lic.data.files import atomic_path
    from lic.evaluation.curves import BD_COLUMNS

    def cell(value: object) -> object:
        if isinstance(value, float):
            return "" if math.isnan(value) else repr(value)
        return value

    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BD_COLUMNS)
        writer.writeheader()
        writer.writerows({k: cell(row[k]) for k in BD_COLUMNS} for row in rows)


DELEGATES = {
    "train": ("train a codec (LightningCLI: lic train fit --config ...)", "lic.training.cli"),
    "eval": ("rate-task curves of checkpoints and baselines", "lic.evaluation.cli"),
}
"""Subcommands that own their options: their parsers are built only when they run, so
`lic --help` loads neither Lightning nor torch."""


def _add_delegates(sub: argparse._SubParsersAction) -> None:
    for name, (help_text, _) in DELEGATES.items():
        sub.add_parser(name, help=f"{help_text} (lic {name} --help)", add_help=False)


def _run_delegate(name: str, argv: list[str]) -> int:
    """Runs `lic NAME ARGS` as its own program (LightningCLI reads sys.argv; usage says
    `lic NAME`)."""
    import importlib

    sys.argv = [f"lic {name}", *argv]

    def run() -> int:
        return importlib.import_module(DELEGATES[name][1]).main(None)

    try:
        if name == "train":
            from lic.training.help_cache import print_help, wants_help

            if wants_help(argv):  # kept help: no Lightning import (lic.training.help_cache)
                return print_help(argv, run)
        return run()
    finally:
        imports_done()  # if the command stopped before its own call (lic.startup)


DESCRIPTION = (
    "lic: learned image compression for machines and people. Train codecs on rate + lambda "
    "x distortion (MSE, LPIPS, ML-CLIPSim), code real bitstreams, measure what downstream "
    "models keep after decoding, and compare curves with published ones (BD-rate)."
)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="lic", description=DESCRIPTION)
    try:
        installed = version("lic")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"lic {installed}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_delegates(sub)
    _add_score(sub)
    _add_codec_commands(sub)
    _add_conformance(sub)
    _add_pcmp(sub)
    _add_iqa(sub)
    add_data_command(sub)
    add_export_command(sub)
    add_sweep_command(sub)
    _add_bd_commands(sub)
    add_align_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors follow `lic.errors` (one line; exit 2 usage, 1 runtime)."""

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATES:
        return _run_delegate(argv[0], argv[1:])

    def run() -> int:
        args = build_parser().parse_args(argv)
        imports_done()  # the light commands: collection back on (lic.startup)
        return args.run(args)

    return run_entry_point(run)


def console() -> NoReturn:
    """The `lic` program (console script and `python -m lic`). Garbage collection pauses
    over `lic train`'s and `lic eval`'s imports (`lic.startup`), not in `main()` run
    in-process, whose caller's heap it would freeze."""
    pause_collection()
    exit_program(main())


if __name__ == "__main__":
    console()
