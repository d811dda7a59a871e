"""IQA benchmark: statistics against scipy, 2AFC by hand, readers on official layouts, the
score cache, and the ML-CLIPSim ablation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import photo_like, save_rgb
from scipy import stats
from scipy.io import savemat

import lic.iqa.benchmark as benchmark
from lic.data.images import DatasetLayoutError
from lic.iqa import (
    PairSet,
    bootstrap_interval,
    evaluate,
    krcc,
    majority_accuracy,
    plcc,
    read_dataset,
    srcc,
    two_afc,
)
from lic.iqa.ablation import ablate
from lic.iqa.stats import logistic4

X = np.array([0.91, 0.35, 0.62, 0.14, 0.77, 0.58, 0.23, 0.49, 0.88, 0.05])
Y = np.array([4.6, 2.1, 3.4, 1.2, 4.1, 3.5, 1.6, 2.7, 4.4, 1.1])


def test_rank_correlations_equal_scipy():
    assert srcc(X, Y) == pytest.approx(stats.spearmanr(X, Y).statistic)
    assert krcc(X, Y) == pytest.approx(stats.kendalltau(X, Y).statistic)


def test_plcc_fits_the_four_parameter_logistic():
    y = logistic4(X, 5.0, 1.0, 0.5, 0.1)
    assert plcc(X, y) == pytest.approx(1.0, abs=1e-6)  # exactly logistic: perfect after fit
    assert stats.pearsonr(X, y).statistic < 0.99  # ...which the raw correlation is not
    assert plcc(X, Y) >= stats.pearsonr(X, Y).statistic - 1e-9
    assert plcc(-X, Y) == pytest.approx(plcc(X, Y), abs=1e-4)  # fits decreasing ones too


def test_plcc_needs_more_points_than_the_logistic_has_parameters():
    """Four points are interpolated (PLCC 1 by construction, the optimum not unique): NaN,
    as for bootstrap resamples of a small set with four distinct values or fewer."""
    x, y = np.array([0.1, 0.4, 0.4, 0.7, 0.9, 0.9]), np.array([1.0, 2.0, 2.1, 3.5, 4.0, 3.9])
    assert math.isnan(plcc(x, y))  # 4 distinct metric values
    assert plcc(np.append(x, 0.5), np.append(y, 2.8)) > 0.9


def test_plcc_is_nan_with_a_warning_when_the_logistic_fit_fails(monkeypatch):
    import lic.iqa.stats as iqa_stats

    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(iqa_stats, "curve_fit", no_convergence)
    with pytest.warns(iqa_stats.LogisticFitWarning, match="did not converge"):
        value = plcc(X, -X)  # a linear Pearson would say -1
    assert math.isnan(value)


def test_bootstrap_interval_brackets_the_estimate():
    low, high = bootstrap_interval(srcc, X, Y, samples=300)
    assert low <= srcc(X, Y) <= high <= 1
    assert (low, high) == bootstrap_interval(srcc, X, Y, samples=300)  # seeded


def test_two_afc_and_majority_by_hand():
    a, b = [0.9, 0.2, 0.5, 0.7], [0.1, 0.4, 0.5, 0.6]
    p = [0.75, 0.25, 1.0, 0.5]
    # prefers A (0.75), prefers B (1 - 0.25), tie (0.5), prefers A (0.5)
    assert two_afc(a, b, p) == pytest.approx((0.75 + 0.75 + 0.5 + 0.5) / 4)
    assert two_afc(a, b, p, higher_better=False) == pytest.approx((0.25 + 0.25 + 0.5 + 0.5) / 4)
    # decided pairs: 1 (A, agree), 2 (B, agree), 3 (A by p=1, metric ties: wrong)
    assert majority_accuracy(a, b, p) == pytest.approx(2 / 3)


# ---- readers: tiny fixtures in the official layouts ------------------------------------------
def img(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_rgb(path, photo_like(24, 32, seed=seed))


def make_tid2013(root):
    img(root / "reference_images" / "I01.BMP")
    for i, name in enumerate(["i01_01_1.bmp", "i01_02_5.bmp"]):
        img(root / "distorted_images" / name, i + 1)
    (root / "mos_with_names.txt").write_text("5.51429 i01_01_1.bmp\n3.20000 i01_02_5.bmp\n")


def make_kadid(root):
    img(root / "images" / "I01.png")
    img(root / "images" / "I01_01_01.png", 1)
    img(root / "images" / "I01_01_05.png", 2)
    (root / "dmos.csv").write_text(
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.1\n"
        "I01_01_05.png,I01.png,1.97,0.3\n"
    )


def make_csiq(root):
    img(root / "src_imgs" / "1600.png")
    img(root / "dst_imgs" / "awgn" / "1600.AWGN.1.png", 1)
    img(root / "dst_imgs" / "blur" / "1600.BLUR.5.png", 2)
    pd.DataFrame(
        {
            "image": [1600, 1600],
            "dst_idx": [1, 5],
            "dst_type": ["noise", "blur"],
            "dst_lev": [1, 5],
            "dmos_std": [0.06, 0.1],
            "dmos": [0.062, 0.8],
        }
    ).to_excel(root / "csiq.DMOS.xlsx", sheet_name="all_by_image", index=False)


def make_live(root):
    img(root / "refimgs" / "bikes.bmp")
    orgs = np.ones(982)
    orgs[[0, 227]] = 0  # jp2k/img1.bmp and jpeg/img1.bmp are distorted; the rest ref copies
    img(root / "jp2k" / "img1.bmp", 1)
    img(root / "jpeg" / "img1.bmp", 2)
    for folder in ("wn", "gblur", "fastfading"):
        (root / folder).mkdir()
    dmos = np.linspace(10, 70, 982)
    savemat(root / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
    names = np.empty((1, 982), dtype=object)
    names[0, :] = "bikes.bmp"
    savemat(root / "refnames_all.mat", {"refnames_all": names})


def make_pipal(root):
    img(root / "Train_Ref" / "A0001.bmp")
    img(root / "Train_Dis" / "A0001_00_00.bmp", 1)
    img(root / "Train_Dis" / "A0001_01_03.bmp", 2)
    (root / "Train_Label").mkdir()
    (root / "Train_Label" / "A0001.txt").write_text(
        "A0001_00_00.bmp,1431.4\nA0001_01_03.bmp,1210.0\n"
    )


def make_csv(root):
    img(root / "r.png")
    img(root / "d1.png", 1)
    img(root / "d2.png", 2)
    (root / "scores.csv").write_text("ref,dist,score\nr.png,d1.png,0.8\nr.png,d2.png,0.3\n")


def make_pairs(root):
    img(root / "r.png")
    img(root / "a.png", 1)
    img(root / "b.png", 2)
    (root / "pairs.csv").write_text("ref,A,B,p\nr.png,a.png,b.png,0.75\nr.png,b.png,a.png,0.25\n")


READER_CASES = {
    "tid2013": (make_tid2013, "mos_with_names.txt", True, 2),
    "kadid10k": (make_kadid, "dmos.csv", True, 2),
    "csiq": (make_csiq, "csiq.DMOS.xlsx", False, 2),
    "live": (make_live, "dmos.mat", False, 2),
    "pipal": (make_pipal, "Train_Label/A0001.txt", True, 2),
    "csv": (make_csv, "scores.csv", True, 2),
    "pairs": (make_pairs, "pairs.csv", None, 2),
}


@pytest.mark.parametrize("name", sorted(READER_CASES))
def test_reader_parses_the_official_layout(name, tmp_path):
    make, _, higher_better, size = READER_CASES[name]
    make(tmp_path)
    dataset = read_dataset(name, tmp_path)
    if isinstance(dataset, PairSet):
        assert len(dataset.pairs) == size and dataset.pairs[0][3] == 0.75
        assert all(p.is_file() for pair in dataset.pairs for p in pair[:3])
    else:
        assert len(dataset.items) == size and dataset.higher_better is higher_better
        assert all(r.is_file() and d.is_file() for r, d, _ in dataset.items)
        assert dataset.items[0][2] != dataset.items[1][2]


@pytest.mark.parametrize("name", sorted(READER_CASES))
def test_reader_rejects_a_malformed_layout(name, tmp_path):
    make, score_file, _, _ = READER_CASES[name]
    make(tmp_path)
    target = tmp_path / score_file
    if name == "csiq":
        pd.DataFrame({"image": [1600]}).to_excel(target, sheet_name="all_by_image", index=False)
    elif name == "live":
        savemat(target, {"dmos": np.ones((1, 5)), "orgs": np.ones((1, 5))})
    elif name == "pipal":
        target.write_text("A0001_00_00.bmp 1431.4\n")
    else:
        target.write_text(
            target.read_text()
            .replace(".bmp", ".gif")
            .replace(".png", ".gif")
            .replace("ref,", "reference,")
        )
    with pytest.raises(DatasetLayoutError) as info:
        read_dataset(name, tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_root_and_unknown_dataset(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no such file"):
        read_dataset("tid2013", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        read_dataset("mnist", tmp_path)


# ---- scoring -------------------------------------------------------------------------------
def test_scored_set_correlations_and_cache(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    folder.mkdir()
    save_rgb(folder / "r.png", photo_like(40, 48, seed=1))
    reference = photo_like(40, 48, seed=1)
    lines = ["ref,dist,score"]
    pattern = torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
    for i, sigma in enumerate([0.01, 0.03, 0.06, 0.1, 0.15, 0.2]):
        noisy = (reference + sigma * pattern).clamp(0, 1)
        save_rgb(folder / f"d{i}.png", noisy)
        lines.append(f"r.png,d{i}.png,{5 - 4 * sigma / 0.2:.3f}")
    (folder / "scores.csv").write_text("\n".join(lines) + "\n")
    dataset = read_dataset("csv", folder)
    rows = evaluate(dataset, ["psnr", "mse"], cache_dir=tmp_path / "cache", bootstrap=100)
    for row in rows:  # both oriented so that agreement is positive, whatever the direction
        assert row["srcc"] == pytest.approx(1.0) and row["krcc"] == pytest.approx(1.0)
        assert row["plcc"] > 0.95 and row["n"] == 6 and row["n_failed"] == 0
        assert row["srcc_ci_low"] <= row["srcc"] <= row["srcc_ci_high"]
    monkeypatch.setattr(benchmark, "score_pairs", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(benchmark, "create_metric", lambda *a, **k: pytest.fail("metric built"))
    again = evaluate(dataset, ["psnr"], cache_dir=tmp_path / "cache", bootstrap=100)
    assert again[0]["srcc"] == rows[0]["srcc"]


def test_ablation_rows_match_direct_scoring(tmp_path, tiny_clip):
    make_pairs(tmp_path)
    dataset = read_dataset("pairs", tmp_path)
    torch.manual_seed(0)  # the same random tower here and for the direct scoring below
    rows = ablate(dataset, [(tiny_clip, None)], [None, [3]], [0.0, 1.0], ["squash", "tiles"])
    assert len(rows) == 2 * 2 * 2
    assert {r["layers"] for r in rows} == {"0,1,2,3", "3"}
    torch.manual_seed(0)
    direct = evaluate(
        dataset,
        ["clip_global"],
        {"clip_global": {"model": tiny_clip, "pretrained": None}},
        bootstrap=10,
    )[0]["2afc"]
    squash_global = [r["2afc"] for r in rows if r["alpha"] == 1.0 and r["resize"] == "squash"]
    assert all(v == pytest.approx(direct) for v in squash_global)
