"""Tables, Bjontegaard deltas, plots and a Markdown summary of a rate-task run."""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from lic.codecs.classical import CLASSICAL_CODECS
from lic.data.files import write_bytes_atomic, write_csv_atomic, write_text_atomic
from lic.errors import UsageError
from lic.evaluation.bd import MIN_OVERLAP, bd_metric, bd_overlap, bd_rate
from lic.evaluation.bootstrap import paired_bd
from lic.evaluation.coders import ZOO_PREFIX, parse_zoo_spec
from lic.evaluation.curves import PUBLISHED, load_catalogue, load_curve, published_record
from lic.evaluation.per_image import write_per_image
from lic.metrics import metric_info

ResultRow = TypedDict(
    "ResultRow",
    {
        "codec": str,
        "objective": str,
        "lambda": "float | None",  # a learned codec's lambda (`lambda` is a keyword)
        "quality": "int | None",  # a classical or zoo codec's quality
        "task": str,
        "weights": str,  # the task weights' name, or `random` (lic.tasks.base.weights_label)
        "metric": str,
        "bpp": "float | None",  # payload rate (None for the uncompressed reference)
        "bpp_file": "float | None",  # whole files (None also for estimated rates)
        "value": float,
        "ci_low": "float | None",  # 95% bootstrap interval over images (None: disabled)
        "ci_high": "float | None",
        "n_images": int,
        "n_failed": int,
        "rate_source": str,  # bitstream, estimate, file size, none
        "padding": "str | None",  # how a learned codec padded (lic.codecs.padding)
        "rate_mean": "str | None",  # images (mean of per-image bpp) or pixels (bits / pixels)
        "checkpoint": "str | None",
    },
)
"""One row of results.csv/json: one metric of one (coder, task) cell."""
COLUMNS = list(ResultRow.__annotations__)


def rate_convention(pad: str, rate_mean: str, estimate_rate: bool) -> dict[str, str]:
    """How this run counts rate, in words (docs/conventions.md): written into results.json,
    the first lines of summary.md and the plots' axis labels."""
    return {
        "bpp": (
            "likelihood estimate of the entropy-coded payload"
            if estimate_rate
            else "entropy-coded payload (8 x string bytes, CompressAI eval_model's count)"
        )
        + " / unpadded H x W; classical codecs: the file",
        "bpp_file": "whole files: lic's .lic container (header, shapes, CRC) or the classical "
        "file" + ("; empty for estimated rates" if estimate_rate else ""),
        "rate_mean": {
            "images": "mean of per-image bpp (CompressAI)",
            "pixels": "total bits / total pixels (MPEG VCM)",
        }[rate_mean],
        "padding": {
            "zeros": "learned codecs pad zeros, centred, to a multiple of 64 (eval_model)",
            "replicate": "learned codecs repeat the bottom/right edges to their stride",
        }[pad],
        "rates": "estimated (no bitstreams)" if estimate_rate else "real bitstreams",
    }


def rate_axis_label(convention: dict[str, str] | None) -> str:
    """'bpp (payload, mean over images)'; the plain label without a convention."""
    if not convention:
        return "rate (bits per pixel)"
    kind = "estimated payload" if convention["rates"].startswith("estimated") else "payload"
    mean = "mean over images" if convention["rate_mean"].startswith("mean") else "bits / pixels"
    return f"bpp ({kind}, {mean})"


def convention_lines(convention: dict[str, str] | None) -> list[str]:
    """The rate convention as the first lines of summary.md."""
    if not convention:
        return []
    return [
        f"Rate convention: bpp = {convention['bpp']}; {convention['rate_mean']}; "
        f"{convention['padding']}; {convention['rates']}. bpp_file (results.csv, "
        f"per_image.csv) counts {convention['bpp_file']}.",
        "",
    ]


def random_models(cells: list[dict]) -> dict[str, str]:
    """task -> its model, for each task whose numbers come from random weights
    (`Task.random_weights`, recorded in every cell)."""
    return {c["meta"]["task"]: c["meta"]["model"] for c in cells if c["meta"].get("random_weights")}


def random_note(model: str) -> str:
    """What the reports say of a task model with random weights."""
    return f"random {model}: format check only"


def random_lines(random: dict[str, str]) -> list[str]:
    """summary.md's banner for tasks run with random weights."""
    if not random:
        return []
    tasks = "; ".join(f"{task}: {random_note(model)}" for task, model in sorted(random.items()))
    return [
        f"**Random weights** ({tasks}): `--task-weights none` built the task networks with "
        "random weights; their numbers check the pipeline and the formats, they are not results.",
        "",
    ]


