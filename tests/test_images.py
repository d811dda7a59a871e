"""Image files of every common kind load as RGB float in [0, 1]; bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import photo_like, save_rgb, write_png
from PIL import Image

from lic.data import ImageReadError, list_images, load_image

RNG = np.random.default_rng(0)


def test_8bit_rgb_png_is_exact(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = load_image(write_png(tmp_path / "a.png", pixels))
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.from_numpy(pixels).permute(2, 0, 1) / 255.0)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    pixels = RNG.integers(0, 256, (6, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    torch.testing.assert_close(image, (torch.from_numpy(pixels) / 255.0).expand(3, -1, -1))


def test_palette_image_expands_to_its_colours(tmp_path):
    palette = Image.new("P", (4, 3))
    palette.putpalette([255, 0, 0, 0, 128, 255] + [0] * 762)
    palette.putdata([0, 1] * 6)
    palette.save(tmp_path / "p.png")
    image = load_image(tmp_path / "p.png")
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[:, 0, 1], torch.tensor([0.0, 128 / 255, 1.0]))


def test_rgba_drops_alpha_without_blending(tmp_path):
    pixels = RNG.integers(0, 256, (5, 5, 4), dtype=np.uint8)
    pixels[..., 3] = 0  # fully transparent: colours must survive untouched
    image = load_image(write_png(tmp_path / "rgba.png", pixels))
    torch.testing.assert_close(image, torch.from_numpy(pixels[..., :3]).permute(2, 0, 1) / 255.0)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_keeps_all_bits(tmp_path, channels):
    pixels = RNG.integers(0, 65536, (5, 6, channels), dtype=np.uint16)
    image = load_image(write_png(tmp_path / "deep.png", pixels))
    expected = torch.from_numpy(pixels.astype(np.float32) / 65535).permute(2, 0, 1)[:3]
    torch.testing.assert_close(image, expected.expand(3, -1, -1), rtol=0, atol=1e-7)


def test_16bit_grayscale_written_by_pillow(tmp_path):
    pixels = RNG.integers(0, 65536, (4, 4), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "g16.png")
    torch.testing.assert_close(
        load_image(tmp_path / "g16.png")[0], torch.from_numpy(pixels.astype(np.float32) / 65535)
    )


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".tif"])
def test_other_formats_load(tmp_path, suffix):
    original = photo_like(32, 48)
    image = load_image(save_rgb(tmp_path / f"x{suffix}", original))
    assert image.shape == (3, 32, 48)
    assert (image - original).abs().mean() < 0.05


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    path = save_rgb(tmp_path / f"t{suffix}", photo_like(64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=rf"^{path}: corrupt or truncated") as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_truncated_16bit_png_is_a_clear_error(tmp_path):
    path = write_png(tmp_path / "deep.png", RNG.integers(0, 65536, (64, 64, 3), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"certainly not an image", "not a recognised image format")],
)
def test_garbage_and_empty_files(tmp_path, content, reason):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        load_image(tmp_path / "bad.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="No such file"):
        load_image(tmp_path / "missing.png")


def test_list_images_filters_and_sorts(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.PNG", "a.jpg", "sub/c.webp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
