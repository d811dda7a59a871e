"""`lic bd` and `lic curves`: BD methods equal to the bjontegaard package, curves from anywhere
(published catalogue, CompressAI/flat JSON, CSV, a lic results.csv), one-line errors."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import bjontegaard as bj
import numpy as np
import pytest

from lic.cli import BD_METHODS, main
from lic.evaluation import curves as curves_module
from lic.evaluation.bd import METHODS, MIN_OVERLAP, bd_metric, bd_overlap, bd_rate
from lic.evaluation.curves import BD_COLUMNS, load_catalogue, load_curve

CSV_COLUMNS = [
    "curve",
    "anchor",
    "metric",
    "method",
    "bd_rate",
    "bd_metric",
    "overlap_low",
    "overlap_high",
    "overlap_fraction",
    "n_points_test",
    "n_points_anchor",
]
HAS_CATALOGUE = curves_module.CATALOGUE.is_file()


def rd_curve(rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """4-6 points of a plausible, strictly monotone Kodak-like curve (bpp, PSNR)."""
    n = int(rng.integers(4, 7))
    bpp = np.sort(rng.uniform(0.08, 1.6, n)) + 0.01 * np.arange(n)
    psnr = 27 + 4.5 * np.log2(bpp / 0.1) + shift + rng.uniform(-0.2, 0.2, n)
    return bpp, np.maximum.accumulate(psnr) + 0.01 * np.arange(n)


def curve_pair(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [*rd_curve(rng), *rd_curve(rng, shift=rng.uniform(-1.5, 1.5))]


def package(which, points, method: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return which(*points, method, require_matching_points=False, min_overlap=0)


def package_overlap(points, rate: bool) -> float:
    """The package's own overlap fraction, read from its warning (2 decimals of a percent)."""
    which = bj.bd_psnr if rate else bj.bd_rate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        which(*points, "pchip", require_matching_points=False, min_overlap=1.01)
    text = " ".join(str(w.message) for w in caught)
    return float(re.search(r"overlap: '([\d.]+)'", text).group(1)) / 100


# ---- the three methods against the reference implementation -------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_bd_equals_the_bjontegaard_package(seed, method):
    points = curve_pair(seed)
    assert bd_rate(*points, method=method) == pytest.approx(
        package(bj.bd_rate, points, method), rel=1e-9
    )
    assert bd_metric(*points, method=method) == pytest.approx(
        package(bj.bd_psnr, points, method), rel=1e-9
    )


@pytest.mark.parametrize("seed", range(6))
def test_overlap_is_the_package_s(seed):
    points = curve_pair(seed)
    rr, qr, rt, qt = points
    quality = bd_overlap(*points, axis="quality")
    assert (quality.low, quality.high) == (max(qr.min(), qt.min()), min(qr.max(), qt.max()))
    union = max(qr.max(), qt.max()) - min(qr.min(), qt.min())
    assert quality.fraction == pytest.approx((quality.high - quality.low) / union, rel=1e-12)
    assert quality.fraction == pytest.approx(package_overlap(points, rate=False), abs=1e-4)
    rate = bd_overlap(*points, axis="rate")  # low/high in bpp, the fraction in log-rate
    assert rate.low == pytest.approx(max(rr.min(), rt.min()), rel=1e-12)
    assert rate.fraction == pytest.approx(package_overlap(points, rate=True), abs=1e-4)


def test_disjoint_curves_have_no_overlap_and_no_bd():
    low, high = ([0.1, 0.2, 0.4], [26.0, 28.0, 30.0]), ([0.5, 0.9, 1.5], [31.0, 33.0, 35.0])
    assert bd_overlap(*low, *high) == (pytest.approx(math.nan, nan_ok=True),) * 2 + (0.0,)
    assert math.isnan(bd_rate(*low, *high, method="akima"))
    assert MIN_OVERLAP == 0.75


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_rate_factor_is_recovered_exactly(method):
    """The same qualities at 0.8x the rate: -20% whatever the interpolant (the cubic fit is
    centred, so even a narrow quality range keeps full precision)."""
    rate, quality = np.array([0.1, 0.2, 0.35, 0.6, 0.9]), np.array([30.0, 30.4, 30.9, 31.1, 31.3])
    assert bd_rate(rate, quality, 0.8 * rate, quality, method=method) == pytest.approx(
        -20.0, rel=1e-11
    )


