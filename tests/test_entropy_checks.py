"""A file decodes to its encoder's image or is refused: entropy-parameter checks in the
container (version 3), `lic conformance`, and files of versions 1 and 2 still decoding."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zlib
from pathlib import Path

import pytest
import torch
from conftest import photo_like, save_rgb

import lic.codecs.io as codec_io
from lic.cli import main
from lic.codecs import BitstreamCodec, create_codec, load_checkpoint
from lic.codecs.conformance import Setting, conformance
from lic.codecs.entropy_check import (
    PER_CALL,
    TOTAL,
    EntropyChecks,
    EntropyMismatchError,
    Origin,
)
from lic.codecs.io import Bitstream, BitstreamError
from lic.data.images import list_images, load_image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo-bmshj2018-hyperprior-mse-0.013.ckpt"
ULPS = 4  # a few float32 ulps: what another device's arithmetic changes


def crops() -> list[torch.Tensor]:
    """Eighteen 256 x 256 crops of the three bundled Kodak images."""
    images = [load_image(p) for p in list_images(ROOT / "data" / "demo" / "val")]
    return [x[:, r : r + 256, c : c + 256] for x in images for r in (0, 256) for c in (0, 256, 512)]


@contextlib.contextmanager
def perturbed_hyper_synthesis(model, ulps: int = ULPS):
    """The decoder's scales computed a few ulps off, as on another device."""
    handle = model.h_s.register_forward_hook(lambda _m, _i, out: out * (1 + ulps * 2**-23))
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def lookup_off(model, call: int):
    """The `call`-th scale-table lookup one table step off, as another device's arithmetic
    can make it; yields the list of lookups made."""
    gc = model.gaussian_conditional
    build, calls = gc.build_indexes, []

    def shifted(scales):
        calls.append(1)
        indexes = build(scales)
        if len(calls) != call:
            return indexes
        return torch.where(indexes > 0, indexes - 1, indexes + 1)

    gc.build_indexes = shifted
    try:
        yield calls
    finally:
        del gc.build_indexes


def indexes_change(model, data: bytes) -> bool:
    stream = Bitstream.from_bytes(data)
    with torch.no_grad():
        z_hat = model.entropy_bottleneck.decompress([stream.streams[1]], stream.shape)
        scales = model.h_s(z_hat)
        build = model.gaussian_conditional.build_indexes
        return bool((build(scales) != build(scales * (1 + ULPS * 2**-23))).any())


def test_a_perturbed_decoder_refuses_every_file_whose_indexes_changed():
    model, _ = load_checkpoint(DEMO)
    codec = BitstreamCodec(model)
    files = [codec.encode(x) for x in crops()]
    clean = [codec.decode(data) for data in files]
    changed = [indexes_change(model, data) for data in files]
    assert 0 < sum(changed) < len(files)  # both outcomes exercised (2 of 18 at 4 ulps)
    with perturbed_hyper_synthesis(model):
        for data, image, change in zip(files, clean, changed, strict=True):
            if change:
                with pytest.raises(EntropyMismatchError, match="entropy stage 1 differ"):
                    codec.decode(data)
            else:
                assert torch.equal(codec.decode(data), image)
        # without the check, those files decode to a wrong image and no error
        unchecked = contextlib.nullcontext
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(codec_io, "traced", lambda *a, **k: unchecked(None))
            wrong = [codec.decode(d) for d, c in zip(files, changed, strict=True) if c]
    right = [image for image, change in zip(clean, changed, strict=True) if change]
    worst = [float((w - r).abs().nan_to_num(1.0).max()) for w, r in zip(wrong, right, strict=True)]
    assert all(d > 10 / 255 for d in worst), worst