Curve = tuple[str, str]  # (codec, objective)
DEFAULT_ANCHOR_OBJECTIVE = "mse"  # BD numbers refer to each codec's MSE-trained curve


PUBLISHED_OBJECTIVE = "published"  # the objective of a published curve: (published:NAME, this)


def curve_label(curve: Curve) -> str:
    """'JPEG XL' for a classical codec, 'mbt2018-mean (zoo, mse)', 'mlicpp / mse',
    'published:vtm'."""
    codec, objective = curve
    if objective == PUBLISHED_OBJECTIVE:
        return codec
    if codec in CLASSICAL_CODECS:
        return CLASSICAL_CODECS[codec].label
    if codec.startswith(ZOO_PREFIX):
        return f"{codec.removeprefix(ZOO_PREFIX)} (zoo, {objective})"
    return f"{codec} / {objective}"


def resolve_anchor(spec: str | None, available: list[Curve]) -> Curve | None:
    """The curve `--anchor` names: a baseline ('jpeg'), a zoo entry
    ('compressai:mbt2018-mean[:QUALITIES][:METRIC]') or 'codec/objective'; None keeps the
    default (each codec's mse curve)."""
    if spec is None:
        return None
    if spec.startswith(PUBLISHED):
        published_record(spec.removeprefix(PUBLISHED), load_catalogue())  # a known name
        return (spec, PUBLISHED_OBJECTIVE)
    if spec.startswith(ZOO_PREFIX):
        entry = parse_zoo_spec(spec)
        curve = (entry.codec, entry.metric)
    elif "/" in spec:
        codec, _, objective = spec.rpartition("/")
        curve = (codec, objective)
    else:
        curve = (spec, spec) if spec in CLASSICAL_CODECS else (spec, "mse")
    if curve not in available:
        names = sorted({f"{c}/{o}" for c, o in available if c != "uncompressed"})
        raise UsageError(f"--anchor '{spec}' is none of the evaluated curves: {', '.join(names)}")
    return curve


def curves(rows: list[dict]) -> dict[tuple[str, str], dict[Curve, list[tuple[float, float]]]]:
    """(task, metric) -> (codec, objective) -> sorted (bpp, value) points, curves in row
    order; the uncompressed reference is not a curve."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["bpp"] is not None and row["codec"] != "uncompressed":
            curve = (row["codec"], row["objective"])
            out[(row["task"], row["metric"])][curve].append((row["bpp"], row["value"]))
    return {k: {curve: sorted(points) for curve, points in v.items()} for k, v in out.items()}


def published_points(names: list[str], rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(fidelity, metric) -> (published:NAME, published) -> sorted (bpp, value) points of
    each published curve (`names`, with or without the prefix) for every fidelity metric of
    the run that the curve has; the curves come from lic's catalogue (lic.evaluation.curves)."""
    catalogue = load_catalogue()
    metrics = {r["metric"] for r in rows if r["task"] == "fidelity"}
    out: dict = defaultdict(dict)
    for name in names:
        spec = name if name.startswith(PUBLISHED) else PUBLISHED + name
        record = published_record(spec.removeprefix(PUBLISHED), catalogue)
        for metric in sorted(metrics):
            if metric.removesuffix("_db") not in record["points"]:
                continue  # e.g. MLIC++ publishes PSNR only
            curve = load_curve(spec, metric)
            points = sorted(zip(curve.bpp.tolist(), curve.values.tolist(), strict=True))
            out[("fidelity", metric)][(spec, PUBLISHED_OBJECTIVE)] = points
    return dict(out)


def published_lines(published: dict[tuple[str, str], dict] | None) -> list[str]:
    """Where each published curve of a run comes from and how it counts rate (summary.md)."""
    names = sorted({codec for by_curve in (published or {}).values() for codec, _ in by_curve})
    if not names:
        return []
    catalogue = load_catalogue()
    lines = ["Published curves (lic/data/published, fixed points, no intervals):", ""]
    for name in names:
        record = published_record(name.removeprefix(PUBLISHED), catalogue)
        source = record["source"]
        lines.append(
            f"- `{name}`: {record['label']}; {source['repository']}@{source['commit'][:7]} "
            f"{source['file']} ({source['licence']}); rate: {record['rate']}"
        )
    return [*lines, ""]


