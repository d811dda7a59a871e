"""A missing BD value says why (bd.csv `note`), e.g. a single checkpoint against JPEG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lic.evaluation.bd import bd_metric, bd_rate
from lic.evaluation.report import (
    ANCHOR_NOTE,
    INTERVAL_NOTE,
    _in_view,
    bd_sign_lines,
    bd_table,
    markdown,
    reports_line,
    task_figure,
)


def row(codec: str, objective: str, bpp: float, value: float, quality=None, lmbda=None) -> dict:
    return {
        "codec": codec,
        "objective": objective,
        "lambda": lmbda,
        "quality": quality,
        "task": "fidelity",
        "metric": "psnr",
        "bpp": bpp,
        "value": value,
    }


def test_single_checkpoint_gets_a_reason_not_a_bare_nan():
    rows = [row("jpeg", "jpeg", b, v, quality=q) for q, b, v in [(10, 0.3, 26), (50, 0.9, 31)]]
    rows.append(row("bmshj2018-hyperprior", "mse", 0.5, 29.0, lmbda=0.013))
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert math.isnan(entry["bd_rate_percent"]) and "1 point(s)" in entry["note"]


def test_disjoint_curves_and_good_curves():
    rows = [row("jpeg", "jpeg", b, v, quality=q) for q, b, v in [(10, 0.3, 26), (50, 0.9, 31)]]
    rows += [row("webp", "webp", b, v, quality=q) for q, b, v in [(1, 2.0, 40), (9, 3.0, 44)]]
    rows += [row("avif", "avif", b, v, quality=q) for q, b, v in [(1, 0.2, 27), (9, 0.8, 33)]]
    table = {b["curve"]: b for b in bd_table(rows, ("jpeg", "jpeg"))}
    assert "do not overlap" in table["WebP"]["note"]
    assert table["AVIF"]["bd_rate_percent"] < 0
    # AVIF covers 27-33 dB, JPEG 26-31: they share 27-31, 4 of the joint 7 dB
    assert table["AVIF"]["overlap_fraction"] == pytest.approx(4 / 7)
    assert (table["AVIF"]["overlap_low"], table["AVIF"]["overlap_high"]) == (27, 31)
    assert table["AVIF"]["note"].startswith("the curves overlap on 57% of their joint quality")
    assert table["WebP"]["overlap_fraction"] == 0


def test_overlap_note_only_beside_a_bd_rate():
    """A BD-rate that is n/a says why; the overlap caveat would only distract from it."""
    rows = [row("jpeg", "jpeg", b, v, quality=q) for q, b, v in [(10, 0.3, 26), (50, 0.9, 31)]]
    zigzag = [(0.2, 30.0), (0.4, 32.0), (0.6, 31.5), (0.8, 34.0)]  # overlaps JPEG on 30-31 dB
    rows += [row("avif", "avif", b, v, quality=q) for q, (b, v) in enumerate(zigzag)]
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert entry["overlap_fraction"] == pytest.approx(1 / 8)
    assert math.isnan(entry["bd_rate_percent"]) and math.isfinite(entry["bd_metric"])
    assert entry["note"].startswith(
        "BD-rate n/a: the test curve's quality is not strictly monotone"
    )
    assert "overlap on" not in entry["note"]


def test_an_anchor_without_the_metric_gets_a_row_that_says_so():
    """--anchor published:vtm on a run with LPIPS: VTM publishes PSNR and MS-SSIM only."""
    rows = [row("jpeg", "jpeg", b, v, quality=q) for q, b, v in [(10, 0.3, 26), (50, 0.9, 31)]]
    rows += [row("avif", "avif", b, v, quality=q) for q, b, v in [(1, 0.2, 27), (9, 0.8, 33)]]
    rows += [
        row("avif", "avif", b, v, quality=q) | {"metric": "lpips"}
        for q, b, v in [(1, 0.2, 0.3), (9, 0.8, 0.1)]
    ]
    table = {(b["metric"], b["curve"]): b for b in bd_table(rows, ("jpeg", "jpeg"))}
    assert set(table) == {("psnr", "AVIF"), ("lpips", "AVIF")}
    missing = table[("lpips", "AVIF")]
    assert math.isnan(missing["bd_rate_percent"]) and missing["reference_points"] == 0
    assert missing["note"] == "the anchor JPEG has no fidelity lpips curve; no BD against it"


# ---- noisy curves: BD-rate needs quality strictly monotone in rate -------------------------
ZIGZAG = ([0.2, 0.4, 0.6, 0.8], [30.0, 32.0, 31.5, 34.0])  # quality dips at 0.6 bpp
SMOOTH = ([0.2, 0.4, 0.6, 0.8], [29.0, 31.0, 32.5, 33.5])


def test_bd_rate_refuses_a_zigzag_curve_and_bd_metric_does_not():
    with pytest.raises(ValueError, match="test curve's quality is not strictly monotone"):
        bd_rate(*SMOOTH, *ZIGZAG)
    with pytest.raises(ValueError, match="reference curve's quality is not strictly monotone"):
        bd_rate(*ZIGZAG, *SMOOTH)
    # BD-metric integrates quality over log-rate: distinct rates are all it needs
    assert bd_metric(*SMOOTH, *ZIGZAG) == pytest.approx(0.570938, abs=1e-6)  # bjontegaard 1.3
    with pytest.raises(ValueError, match="repeats a rate"):
        bd_metric(*SMOOTH, [0.2, 0.4, 0.4, 0.8], [30.0, 31.0, 32.0, 34.0])


def test_bd_rate_golden_value_and_order_independence():
    value = bd_rate(*SMOOTH, [0.8, 0.2, 0.6, 0.4], [34.0, 30.0, 32.8, 32.0])
    assert value == pytest.approx(bd_rate(*SMOOTH, [0.2, 0.4, 0.6, 0.8], [30.0, 32.0, 32.8, 34.0]))
    assert value == pytest.approx(-23.279674, abs=1e-6)  # bjontegaard 1.3 bd_rate, pchip
    # a decreasing quality axis (a lower-is-better metric) has an inverse too
    assert bd_rate(SMOOTH[0], [-v for v in SMOOTH[1]], SMOOTH[0], [-v for v in SMOOTH[1]]) == 0


def test_bd_table_shows_na_with_the_reason():
    rows = [
        row("jpeg", "jpeg", b, v, quality=q) for q, b, v in zip((1, 2, 3, 4), *SMOOTH, strict=True)
    ]
    rows += [
        row("webp", "webp", b, v, quality=q) for q, b, v in zip((1, 2, 3, 4), *ZIGZAG, strict=True)
    ]
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert math.isnan(entry["bd_rate_percent"]) and math.isfinite(entry["bd_metric"])
    assert "not strictly monotone" in entry["note"] and "BD-rate n/a" in entry["note"]


def test_bd_rate_of_a_distortion_and_the_summary_format():
    from lic.evaluation.report import with_interval

    rate, lpips = [0.2, 0.4, 0.6, 0.8], [0.40, 0.30, 0.22, 0.18]
    better = [v - 0.03 for v in lpips]
    value = bd_rate(rate, lpips, rate, better, higher_better=False)
    assert value < 0
    assert value == pytest.approx(bd_rate(rate, [-v for v in lpips], rate, [-v for v in better]))
    assert with_interval(-12.345, -14.06, -10.21, 1, "%") == "\u221212.3% [\u221214.1, \u221210.2]"
    assert with_interval(31.4159, 31.1, 31.8) == "31.42 [31.1, 31.8]"
    assert with_interval(math.nan, 1.0, 2.0) == "n/a" and with_interval(2.5, None, None) == "2.5"


def test_published_curves_are_cut_to_the_run_s_rates_on_plots():
    """VTM's 0.05-3.6 bpp would squeeze a 0.3-0.6 bpp run into a corner of its panel."""
    vtm = [(0.05, 25.0), (0.2, 29.0), (0.5, 33.0), (1.0, 37.0), (3.6, 45.0)]
    assert _in_view(vtm, [0.3, 0.6]) == [(0.2, 29.0), (0.5, 33.0), (1.0, 37.0)]
    assert _in_view(vtm, [0.6, 0.8]) == [(0.5, 33.0), (1.0, 37.0)]  # no point inside
    assert _in_view(vtm, [0.01, 0.02]) == vtm[:2] and _in_view(vtm, []) == vtm


