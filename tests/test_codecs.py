"""Codec registry, CompressAI compatibility, float32 entropy models, and the bitstream file."""

from __future__ import annotations

import argparse
import pickle
import socket
import warnings
import zipfile

import pytest
import torch
from compressai.registry import MODELS
from compressai.zoo import bmshj2018_hyperprior
from conftest import photo_like, write_codec_checkpoint

from lic.codecs import (
    Bitstream,
    BitstreamCodec,
    BitstreamError,
    codec_stride,
    create_codec,
    init_codec_weights,
    list_codecs,
    load_checkpoint,
)
from lic.codecs.io import crop_image, pad_image
from lic.codecs.padding import PADDINGS
from lic.errors import InputError
from lic.weights import WeightsUnavailableError

TINY = {"N": 16, "M": 24}


def tiny_codec(name: str = "bmshj2018-hyperprior", seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = create_codec(name, **(kwargs or TINY)).eval()
    model.update(force=True)
    return model


def test_registry_has_the_required_codecs():
    assert {
        "bmshj2018-hyperprior",
        "mbt2018-mean",
        "cheng2020-anchor",
        "elic2022-chandelier",
    } <= set(list_codecs())
    model = create_codec("mbt2018-mean", quality=3)
    assert model.codec_name == "mbt2018-mean" and model.codec_args == {"N": 128, "M": 192}
    assert codec_stride(model) == 64
    with pytest.raises(ValueError, match="unknown codec"):
        create_codec("jpeg2000")
    with pytest.raises(ValueError, match="mbt2018-mean"):
        create_codec("mbt2018-mean", N=8, M=8, bogus=1)


def test_compressai_state_dict_loads_and_gives_identical_outputs():
    torch.manual_seed(0)
    theirs = bmshj2018_hyperprior(quality=1, pretrained=False).eval()
    theirs.update(force=True)
    ours = create_codec("bmshj2018-hyperprior", quality=1).eval()
    ours.load_state_dict(theirs.state_dict())
    x = photo_like(64, 64)[None]
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for key in ("y", "z"):
        assert torch.equal(a["likelihoods"][key], b["likelihoods"][key])
    # and back: our state dict is a CompressAI state dict
    again = MODELS["bmshj2018-hyperprior"](N=128, M=192)
    again.load_state_dict(ours.state_dict())


def test_entropy_models_stay_float32_under_bf16_autocast():
    model = tiny_codec().train()
    x = photo_like(64, 64)[None]
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out["x_hat"].dtype == torch.bfloat16  # the transforms did run in bf16
    assert all(p.dtype == torch.float32 for p in out["likelihoods"].values())
    assert model.aux_loss().dtype == torch.float32


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean"])
@pytest.mark.parametrize(("height", "width"), [(70, 99), (64, 64), (17, 30)])
def test_round_trip_equals_eval_forward_exactly(name, height, width):
    model = tiny_codec(name)
    x = photo_like(height, width)[None]
    for padding in PADDINGS:
        codec = BitstreamCodec(model, padding=padding)
        decoded = codec.decode(codec.encode(x))
        with torch.no_grad():
            forward = model(pad_image(x, 64, padding))["x_hat"]
        forward = crop_image(forward, height, width, 64, padding).clamp(0, 1)
        assert decoded.shape == x.shape
        assert torch.equal(decoded, forward)


@pytest.mark.parametrize("name", ["cheng2020-anchor", "elic2022-chandelier"])
def test_context_model_codecs_round_trip(name):
    kwargs = {"N": 16} if name.startswith("cheng") else {"N": 16, "M": 32, "groups": [4, 4, 8, 16]}
    codec = BitstreamCodec(tiny_codec(name, **kwargs))
    x = photo_like(40, 50)[None]
    decoded = codec.decode(codec.encode(x))
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("bmshj2018-hyperprior", TINY),
        ("mbt2018-mean", TINY),
        ("mbt2018", TINY),
        ("elic2022-chandelier", {"N": 16, "M": 32, "groups": [4, 4, 8, 16]}),
        ("mlicpp", {"N": 16, "M": 64, "slice_num": 2}),
    ],
)
def test_batched_coding_writes_the_same_files(name, kwargs):
    codec = BitstreamCodec(tiny_codec(name, **kwargs))
    images = torch.stack([photo_like(40, 50, seed=i) for i in range(3)])
    one_by_one = [codec.encode(image) for image in images]
    batched = codec.encode_batch(images)
    assert [len(b) for b in batched] == [len(b) for b in one_by_one]
    assert batched == one_by_one
    decoded = codec.decode_batch([*batched, one_by_one[0]])
    for image, data in zip(decoded, [*batched, one_by_one[0]], strict=True):
        # batched convolutions may round differently in the last bits (means of y_hat)
        torch.testing.assert_close(image, codec.decode(data)[0], rtol=0, atol=1e-5)