def test_cubic_needs_four_points_and_every_method_keeps_the_checks():
    three = ([0.2, 0.4, 0.8], [29.0, 31.0, 33.0])
    with pytest.raises(ValueError, match="cubic BD needs 4 points"):
        bd_rate(*three, *three, method="cubic")
    assert bd_rate(*three, *three, method="akima") == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_metric(*three, *three, method="linear")
    zigzag = ([0.2, 0.4, 0.6, 0.8], [30.0, 32.0, 31.5, 34.0])
    smooth = ([0.2, 0.4, 0.6, 0.8], [29.0, 31.0, 32.5, 33.5])
    for method in METHODS:
        with pytest.raises(ValueError, match="not strictly monotone"):
            bd_rate(*smooth, *zigzag, method=method)
    assert BD_METHODS == METHODS


# ---- curves from files ----------------------------------------------------------------------
@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An anchor and three tests in the formats `lic bd` reads, points from curve_pair(0/1)."""
    rr, qr, rt, qt = curve_pair(0)
    _, _, r2, q2 = curve_pair(1)
    out = {
        "anchor": tmp_path / "anchor.json",
        "flat": tmp_path / "flat.json",
        "table": tmp_path / "table.csv",
    }
    ms = 1 - 10 ** (-(qr - 15) / 10)  # an MS-SSIM-like column
    out["anchor"].write_text(
        json.dumps(
            {
                "name": "Anchor",
                "results": {"bpp": rr.tolist(), "psnr-rgb": qr.tolist(), "ms-ssim": ms.tolist()},
            }
        )
    )
    out["flat"].write_text(json.dumps({"name": "Flat", "bpp": rt.tolist(), "psnr": qt.tolist()}))
    with out["table"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["bpp", "PSNR", "ms_ssim"])
        writer.writerows([b, q, 0.99] for b, q in zip(r2, q2, strict=True))
    return out


def results_csv(path: Path, tasks=("fidelity",), learned=("bitstream", "zeros", "images")) -> Path:
    """A lic results.csv: JPEG and a learned curve (rate counted as `learned` says:
    rate_source, padding, rate_mean), an uncompressed row, per task."""
    fields = ["codec", "objective", "lambda", "quality", "task", "metric", "bpp", "value"]
    fields += ["rate_source", "padding", "rate_mean"]
    rows = []
    for task in tasks:
        rows.append(["uncompressed", "uncompressed", "", "", task, "psnr", "", "100.0"])
        rows[-1] += ["none", "", ""]
        for q, b, v in [(10, 0.3, 26.0), (50, 0.9, 31.0), (90, 2.0, 37.0)]:
            rows.append(["jpeg", "jpeg", "", q, task, "psnr", b, v, "bitstream", "", "images"])
            ms_ssim = 1 - 10 ** (-(v - 14) / 10)
            rows.append(
                ["jpeg", "jpeg", "", q, task, "ms_ssim", b, ms_ssim, "bitstream", "", "images"]
            )
        for lmbda, b, v in [(0.0018, 0.15, 27.5), (0.0067, 0.4, 31.0), (0.025, 0.9, 34.5)]:
            rows.append(["bmshj2018-hyperprior", "mse", lmbda, "", task, "psnr", b, v, *learned])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_lic_bd_on_json_csv_and_results_matches_the_package(files, tmp_path, capsys):
    results = results_csv(tmp_path / "results.csv")
    out = tmp_path / "bd.csv"
    tests = [str(files["flat"]), str(files["table"]), f"{results}:bmshj2018-hyperprior / mse"]
    code = main(["bd", *tests, "--anchor", str(files["anchor"]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "wrote" in printed and "\u2212" in printed  # true minus signs
    fields, rows = read_rows(out)
    assert fields == CSV_COLUMNS == BD_COLUMNS
    anchor = curve_pair(0)[:2]
    expected = [curve_pair(0)[2:], curve_pair(1)[2:], ([0.15, 0.4, 0.9], [27.5, 31.0, 34.5])]
    for row, spec, test in zip(rows, tests, expected, strict=True):
        points = [*anchor, *map(np.asarray, test)]
        assert (row["curve"], row["anchor"]) == (spec, str(files["anchor"]))
        assert (row["metric"], row["method"]) == ("psnr", "pchip")
        assert float(row["bd_rate"]) == pytest.approx(package(bj.bd_rate, points, "pchip"))
        assert float(row["bd_metric"]) == pytest.approx(package(bj.bd_psnr, points, "pchip"))
        overlap = bd_overlap(*points)
        assert float(row["overlap_fraction"]) == pytest.approx(overlap.fraction, rel=1e-12)
        assert float(row["overlap_low"]) == pytest.approx(overlap.low, rel=1e-12)
        assert (int(row["n_points_test"]), int(row["n_points_anchor"])) == (
            len(test[0]),
            len(anchor[0]),
        )


def test_a_value_that_cannot_be_had_is_empty_with_a_note(files, tmp_path, capsys):
    zigzag = tmp_path / "zigzag.json"
    zigzag.write_text(json.dumps({"bpp": [0.2, 0.4, 0.6, 0.8], "psnr": [30, 32, 31.5, 34]}))
    far = tmp_path / "far.csv"
    far.write_text("bpp,psnr\n5,60\n6,62\n")
    out = tmp_path / "bd.csv"
    code = main(["bd", str(zigzag), str(far), "--anchor", str(files["anchor"]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    _, (noisy, disjoint) = read_rows(out)
    assert noisy["bd_rate"] == "" and noisy["bd_metric"] != ""
    assert f"note: {zigzag}: no BD-rate: the test curve's quality is not strictly" in printed
    assert disjoint["bd_rate"] == disjoint["bd_metric"] == disjoint["overlap_low"] == ""
    assert disjoint["overlap_fraction"] == "0.0"
    assert f"note: {far}: no BD-rate: the curves do not overlap in PSNR" in printed


def test_a_narrow_overlap_gets_a_note(files, tmp_path, capsys):
    rr, qr = curve_pair(0)[:2]
    narrow = tmp_path / "narrow.csv"  # the anchor's top two points' quality range
    narrow.write_text(f"bpp,psnr\n{rr[-2] * 0.9},{qr[-2]}\n{rr[-1] * 0.9},{qr[-1]}\n")
    assert main(["bd", str(narrow), "--anchor", str(files["anchor"])]) == 0
    printed = capsys.readouterr().out
    fraction = bd_overlap(rr, qr, rr[-2:] * 0.9, qr[-2:]).fraction
    assert fraction < MIN_OVERLAP
    assert f"note: {narrow}: narrow overlap: BD-rate over" in printed
    assert f"{fraction:.0%} of the joint PSNR range" in printed and "(< 75%, where" in printed


def test_ms_ssim_metrics_cubic_and_akima(files, tmp_path):
    out = tmp_path / "bd.csv"
    argv = ["bd", str(files["table"]), "--anchor", str(files["anchor"]), "--out", str(out)]
    assert main([*argv, "--metric", "ms_ssim_db", "--method", "akima"]) == 0
    _, (row,) = read_rows(out)
    anchor = json.loads(files["anchor"].read_text())["results"]
    db = -10 * np.log10(1 - np.asarray(anchor["ms-ssim"]))
    test = load_curve(str(files["table"]), "ms_ssim_db")
    assert row["metric"] == "ms_ssim_db" and row["method"] == "akima"
    points = [anchor["bpp"], db, test.bpp, test.values]
    assert float(row["bd_metric"]) == pytest.approx(package(bj.bd_psnr, points, "akima"))
    assert main([*argv, "--method", "cubic", "--overwrite"]) == 0
    _, (row,) = read_rows(out)
    points = [anchor["bpp"], anchor["psnr-rgb"], *curve_pair(1)[2:]]
    assert float(row["bd_rate"]) == pytest.approx(package(bj.bd_rate, points, "cubic"), rel=1e-9)


def test_a_results_curve_counted_unlike_the_field_gets_a_note(files, tmp_path, capsys):
    """lic bd on RESULTS.csv:CURVE says when that curve's rate is not eval_model's count."""
    field = results_csv(tmp_path / "field.csv")
    assert load_curve(f"{field}:bmshj2018-hyperprior/mse", "psnr").caveat == ""
    assert load_curve(f"{field}:JPEG", "psnr").caveat == ""
    other = results_csv(tmp_path / "other.csv", learned=("estimate", "replicate", "pixels"))
    spec = f"{other}:bmshj2018-hyperprior/mse"
    assert main(["bd", spec, "--anchor", str(files["anchor"])]) == 0
    printed = capsys.readouterr().out
    assert (
        f"note: {spec}: its rates are likelihood estimates, not coded bitstreams; it pads by "
        "repeating edges, not with eval_model's zeros; its bpp is total bits over total "
        "pixels, not the mean over images"
    ) in printed
    old = tmp_path / "old.csv"  # before the rate convention: no such columns
    old.write_text(
        "\n".join(",".join(line.split(",")[:8]) for line in field.read_text().splitlines())
    )
    assert "no rate_source column" in load_curve(f"{old}:JPEG", "psnr").caveat


def test_results_csv_curves_by_label_or_codec_objective_and_task(tmp_path):
    results = results_csv(tmp_path / "results.csv", tasks=("fidelity", "consistency"))
    with pytest.raises(Exception, match="pick one with --task") as err:
        load_curve(f"{results}:JPEG", "psnr")
    assert getattr(err.value, "exit_code", None) == 2
    by_label = load_curve(f"{results}:JPEG", "psnr", task="fidelity")
    by_name = load_curve(f"{results}:jpeg/jpeg", "psnr", task="fidelity")
    assert by_label.bpp.tolist() == by_name.bpp.tolist() == [0.3, 0.9, 2.0]
    assert by_label.values.tolist() == [26.0, 31.0, 37.0]
    learned = load_curve(f"{results}:bmshj2018-hyperprior/mse", "psnr", task="consistency")
    assert learned.values.tolist() == [27.5, 31.0, 34.5]
    derived = load_curve(f"{results}:JPEG", "ms_ssim_db", task="fidelity")
    assert derived.values == pytest.approx([12.0, 17.0, 23.0])


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("{not json", ".json", "not JSON"),
        ('{"results": {"psnr": [1, 2]}}', ".json", "no bpp list"),
        ('{"bpp": [0.1, 0.2, 0.3], "psnr": [30, 31]}', ".json", "3 bpp values but 2 psnr"),
        ('{"bpp": [0.1], "psnr": [30]}', ".json", "1 point(s) with psnr; BD needs 2"),
        ('{"bpp": [0.1, 0.2], "psnr": [30, "x"]}', ".json", "'psnr' holds 'x', not a number"),
        ('{"bpp": [0.1, 0.2], "lpips": [0.3, 0.2]}', ".json", "no psnr values (metrics: lpips)"),
        ('{"bpp": [0.1, -0.2], "psnr": [30, 31]}', ".json", "bpp must be positive"),
        ("rate,psnr\n0.1,30\n0.2,31\n", ".csv", "no 'bpp' column"),
        ("bpp,psnr\n0.1,30\n0.2,abc\n", ".csv", "'psnr' holds 'abc', not a number"),
        ("bpp,psnr\n0.1,30\n0.2,31\n", ".txt", "expected published:NAME, a .json or .csv"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(files, tmp_path, capsys, content, suffix, message):
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(content)
    assert main(["bd", str(bad), "--anchor", str(files["anchor"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_bad_specs_exit_2_with_one_line(files, tmp_path, capsys):
    results = results_csv(tmp_path / "results.csv")
    cases = [
        ([str(tmp_path / "missing.json")], "no such file"),
        ([str(results)], "is a lic results.csv; name one of its curves"),
        ([f"{results}:WebP"], "has no curve 'WebP'; its curves: JPEG, bmshj2018-hyperprior"),
    ]
    for argv, message in cases:
        assert main(["bd", *argv, "--anchor", str(files["anchor"])]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert main(["bd", str(files["flat"]), "--anchor", "x", "--method", "spline"]) == 2
    assert "invalid choice: 'spline'" in capsys.readouterr().err  # argparse: usage + error
    out = tmp_path / "exists.csv"
    out.write_text("")
    assert (
        main(["bd", str(files["flat"]), "--anchor", str(files["anchor"]), "--out", str(out)]) == 2
    )
    assert "exists (pass --overwrite" in capsys.readouterr().err


# ---- the catalogue ------------------------------------------------------------------------
def catalogue(path: Path) -> Path:
    record = {
        "kind": "learned",
        "label": "Test codec",
        "source": {"repository": "someone/repo", "commit": "0123456789abcdef", "licence": "MIT"},
    }
    curves = [
        {**record, "name": "anchor", "kind": "classical", "points": {"bpp": [0.1, 0.5, 1.0],
         "psnr": [27.0, 32.0, 35.0], "ms_ssim": [0.9, 0.97, 0.985]}},
        {**record, "name": "mine", "points": {"bpp": [0.12, 0.45, 0.9],
         "psnr": [28.0, 32.5, 35.5]}},
    ]  # fmt: skip
    path.write_text(json.dumps({"format": 1, "dataset": {"name": "kodak"}, "curves": curves}))
    return path


def test_published_curves_from_a_catalogue(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(curves_module, "CATALOGUE", catalogue(tmp_path / "kodak.json"))
    mine = load_curve("published:mine", "psnr")
    assert mine.record["label"] == "Test codec" and "someone/repo@0123456" in mine.source
    with pytest.raises(Exception, match="known: published:anchor, published:mine"):
        load_curve("published:theirs", "psnr")
    assert main(["bd", "published:mine", "--anchor", "published:anchor"]) == 0
    assert main(["curves", "--metric", "ms-ssim"]) == 0
    printed = capsys.readouterr().out
    assert "published:anchor" in printed.split("curves --metric")[-1]
    listed = printed.split("published curve(s)")[-1]
    assert "published:anchor" in listed and "published:mine" not in listed
    assert "someone/repo@0123456" in listed and "MIT" in listed
    (tmp_path / "v2.json").write_text(json.dumps({"format": 2, "curves": []}))
    with pytest.raises(Exception, match="catalogue format 2; lic reads 1"):
        load_catalogue(tmp_path / "v2.json")


@pytest.mark.skipif(not HAS_CATALOGUE, reason="lic/data/published/kodak.json not there yet")
def test_mlicpp_against_vtm_is_the_package_s_bd_rate(tmp_path):
    records = {c["name"]: c["points"] for c in load_catalogue()["curves"]}
    out = tmp_path / "bd.csv"
    argv = ["bd", "published:mlicpp", "--anchor", "published:vtm", "--method", "pchip"]
    assert main([*argv, "--out", str(out)]) == 0
    _, (row,) = read_rows(out)
    vtm, mlicpp = records["vtm"], records["mlicpp"]
    points = [vtm["bpp"], vtm["psnr"], mlicpp["bpp"], mlicpp["psnr"]]
    assert float(row["bd_rate"]) == pytest.approx(package(bj.bd_rate, points, "pchip"), rel=1e-9)
    assert float(row["bd_metric"]) == pytest.approx(package(bj.bd_psnr, points, "pchip"), rel=1e-9)


@pytest.mark.skipif(not HAS_CATALOGUE, reason="lic/data/published/kodak.json not there yet")
def test_lic_curves_lists_every_catalogue_name(capsys):
    assert main(["curves"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line}
    names = {f"published:{c['name']}" for c in load_catalogue()["curves"]}
    assert names <= listed


# ---- no torch, and labels as lic's reports print them --------------------------------------
def test_curves_and_lic_bd_load_no_torch(files):
    code = (
        "import sys, lic.cli\n"
        f"assert lic.cli.main(['bd', {str(files['flat'])!r}, '--anchor', "
        f"{str(files['anchor'])!r}]) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_labels_are_the_reports_labels():
    from lic.codecs.classical import CLASSICAL_CODECS
    from lic.evaluation.coders import ZOO_PREFIX
    from lic.evaluation.report import curve_label

    labels = {k: c.label for k, c in CLASSICAL_CODECS.items()}
    assert labels == curves_module.CLASSICAL_LABELS
    assert curves_module.ZOO_PREFIX == ZOO_PREFIX
    for curve in [("jxl", "jxl"), ("compressai:mbt2018-mean", "mse"), ("mlicpp", "lpips")]:
        assert curves_module.curve_label(*curve) == curve_label(curve)
