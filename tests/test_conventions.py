"""The field's rate convention: lic's fidelity numbers equal CompressAI's `eval_model` on the
same weights and images (payload bpp to the byte, PSNR to 1e-6 dB), padding as eval_model
pads, container files of version 1 still decode, and every report states its convention."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import struct
import zlib
from pathlib import Path

import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint

from lic.codecs import BitstreamCodec, create_codec, load_checkpoint
from lic.codecs.io import Bitstream, BitstreamError, crop_image, pad_image
from lic.codecs.padding import padding_box
from lic.errors import UsageError
from lic.evaluation import run
from lic.evaluation.bd import bd_rate
from lic.evaluation.curves import load_curve

SIZES = [(176, 200), (192, 168), (171, 229)]  # none a multiple of 64; one odd


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("convention_images")
    for i, (h, w) in enumerate(SIZES):
        save_rgb(root / f"img{i}.png", photo_like(h, w, seed=10 + i))
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny random codec as a lic checkpoint and as a CompressAI state dict."""
    root = tmp_path_factory.mktemp("convention_weights")
    ckpt = write_codec_checkpoint(root / "codec.ckpt", lmbda=0.01, seed=0)
    torch.manual_seed(0)
    model = create_codec("bmshj2018-hyperprior", N=16, M=24)
    model.update(force=True)
    torch.save(model.state_dict(), root / "state_dict.pth")
    return ckpt, root / "state_dict.pth"


def eval_model_per_image(folder: Path, state_dict: Path, out: Path) -> dict[str, dict]:
    """`python -m compressai.utils.eval_model checkpoint DIR -a ARCH -p PATH --per-image`,
    run in this process: image stem -> its results, plus `psnr-exact`: the PSNR of its
    decoded 8-bit pixels in float64 (eval_model computes it in float32, which is off by up
    to 2e-6 dB near 6 dB and more at higher PSNR)."""
    import math

    import torch.nn.functional as F
    from compressai.ops import compute_padding
    from compressai.utils.eval_model.__main__ import load_checkpoint, main, read_image

    argv = ["checkpoint", str(folder), "-a", "bmshj2018-hyperprior", "-p", str(state_dict)]
    main([*argv, "--per-image", "-d", str(out)])
    results = {
        p.name.split("-")[0]: json.loads(p.read_text())["results"] for p in out.glob("img*-*.json")
    }
    net = load_checkpoint("bmshj2018-hyperprior", False, str(state_dict))
    for path in folder.glob("img*.png"):
        x = read_image(path)[None]
        pad, unpad = compute_padding(*x.shape[-2:], min_div=64)
        with torch.no_grad():
            coded = net.compress(F.pad(x, pad))
            x_hat = F.pad(net.decompress(coded["strings"], coded["shape"])["x_hat"], unpad)
        a, b = ((t * 255).clamp(0, 255).round().double() for t in (x, x_hat))
        mse = (a - b).square().mean().item()
        results[path.stem]["psnr-exact"] = 20 * math.log10(255) - 10 * math.log10(mse)
    return results


