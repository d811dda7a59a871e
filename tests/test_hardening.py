"""Hostile and careless input: forged bitstreams, image bombs, EXIF orientation, forged
checkpoints, outputs that would clobber, atomic writes, a NaN guard, truncated eval cells."""

from __future__ import annotations

import dataclasses
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint, write_png
from PIL import Image, ImageOps

from lic.cli import main
from lic.codecs import BitstreamCodec, create_codec, load_checkpoint
from lic.codecs.entropy_check import EntropyMismatchError
from lic.codecs.io import Bitstream, BitstreamError, StreamLayout
from lic.data.files import atomic_path, plan_outputs, write_bytes_atomic
from lic.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    apply_orientation,
    load_image,
    pixel_limit,
    set_pixel_limit,
)
from lic.errors import InputError, UsageError


@pytest.fixture(scope="module")
def codec() -> BitstreamCodec:
    torch.manual_seed(0)
    model = create_codec("bmshj2018-hyperprior", N=16, M=24)
    model.update(force=True)
    return BitstreamCodec(model)


@pytest.fixture(scope="module")
def real(codec) -> Bitstream:
    return Bitstream.from_bytes(codec.encode(photo_like(96, 128)))


@pytest.fixture
def limit():
    """Set the process-wide pixel limit for one test, and restore the default after it."""
    yield set_pixel_limit
    set_pixel_limit(None)


def test_layout_is_measured_from_the_codec(codec, real):
    # N=16 hyperprior: z is 16 x 1 x 1 and y 24 x 4 x 4 per 64 x 64 block
    assert codec.layout == StreamLayout(2, 16 + 24 * 16, [("h", 1), ("w", 1)], 4.0)
    assert real.shape == codec.layout.shape(96, 128, 64, real.padding) == [2, 2]
    assert codec.layout.shape(96, 128, 64, "replicate") == [2, 2]
    assert [len(s) for s in real.streams] == [8, 48]  # golden: seed 0, photo_like(96, 128)


