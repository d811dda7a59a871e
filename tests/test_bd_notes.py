"""A missing BD value says why (bd.csv `note`), e.g. a single checkpoint against JPEG."""

from __future__ import annotations

import math

from lic.evaluation.report import bd_table


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
    assert table["AVIF"]["note"] == "" and table["AVIF"]["bd_rate_percent"] < 0
