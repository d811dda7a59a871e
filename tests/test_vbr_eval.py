"""Variable-rate codecs in evaluation and on the command line: one checkpoint or zoo entry is
one curve with a cell per level, each CompressAI's own coding at that level."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from conftest import photo_like, save_rgb
from PIL import Image
from test_vbr import compressai_roundtrip, vbr_model

from lic.cli import main
from lic.codecs import Bitstream, create_codec, load_checkpoint, save_codec_checkpoint
from lic.errors import UsageError
from lic.evaluation import run
from lic.evaluation.cli import build_parser, config_from_args
from lic.evaluation.coders import ZooCoder, build_coders, parse_zoo_spec
from lic.metrics.pixel import PSNR
from lic.weights import WeightsUnavailableError


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vbr_images")
    for i, (h, w) in enumerate(((64, 80), (70, 64))):  # padded to 128x128, 128x64 (zeros)
        save_rgb(root / f"img{i}.png", photo_like(h, w, seed=20 + i))
    return root


def compressai_cell(model, folder: Path, level: int) -> tuple[float, float]:
    """(mean bpp, mean PSNR) of CompressAI's own calls at a level, eval_model's way: zeros
    padded centred to a multiple of 64, bpp from the strings over the unpadded pixels, the
    decoded image in 8 bits."""
    bpps, psnrs = [], []
    for path in sorted(folder.glob("*.png")):
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
        x = x.permute(2, 0, 1).float() / 255
        h, w = x.shape[-2:]
        pad, unpad = compute_padding(h, w, min_div=64)
        strings, decoded = compressai_roundtrip(model, F.pad(x, pad), level)
        y = (F.pad(decoded, unpad).clamp(0, 1) * 255).round() / 255
        bpps.append(8 * sum(map(len, strings)) / (h * w))
        psnrs.append(float(PSNR()(x[None], y)))
    return float(np.mean(bpps)), float(np.mean(psnrs))


def test_one_vbr_checkpoint_is_one_curve_of_compressai_cells(tmp_path, images):
    """Golden: the cells at levels 0, 3, 7 are CompressAI's own compress/decompress at those
    levels (bpp from the strings, the same decoded pixels), on one curve labelled by codec
    and objective; lambdas are the levels'; `level` holds the level, `quality` nothing."""
    model = vbr_model()
    ckpt = save_codec_checkpoint(model, tmp_path / "vbr.ckpt", distortion="mse")
    rows = run(
        checkpoints=[str(ckpt)],
        tasks=["fidelity"],
        data_roots={"fidelity": str(images)},
        out=tmp_path / "out",
        metrics=["psnr"],
        levels=[0, 3, 7],
        workers=0,
        progress=False,
    )
    cells = [r for r in rows if r["codec"] == "bmshj2018-hyperprior-vbr"]
    assert [(r["objective"], r["level"]) for r in cells] == [("mse", 0), ("mse", 3), ("mse", 7)]
    assert {r["quality"] for r in cells} == {None}
    assert [r["lambda"] for r in cells] == [0.0018, 0.013, 0.18]
    for row in cells:
        bpp, psnr = compressai_cell(model, images, row["level"])
        assert row["bpp"] == pytest.approx(bpp, rel=1e-12)
        assert row["value"] == pytest.approx(psnr, abs=1e-9)
    assert cells[0]["bpp"] < cells[1]["bpp"] < cells[2]["bpp"]


def test_a_vbr_checkpoint_gives_a_coder_per_level(tmp_path):
    ckpt = save_codec_checkpoint(vbr_model(), tmp_path / "vbr.ckpt", distortion="mse")
    coders = build_coders([str(ckpt)])[1:]
    assert [(c.level, c.lmbda) for c in coders][::7] == [(0, 0.0018), (7, 0.18)]
    assert len({c.key for c in coders}) == 8 and coders[0].meta()["container"] == 4
    assert [c.level for c in build_coders([str(ckpt)], levels=[0, 2, 4])[1:]] == [0, 2, 4]
    with pytest.raises(UsageError, match="levels 0 to 7"):
        build_coders([str(ckpt)], levels=[8])
    args = build_parser().parse_args(["--task", "fidelity", "--data-root", "d", "--out", "o"])
    args.levels = "0,2,4"
    assert config_from_args(args).levels == [0, 2, 4]
    args.levels = "0,two"
    with pytest.raises(UsageError, match="integers"):
        config_from_args(args)


