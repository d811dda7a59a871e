"""A bad image is one failure in each cell that reads it, named with its cell and counted
once per cell, in every output: the cell files, results.json, summary.md and the exit line."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import photo_like, save_rgb

from lic.cli import main


def bad_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(3):
        save_rgb(root / "sub" / f"{i}.png", photo_like(48, 64, seed=i))
    (root / "sub" / "1.png").write_bytes((root / "sub" / "1.png").read_bytes()[:100])
    return root


def run_eval(root: Path, out: Path) -> int:
    return main(
        [
            *("eval", "--task", "consistency", "--task-model", "mobilenet_v3_small"),
            *("--task-weights", "none", "--data-root", str(root), "--baselines", "jpeg=50"),
            *("--out", str(out), "--workers", "0", "--device", "cpu", "--no-progress"),
            *("--bootstrap", "0"),
        ]
    )


def test_one_bad_image_is_one_failure_per_cell_named_with_its_cell(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_eval(bad_folder(tmp_path / "images"), out) == 1
    err = capsys.readouterr().err
    assert "error: 2 failures in 2 cells (one per image and cell, listed in " in err
    for key in ("uncompressed", "jpeg-q50"):
        cell = json.loads((out / "cells" / f"consistency__{key}.json").read_text())
        assert (cell["n_images"], cell["n_failed"]) == (2, 1)
        [failure] = cell["failures"]
        assert failure["image"] == "sub/1.png" and "truncated" in failure["error"]
    failures = json.loads((out / "results.json").read_text())["failures"]
    assert [(f["task"], f["cell"], f["image"]) for f in failures] == [
        ("consistency", "uncompressed", "sub/1.png"),
        ("consistency", "jpeg-q50", "sub/1.png"),
    ]
    summary = (out / "summary.md").read_text()
    section = summary[summary.index("## Failures") :].splitlines()
    assert section[0] == "## Failures: 1 image in 2 cells (one line per image and cell)"
    assert [line.split(":")[0] for line in section[2:]] == [
        "- consistency uncompressed",
        "- consistency jpeg-q50",
    ]
    assert all("sub/1.png" in line for line in section[2:])

    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert run_eval(tmp_path / "images", out) == 1  # reused cells report the same
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "summary.md").read_text() == summary


def test_a_cell_whose_failures_are_malformed_is_recomputed(tmp_path):
    out = tmp_path / "out"
    run_eval(bad_folder(tmp_path / "images"), out)
    path = out / "cells" / "consistency__jpeg-q50.json"
    cell = json.loads(path.read_text())
    cell["failures"] = ["sub/1.png: an edited failure"]
    path.write_text(json.dumps(cell))
    run_eval(tmp_path / "images", out)
    [failure] = json.loads(path.read_text())["failures"]
    assert failure["image"] == "sub/1.png" and "edited" not in failure["error"]
