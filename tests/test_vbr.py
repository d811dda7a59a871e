"""Variable-rate codecs (lic.codecs.vbr): CompressAI's VBR models in the registry, their
checkpoints, and real bitstreams at each level equal to CompressAI's own calls."""

from __future__ import annotations

import socket
import struct

import pytest
import torch
from compressai.models import (
    JointAutoregressiveHierarchicalPriorsVbr,
    MeanScaleHyperpriorVbr,
    ScaleHyperpriorVbr,
)
from conftest import photo_like

from lic.codecs import (
    Bitstream,
    BitstreamCodec,
    BitstreamError,
    create_codec,
    init_codec_weights,
    list_codecs,
    load_checkpoint,
    save_codec_checkpoint,
)
from lic.codecs.io import model_fingerprint
from lic.codecs.vbr import VBR_CODECS, coding_at
from lic.errors import InputError
from lic.weights import WeightsUnavailableError

CLASSES = {
    "bmshj2018-hyperprior-vbr": ScaleHyperpriorVbr,
    "mbt2018-mean-vbr": MeanScaleHyperpriorVbr,
    "mbt2018-vbr": JointAutoregressiveHierarchicalPriorsVbr,
}
# what CompressAI's zoo builds: a gain-dependent hyperprior step (not for mbt2018-vbr)
ZOO_ARGS = {
    name: {"vr_entbttlnck": True} for name in ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr")
}


def vbr_model(name: str = "bmshj2018-hyperprior-vbr", seed: int = 0, **kwargs):
    """A tiny random VBR codec whose latents are large enough (g_a scaled up) that the
    levels code different symbols: a random model's latents all round to zero otherwise."""
    torch.manual_seed(seed)
    model = create_codec(name, N=8, M=12, **(ZOO_ARGS.get(name, {}) | kwargs))
    with torch.no_grad():
        model.g_a[-1].weight.mul_(30)
    model.update(force=True)
    return model.eval()


@torch.no_grad()
def compressai_roundtrip(model, x: torch.Tensor, level: int) -> tuple[list[bytes], torch.Tensor]:
    """CompressAI's own calls at a level, as its eval_model makes them."""
    if getattr(model, "vr_entbttlnck", False):
        model.update(force=True, scale=model.Gain[level])
    out = model.compress(x[None], stage=2, s=level)
    decoded = model.decompress(out["strings"], out["shape"], stage=2, s=level)["x_hat"]
    if getattr(model, "vr_entbttlnck", False):
        model.update(force=True)  # the tables vbr_model made
    return [bytes(g[0]) for g in out["strings"]], decoded


def test_registry_builds_compressai_classes_under_their_names():
    assert set(VBR_CODECS) <= set(list_codecs("*-vbr"))
    for name, cls in CLASSES.items():
        model = create_codec(name, N=8, M=12)
        assert type(model) is cls and model.codec_name == name
        assert model.state_dict().keys() == cls(N=8, M=12).state_dict().keys()
        assert len(model.Gain) == len(model.lmbda) == 8


def test_every_entropy_model_is_kept_at_full_precision():
    model = create_codec("bmshj2018-hyperprior-vbr", N=8, M=12, vr_entbttlnck=True)
    assert getattr(model.entropy_bottleneck, "_lic_full_precision", False)


# payload bytes of photo_like(64, 64) at levels 0..7 (hyperprior) and 0, 4, 7 (the others)
PAYLOADS = {
    "bmshj2018-hyperprior-vbr": [24, 56, 92, 160, 216, 264, 352, 396],
    "mbt2018-mean-vbr": [24, 216, 392],
    "mbt2018-vbr": [72, 300, 456],
}


@pytest.mark.parametrize("name", VBR_CODECS)
def test_files_equal_compressai_at_every_level(name):
    """Golden: each level's container holds CompressAI's own strings and decodes to its
    image; the checkpoint's tables are back afterwards. The rate rises with the level: on
    this model (large latents, finer steps) every level costs more than the one below (a
    random model's latents would all round to zero)."""
    model, x = vbr_model(name), photo_like(64, 64)
    before = model_fingerprint(model)
    codec, payloads = BitstreamCodec(model, level=0), []
    for level in range(8) if name == "bmshj2018-hyperprior-vbr" else (0, 4, 7):
        data = codec.at_level(level).encode(x)
        stream = Bitstream.from_bytes(data)
        strings, decoded = compressai_roundtrip(model, x, level)
        assert stream.level == level and data[4] == 4  # container version 4
        assert list(stream.streams) == strings
        assert torch.equal(codec.decode(data), decoded)
        payloads.append(stream.payload_bytes)
    assert model_fingerprint(model) == before
    assert payloads == PAYLOADS[name]