def test_bd_metric_beside_a_bd_rate_n_a_gives_its_own_reason():
    """Same rates, disjoint qualities: BD-metric is a number, so "do not overlap" is wrong."""
    rates = (0.3, 0.6, 0.9, 1.2)
    rows = [
        row("jpeg", "jpeg", b, v, quality=q)
        for q, (b, v) in enumerate(zip(rates, (26, 28, 31, 33), strict=True))
    ]
    rows += [
        row("avif", "avif", b, v, quality=q)
        for q, (b, v) in enumerate(zip(rates, (40, 41, 43, 44), strict=True))
    ]
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert math.isnan(entry["bd_rate_percent"]) and entry["bd_metric"] == pytest.approx(
        12.8635, abs=1e-4
    )  # pchip, in log-rate
    assert entry["note"] == "BD-rate n/a: the curves share no quality range"


def test_a_curve_of_fewer_than_four_points_gets_a_caution():
    three = [(0.25, 29.5), (0.45, 31.5), (0.7, 33.2)]  # inside JPEG's 29-33.5 dB
    rows = [
        row("jpeg", "jpeg", b, v, quality=q) for q, b, v in zip((1, 2, 3, 4), *SMOOTH, strict=True)
    ]
    rows += [row("avif", "avif", b, v, quality=q) for q, (b, v) in enumerate(three)]
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert math.isfinite(entry["bd_rate_percent"]) and entry["note"] == (
        "this curve has 3 points; BD is defined on 4 or more in the field, so this value is a "
        "rough guide"
    )
    rows = [r for r in rows if r["codec"] == "jpeg"]
    rows += [
        row("avif", "avif", b, v - 0.5, quality=q)
        for q, b, v in zip((1, 2, 3, 4), *SMOOTH, strict=True)
    ]
    (entry,) = bd_table(rows, ("jpeg", "jpeg"))
    assert entry["note"] == ""