def per_image(out: Path) -> list[dict]:
    with (out / "per_image.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["codec"] != "uncompressed"]


@pytest.mark.slow
def test_fidelity_equals_compressai_eval_model(folder, weights, tmp_path, capsys):
    ckpt, state_dict = weights
    run(
        checkpoints=[str(ckpt)],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path / "lic",
        workers=0,
        progress=False,
        metrics=["psnr", "ms_ssim"],
        bootstrap=0,
    )
    theirs = eval_model_per_image(folder, state_dict, tmp_path / "eval_model")
    capsys.readouterr()
    ours = per_image(tmp_path / "lic")
    assert len(ours) == len(SIZES) == len(theirs)
    for row in ours:
        reference = theirs[Path(row["image"]).stem]
        pixels = int(row["pixels"])
        # the same payload, to the byte
        assert round(float(row["bpp"]) * pixels / 8) == round(reference["bpp"] * pixels / 8)
        assert float(row["bpp"]) == pytest.approx(reference["bpp"], rel=1e-12)
        assert float(row["psnr"]) == pytest.approx(reference["psnr-exact"], abs=1e-6)
        ulp = 2.0 ** (math.floor(math.log2(reference["psnr-rgb"])) - 23)  # float32's step
        assert float(row["psnr"]) == pytest.approx(reference["psnr-rgb"], abs=5 * ulp)
        assert float(row["ms_ssim"]) == pytest.approx(reference["ms-ssim-rgb"], abs=1e-6)
        # the container adds its header to the file, never to the reported rate
        assert float(row["bpp_file"]) > float(row["bpp"])


def test_zero_padding_is_eval_models(weights):
    from compressai.ops import compute_padding

    for h, w in [*SIZES, (64, 128), (1, 1)]:
        pad, _ = compute_padding(h, w, min_div=64)
        assert padding_box(h, w, 64, "zeros") == pad
        assert padding_box(h, w, 16, "zeros") == pad  # eval_model pads 64 for every codec
    x = torch.rand(1, 3, 171, 229)
    padded = pad_image(x, 64, "zeros")
    assert padded.shape[-2:] == (192, 256)
    assert padded[..., :10, :].abs().sum() == 0  # zeros on top (centred), not replicated
    assert torch.equal(crop_image(padded, 171, 229, 64, "zeros"), x)
    assert torch.equal(
        pad_image(x, 64, "replicate")[..., 171:, :229], x[..., -1:, :].expand(1, 3, 21, 229)
    )


def _as_version_1(data: bytes) -> bytes:
    """A version-3 container of a `replicate` file rewritten as lic 0.1 wrote it (no padding
    field, no entropy checks)."""
    body = data[:-4][: -len(Bitstream.from_bytes(data).checks.to_bytes())]
    assert body[4] == 3 and body[5] == 1  # version 3, padding code 1 (replicate)
    old = body[:4] + b"\x01" + body[6:]
    return old + struct.pack(">I", zlib.crc32(old))


def test_version_1_files_decode_as_replicate_and_zero_padding_is_default(weights):
    model, _ = load_checkpoint(weights[0])
    image = photo_like(100, 90, seed=3)
    replicate = BitstreamCodec(model, padding="replicate")
    data = replicate.encode(image)
    old = _as_version_1(data)
    assert Bitstream.from_bytes(old).padding == "replicate"
    assert torch.equal(replicate.decode(old), replicate.decode(data))
    zeros = BitstreamCodec(model)  # the default: eval_model's padding
    new = zeros.encode(image)
    assert Bitstream.from_bytes(new).padding == "zeros"
    assert zeros.decode(new).shape[-2:] == (100, 90)
    # one codec decodes both kinds: the file says how it was padded
    assert torch.equal(zeros.decode(data), replicate.decode(data))
    for offset, byte, message in (
        (4, 9, "format version 9; this lic reads versions 1, 2, 3 and 4 (a newer lic wrote it"),
        (5, 7, "padding code 7 is none of {0: 'zeros', 1: 'replicate'}: the file is forged"),
    ):
        body = bytearray(new[:-4])
        body[offset] = byte
        forged = bytes(body) + struct.pack(">I", zlib.crc32(body))
        with pytest.raises(BitstreamError, match=re.escape(message)):
            Bitstream.from_bytes(forged)


def test_reports_state_the_convention_and_rate_means_differ(folder, weights, tmp_path):
    common = dict(
        checkpoints=[str(weights[0])],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        workers=0,
        progress=False,
        metrics=["psnr"],
        bootstrap=50,
        baselines=["jpeg"],
        qualities={"jpeg": [50]},
    )
    by_images = run(out=tmp_path / "a", **common)
    by_pixels = run(out=tmp_path / "a", rate_mean="pixels", **common)  # cells reused
    rows = {r["codec"]: r for r in by_images}
    pixels_rows = {r["codec"]: r for r in by_pixels}
    per = per_image(tmp_path / "a")
    learned = [r for r in per if r["codec"] == "bmshj2018-hyperprior"]
    bpp = [float(r["bpp"]) for r in learned]
    n = [int(r["pixels"]) for r in learned]
    assert rows["bmshj2018-hyperprior"]["bpp"] == pytest.approx(sum(bpp) / len(bpp))
    total = sum(b * p for b, p in zip(bpp, n, strict=True)) / sum(n)
    assert pixels_rows["bmshj2018-hyperprior"]["bpp"] == pytest.approx(total)
    assert total != pytest.approx(sum(bpp) / len(bpp), rel=1e-6)
    assert rows["jpeg"]["bpp"] == rows["jpeg"]["bpp_file"]  # a classical file is its rate
    assert rows["bmshj2018-hyperprior"]["bpp_file"] > rows["bmshj2018-hyperprior"]["bpp"]
    assert rows["bmshj2018-hyperprior"]["padding"] == "zeros"
    summary = (tmp_path / "a" / "summary.md").read_text().splitlines()
    assert summary[2].startswith("Rate convention: bpp = entropy-coded payload")
    assert "total bits / total pixels" in summary[2]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["convention"]["rate_mean"].startswith("total bits")
    assert yaml_field(tmp_path / "a" / "config.yaml", "rate_mean") == "pixels"


def yaml_field(path: Path, name: str) -> object:
    import yaml

    return yaml.safe_load(path.read_text())[name]


def test_cells_of_an_earlier_format_are_recomputed(folder, weights, tmp_path):
    common = dict(
        checkpoints=[str(weights[0])],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path,
        workers=0,
        progress=False,
        metrics=["psnr"],
        bootstrap=0,
    )
    first = run(**common)
    [cell] = [p for p in (tmp_path / "cells").glob("fidelity__bmshj*.json")]
    old = json.loads(cell.read_text()) | {"format": 1, "bpp": 123.0}
    cell.write_text(json.dumps(old))
    again = run(**common)
    learned = [r for r in again if r["codec"] != "uncompressed"]
    assert learned[0]["bpp"] == next(r for r in first if r["codec"] != "uncompressed")["bpp"]
    assert json.loads(cell.read_text())["format"] == 2


def test_published_anchor_needs_the_kodak_images(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "data" / "demo" / "val"
    with pytest.raises(UsageError, match=r"measured on the 24 Kodak images; .* holds 3 image"):
        run(
            tasks=["fidelity"],
            data_roots={"fidelity": str(demo)},
            out=tmp_path,
            baselines=["jpeg"],
            metrics=["psnr"],
            anchor="published:vtm",
        )
    assert not any(tmp_path.iterdir())  # stopped before writing anything
    with pytest.raises(UsageError, match="no published curve 'vtm17'"):
        run(
            tasks=["fidelity"],
            data_roots={"fidelity": str(demo)},
            out=tmp_path,
            baselines=["jpeg"],
            metrics=["psnr"],
            published=["vtm17"],
        )


@pytest.mark.slow
def test_published_anchor_gives_bd_with_run_side_intervals(folder, tmp_path, monkeypatch):
    """Kodak stood in for by the test images (the catalog's pixel hashes replaced)."""
    from lic.data.catalog import SOURCES
    from lic.data.fetch import pixel_sha256

    hashes = {p.name: pixel_sha256(p) for p in folder.glob("*.png")}
    monkeypatch.setitem(SOURCES, "kodak", dataclasses.replace(SOURCES["kodak"], files=hashes))
    run(
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=tmp_path,
        baselines=["jpeg", "webp"],
        qualities={"jpeg": [30, 60, 90], "webp": [30, 60, 90]},
        metrics=["psnr", "ms_ssim"],
        anchor="published:vtm",
        published=["mlicpp"],
        workers=0,
        progress=False,
        bootstrap=100,
    )
    with (tmp_path / "bd.csv").open() as f:
        bd = list(csv.DictReader(f))
    assert {(b["curve"], b["reference"]) for b in bd} == {
        ("JPEG", "published:vtm"),
        ("WebP", "published:vtm"),
    }
    assert {b["metric"] for b in bd} == {"psnr", "ms_ssim", "ms_ssim_db"}
    jpeg = next(b for b in bd if b["curve"] == "JPEG" and b["metric"] == "psnr")
    rows = [r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["codec"] == "jpeg"]
    points = sorted((float(r["bpp"]), float(r["value"])) for r in rows if r["metric"] == "psnr")
    vtm = load_curve("published:vtm", "psnr")
    expected = bd_rate(vtm.bpp, vtm.values, *zip(*points, strict=True))
    assert float(jpeg["bd_rate_percent"]) == pytest.approx(expected)
    low, high = float(jpeg["bd_rate_ci_low"]), float(jpeg["bd_rate_ci_high"])
    assert low < float(jpeg["bd_rate_percent"]) < high  # the run's side resampled
    assert (tmp_path / "rate_task_fidelity.png").stat().st_size > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "- `published:vtm`: VTM" in summary and "InterDigitalInc/CompressAI@" in summary
    assert "- `published:mlicpp`: MLIC++" in summary