def references(by_curve: dict[Curve, list], anchor: Curve | None) -> dict[str, Curve]:
    """codec -> the curve its BD numbers refer to: the anchor for every codec, or by default
    the `mse` curve of the same codec (for other codecs, the first one with an mse curve)."""
    if anchor is not None:
        return dict.fromkeys((c for c, _ in by_curve), anchor) if anchor in by_curve else {}
    own = {codec: (codec, obj) for codec, obj in by_curve if obj == DEFAULT_ANCHOR_OBJECTIVE}
    if not own:
        return {}
    return {codec: own.get(codec, next(iter(own.values()))) for codec, _ in by_curve}


def curve_resamples(cells: list[dict]) -> dict[tuple[str, str], dict[Curve, list]]:
    """(task, metric) -> curve -> per point (bpp resamples, metric resamples), points sorted
    by bpp as in `curves`: the paired resamples of lic.evaluation.bootstrap."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        meta, resamples = cell["meta"], cell.get("resamples")
        if not resamples or "bpp" not in resamples or cell["bpp"] is None:
            continue
        for metric, values in resamples.items():
            if metric != "bpp":
                curve = (meta["codec"], meta["objective"])
                out[(meta["task"], metric)][curve].append((cell["bpp"], resamples["bpp"], values))
    return {
        key: {c: [(r, v) for _, r, v in sorted(p, key=lambda t: t[0])] for c, p in by.items()}
        for key, by in out.items()
    }


def _bd(delta, ref_rate, ref_value, rate, value) -> tuple[float, str]:
    """A BD value, or NaN and why not (the ValueError of lic.evaluation.bd)."""
    try:
        return delta(ref_rate, ref_value, rate, value), ""
    except ValueError as err:
        return math.nan, str(err)


def _bd_values(metric: str, reference: list, points: list, resamples: dict) -> dict:
    """BD-rate and BD-metric of `points` against `reference` with paired intervals."""
    higher_better = not metric_info(metric).lower_better

    def rate_delta(r0, v0, r1, v1):
        return bd_rate(r0, v0, r1, v1, higher_better=higher_better)

    ref_rate, ref_value = zip(*reference, strict=True)
    rate, value = zip(*points, strict=True)
    row, reasons = {}, []
    for name, delta in (("bd_rate", rate_delta), ("bd_metric", bd_metric)):
        row[name], reason = _bd(delta, ref_rate, ref_value, rate, value)
        low = high = math.nan
        if reason:
            reasons.append(f"{'BD-rate' if name == 'bd_rate' else 'BD-metric'} n/a: {reason}")
        elif resamples and math.isfinite(row[name]):
            is_rate = name == "bd_rate"
            low, high, undefined, total = paired_bd(*resamples, is_rate, higher_better)
            if undefined:
                reasons.append(
                    f"{name} undefined on {undefined} of {total} resamples (a resampled curve "
                    "not monotone or not overlapping); its interval is over the others"
                )
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    row["bd_rate_percent"] = row.pop("bd_rate")
    return row | {"reasons": reasons}


def bd_table(
    rows: list[dict],
    anchor: Curve | None = None,
    cells: list[dict] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
) -> list[dict]:
    """BD-rate and BD-metric of every curve against `anchor` (default: the `mse` curve of the
    same codec, or for other codecs of the first codec with one), for every task metric, with
    paired bootstrap intervals when `cells` carry resamples. `published` curves
    (`published_points`) may be the anchor; they are fixed: only the run's side resamples."""
    table = []
    resampled = curve_resamples(cells or [])
    for (task, metric), by_curve in sorted(curves(rows).items()):
        if not metric_info(metric).is_quality:  # POPE's yes-ratio: plotted, no BD numbers
            continue
        fixed = (published or {}).get((task, metric), {})
        refs = references({**by_curve, **fixed}, anchor)
        if not refs:
            if anchor is not None:  # said, not dropped: e.g. VTM publishes no LPIPS curve
                table += [_no_anchor_row(task, metric, c, p, anchor) for c, p in by_curve.items()]
            continue
        by_curve = {**by_curve, **fixed}
        for curve, points in sorted(by_curve.items(), key=lambda item: curve_label(item[0])):
            reference = refs.get(curve[0])
            if reference is None or curve == reference or curve in fixed:
                continue
            by_resample = dict(resampled.get((task, metric), {}))
            if reference in fixed and curve in by_resample:
                count = len(by_resample[curve][0][0])
                by_resample[reference] = [
                    (np.full(count, bpp), np.full(count, value)) for bpp, value in fixed[reference]
                ]
            pairs = (by_resample.get(reference), by_resample.get(curve))
            pairs_ok = all(
                p and len(p) == n
                for p, n in zip(pairs, (len(by_curve[reference]), len(points)), strict=True)
            )
            values = _bd_values(metric, by_curve[reference], points, pairs if pairs_ok else None)
            overlap = bd_overlap(
                *zip(*by_curve[reference], strict=True), *zip(*points, strict=True)
            )
            if 0 < overlap.fraction < MIN_OVERLAP and math.isfinite(values["bd_rate_percent"]):
                values["reasons"].append(
                    f"the curves overlap on {overlap.fraction:.0%} of their joint quality range "
                    f"({overlap.low:.4g} to {overlap.high:.4g}): BD-rate speaks for that band only"
                )
            row = {
                "task": task,
                "metric": metric,
                "curve": curve_label(curve),
                "reference": curve_label(reference),
                **{k: v for k, v in values.items() if k != "reasons"},
                "overlap_low": overlap.low,
                "overlap_high": overlap.high,
                "overlap_fraction": overlap.fraction,
                "points": len(points),
                "reference_points": len(by_curve[reference]),
            }
            table.append(row | {"note": bd_note(row, values["reasons"])})
    return table


