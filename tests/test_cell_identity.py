"""A cell is keyed by the data's content, not by how its folder is spelled: any spelling,
symlink or copy of the same images reuses it; one changed, added or removed image does not."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import photo_like, save_rgb

from lic.cli import main
from lic.tasks import create_task


def make_images(folder: Path, n: int = 3) -> Path:
    (folder / "sub").mkdir(parents=True)
    for seed in range(n):
        save_rgb(folder / ("sub" if seed == 0 else "") / f"im{seed}.png", photo_like(48, 64, seed))
    return folder


def evaluate(root: str | Path, out: Path) -> dict[str, int]:
    """A fidelity run; the write time of each cell file (unchanged: reused)."""
    argv = [
        *("eval", "--task", "fidelity", "--metrics", "psnr", "--baselines", "jpeg=40"),
        *("--data-root", str(root), "--out", str(out), "--workers", "0", "--device", "cpu"),
        "--no-progress",
    ]
    assert main(argv) == 0
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "cells").glob("*.json"))}


def test_any_spelling_symlink_or_copy_of_the_same_images_reuses_the_cells(tmp_path, monkeypatch):
    images = make_images(tmp_path / "images")
    out = tmp_path / "out"
    first = evaluate(images, out)
    assert len(first) == 2
    monkeypatch.chdir(tmp_path)
    assert evaluate("images", out) == first  # relative
    assert evaluate("./images/../images/", out) == first
    (tmp_path / "link").symlink_to(images, target_is_directory=True)
    assert evaluate(tmp_path / "link", out) == first
    shutil.copytree(images, tmp_path / "elsewhere" / "copy")  # new times, same bytes
    assert evaluate(tmp_path / "elsewhere" / "copy", out) == first
    assert main(["eval", "--config", str(out / "config.yaml")]) == 0  # the saved spelling
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == first
    with (out / "per_image.csv").open() as f:
        ids = sorted({row["image"] for row in csv.DictReader(f)})
    assert ids == ["im1.png", "im2.png", "sub/im0.png"]  # relative to the data root


@pytest.mark.parametrize("change", ["one image changed", "one added", "one removed"])
def test_a_changed_image_set_recomputes_every_cell(change, tmp_path):
    images = make_images(tmp_path / "images")
    out = tmp_path / "out"
    first = evaluate(images, out)
    if change == "one image changed":
        save_rgb(images / "im2.png", photo_like(48, 64, seed=9))
    elif change == "one added":
        save_rgb(images / "sub" / "im3.png", photo_like(48, 64, seed=3))
    else:
        (images / "im1.png").unlink()
    second = evaluate(images, out)
    assert second.keys() == first.keys()
    assert all(second[name] != first[name] for name in first)
    cell = json.loads((out / "cells" / "fidelity__jpeg-q40.json").read_text())
    assert cell["n_images"] == {"one added": 4, "one removed": 2}.get(change, 3)


def test_the_data_key_covers_labels_and_annotation_files(tmp_path):
    """ImageNet's labels (val.txt) and COCO's ground truth are part of the data's key."""
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(2):
        save_rgb(root / f"{i}.JPEG", photo_like(32, 32, seed=i))
    (root / "val.txt").write_text("0.JPEG 0\n1.JPEG 1\n")

    def key() -> str:
        return create_task("imagenet", root, weights="none").description()["data"]

    before = key()
    assert key() == before and len(before) == 64
    (root / "val.txt").write_text("0.JPEG 0\n1.JPEG 2\n")
    assert key() != before

    from test_rate_task import make_coco

    coco = make_coco(tmp_path / "coco")
    before = create_task("coco", coco, weights="none").data_digest
    annotations = coco / "annotations" / "instances_val2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"][0]["bbox"] = [0.0, 0.0, 8.0, 8.0]
    annotations.write_text(json.dumps(data))
    assert create_task("coco", coco, weights="none").data_digest != before