def test_vbr_zoo_entry_offline_names_the_file_and_the_cache(hub):
    entry = parse_zoo_spec("compressai:bmshj2018-hyperprior-vbr")
    assert entry.qualities == tuple(range(8)) and entry.variable_rate
    assert parse_zoo_spec("compressai:mbt2018-vbr", levels=[1, 5]).qualities == (1, 5)
    with pytest.raises(UsageError, match="has levels"):
        parse_zoo_spec("compressai:mbt2018-mean-vbr:9")
    with pytest.raises(WeightsUnavailableError) as err:
        ZooCoder(entry, 0)
    assert "bmshj2018-hyperprior-mse-vbr-cddd26be.pth.tar" in str(err.value)
    assert str(hub) in str(err.value) and len(str(err.value).splitlines()) == 3


def test_vbr_zoo_entry_loads_through_compressai_zoo(hub, tmp_path, images):
    """Weights put where the message says are loaded by CompressAI's zoo function (which
    reads N and M off them: a tiny model stands in for the real file)."""
    from compressai.zoo.image_vbr import model_urls

    torch.manual_seed(0)
    source = create_codec("bmshj2018-hyperprior-vbr", N=8, M=12, vr_entbttlnck=True)
    hub.mkdir(parents=True)
    url = model_urls["bmshj2018-hyperprior-vbr"]["mse"]
    torch.save(source.state_dict(), hub / os.path.basename(url))
    rows = run(
        checkpoints=["compressai:bmshj2018-hyperprior-vbr:0,7"],
        tasks=["fidelity"],
        data_roots={"fidelity": str(images)},
        out=tmp_path / "out",
        metrics=["psnr"],
        workers=0,
        progress=False,
    )
    zoo = [r for r in rows if r["codec"] == "compressai:bmshj2018-hyperprior-vbr"]
    assert [(r["level"], r["quality"], r["lambda"]) for r in zoo] == [
        (0, None, 0.0018),
        (7, None, 0.18),
    ]
    assert all(r["bpp"] > 0 and r["n_failed"] == 0 for r in zoo)


def test_lic_compress_at_a_level_and_decompress(tmp_path, capsys):
    ckpt = save_codec_checkpoint(vbr_model(), tmp_path / "vbr.ckpt", distortion="mse")
    image = save_rgb(tmp_path / "img.png", photo_like(64, 64, seed=3))
    base = ["--ckpt", str(ckpt)]
    assert main(["compress", *base, str(image), "--out-dir", str(tmp_path / "b")]) == 2
    assert "give --level (0 to 7)" in capsys.readouterr().err
    assert (
        main(["compress", *base, "--level", "8", str(image), "--out-dir", str(tmp_path / "x")]) == 2
    )
    assert "levels 0 to 7" in capsys.readouterr().err
    assert (
        main(["compress", *base, "--level", "5", str(image), "--out-dir", str(tmp_path / "b")]) == 0
    )
    data = (tmp_path / "b" / "img.lic").read_bytes()
    assert Bitstream.from_bytes(data).level == 5
    lic_file = str(tmp_path / "b" / "img.lic")
    assert main(["decompress", *base, lic_file, "--out-dir", str(tmp_path / "d")]) == 0
    model, _ = load_checkpoint(ckpt)
    _, decoded = compressai_roundtrip(model, photo_like(64, 64, seed=3), 5)
    expected = (decoded[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d" / "img.png")), expected)