def _no_anchor_row(task: str, metric: str, curve: Curve, points: list, anchor: Curve) -> dict:
    """The bd.csv row of a curve whose anchor has no curve for this task and metric."""
    nan = math.nan
    values = {
        f"{name}{end}": nan
        for name in ("bd_rate", "bd_metric")
        for end in ("", "_ci_low", "_ci_high")
    }
    values["bd_rate_percent"] = values.pop("bd_rate")
    return {
        "task": task,
        "metric": metric,
        "curve": curve_label(curve),
        "reference": curve_label(anchor),
        **values,
        **{"overlap_low": nan, "overlap_high": nan, "overlap_fraction": nan},
        "points": len(points),
        "reference_points": 0,
        "note": f"the anchor {curve_label(anchor)} has no {task} {metric} curve; no BD against it",
    }


def bd_note(row: dict, reasons: list[str] = ()) -> str:
    """Why a BD value is missing, in words a user can act on ('' when both are numbers)."""
    if not (math.isnan(row["bd_rate_percent"]) or math.isnan(row["bd_metric"])):
        return "; ".join(reasons)
    for key, who in (("points", "this curve"), ("reference_points", "the reference")):
        if row[key] < 2:
            return (
                f"{who} has {row[key]} point(s); BD needs 2 or more (evaluate several "
                "checkpoints/lambdas or qualities)"
            )
    return "; ".join(reasons) or "the two curves do not overlap in rate or in quality"


def _point_intervals(rows: list[dict], curve: Curve, metric: str, points: list) -> tuple:
    """(lows, highs) of a curve's points (NaN where a row has no interval)."""
    found = {
        (r["bpp"], r["value"]): (r.get("ci_low"), r.get("ci_high"))
        for r in rows
        if (r["codec"], r["objective"]) == curve and r["metric"] == metric
    }
    pairs = [found.get(point, (None, None)) for point in points]
    as_float = [[math.nan if v is None else v for v in pair] for pair in pairs]
    low, high = zip(*as_float, strict=True) if as_float else ((), ())
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def _in_view(points: list[tuple[float, float]], span: list[float]) -> list[tuple[float, float]]:
    """The points of a published curve within the run's rate range `span`, and one more on
    each side so its line runs to the panel's edge (all of them when the run has no rates)."""
    if not span:
        return points
    inside = [i for i, (bpp, _) in enumerate(points) if min(span) <= bpp <= max(span)]
    if not inside:
        below = [i for i, (bpp, _) in enumerate(points) if bpp < min(span)]
        first = below[-1] if below else 0
        return points[first : first + 2]
    return points[max(inside[0] - 1, 0) : inside[-1] + 2]


