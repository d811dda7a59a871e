"""PCMP: PSNR matching, voter consistency and soft labels, resumable and sharded builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from conftest import photo_like, save_rgb

from lic.cli import main
from lic.pcmp import FAMILIES, VoterPanel, build, consistency, match_psnr, merge, psnr, soft_label
from lic.pcmp import builder as pcmp_build

VOTERS = ["mobilenet_v3_small", "resnet18", "squeezenet1_1"]
TINY_VOTERS = ["mobilenet_v3_small", "squeezenet1_1"]


@pytest.mark.parametrize("family", [n for n, f in FAMILIES.items() if not f.discrete])
@pytest.mark.parametrize("target", [26.0, 30.0, 34.0])
def test_continuous_families_hit_the_target_psnr(family, target):
    reference = photo_like(96, 128, seed=3)
    match = match_psnr(FAMILIES[family], reference, target, seed=7)
    assert match is not None
    assert abs(match.psnr - target) <= 0.25
    assert psnr(reference, match.image) == pytest.approx(match.psnr)


def test_discrete_families_take_the_nearest_value_or_skip():
    reference = photo_like(96, 128, seed=3)
    match = match_psnr(FAMILIES["jpeg"], reference, 28.0, seed=0)
    assert match is not None and abs(match.psnr - 28.0) <= 0.25
    neighbours = [
        psnr(reference, FAMILIES["jpeg"].apply(reference, q, 0))
        for q in (match.parameter - 1, match.parameter + 1)
    ]
    assert all(abs(match.psnr - 28) <= abs(p - 28) for p in neighbours)
    assert match_psnr(FAMILIES["jpeg"], reference, 80.0, seed=0) is None  # unreachable
    assert match_psnr(FAMILIES["blur"], reference, 80.0, seed=0) is None


def test_noise_is_reproducible_per_image():
    reference = photo_like(32, 32)
    a = FAMILIES["noise"].apply(reference, 0.1, 42)
    assert torch.equal(a, FAMILIES["noise"].apply(reference, 0.1, 42))
    assert not torch.equal(a, FAMILIES["noise"].apply(reference, 0.1, 43))


def test_consistency_modes_on_fixed_distributions():
    p_ref = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    p_dist = torch.tensor([[0.3, 0.6, 0.1]], dtype=torch.float64)
    assert consistency(p_ref, p_dist, "prob").item() == pytest.approx(0.3)
    assert consistency(p_ref, p_dist, "top1").item() == 0.0
    kl = 0.7 * torch.log(torch.tensor(0.7 / 0.3)) + 0.2 * torch.log(torch.tensor(0.2 / 0.6))
    assert consistency(p_ref, p_dist, "neg_kl").item() == pytest.approx(-float(kl))
    assert soft_label({"a": 0.5, "b": 0.2, "c": 0.3}, {"a": 0.4, "b": 0.2, "c": 0.9}) == 0.5


def test_panel_soft_labels_equal_a_hand_computation():
    """Voters' probabilities recomputed by hand from the models (resize 232/256, crop 224,
    ImageNet normalisation, softmax), then each voter's vote and p(A)."""
    panel = VoterPanel(VOTERS, weights="none")
    reference = photo_like(120, 160, seed=1)
    a = FAMILIES["blur"].apply(reference, 2.0, 0)
    b = FAMILIES["noise"].apply(reference, 0.15, 0)
    probs = panel.probabilities([reference, a, b])
    votes = []
    for name in VOTERS:
        resize = {"resnet18": 256, "mobilenet_v3_small": 256, "squeezenet1_1": 256}[name]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        with torch.no_grad():
            batch = torch.stack(
                [
                    (TF.center_crop(TF.resize(img, [resize], antialias=True), [224]) - mean) / std
                    for img in (reference, a, b)
                ]
            )
            hand = F.softmax(panel.models[name](batch).double(), 1)
        torch.testing.assert_close(probs[name], hand)
        top = hand[0].argmax()
        votes.append(
            1.0 if hand[1, top] > hand[2, top] else 0.5 if hand[1, top] == hand[2, top] else 0.0
        )
    scores_a = {v: float(consistency(probs[v][:1], probs[v][1:2])[0]) for v in VOTERS}
    scores_b = {v: float(consistency(probs[v][:1], probs[v][2:3])[0]) for v in VOTERS}
    assert soft_label(scores_a, scores_b) == pytest.approx(sum(votes) / len(votes))