@pytest.fixture
def stream():
    codec = BitstreamCodec(tiny_codec())
    return codec, codec.encode(photo_like(50, 60))


def test_bitstreams_are_coded_in_float32_under_autocast(stream):
    codec, data = stream
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert codec.encode(photo_like(50, 60)) == data
        assert codec.decode(data).dtype == torch.float32


def test_container_fields(stream):
    codec, data = stream
    parsed = Bitstream.from_bytes(data)
    assert (parsed.codec, parsed.height, parsed.width) == ("bmshj2018-hyperprior", 50, 60)
    assert parsed.fingerprint == codec.fingerprint and len(parsed.streams) == 2
    assert parsed.to_bytes() == data


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty", "extend"])
def test_damaged_files_are_rejected(stream, damage):
    codec, data = stream
    damaged = {
        "flip": data[:30] + bytes([data[30] ^ 0x10]) + data[31:],
        "truncate": data[: len(data) - 7],
        "magic": b"XXXX" + data[4:],
        "empty": b"",
        "extend": data + b"\x00",
    }[damage]
    with pytest.raises(BitstreamError):
        codec.decode(damaged)


def test_file_from_another_codec_or_checkpoint_is_refused(stream):
    _, data = stream
    other_arch = BitstreamCodec(tiny_codec("mbt2018-mean"))
    with pytest.raises(BitstreamError, match="codec 'bmshj2018-hyperprior'"):
        other_arch.decode(data)
    other_weights = BitstreamCodec(tiny_codec(seed=1))
    with pytest.raises(BitstreamError, match="another 'bmshj2018-hyperprior' checkpoint"):
        other_weights.decode(data)


def test_load_checkpoint_refuses_other_architectures(tmp_path):
    good = write_codec_checkpoint(tmp_path / "good.ckpt", lmbda=0.01)
    model = tiny_codec()
    loaded, info = load_checkpoint(good)
    assert info.codec == "bmshj2018-hyperprior" and info.lmbda == 0.01
    assert BitstreamCodec(loaded).fingerprint == BitstreamCodec(model).fingerprint
    with pytest.raises(ValueError, match="not 'mbt2018-mean'"):
        load_checkpoint(good, expect_codec="mbt2018-mean")
    liar = tmp_path / "liar.ckpt"  # says cheng2020-anchor, holds a hyperprior
    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"] |= {"codec": "cheng2020-anchor", "codec_args": {"N": 16}}
    torch.save(ckpt, liar)
    with pytest.raises(ValueError, match="does not hold weights of codec 'cheng2020-anchor'"):
        load_checkpoint(liar)
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    with pytest.raises(ValueError, match="not a lic codec checkpoint"):
        load_checkpoint(plain)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(garbage)


def test_a_file_that_is_no_checkpoint_is_named_in_lic_s_words(tmp_path):
    """Never torch's advice to load with weights_only=False (running the file's code)."""
    text, archive = tmp_path / "notes.ckpt", tmp_path / "photos.ckpt"
    text.write_text("lambda = 0.013\n")
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.txt", "not torch")
    pickled, plain = tmp_path / "namespace.ckpt", tmp_path / "plain.pkl"
    torch.save({"hyper_parameters": argparse.Namespace(codec="x")}, pickled)
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    expected = {
        text: "neither torch's zip format nor a pickle",
        archive: "a zip archive without torch's layout",
        pickled: "it holds argparse.Namespace; lic loads only tensors and plain values",
        plain: "a pickle not written by torch.save",
    }
    for path, reason in expected.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's pickle-protocol remark stays inside
            with pytest.raises(InputError) as err:
                load_checkpoint(path)
        message = str(err.value)
        assert message.startswith(f"{path}: not a readable checkpoint ({reason}")
        assert "weights_only" not in message and "\n" not in message


def test_init_from_a_plain_compressai_state_dict(tmp_path):
    source = tiny_codec(seed=3)
    path = tmp_path / "weights.pth.tar"
    torch.save(source.state_dict(), path)
    target = create_codec("bmshj2018-hyperprior", **TINY)
    init_codec_weights(target, str(path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="does not hold weights"):
        init_codec_weights(create_codec("bmshj2018-hyperprior", N=8, M=24), str(path))


def test_zoo_init_offline_is_a_clear_error(monkeypatch, tmp_path):
    def refuse(*_args, **_kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="bmshj2018-hyperprior-3"):
        init_codec_weights(
            create_codec("bmshj2018-hyperprior", quality=3), "compressai:bmshj2018-hyperprior:3"
        )
    with pytest.raises(ValueError, match="QUALITY"):
        init_codec_weights(create_codec("bmshj2018-hyperprior", quality=3), "compressai:x")