def plot(
    rows: list[dict],
    out: Path,
    anchor: Curve | None = None,
    convention: dict[str, str] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
    random: dict[str, str] | None = None,
) -> list[Path]:
    """rate_task_<task>.png/.pdf: one panel per metric, one curve per objective/baseline,
    each point with its 95% bootstrap interval; the curves BD numbers refer to dashed; the
    panels of a task with `random` weights (`random_models`) say so in their titles.
    Figures are drawn without pyplot (no GUI backend, no global figure state; its import
    was a quarter of the report's time)."""
    from matplotlib.figure import Figure

    written = []
    by_task = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    all_curves = curves(rows)
    for task, task_rows in sorted(by_task.items()):
        metrics = list(dict.fromkeys(r["metric"] for r in task_rows))
        fig = Figure(figsize=(5.2 * len(metrics), 4.2))
        axes = fig.subplots(1, len(metrics), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            by_curve = all_curves.get((task, metric), {})
            intervals = False
            anchors = set(references(by_curve, anchor).values())
            for curve, points in by_curve.items():
                rate, value = zip(*points, strict=True)
                style = "--" if curve in anchors else "-"
                marker = "s" if curve[0] in CLASSICAL_CODECS else "o"
                (line,) = ax.plot(
                    rate, value, style, marker=marker, markersize=4, label=curve_label(curve)
                )
                low, high = _point_intervals(task_rows, curve, metric, points)
                if np.isfinite(low).any():  # the 95% bootstrap interval of every point
                    intervals = True
                    ax.errorbar(
                        rate,
                        value,
                        yerr=np.stack([np.subtract(value, low), np.subtract(high, value)]),
                        fmt="none",
                        ecolor=line.get_color(),
                        elinewidth=0.8,
                        capsize=2,
                    )
            fixed = (published or {}).get((task, metric), {})
            span = [bpp for points in by_curve.values() for bpp, _ in points]
            for (curve, points), marker in zip(fixed.items(), itertools.cycle("x+^v.")):
                rate, value = zip(*_in_view(points, span), strict=True)
                ax.plot(rate, value, "--", color="0.5", marker=marker, markersize=4, linewidth=1,
                        label=curve_label(curve))  # fmt: skip
            if fixed and span:  # the run's rates fill the panel, published curves cut there
                margin = 0.05 * (max(span) - min(span) or max(span))
                ax.set_xlim(min(span) - margin, max(span) + margin)
            for r in task_rows:
                if r["codec"] == "uncompressed" and r["metric"] == metric:
                    if metric_info(metric).full_reference:  # a perfect score, not a level
                        continue
                    ax.axhline(r["value"], color="gray", linestyle=":", label="uncompressed")
            if intervals:
                ax.text(
                    0.99,
                    0.01,
                    "bars: 95% bootstrap interval over images",
                    transform=ax.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=7,
                    color="gray",
                )
            ax.set_xlabel(rate_axis_label(convention))
            ax.set_ylabel(metric_info(metric).label())
            title = f"{task}: {metric_info(metric).display}"
            if task in (random or {}):
                title += f"\n{random_note(random[task])}"
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        for suffix in ("png", "pdf"):
            path = out / f"rate_task_{task}.{suffix}"
            buffer = io.BytesIO()
            fig.savefig(buffer, format=suffix, dpi=150)
            written.append(write_bytes_atomic(path, buffer.getvalue(), out))
    return written


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def with_interval(value, low, high, digits: int | None = None, suffix: str = "") -> str:
    """'−12.3% [−14.1, −10.2]' (or '31.42 [31.1, 31.8]'), with true minus signs as papers
    print them; 'n/a' for a missing value, the value alone without an interval."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"

    def fmt(v: float) -> str:
        text = _fmt(float(v)) if digits is None else f"{v:.{digits}f}"
        return text.replace("-", "\u2212")

    if not _finite(low, high):
        return fmt(value) + suffix
    return f"{fmt(value)}{suffix} [{fmt(low)}, {fmt(high)}]"


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def markdown(
    rows: list[dict],
    bd: list[dict],
    cells: list[dict],
    anchor: Curve | None = None,
    convention: dict[str, str] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
) -> str:
    lines = [
        "# Rate-task results",
        "",
        *random_lines(random_models(cells)),
        *convention_lines(convention),
        *published_lines(published),
        "Values with their 95% percentile bootstrap interval over images, [low, high].",
        "",
        "| task | metric | codec | objective | lambda / quality | bpp | value [95% CI] | n "
        "| failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        rows, key=lambda r: (r["task"], r["metric"], r["codec"], r["objective"], r["bpp"] or 0)
    ):
        point = r["lambda"] if r["lambda"] is not None else r["quality"]
        value = with_interval(r["value"], r.get("ci_low"), r.get("ci_high"))
        lines.append(
            f"| {r['task']} | {r['metric']} | {r['codec']} | {r['objective']} | "
            f"{_fmt(point)} | {_fmt(r['bpp'])} | {value} | {r['n_images']} | {r['n_failed']} |"
        )
    against = curve_label(anchor) if anchor else "each codec's MSE curve"
    lines += ["", f"## Bjontegaard deltas against {against}", ""]
    if bd:
        lines += [
            "Paired 95% bootstrap intervals: both curves recomputed on the same resampled images.",
            "",
            "| task | metric | curve | reference | BD-rate | BD-metric | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for b in bd:
            rate = with_interval(
                b["bd_rate_percent"], b.get("bd_rate_ci_low"), b.get("bd_rate_ci_high"), 1, "%"
            )
            delta = with_interval(
                b["bd_metric"], b.get("bd_metric_ci_low"), b.get("bd_metric_ci_high")
            )
            lines.append(
                f"| {b['task']} | {b['metric']} | {b['curve']} | {b['reference']} | {rate} | "
                f"{delta} | {b['note']} |"
            )
    else:
        lines.append(f"No curves to compare with {against} (or too few points): no BD table.")
    return "\n".join([*lines, "", *failure_lines(cells)]) + "\n"


def failures_message(rows: list[dict], out: str | Path) -> str | None:
    """'2 failures in 2 cells (...)': one per failed image and cell (each cell counted once,
    not once per metric), or None without failures."""
    cells = {(r["codec"], r["objective"], r["lambda"], r["quality"], r["task"]): r for r in rows}
    failures = sum(r["n_failed"] for r in cells.values())
    if not failures:
        return None
    failed = sum(1 for r in cells.values() if r["n_failed"])
    return (
        f"{plural(failures, 'failure')} in {plural(failed, 'cell')} (one per image and cell, "
        f"listed in {Path(out) / 'summary.md'})"
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def failure_lines(cells: list[dict], shown: int = 100) -> list[str]:
    """summary.md's failures: how many images failed in how many cells, then one line per
    image and cell, named with its cell (the first `shown`)."""
    failures = [(cell["meta"], f) for cell in cells for f in cell["failures"]]
    if not failures:
        return ["## Failures: 0"]
    images = len({(meta["task"], f["image"]) for meta, f in failures})
    failed = len({(meta["task"], meta["key"]) for meta, _ in failures})
    lines = [
        f"## Failures: {plural(images, 'image')} in {plural(failed, 'cell')} "
        "(one line per image and cell)",
        "",
        *(f"- {meta['task']} {meta['key']}: {f['error']}" for meta, f in failures[:shown]),
    ]
    if len(failures) > shown:
        lines.append(f"- ... and {len(failures) - shown} more (results.json lists all)")
    return lines


def write_reports(
    out: Path,
    rows: list[dict],
    cells: list[dict],
    use_wandb: bool = False,
    anchor: Curve | None = None,
    convention: dict[str, str] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
    sections: Sequence[str] = (),
) -> None:
    """results.csv/json, bd.csv (against `anchor`), plots and summary.md in `out`, each
    stating the rate `convention` (`rate_convention`); `published` curves
    (`published_points`) are drawn on the plots and may be the anchor; `sections` are
    added to summary.md (metric-task alignment)."""
    write_csv_atomic(out / "results.csv", rows, COLUMNS, out)
    failures = [
        {"cell": c["meta"]["key"], "task": c["meta"]["task"], **f}
        for c in cells
        for f in c["failures"]
    ]
    results = {"convention": convention, "rows": rows, "failures": failures}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1), out)
    bd = bd_table(rows, anchor, cells, published)
    per_image = [r for cell in cells for r in cell.get("per_image", ())]
    write_per_image(out / "per_image.csv", per_image, out)
    write_csv_atomic(
        out / "bd.csv",
        bd,
        [
            "task",
            "metric",
            "curve",
            "reference",
            "bd_rate_percent",
            "bd_rate_ci_low",
            "bd_rate_ci_high",
            "bd_metric",
            "bd_metric_ci_low",
            "bd_metric_ci_high",
            "overlap_low",
            "overlap_high",
            "overlap_fraction",
            "points",
            "reference_points",
            "note",
        ],
        out,
    )
    plots = plot(rows, out, anchor, convention, published, random_models(cells))
    summary = markdown(rows, bd, cells, anchor, convention, published) + "".join(sections)
    write_text_atomic(out / "summary.md", summary, out)
    if use_wandb:
        import wandb

        run = wandb.run or wandb.init(project="lic", job_type="rate_task")
        run.log(
            {
                "rate_task/results": wandb.Table(
                    columns=COLUMNS, data=[[r[c] for c in COLUMNS] for r in rows]
                ),
                **{f"rate_task/{p.stem}": wandb.Image(str(p)) for p in plots if p.suffix == ".png"},
            }
        )