def test_the_refusal_is_one_line_exit_1_and_writes_no_image(tmp_path, capsys, monkeypatch):
    model, _ = load_checkpoint(DEMO)
    codec = BitstreamCodec(model)
    data = next(d for d in map(codec.encode, crops()) if indexes_change(model, d))
    (tmp_path / "x.lic").write_bytes(data)
    build = BitstreamCodec.__init__

    def on_another_device(self, model, *args, **kwargs):
        build(self, model, *args, **kwargs)
        model.h_s.register_forward_hook(lambda _m, _i, out: out * (1 + ULPS * 2**-23))

    monkeypatch.setattr(BitstreamCodec, "__init__", on_another_device)
    argv = ["decompress", "--ckpt", str(DEMO), str(tmp_path / "x.lic"), "--out-dir"]
    assert main([*argv, str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: {tmp_path / 'x.lic'}: entropy parameters of entropy stage")
    assert "(encoded on cpu; torch " in err[0] and "decoding on cpu; torch " in err[0]
    assert "decode on the encoding device type, or re-encode here" in err[0]
    assert not list((tmp_path / "out").glob("*.png"))


def test_mlicpp_checks_every_slice_as_it_comes():
    torch.manual_seed(0)
    model = create_codec("mlicpp", N=48, M=96, slice_num=3).eval()
    model.update(force=True)
    codec = BitstreamCodec(model)
    data = codec.encode(photo_like(64, 64, seed=1))
    checks = Bitstream.from_bytes(data).checks
    assert checks.mode == PER_CALL and len(checks.crcs) == 6  # 3 slices x (anchor, rest)
    image = codec.decode(data)
    with lookup_off(model, 3), pytest.raises(EntropyMismatchError, match="entropy stage 3"):
        codec.decode(data)
    assert torch.equal(codec.decode(data), image)


def test_autoregressive_models_check_all_positions_at_the_end():
    torch.manual_seed(0)
    model = create_codec("mbt2018", N=8, M=12).eval()
    model.update(force=True)
    codec = BitstreamCodec(model)
    assert not codec.codes_batches  # CompressAI loops over images inside
    data = codec.encode(photo_like(128, 128, seed=2))
    checks = Bitstream.from_bytes(data).checks
    assert checks.mode == TOTAL and len(checks.crcs) == 1  # 8 x 8 positions: one CRC
    image = codec.decode(data)
    off = pytest.raises(EntropyMismatchError, match="the entropy stages differ")
    with lookup_off(model, 40) as calls, off:  # position 40 of 64
        codec.decode(data)
    assert len(calls) == 64 and torch.equal(codec.decode(data), image)


def test_files_coded_in_a_batch_are_the_files_coded_alone():
    """A convolution over a batch rounds differently from one over an image: with h_s over
    the batch, 1 of these 18 batch-coded files had other scales than its decoder alone
    computes (silently wrong before the checks, refused with them)."""
    model, _ = load_checkpoint(DEMO)
    codec = BitstreamCodec(model)
    images = torch.stack(crops())
    batched = codec.encode_batch(images)
    assert batched == [codec.encode(x) for x in images]
    decoded = codec.decode_batch(batched)
    alone = [codec.decode(d) for d in batched]  # the same latents; g_s may round apart
    pairs = zip(decoded, alone, strict=True)
    assert all(torch.allclose(a[None], b, atol=1e-5, rtol=0) for a, b in pairs)


def test_one_and_two_threads_decode_identically_or_refuse():
    model, _ = load_checkpoint(DEMO)
    threads = torch.get_num_threads()
    settings = [Setting("cpu", 1), Setting("cpu", 2)]
    matrix = conformance(model, crops()[:4], settings)
    assert set(matrix) == {(a.label, b.label) for a in settings for b in settings}
    for (encoder, decoder), cell in matrix.items():
        assert sum(cell.counts.values()) == 4 and not cell.counts["SILENT"]
        if encoder == decoder:
            assert cell.counts["identical"] == 4
    assert torch.get_num_threads() == threads  # restored


def test_lic_conformance_prints_the_matrix(tmp_path, capsys):
    save_rgb(tmp_path / "a.png", photo_like(96, 128, seed=3))
    argv = ["conformance", "--ckpt", str(DEMO), str(tmp_path / "a.png"), "--threads", "1", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["encoded", "on", "cpu/1t", "cpu/2t"]
    assert out[2].startswith("cpu/1t") and "1 identical" in out[2]
    assert main(
        ["conformance", "--ckpt", str(DEMO), str(tmp_path / "a.png"), "--devices", "cuda"]
    ) == (0 if torch.cuda.is_available() else 2)


def _older(data: bytes, version: int) -> bytes:
    """A version 3 file rewritten as lic wrote version 2 (no checks) or 1 (no padding)."""
    stream = Bitstream.from_bytes(data)
    body = data[:-4][: -len(stream.checks.to_bytes())]
    body = body[:4] + bytes([version]) + body[5:]
    if version == 1:
        body = body[:5] + body[6:]
    return body + struct.pack(">I", zlib.crc32(body))


def test_version_2_and_1_files_still_decode_without_checks():
    model, _ = load_checkpoint(DEMO)
    replicate = BitstreamCodec(model, padding="replicate")
    image = photo_like(100, 90, seed=4)
    data = replicate.encode(image)
    for version in (2, 1):
        old = _older(data, version)
        stream = Bitstream.from_bytes(old)
        assert (old[4], stream.checks, stream.padding) == (version, None, "replicate")
        assert torch.equal(replicate.decode(old), replicate.decode(data))


def test_checks_cost_14_bytes_and_never_the_payload():
    model, _ = load_checkpoint(DEMO)
    data = BitstreamCodec(model).encode(crops()[0])
    stream = Bitstream.from_bytes(data)
    assert len(stream.checks.to_bytes()) == 14  # origin 8, mode 1, count 1, one CRC 4
    assert len(data) - len(_older(data, 2)) == 14
    assert stream.payload_bytes == sum(map(len, stream.streams))


def test_forged_checks_are_refused_in_one_line():
    model, _ = load_checkpoint(DEMO)
    stream = Bitstream.from_bytes(BitstreamCodec(model).encode(crops()[0]))
    origin = Origin.here(torch.device("cpu"))
    for checks, message in (
        (EntropyChecks(7, (1,), origin), "entropy check mode 7 with 1 checks"),
        (EntropyChecks(TOTAL, (1, 2), origin), "entropy check mode 2 with 2 checks"),
    ):
        with pytest.raises(BitstreamError, match=message):
            Bitstream.from_bytes(dataclasses.replace(stream, checks=checks).to_bytes())
    other = EntropyChecks(PER_CALL, (stream.checks.crcs[0] ^ 1,), Origin((1, 2, 5, 1, 12, 4, 1, 1)))
    with pytest.raises(EntropyMismatchError, match=r"encoded on cuda; torch 2\.5\.1; CUDA 12\.4"):
        BitstreamCodec(model).decode(dataclasses.replace(stream, checks=other).to_bytes())
