"""Tables, Bjontegaard deltas, plots and a Markdown summary of a rate-task run."""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

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

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ResultRow = TypedDict(
    "ResultRow",
    {
        "codec": str,
        "objective": str,
        "lambda": "float | None",  # a learned codec's lambda (`lambda` is a keyword)
        "quality": "int | None",  # a classical or fixed-rate zoo codec's quality
        "level": "int | None",  # a variable-rate codec's level (its lambda is the level's)
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
            values["reasons"] += few_points_caution(values, len(points), len(by_curve[reference]))
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


BD_POINTS = 4
"""Points per curve BD is defined on in the field (Bjontegaard, VCEG-M33: four rates)."""


def few_points_caution(values: dict, points: int, reference_points: int) -> list[str]:
    """A caution beside a BD value computed from a curve of fewer than BD_POINTS points."""
    fewest = min(points, reference_points)
    computed = any(math.isfinite(values[k]) for k in ("bd_rate_percent", "bd_metric"))
    if not computed or fewest >= BD_POINTS:
        return []
    who = "this curve" if points <= reference_points else "the reference"
    return [
        f"{who} has {fewest} points; BD is defined on {BD_POINTS} or more in the field, so "
        "this value is a rough guide"
    ]


def bd_note(row: dict, reasons: list[str] = ()) -> str:
    """Why a BD value is missing, in words a user can act on, each missing value with its
    own reason ('' when both are numbers and nothing needs saying)."""
    rate_na, metric_na = math.isnan(row["bd_rate_percent"]), math.isnan(row["bd_metric"])
    if not (rate_na or metric_na):
        return "; ".join(reasons)
    for key, who in (("points", "this curve"), ("reference_points", "the reference")):
        if row[key] < 2:
            return (
                f"{who} has {row[key]} point(s); BD needs 2 or more (evaluate several "
                "checkpoints/lambdas or qualities)"
            )
    reasons = list(reasons)
    if rate_na and metric_na and not reasons:
        return "the two curves do not overlap in rate or in quality"
    if metric_na and not any(r.startswith("BD-metric n/a") for r in reasons):
        reasons.insert(0, "BD-metric n/a: the curves share no rate range")
    if rate_na and not any(r.startswith("BD-rate n/a") for r in reasons):
        reasons.insert(0, "BD-rate n/a: the curves share no quality range")
    return "; ".join(reasons)


def bd_sign_lines(bd: list[dict]) -> list[str]:
    """What the sign of each BD number means, naming the run's lower-is-better metrics."""
    lower = sorted(
        {metric_info(b["metric"]).display for b in bd if metric_info(b["metric"]).lower_better}
    )
    metric = "- BD-metric: the mean metric change at equal rate; above 0 is better"
    if lower:
        metric += f", except for lower-is-better metrics ({', '.join(lower)}): below 0 is better"
    return ["", "- BD-rate: the rate change at equal quality; below 0 is better.", metric + ".", ""]


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


MARKERS = "osD^v<>phP*Xd"
"""One marker shape per codec family (its curves of every objective share it), in every
panel of every figure, so that curves differ by more than colour (print, colour blindness)."""
PUBLISHED_MARKERS = "x+1234"  # published curves: grey, line markers no codec uses
INTERVAL_NOTE = "bars: 95% bootstrap interval over images"
ANCHOR_NOTE = "dashed: the curve BD values refer to"


def curve_styles(rows: list[dict]) -> tuple[dict[str, str], dict[Curve, str]]:
    """(codec -> marker, curve -> colour), fixed by the names alone: the same in every panel."""
    run = sorted({(r["codec"], r["objective"]) for r in rows if r["codec"] != "uncompressed"})
    codecs = sorted({codec for codec, _ in run})
    markers = dict(zip(codecs, itertools.cycle(MARKERS), strict=False))
    colours = {curve: f"C{i % 10}" for i, curve in enumerate(sorted(run, key=curve_label))}
    return markers, colours


def plot(
    rows: list[dict],
    out: Path,
    anchor: Curve | None = None,
    convention: dict[str, str] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
    random: dict[str, str] | None = None,
) -> list[Path]:
    """rate_task_<task>.png/.pdf (`task_figure`). Figures are drawn without pyplot (no GUI
    backend, no global figure state; its import was a quarter of the report's time)."""
    written = []
    for task in sorted({r["task"] for r in rows}):
        random_model = (random or {}).get(task)
        fig = task_figure(rows, task, anchor, convention, published, random_model)
        written += write_figure(fig, out, f"rate_task_{task}")
    return written


def write_figure(fig: Figure, out: Path, stem: str) -> list[Path]:
    """`out/<stem>.png` (150 dpi) and `.pdf`, each rendered in memory and written atomically."""
    written = []
    for suffix in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=150)
        written.append(write_bytes_atomic(out / f"{stem}.{suffix}", buffer.getvalue(), out))
    return written


def task_figure(
    rows: list[dict],
    task: str,
    anchor: Curve | None = None,
    convention: dict[str, str] | None = None,
    published: dict[tuple[str, str], dict] | None = None,
    random_model: str | None = None,
) -> Figure:
    """One panel per metric of `task`, titled by it; one curve per objective/baseline, each
    point with its 95% bootstrap interval; the curves BD numbers refer to dashed. The legend
    and the footnote sit outside the panels; percentages stop at 100. A task whose model
    has random weights (`random_model`) says so under its title."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    task_rows = [r for r in rows if r["task"] == task]
    metrics = list(dict.fromkeys(r["metric"] for r in task_rows))
    fig = Figure(figsize=(4.6 * len(metrics) + 2.6, 4.2), layout="constrained")
    fig.suptitle(task if random_model is None else f"{task}\n{random_note(random_model)}")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    styles, all_curves = curve_styles(rows), curves(rows)
    intervals = dashed = False
    for ax, metric in zip(axes, metrics, strict=True):
        by_curve = all_curves.get((task, metric), {})
        fixed = (published or {}).get((task, metric), {})
        anchors = set(references({**by_curve, **fixed}, anchor).values())
        dashed |= bool(anchors & {*by_curve, *fixed})
        intervals |= _plot_curves(ax, task_rows, metric, by_curve, anchors, styles)
        span = [bpp for points in by_curve.values() for bpp, _ in points]
        for (curve, points), marker in zip(fixed.items(), itertools.cycle(PUBLISHED_MARKERS)):
            rate, value = zip(*_in_view(points, span), strict=True)
            style = "--" if curve in anchors else "-."
            ax.plot(rate, value, style, color="0.5", marker=marker, markersize=5, linewidth=1,
                    label=curve_label(curve))  # fmt: skip
        if fixed and span:  # the run's rates fill the panel, published curves cut there
            margin = 0.05 * (max(span) - min(span) or max(span))
            ax.set_xlim(min(span) - margin, max(span) + margin)
        for r in task_rows:
            if r["codec"] == "uncompressed" and r["metric"] == metric:
                if metric_info(metric).full_reference:  # a perfect score, not a level
                    continue
                ax.axhline(r["value"], color="gray", linestyle=":", label="uncompressed")
        info = metric_info(metric)
        if info.unit == "%":  # margins must not show impossible scores
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 100.0))
        ax.set_xlabel(rate_axis_label(convention))
        ax.set_ylabel(info.label())
        ax.set_title(info.label())
        ax.grid(alpha=0.3)
    entries = {}
    for ax in axes:  # one legend for all panels: the same curve has the same style in each
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if dashed:
        entries[ANCHOR_NOTE] = Line2D([], [], color="0.3", linestyle="--")
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=8)
    if intervals:
        fig.supxlabel(INTERVAL_NOTE, fontsize=7, color="gray")
    return fig


def _plot_curves(
    ax: Axes, rows: list[dict], metric: str, by_curve: dict, anchors: set, styles: tuple
) -> bool:
    """The run's curves of one panel with their intervals; whether any point has one."""
    markers, colours = styles
    intervals = False
    for curve, points in by_curve.items():
        rate, value = zip(*points, strict=True)
        style = "--" if curve in anchors else "-"
        colour = colours.get(curve)
        ax.plot(rate, value, style, marker=markers.get(curve[0], "o"), markersize=5,
                color=colour, label=curve_label(curve))  # fmt: skip
        low, high = _point_intervals(rows, curve, metric, points)
        if np.isfinite(low).any():  # the 95% bootstrap interval of every point
            intervals = True
            ax.errorbar(
                rate,
                value,
                yerr=np.stack([np.subtract(value, low), np.subtract(high, value)]),
                fmt="none",
                ecolor=colour,
                elinewidth=0.8,
                capsize=2,
            )
    return intervals


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
            *bd_sign_lines(bd),
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
) -> list[Path]:
    """results.csv/json, bd.csv (against `anchor`), plots and summary.md in `out`, each
    stating the rate `convention` (`rate_convention`); `published` curves
    (`published_points`) are drawn on the plots and may be the anchor; `sections` are
    added to summary.md (metric-task alignment). Returns the files written."""
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
    tables = ("results.csv", "results.json", "per_image.csv", "bd.csv")
    written = [*(out / name for name in tables), *plots, out / "summary.md"]
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
    return written


def reports_line(out: Path, paths: Sequence[Path]) -> str:
    """The run's last line: 'reports in OUT: results.csv, ..., rate_task_voc.png/.pdf'."""
    suffixes: dict[str, list[str]] = {}
    for path in paths:
        suffixes.setdefault(path.stem, []).append(path.suffix)
    return f"reports in {out}: " + ", ".join(f"{s}{'/'.join(x)}" for s, x in suffixes.items())