@pytest.fixture
def refs(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for i in range(3):
        save_rgb(folder / f"r{i}.png", photo_like(72, 96, seed=10 + i))
    return folder


def run_build(refs, out, **kwargs):
    return build(
        refs,
        out,
        targets=(28.0, 32.0),
        families=("jpeg", "blur", "noise"),
        voters=TINY_VOTERS,
        voter_weights="none",
        **kwargs,
    )


@pytest.mark.slow
def test_build_writes_pairs_images_and_stats(refs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # references given relative to the working directory
    stats = run_build(refs.relative_to(tmp_path), tmp_path / "out")
    rows = (tmp_path / "out" / "pairs.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {
        "ref",
        "A",
        "B",
        "family_a",
        "family_b",
        "psnr_a",
        "psnr_b",
        "target_psnr",
        "p",
        "cons_a_squeezenet1_1",
        "cons_b_mobilenet_v3_small",
    } <= set(header)
    assert stats["pairs"] == len(rows) - 1 > 0
    assert stats["references"] == 3
    for line in rows[1:]:
        record = dict(zip(header, line.split(","), strict=True))
        assert (tmp_path / "out" / record["A"]).is_file()
        assert not Path(record["ref"]).is_absolute()
        assert (tmp_path / "out" / record["ref"]).resolve() == (refs / Path(record["ref"]).name)
        assert abs(float(record["psnr_a"]) - float(record["target_psnr"])) <= 0.25
        assert 0 <= float(record["p"]) <= 1
    skipped = json.loads((tmp_path / "out" / "stats.json").read_text())["skipped_by_family"]
    assert isinstance(skipped, dict)


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_pairs(refs, tmp_path, monkeypatch):
    run_build(refs, tmp_path / "whole")
    real = pcmp_build.build_reference
    calls = []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill in the middle of the second reference
        return real(*args, **kwargs)

    monkeypatch.setattr(pcmp_build, "build_reference", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_build(refs, tmp_path / "killed")
    monkeypatch.setattr(pcmp_build, "build_reference", real)
    assert len(list((tmp_path / "killed" / "refs").glob("*.json"))) == 1
    run_build(refs, tmp_path / "killed")
    assert (tmp_path / "killed" / "pairs.csv").read_text() == (
        tmp_path / "whole" / "pairs.csv"
    ).read_text()


@pytest.mark.slow
def test_shards_merge_to_the_unsharded_build(refs, tmp_path):
    run_build(refs, tmp_path / "whole")
    for index in range(2):
        summary = run_build(refs, tmp_path / "sharded", shard=(index, 2))
        assert summary["shard"] == f"{index}/2"
    merge(tmp_path / "sharded")
    assert (tmp_path / "sharded" / "pairs.csv").read_text() == (
        tmp_path / "whole" / "pairs.csv"
    ).read_text()


def test_unreadable_reference_is_recorded_not_fatal(refs, tmp_path):
    (refs / "r1.png").write_bytes(b"broken")
    stats = run_build(refs, tmp_path / "out")
    assert stats["failed_references"] == [str(refs / "r1.png")]
    assert "r1" not in (tmp_path / "out" / "pairs.csv").read_text()


@pytest.mark.slow
def test_cli_builds_then_iqa_scores_the_pairs(refs, tmp_path, capsys):
    out = tmp_path / "pcmp"
    assert (
        main(
            [
                "pcmp",
                "build",
                "--refs",
                str(refs),
                "--out",
                str(out),
                "--psnr",
                "30",
                "--families",
                "blur",
                "noise",
                "resample",
                "--voters",
                *TINY_VOTERS,
                "--voter-weights",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        [
            "iqa",
            "--dataset",
            "pcmp",
            "--root",
            str(out),
            "--metrics",
            "psnr",
            "mse",
            "--bootstrap",
            "50",
            "--cache",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "iqa.csv"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "2afc" in printed and "psnr" in printed
    assert (tmp_path / "iqa.csv").is_file()


def test_build_and_merge_on_missing_folders_fail_without_creating_anything(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pcmp", "build", "--refs", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert main(["pcmp", "merge", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "not a directory" in err[0] and "nothing to merge" in err[1]
    assert not out.exists()
