"""`lic score`: pairs from arguments or folders, a table, a CSV, and bad pairs that fail alone."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import photo_like, save_rgb

from lic.cli import main


@pytest.fixture
def images(tmp_path):
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    ref.mkdir(), dist.mkdir()
    for i in range(3):
        image = photo_like(40, 56, seed=i)
        save_rgb(ref / f"img{i}.png", image)
        save_rgb(dist / f"img{i}.jpg", image, quality=20 + 30 * i)
    return ref, dist


def test_pairs_from_arguments_with_a_corrupt_file(images, tmp_path, capsys):
    ref, dist = images
    (dist / "img1.jpg").write_bytes((dist / "img1.jpg").read_bytes()[:300])
    out = tmp_path / "scores.csv"
    code = main(
        [
            "score",
            "--metric",
            "psnr",
            str(ref / "img0.png"),
            str(dist / "img0.jpg"),
            str(ref / "img1.png"),
            str(dist / "img1.jpg"),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED" in captured.out and "mean over 1 pair(s)" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and str(dist / "img1.jpg") in errors[0]
    rows = list(csv.DictReader(out.open()))
    assert [bool(r["error"]) for r in rows] == [False, True]
    assert 20 < float(rows[0]["psnr"]) < 60


def test_folders_pair_by_name_and_scores_agree_with_the_metric(images, tmp_path, capsys, tiny_clip):
    ref, dist = images
    out = tmp_path / "s.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)
        code = main(
            [
                "score",
                "--metric",
                "mlclipsim",
                "--ref-dir",
                str(ref),
                "--dist-dir",
                str(dist),
                "-o",
                f"model={tiny_clip}",
                "-o",
                "pretrained=null",
                "-o",
                "layers=[1, 3]",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["reference"].rsplit("/", 1)[1] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    scores = [float(r["mlclipsim"]) for r in rows]
    assert all(0 < s < 1 for s in scores)
    assert "higher is better" in capsys.readouterr().out


def test_size_mismatch_is_reported_per_pair(images, capsys):
    ref, dist = images
    save_rgb(dist / "img2.jpg", photo_like(40, 50))
    assert main(["score", "--metric", "mse", "--ref-dir", str(ref), "--dist-dir", str(dist)]) == 1
    assert "differs from the reference" in capsys.readouterr().err


def test_unpaired_distorted_file_is_a_usage_error(images, capsys):
    ref, dist = images
    save_rgb(dist / "stray.png", photo_like(8, 8))
    code = main(["score", "--metric", "mse", "--ref-dir", str(ref), "--dist-dir", str(dist)])
    assert code == 2 and "stray" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--metric", "mse", "a.png"],
        ["score", "--metric", "mse", "--ref-dir", "x"],
        ["score", "--metric", "psnr", "-o", "no_such_option=1", "a.png", "b.png"],
        ["score", "--metric", "nope", "a.png", "b.png"],
    ],
)
def test_bad_invocations_exit_with_usage_errors(argv):
    assert main(argv) == 2


def test_offline_clip_weights_are_one_clear_message(images, monkeypatch, capsys):
    def refuse(*_args, **_kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(images[0]))  # an empty cache
    ref, dist = images
    code = main(
        [
            "score",
            "--metric",
            "mlclipsim",
            "-o",
            f"cache_dir={ref}",
            str(ref / "img0.png"),
            str(dist / "img0.jpg"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: Cannot get the weights")
    assert "Traceback" not in err


def test_console_script_runs(images):
    ref, dist = images
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lic.cli",
            "score",
            "--metric",
            "psnr",
            str(ref / "img0.png"),
            str(dist / "img0.jpg"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "psnr (higher is better)" in result.stdout