def test_summary_says_what_the_sign_of_bd_metric_means():
    assert bd_sign_lines([{"metric": "psnr"}])[2] == (
        "- BD-metric: the mean metric change at equal rate; above 0 is better."
    )
    lines = bd_sign_lines([{"metric": "kl"}, {"metric": "lpips"}, {"metric": "top1"}])
    assert lines[2].endswith(
        "except for lower-is-better metrics (KL to uncompressed, LPIPS): below 0 is better."
    )
    rows = [
        row("jpeg", "jpeg", b, v, quality=q) for q, b, v in zip((1, 2, 3, 4), *SMOOTH, strict=True)
    ]
    rows += [
        row("webp", "webp", b, v, quality=q) for q, b, v in zip((1, 2, 3, 4), *ZIGZAG, strict=True)
    ]
    for r in rows:
        r.update(n_images=2, n_failed=0)
    summary = markdown(rows, bd_table(rows, ("jpeg", "jpeg")), [])
    assert "- BD-rate: the rate change at equal quality; below 0 is better." in summary


def figure_rows() -> list[dict]:
    """ImageNet top-1 (with intervals reaching past 100%) and KL of JPEG and two objectives
    of one learned codec."""
    rows = []
    for metric, start in (("top1", 80.0), ("kl", 0.8)):
        for i, bpp in enumerate((0.2, 0.4, 0.8, 1.6)):
            value = min(start + 6 * i, 99.0) if metric == "top1" else start / (i + 1)
            for codec, objective, shift in (
                ("jpeg", "jpeg", 1.0),
                ("hyper", "mse", 0.8),
                ("hyper", "kl", 0.7),
            ):
                rows.append(
                    row(codec, objective, bpp * shift, value, quality=i)
                    | {
                        "task": "imagenet",
                        "metric": metric,
                        "ci_low": value - 2,
                        "ci_high": value + 2,
                    }
                )
    return rows


def test_panels_markers_legend_and_percent_axes():
    fig = task_figure(figure_rows(), "imagenet", ("jpeg", "jpeg"))
    top1, kl = fig.axes
    assert [top1.get_title(), kl.get_title()] == ["top-1 (%)", "KL to uncompressed (nats)"]
    assert top1.get_ylim()[1] == 100.0 and top1.get_ylim()[0] >= 0  # bars reach 101%
    assert kl.get_ylim()[1] > 0.8
    lines = {line.get_label(): line for line in top1.get_lines()}
    markers = {label: lines[label].get_marker() for label in ("JPEG", "hyper / mse", "hyper / kl")}
    assert markers["hyper / mse"] == markers["hyper / kl"] != markers["JPEG"]  # one per family
    assert lines["JPEG"].get_linestyle() == "--" and lines["hyper / mse"].get_linestyle() == "-"
    assert all(ax.get_legend() is None for ax in fig.axes)  # off the data: one figure legend
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["JPEG", "hyper / mse", "hyper / kl", ANCHOR_NOTE]  # in run order
    assert fig._supxlabel.get_text() == INTERVAL_NOTE  # the footnote, below every panel


def test_a_fidelity_panel_is_titled_by_its_metric_and_unit():
    rows = [
        row("jpeg", "jpeg", b, v, quality=q) | {"metric": "ms_ssim_db"}
        for q, b, v in zip((1, 2, 3, 4), *SMOOTH, strict=True)
    ]
    (ax,) = task_figure(rows, "fidelity").axes
    assert ax.get_title() == "MS-SSIM (dB)"


def test_the_last_line_of_a_run_names_its_reports():
    out = Path("results") / "demo"
    names = [
        "results.csv",
        "results.json",
        "bd.csv",
        "rate_task_voc.png",
        "rate_task_voc.pdf",
        "summary.md",
    ]
    assert reports_line(out, [out / n for n in names]) == (
        f"reports in {out}: results.csv/.json, bd.csv, rate_task_voc.png/.pdf, summary.md"
    )
