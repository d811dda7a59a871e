"""`lic data`: pixel-verified fetching (on a loopback server), layout checks, the listing."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lic.cli import main
from lic.data.catalog import KODAK_PIXEL_SHA256, DataSource
from lic.data.fetch import fetch_source, pixel_sha256
from lic.errors import InputError, LicError

ROOT = Path(__file__).resolve().parents[1]


def test_pixel_hash_matches_the_catalog_on_a_bundled_kodak_image():
    """Golden: the catalog's hash function is the one in lic (and the bundled file is intact)."""
    assert pixel_sha256(ROOT / "data/demo/val/kodim23.png") == KODAK_PIXEL_SHA256["kodim23.png"]


def test_pixel_hash_ignores_encoding_but_not_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png", compress_level=0)
    Image.fromarray(pixels).save(tmp_path / "b.png", compress_level=9)
    Image.fromarray(pixels).convert("RGBA").save(tmp_path / "c.png")
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(tmp_path / "d.png")
    digests = {name: pixel_sha256(tmp_path / name) for name in ("a.png", "b.png", "c.png", "d.png")}
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert digests["a.png"] == digests["b.png"] == digests["c.png"] != digests["d.png"]


@pytest.fixture
def mirror(tmp_path):
    """A loopback HTTP mirror serving two PNGs, and the source record describing them."""
    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(1)
    files = {}
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(served / name)
        files[name] = pixel_sha256(served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield served, DataSource("toy", ("fidelity",), "", url, 2, files=files, base_url=url)
    server.shutdown()


def test_fetch_downloads_verifies_and_repairs(mirror, tmp_path):
    served, source = mirror
    target = tmp_path / "target"
    assert fetch_source(source, target) == target
    assert sorted(p.name for p in target.iterdir()) == ["x.png", "y.png"]
    Image.new("RGB", (16, 16)).save(target / "x.png")  # a corrupted local copy is replaced
    fetch_source(source, target)
    assert pixel_sha256(target / "x.png") == source.files["x.png"]
    Image.new("RGB", (16, 16)).save(served / "y.png")  # the mirror itself is wrong: refused
    (target / "y.png").unlink()
    with pytest.raises(InputError, match=r"y\.png"):
        fetch_source(source, target)


def test_fetch_offline_is_one_line_naming_url_and_folder(mirror, tmp_path):
    _, source = mirror
    dead = DataSource(
        "toy", ("fidelity",), "", "", 2, files=source.files, base_url="http://127.0.0.1:9/"
    )
    with pytest.raises(LicError) as info:
        fetch_source(dead, tmp_path / "t")
    message = str(info.value)
    assert "http://127.0.0.1:9/x.png" in message and str(tmp_path / "t") in message
    assert not (tmp_path / "t").exists()  # no empty folder left behind
    with pytest.raises(LicError):
        fetch_source(dead, tmp_path / "new" / "deeper" / "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_check_and_listing(tmp_path, capsys):
    assert main(["data", "check", "consistency", str(ROOT / "data/demo/val")]) == 0
    report = capsys.readouterr().out
    assert "3 samples" in report and "note:" not in report  # any folder: no official size
    assert main(["data", "check", "coco", str(tmp_path)]) == 2
    assert "instances_val2017.json" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["data", "check", "consistency", str(tmp_path)]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main(["data"]) == 0
    listing = capsys.readouterr().out
    assert "cocodataset.org" in listing and "lic data fetch kodak" in listing


def test_export_errors_name_its_positional_argument(tmp_path, capsys):
    ckpt = next((ROOT / "checkpoints").glob("*.ckpt"))
    (tmp_path / "out.ckpt").write_bytes(b"kept")
    assert main(["export", str(ckpt), str(tmp_path / "out.ckpt")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: OUT {tmp_path / 'out.ckpt'} exists (pass --overwrite")
    assert main(["export", str(ckpt), str(ckpt)]) == 2
    assert capsys.readouterr().err.startswith(f"error: OUT {ckpt} is an input")


def test_check_notes_a_subset_of_a_dedicated_set(tmp_path, capsys):
    voc = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    Image.new("RGB", (32, 24), (90, 120, 30)).save(voc / "JPEGImages" / "a.jpg")
    Image.new("P", (32, 24), 1).save(voc / "SegmentationClass" / "a.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    assert main(["data", "check", "voc", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "1 samples" in report and "official voc release has 1449" in report
