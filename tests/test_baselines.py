"""Classical baselines: the codec registry (real files in each format, fixed settings, one
implementation shared with PCMP), the --baselines syntax and a missing plugin's error."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from conftest import photo_like
from PIL import Image

import lic.codecs.classical as classical
from lic.codecs.classical import CLASSICAL_CODECS, CodecUnavailableError, classical_codec
from lic.errors import UsageError
from lic.evaluation.cli import parse_baselines
from lic.evaluation.coders import ClassicalCoder, build_coders

# What each format's file starts with (the ISO-BMFF formats: an 'ftyp' box and brand).
MAGIC = {
    "jpeg": lambda d: d[:3] == b"\xff\xd8\xff",
    "webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP",
    "jpeg2000": lambda d: d[4:8] == b"jP  ",
    "avif": lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"avis"),
    "heic": lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"mif1"),
    "jxl": lambda d: d[:2] == b"\xff\x0a" or d[4:8] == b"JXL ",
}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return photo_like(72, 104, seed=3)


def psnr_8bit(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = (a * 255).round().double(), (b * 255).round().double()
    return float(10 * torch.log10(255.0**2 / (a - b).square().mean()))


@pytest.mark.parametrize("name", list(CLASSICAL_CODECS))
def test_every_codec_writes_its_format_and_rate_is_the_file_size(name, image):
    codec = classical_codec(name)
    settings = copy.deepcopy(codec.settings)
    low, high = codec.qualities[0], codec.qualities[-1]
    data = codec.encode(image, low)
    assert MAGIC[name](data), data[:16]
    decoded = codec.decode(data)
    assert decoded.shape == image.shape and decoded.dtype == torch.float32
    assert torch.equal(decoded, (decoded * 255).round() / 255)  # an 8-bit image
    coder = ClassicalCoder(name, low)
    again, bits = coder.roundtrip(image)
    assert bits == (8 * len(data),) * 2 and torch.equal(again, decoded)  # deterministic
    # the grid runs from low to high rate and quality
    richer = codec.encode(image, high)
    assert len(richer) > len(data)
    assert psnr_8bit(codec.decode(richer), image) > psnr_8bit(decoded, image)
    assert coder.meta()["settings"] == codec.options(low) == {**settings, **codec.options(low)}
    assert codec.settings == settings  # encoders that write into their options do not drift


def test_jpeg_is_plain_pillow_and_jpeg2000_is_rate_controlled(image):
    buffer = io.BytesIO()
    Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(
        buffer, format="JPEG", quality=37
    )
    assert classical_codec("jpeg").encode(image, 37) == buffer.getvalue()  # CompressAI's way
    big = photo_like(256, 256, seed=5)
    for ratio in (24, 96):  # OpenJPEG's compression ratio: 24 / ratio bpp, container included
        bpp = 8 * len(classical_codec("jpeg2000").encode(big, ratio)) / (256 * 256)
        assert bpp == pytest.approx(24 / ratio, rel=0.12)


def test_settings_are_fixed_and_documented():
    assert classical_codec("avif").settings["subsampling"] == "4:4:4"
    assert classical_codec("heic").settings["chroma"] == 444
    assert classical_codec("jxl").settings["effort"] == 7
    assert classical_codec("jpeg2000").settings["irreversible"] is True
    doc = classical.__doc__
    for name in CLASSICAL_CODECS:
        assert f"| {name} " in doc
    # default grids are sorted from low to high rate (jpeg2000: falling compression ratio)
    for codec in CLASSICAL_CODECS.values():
        grid = codec.qualities[::-1] if codec.name == "jpeg2000" else codec.qualities
        assert list(grid) == sorted(grid) and len(grid) >= 6


def test_pcmp_codes_jpeg_and_webp_through_the_registry(image):
    from lic.pcmp.distortions import FAMILIES

    for name, quality in (("jpeg", 20), ("webp", 40)):
        expected = classical_codec(name).roundtrip(image, quality)[0]
        assert torch.equal(FAMILIES[name].apply(image, quality, 0), expected)


def test_bad_names_and_qualities_are_usage_errors():
    with pytest.raises(UsageError, match=r"unknown baseline 'bpg'.*jxl"):
        classical_codec("bpg")
    with pytest.raises(UsageError, match=r"\[0, 100\], got 101"):
        ClassicalCoder("avif", 101)


def test_missing_plugin_names_the_extra(monkeypatch):
    record = CLASSICAL_CODECS["heic"]
    monkeypatch.setitem(
        CLASSICAL_CODECS,
        "heic",
        classical.ClassicalCodec(**{**vars(record), "providers": (lambda: False,)}),
    )
    classical._available.cache_clear()
    try:
        with pytest.raises(CodecUnavailableError) as err:
            build_coders([], ["heic"])
        assert str(err.value) == "baseline 'heic' needs pillow-heif: pip install 'lic[codecs]'"
        assert isinstance(err.value, ImportError)
    finally:
        classical._available.cache_clear()


def test_build_coders_uses_default_grids_unless_given():
    coders = build_coders([], ["jpeg", "jxl"], {"jxl": [30, 60]})
    jpeg = [f"jpeg-q{q}" for q in CLASSICAL_CODECS["jpeg"].qualities]
    assert [c.key for c in coders[1:]] == [*jpeg, "jxl-q30", "jxl-q60"]


def test_baselines_syntax():
    names, grids = parse_baselines(["jpeg=5,10,95", "webp", "jpeg2000=24", "webp"])
    assert names == ["jpeg", "webp", "jpeg2000"]
    assert grids == {"jpeg": [5, 10, 95], "jpeg2000": [24]}
    for bad in (["jpeg=5,x"], ["png"], ["webp=200"]):
        with pytest.raises(UsageError):
            parse_baselines(bad)
