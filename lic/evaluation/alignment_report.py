"""alignment.csv, alignment.png/pdf and summary.md's alignment section, from per-image rows
(`lic eval --align` at the end of a run, `lic align OUT` on a finished run's folder)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lic.data.files import write_csv_atomic
from lic.evaluation.alignment import COLUMNS, REFERENCE, alignment
from lic.evaluation.report import random_note, with_interval, write_figure
from lic.metrics.registry import metric_info, metric_spec
from lic.weights import random_weights


def networks_note(metrics: Sequence[str], task_weights: str | None) -> str:
    """What alignment.csv's `weights` column says of the metrics' networks: random (a format
    check, as `--task-weights none` makes them), pretrained, or '' when no metric has one
    (PSNR, MS-SSIM)."""
    networked = [metric_info(m).display for m in metrics if metric_spec(m).weights]
    if not networked:
        return ""
    return random_note(" and ".join(networked)) if random_weights(task_weights) else "pretrained"


def alignment_markdown(rows: Sequence[Mapping]) -> str:
    """summary.md's section: per task and outcome, each metric's 2AFC with its paired
    difference to PSNR, and its correlations."""
    lines = ["", "## Metric-task alignment", ""]
    if not rows:
        return "\n".join([*lines, "No coded cells of a machine task to align with.", ""])
    weights = {r["weights"] for r in rows if r["weights"]}
    lines += [
        "Which fidelity metric, computed on the task model's own input and decoded image, "
        "predicts what the model keeps (docs/alignment.md). 2AFC: share of pairs "
        "of decoded versions of an image with different outcomes in which the metric prefers "
        "the better one (chance 0.5); SRCC | bpp: partial Spearman correlation given the "
        f"rate; signed so that positive means aligned. [95% bootstrap interval over images]; "
        f"vs {metric_info(REFERENCE).display}: paired difference on the same resamples.",
        *(f"**Metric networks: {w}.**" for w in sorted(weights)),
        "",
        "| task | outcome | metric | 2AFC | vs PSNR | SRCC | SRCC \\| bpp | KRCC | pairs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["task"], r["outcome"], r["metric"], r["statistic"]): r for r in rows}
    for task, outcome, metric in dict.fromkeys(
        (r["task"], r["outcome"], r["metric"]) for r in rows
    ):
        stat = {
            s: by_key[task, outcome, metric, s] for s in ("2afc", "srcc", "srcc_given_bpp", "krcc")
        }
        vs = "" if metric == REFERENCE else _value(stat["2afc"], "vs_psnr")
        lines.append(
            f"| {task} | {metric_info(outcome).display} | {metric_info(metric).display} | "
            f"{_value(stat['2afc'])} | {vs} | {_value(stat['srcc'])} | "
            f"{_value(stat['srcc_given_bpp'])} | {_value(stat['krcc'])} | {stat['2afc']['n']} |"
        )
    return "\n".join(lines) + "\n"


def _value(row: Mapping, name: str = "value") -> str:
    """A value (or its `vs_psnr` difference, signed) with its interval, two decimals."""
    low, high = ("ci_low", "ci_high") if name == "value" else (f"{name}_ci_low", f"{name}_ci_high")
    text = with_interval(row[name], row[low], row[high], 2)
    return f"+{text}" if name != "value" and row[name] > 0 else text


def _bar(row: Mapping, end: str) -> float:
    """Length of an error bar from the value to the interval's `end` (ci_low or ci_high):
    0 without an interval, or when the value lies beyond that end."""
    bound = row[end]
    if not math.isfinite(bound):
        return 0.0
    return max(0.0, row["value"] - bound if end == "ci_low" else bound - row["value"])


def plot_alignment(out: Path, rows: Sequence[Mapping]) -> list[Path]:
    """alignment.png/pdf: one panel per task, each metric's 2AFC per outcome with its
    interval, chance (0.5) dashed."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["statistic"] == "2afc"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return []
    fig = Figure(figsize=(5.5 * len(tasks), 4))
    for ax, task in zip(fig.subplots(1, len(tasks), squeeze=False)[0], tasks, strict=True):
        here = [r for r in rows if r["task"] == task]
        metrics = list(dict.fromkeys(r["metric"] for r in here))
        outcomes = list(dict.fromkeys(r["outcome"] for r in here))
        width = 0.8 / len(outcomes)
        for k, outcome in enumerate(outcomes):
            values = {r["metric"]: r for r in here if r["outcome"] == outcome}
            x = [i + (k - (len(outcomes) - 1) / 2) * width for i in range(len(metrics))]
            y = [values[m]["value"] for m in metrics]
            errors = [[_bar(values[m], end) for m in metrics] for end in ("ci_low", "ci_high")]
            ax.bar(x, y, width, yerr=errors, capsize=3, label=metric_info(outcome).display)
        ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(metrics)), [metric_info(m).display for m in metrics])
        ax.set_ylim(0, 1)
        ax.set_ylabel("2AFC agreement with the task")
        ax.set_title(f"{task}: which metric predicts the task?")
        ax.legend(fontsize=8, loc="lower right")
    weights = {r["weights"] for r in rows if r["weights"]}
    if weights:
        fig.suptitle("metric networks: " + "; ".join(sorted(weights)), fontsize=9)
    fig.tight_layout()
    return write_figure(fig, out, "alignment")


def write_alignment(
    out: Path,
    per_image: Sequence[Mapping],
    outcomes: Mapping[str, Sequence[str]],
    metrics: Sequence[str],
    resamples: int,
    seed: int,
    weights: str = "",
) -> tuple[str, list[Path]]:
    """Write alignment.csv and its plot to `out`; return summary.md's section and the files."""
    rows = alignment(per_image, outcomes, metrics, resamples, seed, weights)
    table = write_csv_atomic(out / "alignment.csv", rows, COLUMNS, out)
    return alignment_markdown(rows), [table, *plot_alignment(out, rows)]