def test_levels_are_checked_on_both_sides():
    model, x = vbr_model(), photo_like(64, 64)
    with pytest.raises(ValueError, match="choose a level"):
        BitstreamCodec(model).encode(x)
    with pytest.raises(ValueError, match="levels 0 to 7"):
        BitstreamCodec(model, level=8)
    fixed = create_codec("bmshj2018-hyperprior", N=8, M=12)
    fixed.update(force=True)
    with pytest.raises(ValueError, match="not variable-rate"):
        BitstreamCodec(fixed, level=1)
    fixed_file = BitstreamCodec(fixed).encode(x)
    assert fixed_file[4] == 3  # fixed-rate files keep version 3
    data = bytearray(BitstreamCodec(model, level=2).encode(x))
    assert BitstreamCodec(model).decode(bytes(data)).shape == (1, 3, 64, 64)  # level from file
    data[6] = 9  # the level byte, after magic, version and padding
    data[-4:] = struct.pack(">I", __import__("zlib").crc32(bytes(data[:-4])))
    with pytest.raises(BitstreamError, match="levels 0 to 7"):
        BitstreamCodec(model).decode(bytes(data))


def test_coding_at_a_level_leaves_the_tables_as_they_were():
    model = vbr_model()
    tables = {k: v.clone() for k, v in model.state_dict().items() if "cdf" in k or "offset" in k}
    with coding_at(model, 0) as at:
        assert at == {"stage": 2, "s": 0}
        changed = model.entropy_bottleneck._quantized_cdf
        assert not torch.equal(changed, tables["entropy_bottleneck._quantized_cdf"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tables.items())


def test_checkpoint_records_levels_and_lambdas(tmp_path):
    model = vbr_model()
    path = save_codec_checkpoint(model, tmp_path / "vbr.ckpt", distortion="mse")
    loaded, info = load_checkpoint(path)
    assert info.lambdas == (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
    assert info.lmbda is None and info.hparams["levels"] == 8
    assert info.label() == "bmshj2018-hyperprior-vbr (mse, 8 levels, lambdas 0.0018 to 0.18)"
    assert model_fingerprint(loaded) == model_fingerprint(model)
    model.lmbda = [0.001 * 2**k for k in range(8)]  # another grid survives a save and load
    again = save_codec_checkpoint(model, tmp_path / "again.ckpt", distortion="mse")
    assert load_checkpoint(again)[0].lmbda == model.lmbda
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["lambdas"] = [0.1, 0.05]
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(InputError, match="expected 8 positive lambdas"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_zoo_init_offline_names_the_vbr_file(monkeypatch, tmp_path):
    def refuse(*_args, **_kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = create_codec("bmshj2018-hyperprior-vbr", N=192, M=320, vr_entbttlnck=True)
    with pytest.raises(WeightsUnavailableError, match="bmshj2018-hyperprior-mse-vbr-cddd26be"):
        init_codec_weights(model, "compressai:bmshj2018-hyperprior-vbr")


def test_the_levels_hyperprior_tables_are_checked_before_decoding(monkeypatch):
    """They are computed while coding, not stored: a decoder that computes others refuses
    the file instead of decoding a wrong z."""
    from lic.codecs import io
    from lic.codecs.entropy_check import EntropyMismatchError

    model, x = vbr_model(), photo_like(64, 64)
    codec = BitstreamCodec(model, level=2)
    data = codec.encode(x)
    assert len(Bitstream.from_bytes(data).checks.crcs) == 2  # z tables, then y's scales
    monkeypatch.setattr(io, "level_tables", lambda m: torch.zeros(3, 5, dtype=torch.int32))
    with pytest.raises(EntropyMismatchError, match="entropy stage 1 differ"):
        codec.decode(data)


def test_lic_conformance_of_a_vbr_checkpoint_codes_at_the_level_given(tmp_path, capsys):
    from conftest import save_rgb

    from lic.cli import main

    ckpt = save_codec_checkpoint(vbr_model(), tmp_path / "vbr.ckpt", distortion="mse")
    image = save_rgb(tmp_path / "a.png", photo_like(64, 64, seed=1))
    argv = ["conformance", "--ckpt", str(ckpt), str(image), "--threads", "1", "2"]
    assert main([*argv, "--level", "2"]) == 0
    assert "1 identical" in capsys.readouterr().out  # one image, each pair identical
    assert main(argv) == 2
    assert "is variable-rate: give --level (0 to 7)" in capsys.readouterr().err
    assert main([*argv, "--level", "9"]) == 2
    assert "levels 0 to 7" in capsys.readouterr().err
