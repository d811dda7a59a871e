"""Tables, Bjontegaard deltas, plots and a Markdown summary of a rate-task run."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from lic.evaluation.bd import bd_metric, bd_rate

UNITS = {
    "top1": "%",
    "top5": "%",
    "miou": "%",
    "pixel_acc": "%",
    "map": "%",
    "map50": "%",
    "top1_agreement": "%",
    "kl": "nats",
    "accuracy": "%",
    "precision": "%",
    "recall": "%",
    "f1": "%",
    "yes_ratio": "%",
    "unparsed": "%",
}
LOWER_BETTER = {"kl", "unparsed"}
NOT_A_QUALITY = {"yes_ratio"}  # POPE's bias diagnostic: plotted, no BD numbers
COLUMNS = [
    "codec",
    "objective",
    "lambda",
    "quality",
    "task",
    "metric",
    "bpp",
    "value",
    "n_images",
    "n_failed",
    "rate_source",
    "checkpoint",
]


BASELINES = ("jpeg", "webp")
Curve = tuple[str, str]  # (codec, objective)


def curve_label(curve: Curve) -> str:
    codec, objective = curve
    return codec.upper() if codec in BASELINES else f"{codec} / {objective}"


def curves(rows: list[dict]) -> dict[tuple[str, str], dict[Curve, list[tuple[float, float]]]]:
    """(task, metric) -> (codec, objective) -> sorted (bpp, value) points, curves in row
    order; the uncompressed reference is not a curve."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["bpp"] is not None and row["codec"] != "uncompressed":
            curve = (row["codec"], row["objective"])
            out[(row["task"], row["metric"])][curve].append((row["bpp"], row["value"]))
    return {k: {curve: sorted(points) for curve, points in v.items()} for k, v in out.items()}


def bd_table(rows: list[dict]) -> list[dict]:
    """BD-rate and BD-metric of every curve against the `mse` curve of the same codec (or,
    for baselines, of the first codec with one)."""
    table = []
    for (task, metric), by_curve in sorted(curves(rows).items()):
        if metric in NOT_A_QUALITY:
            continue
        references = {codec: (codec, obj) for codec, obj in by_curve if obj == "mse"}
        if not references:
            continue
        for curve, points in sorted(by_curve.items(), key=lambda item: curve_label(item[0])):
            reference = references.get(curve[0], next(iter(references.values())))
            if curve == reference:
                continue
            ref_rate, ref_value = zip(*by_curve[reference], strict=True)
            rate, value = zip(*points, strict=True)
            sign = -1.0 if metric in LOWER_BETTER else 1.0  # BD-rate wants "higher is better"
            table.append(
                {
                    "task": task,
                    "metric": metric,
                    "curve": curve_label(curve),
                    "reference": curve_label(reference),
                    "bd_rate_percent": bd_rate(
                        ref_rate, [sign * v for v in ref_value], rate, [sign * v for v in value]
                    ),
                    "bd_metric": bd_metric(ref_rate, ref_value, rate, value),
                    "points": len(points),
                    "reference_points": len(ref_rate),
                }
            )
    return table


def plot(rows: list[dict], out: Path) -> list[Path]:
    """rate_task_<task>.png/.pdf: one panel per metric, one curve per objective/baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_task = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    all_curves = curves(rows)
    for task, task_rows in sorted(by_task.items()):
        metrics = list(dict.fromkeys(r["metric"] for r in task_rows))
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for curve, points in all_curves.get((task, metric), {}).items():
                rate, value = zip(*points, strict=True)
                style = "--" if curve[0] in BASELINES else "-"
                ax.plot(rate, value, style, marker="o", markersize=4, label=curve_label(curve))
            for r in task_rows:
                if r["codec"] == "uncompressed" and r["metric"] == metric:
                    ax.axhline(r["value"], color="gray", linestyle=":", label="uncompressed")
            ax.set_xlabel("rate (bits per pixel)")
            ax.set_ylabel(f"{metric} ({UNITS.get(metric, '')})")
            ax.set_title(f"{task}: {metric}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        for suffix in ("png", "pdf"):
            path = out / f"rate_task_{task}.{suffix}"
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)
    return written


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def markdown(rows: list[dict], bd: list[dict], cells: list[dict]) -> str:
    lines = [
        "# Rate-task results",
        "",
        "| task | metric | codec | objective | lambda / quality | bpp | value | n | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        rows, key=lambda r: (r["task"], r["metric"], r["codec"], r["objective"], r["bpp"] or 0)
    ):
        point = r["lambda"] if r["lambda"] is not None else r["quality"]
        lines.append(
            f"| {r['task']} | {r['metric']} | {r['codec']} | {r['objective']} | "
            f"{_fmt(point)} | {_fmt(r['bpp'])} | {_fmt(r['value'])} | "
            f"{r['n_images']} | {r['n_failed']} |"
        )
    lines += ["", "## Bjontegaard deltas against the MSE curve", ""]
    if bd:
        lines += ["| task | metric | curve | BD-rate (%) | BD-metric |", "|---|---|---|---|---|"]
        lines += [
            f"| {b['task']} | {b['metric']} | {b['curve']} | {_fmt(b['bd_rate_percent'])}"
            f" | {_fmt(b['bd_metric'])} |"
            for b in bd
        ]
    else:
        lines.append("No curve with objective `mse` (or too few points): no BD table.")
    failures = [f for cell in cells for f in cell["failures"]]
    lines += ["", f"## Failures: {len(failures)}", ""] + [f"- {f}" for f in failures[:100]]
    if len(failures) > 100:
        lines.append(f"- ... and {len(failures) - 100} more (results.json lists all)")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, rows: list[dict], cells: list[dict], use_wandb: bool = False) -> None:
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    failures = [
        {"cell": c["meta"]["key"], "task": c["meta"]["task"], "error": e}
        for c in cells
        for e in c["failures"]
    ]
    (out / "results.json").write_text(json.dumps({"rows": rows, "failures": failures}, indent=1))
    bd = bd_table(rows)
    with (out / "bd.csv").open("w", newline="") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=[
                "task",
                "metric",
                "curve",
                "reference",
                "bd_rate_percent",
                "bd_metric",
                "points",
                "reference_points",
            ],
        )
        writer.writeheader()
        writer.writerows(bd)
    plots = plot(rows, out)
    (out / "summary.md").write_text(markdown(rows, bd, cells))
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
