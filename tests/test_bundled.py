"""What a fresh clone ships: demo images with their sources, demo checkpoints with their
manifest, and no reference to anything outside the repository."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import torch

from lic.codecs import BitstreamCodec, load_checkpoint, payload_bpp
from lic.data.images import load_image

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted((ROOT / "checkpoints").glob("*.ckpt"))


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines()]


def test_nothing_refers_outside_the_repository():
    outside = re.compile(r"\.\./shared|DESIGN\.md")
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ""}
        and path.is_file()
        and outside.search(path.read_text(errors="ignore"))
        and path.name != "test_bundled.py"
    ]
    assert not offenders


def test_demo_images_are_small_and_attributed():
    folder = ROOT / "data" / "demo"
    images = sorted(folder.rglob("*.png"))
    attribution = (folder / "README.md").read_text()
    assert len(images) >= 13 and sum(p.stat().st_size for p in images) < 12e6
    assert all(f"`{p.name}`" in attribution for p in images)


def manifest() -> dict[str, dict[str, str]]:
    """checkpoints/README.md table rows: file -> {lambda, bpp, psnr, ..., sha256}."""
    columns = ("lambda", "bpp", "psnr", "kodak_bpp", "kodak_psnr", "sha256")
    rows = {}
    for line in (ROOT / "checkpoints" / "README.md").read_text().splitlines():
        cells = [c.strip(" `") for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].endswith(".ckpt"):
            rows[cells[0]] = dict(zip(columns, cells[1:], strict=True))
    return rows


def test_checkpoints_are_codec_only_small_and_listed():
    assert len(CHECKPOINTS) >= 3 and sum(p.stat().st_size for p in CHECKPOINTS) < 10e6
    listed = manifest()
    assert sorted(listed) == [p.name for p in CHECKPOINTS]
    for path in CHECKPOINTS:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name]["sha256"]
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert set(raw) == {"state_dict", "hyper_parameters"}  # no optimizer state


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_checkpoint_codes_kodim23_as_its_manifest_says(path):
    """Golden numbers: the real bitstream's payload bpp and the decoded PSNR on bundled kodim23."""
    model, info = load_checkpoint(path)
    row = manifest()[path.name]
    assert info.lmbda == pytest.approx(float(row["lambda"]))
    image = load_image(ROOT / "data" / "demo" / "val" / "kodim23.png")
    codec = BitstreamCodec(model)
    data = codec.encode(image)
    decoded = (codec.decode(data) * 255).round() / 255  # the PNG a decoder writes
    mse = (decoded - image).square().mean()
    psnr = float(-10 * torch.log10(mse))
    # a few bytes of slack: another CPU's float rounding may move a symbol or two
    assert abs(payload_bpp(data) - float(row["bpp"])) < 2e-4
    assert abs(psnr - float(row["psnr"])) < 0.01


def test_export_reproduces_a_bundled_checkpoint_and_never_clobbers(tmp_path, capsys):
    from lic.cli import main

    source = CHECKPOINTS[0]
    out = tmp_path / source.name  # same name: torch.save's archive is named after the file
    assert main(["export", str(source), str(out)]) == 0
    assert out.read_bytes() == source.read_bytes()
    assert main(["export", str(source), str(out)]) == 2  # exists
    assert main(["export", str(source), str(source)]) == 2  # the input itself
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(source), str(out), "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [source.name]  # no staging left behind