FORGERIES = {
    "empty streams": ({"streams": (b"", b"")}, "stream 0 of 0 bytes"),
    "latent shape 600x600": ({"shape": [600, 600]}, r"latent shape \[600, 600\] does not fit"),
    "latent shape 3000x3000": ({"shape": [3000, 3000]}, "does not fit a 128x96 image"),
    "1x1 latent under 768x512": (
        {"shape": [1, 1], "height": 512, "width": 768},
        r"codes \[8, 12\]",
    ),
    "nested shape": ({"shape": [[[2]], 2]}, "does not fit"),
    "zero height": ({"height": 0, "shape": [0, 2]}, "outside 1.."),
    "30000x30000": ({"height": 30000, "width": 30000, "shape": [469, 469]}, "outside 1.."),
    "one stream": ({"streams": (b"\0" * 8,)}, "1 streams; 'bmshj2018-hyperprior' files hold 2"),
    "odd length": ({"streams": (b"\0" * 9, b"\0" * 48)}, "stream 0 of 9 bytes"),
    "too long": ({"streams": (b"\0" * 8, b"\0" * 4 * 100_000)}, "stream 1 of 400000 bytes"),
    "other codec": ({"codec": "mbt2018"}, "codec 'mbt2018'"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forged_headers_are_refused_before_decoding(codec, real, name):
    changes, message = FORGERIES[name]
    data = dataclasses.replace(real, **changes).to_bytes()  # valid CRC
    with pytest.raises(BitstreamError, match=message):
        codec.decode(data)


def test_oversized_or_invalid_header_fields(codec, real):
    body = real.to_bytes()[:-4]
    at = 4 + 3 + len(real.codec) + 8 + 8  # offset of the shape length
    forged = body[:at] + struct.pack(">I", 10**6) + body[at + 4 :]
    with pytest.raises(BitstreamError, match="latent shape field of 1000000 bytes"):
        Bitstream.from_bytes(forged + struct.pack(">I", zlib.crc32(forged)))
    name = b"\xff\xfe"
    forged = body[:6] + bytes([len(name)]) + name + body[7 + len(real.codec) :]
    with pytest.raises(BitstreamError, match="not UTF-8"):
        Bitstream.from_bytes(forged + struct.pack(">I", zlib.crc32(forged)))


def test_pixel_limit_applies_to_bitstreams_and_can_be_raised(codec, real, limit):
    data = real.to_bytes()
    limit(128 * 96 - 1)
    with pytest.raises(BitstreamError, match=r"outside 1\.\.12287 pixels"):
        codec.decode(data)
    limit(128 * 96)
    assert codec.decode(data).shape == (1, 3, 96, 128)
    strict = BitstreamCodec(codec.model, max_pixels=100)
    with pytest.raises(BitstreamError, match=r"outside 1\.\.100 pixels"):
        strict.decode(data)


def test_garbage_streams_of_a_valid_length_decode_to_an_image_or_are_refused(codec, real):
    """Forged content of a plausible length reaches the native decoder (zero-padded): a
    garbage y stream decodes to an image; a garbage z stream gives other scales, which the
    entropy checks refuse before y is decoded with them."""
    rng = np.random.default_rng(0)
    for fill in (b"\xff", b"\x00", None):
        y, z = (
            fill * len(s) if fill else rng.integers(0, 256, len(s), dtype=np.uint8).tobytes()
            for s in real.streams
        )
        out = codec.decode(dataclasses.replace(real, streams=(y, real.streams[1])).to_bytes())
        assert out.shape == (1, 3, 96, 128) and bool(out.isfinite().all())
        with pytest.raises(EntropyMismatchError, match="entropy stage 1 differ"):
            codec.decode(dataclasses.replace(real, streams=(y, z)).to_bytes())


# ---- images ----------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int, depth: int) -> Path:
    """A PNG whose header claims width x height (bit depth `depth`, RGB) over 1 row of data."""
    write_png(path, np.zeros((1, 4, 3), dtype=np.uint16 if depth == 16 else np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("depth", [8, 16])
def test_bomb_png_is_refused_from_its_header(tmp_path, depth):
    path = _png_header_only(tmp_path / "bomb.png", 30000, 30000, depth)
    with pytest.raises(ImageReadError, match="bomb"):
        load_image(path)


def test_one_limit_for_every_decode_path(tmp_path, limit):
    paths = [
        save_rgb(tmp_path / "a.png", photo_like(40, 50)),
        save_rgb(tmp_path / "a.jpg", photo_like(40, 50)),
        write_png(tmp_path / "b.png", np.zeros((40, 50, 3), dtype=np.uint16)),
    ]
    assert pixel_limit() == DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    limit(40 * 50 - 1)
    for path in paths:
        with pytest.raises(ImageReadError, match="2000 pixels exceeds the limit of 1999"):
            load_image(path)
    limit(40 * 50)
    assert all(load_image(p).shape == (3, 40, 50) for p in paths)
    limit(3 * Image.MAX_IMAGE_PIXELS)  # above Pillow's own error threshold
    assert load_image(paths[0]).shape == (3, 40, 50)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # Pillow's global left as it was


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, orientation):
    array = (photo_like(30, 44) * 255).round().byte().permute(1, 2, 0).numpy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(array).save(path, exif=exif)
    with Image.open(path) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    loaded = load_image(path)
    expected = torch.from_numpy(shown.copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(loaded, expected)
    assert torch.equal(apply_orientation(loaded, 1), loaded)


def test_training_skips_and_counts_a_bomb(tmp_path, limit):
    from lic.data.patches import ImageFolderDataset

    save_rgb(tmp_path / "0.png", photo_like(40, 50))
    save_rgb(tmp_path / "1.png", photo_like(80, 90))
    limit(40 * 50)
    dataset = ImageFolderDataset(tmp_path, crop=32)
    sample = dataset[1]  # 1.png is over the limit: skipped, 0.png given instead
    assert sample["index"] == 0 and sample["skipped"] == 1


# ---- checkpoints -------------------------------------------------------------------------


def _forged_checkpoint(tmp_path: Path, name: str, edit) -> Path:
    path = write_codec_checkpoint(tmp_path / f"{name}.ckpt")
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


def test_forged_checkpoints_are_one_line_errors(tmp_path):
    (tmp_path / "zero.ckpt").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_checkpoint(tmp_path / "zero.ckpt")
    cases = {
        "huge": ({"N": 1_000_000, "M": 24}, r"entropy_bottleneck.quantiles \(16, 1, 3\)"),
        "overflow": ({"N": 10**11, "M": 24}, "exceed every tensor side"),
        "other": ({"N": 16, "M": 25}, r"g_a.6.weight \(24, 16, 5, 5\)"),
    }
    for name, (args, message) in cases.items():

        def edit(ckpt, args=args):
            ckpt["hyper_parameters"]["codec_args"] = args

        with pytest.raises(InputError, match=message):
            load_checkpoint(_forged_checkpoint(tmp_path, name, edit))

    def drop_tables(ckpt):
        ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "cdf" not in k}

    with pytest.raises(InputError, match=r"lacks 'entropy_bottleneck\._quantized_cdf'"):
        load_checkpoint(_forged_checkpoint(tmp_path, "tables", drop_tables))


# ---- outputs -----------------------------------------------------------------------------


def test_plan_outputs_refuses_clobbering_before_any_work(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="would both be written to"):
        plan_outputs([a, b], out, ".lic")
    with pytest.raises(UsageError, match="is an input"):
        plan_outputs([tmp_path / "a" / "x.lic"], tmp_path / "a", ".lic", overwrite=True)
    assert out.is_dir()  # plan_outputs creates the folder
    (out / "x.lic").write_bytes(b"old")
    with pytest.raises(UsageError, match="exists"):
        plan_outputs([a], out, ".lic")
    assert plan_outputs([a], out, ".lic", overwrite=True) == [out / "x.lic"]
    with pytest.raises(UsageError, match="is a file"):
        plan_outputs([a], out / "x.lic", ".lic")


def test_atomic_writes_leave_the_old_file_when_they_fail(tmp_path):
    path = write_bytes_atomic(tmp_path / "f.bin", b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_cli_refusals_are_one_line_with_exit_2(tmp_path, capsys):
    ckpt = write_codec_checkpoint(tmp_path / "c.ckpt")
    image = save_rgb(tmp_path / "img.png", photo_like(40, 50))
    compress = ["compress", "--ckpt", str(ckpt), str(image)]
    cases = [
        ([*compress, "--out-dir", str(image)], "is a file, not a folder"),
        ([*compress, "--out-dir", str(tmp_path / "o"), "--device", "banana"], "not a device"),
        ([*compress, "--out-dir", str(tmp_path / "o"), "--device", "cuda:7"], "cuda:7"),
        (["score", "--metric", "mse", str(image), str(image), "--out", str(tmp_path)], "folder"),
        ([*compress, "--out-dir", str(tmp_path / "o"), "--max-pixels", "-1"], "positive"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], err
        assert len(err) == 1 or err[0].startswith("usage:"), err  # argparse adds its usage


def test_cli_batch_goes_on_past_a_bomb_and_never_overwrites(tmp_path, capsys):
    ckpt = write_codec_checkpoint(tmp_path / "c.ckpt")
    good = save_rgb(tmp_path / "good.png", photo_like(40, 50))
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000, 16)
    out = tmp_path / "bits"
    assert main(["compress", "--ckpt", str(ckpt), str(bomb), str(good), "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    assert "1 done, 1 failed" in captured.out and "bomb" in captured.err
    assert [p.name for p in out.iterdir()] == ["good.lic"]
    before = (out / "good.lic").read_bytes()
    assert main(["compress", "--ckpt", str(ckpt), str(good), "--out-dir", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    decoded = tmp_path / "decoded"
    args = ["decompress", "--ckpt", str(ckpt), str(out / "good.lic"), "--out-dir", str(decoded)]
    assert main(args) == 0 and main([*args, "--overwrite"]) == 0
    assert (out / "good.lic").read_bytes() == before
    assert [p.name for p in decoded.iterdir()] == ["good.png"]  # no temp files left


# ---- training and evaluation ---------------------------------------------------------------


def test_non_finite_loss_stops_training_and_no_nan_weights_are_saved():
    from lic.training import CodecModule
    from lic.training.module import NonFiniteLossError

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module = CodecModule(codec_args={"N": 16, "M": 24}, val_metrics=["psnr"])
    x = photo_like(64, 64)[None]
    x[..., 0, 0] = float("nan")
    with pytest.raises(
        NonFiniteLossError, match=r"step 0: non-finite loss \(bpp=nan, .*distortion=nan"
    ):
        module.training_step({"image": x, "skipped": torch.zeros(1)}, 0)
    with torch.no_grad():
        next(module.codec.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="no checkpoint written"):
        module.on_save_checkpoint({"state_dict": {}})


def test_truncated_cell_is_named_and_recomputed(tmp_path, caplog):
    from lic.evaluation.rate_task import CELL_FORMAT, read_cell

    path = tmp_path / "cells" / "task__coder.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 1, "meta": {}, "metrics": {}})[:20])
    with caplog.at_level("WARNING"):
        assert read_cell(path) is None
    assert str(path) in caplog.text and "recomputing" in caplog.text
    path.write_text(json.dumps({"format": CELL_FORMAT, "meta": {"a": 1}}))
    assert read_cell(path) == {"format": CELL_FORMAT, "meta": {"a": 1}}


def test_a_size_the_device_cannot_decode_is_refused(codec, real, monkeypatch):
    assert codec.layout.floats_per_pixel == 4.0  # g_s's N=16 channels at half resolution
    monkeypatch.setattr("lic.codecs.io.free_memory", lambda device: 128 * 128 * 64 - 1)
    with pytest.raises(BitstreamError, match=r"needs about 0\.0 GiB; 0\.0 GiB are free"):
        codec.decode(real.to_bytes())  # 128 x 128 padded, 4 floats x 4 bytes x 4 per pixel
    monkeypatch.setattr("lic.codecs.io.free_memory", lambda device: 128 * 128 * 64)
    assert codec.decode(real.to_bytes()).shape == (1, 3, 96, 128)


def test_failures_count_each_cell_once():
    from lic.evaluation.report import failures_message

    cell = {"codec": "c", "objective": "mse", "lambda": 0.01, "quality": None, "task": "t"}
    rows = [cell | {"metric": m, "n_failed": 2} for m in ("top1", "top5")]
    rows.append(cell | {"codec": "jpeg", "quality": 10, "metric": "top1", "n_failed": 0})
    assert failures_message(rows, "OUT").startswith("2 failures in 1 cell (")
    assert failures_message(rows[2:], "OUT") is None


def test_segmentation_mask_bomb_is_an_image_error(tmp_path, limit):
    from lic.data.images import open_image

    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((40, 50), dtype=np.uint8), mode="L").save(mask)
    limit(40 * 50 - 1)
    with pytest.raises(ImageReadError, match=r"mask\.png: 50x40 = 2000 pixels"):
        open_image(mask)
    with pytest.raises(ImageReadError, match="bomb"):
        open_image(_png_header_only(tmp_path / "b.png", 30000, 30000, 8))


def test_a_bitstream_file_larger_than_any_real_one_is_refused_unread(tmp_path):
    from lic.codecs.io import read_bitstream_file

    huge = tmp_path / "huge.lic"
    with huge.open("wb") as f:
        f.truncate(1 << 40)  # sparse: 1 TiB on paper, nothing on disk
    with pytest.raises(BitstreamError, match="more than a bitstream"):
        read_bitstream_file(huge, max_pixels=1 << 20)
    small = tmp_path / "small.lic"
    small.write_bytes(b"x" * 100)
    assert read_bitstream_file(small, max_pixels=1) == b"x" * 100
