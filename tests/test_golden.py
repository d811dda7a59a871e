"""Golden numbers: an unintended change of a bitstream, a metric value or a curve point fails
here, not in a reviewer's plot. Regenerate a pin only for an intended change, and say why in
the commit."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint

from lic.codecs import Bitstream, BitstreamCodec, create_codec
from lic.codecs.entropy_check import Origin
from lic.evaluation import run


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_seeded_codec_bitstream_and_decoded_pixels():
    torch.manual_seed(0)
    model = create_codec("bmshj2018-hyperprior", N=16, M=24).eval()
    model.update(force=True)
    codec = BitstreamCodec(model)
    data = codec.encode(photo_like(128, 192, seed=3))
    decoded = (codec.decode(data)[0].clamp(0, 1) * 255).round().to(torch.uint8)
    stream = Bitstream.from_bytes(data)
    checks = dataclasses.replace(stream.checks, origin=Origin((0,) * 8))  # torch's version
    neutral = dataclasses.replace(stream, checks=checks).to_bytes()  # is not pinned here
    assert (len(data), sha256(neutral)) == (GOLDEN_BYTES, GOLDEN_DIGEST)
    assert stream.payload_bytes == GOLDEN_PAYLOAD and stream.checks.crcs == GOLDEN_CHECKS
    assert sha256(decoded.numpy().tobytes()) == GOLDEN_PIXELS


def test_a_version_1_file_written_by_lic_0_1_still_decodes_to_the_same_pixels():
    """GOLDEN_V1 was written by lic at 506c1b0 (container version 1, edge padding, no
    padding field) from the seeded codec and a 100 x 90 image; today's lic reads its padding
    as `replicate` and decodes the pixels lic 0.1 decoded."""
    torch.manual_seed(0)
    model = create_codec("bmshj2018-hyperprior", N=16, M=24).eval()
    model.update(force=True)
    data = bytes.fromhex(GOLDEN_V1)
    stream = Bitstream.from_bytes(data)
    assert (data[4], stream.padding, stream.height, stream.width) == (1, "replicate", 100, 90)
    decoded = (BitstreamCodec(model).decode(data)[0].clamp(0, 1) * 255).round().to(torch.uint8)
    assert sha256(decoded.numpy().tobytes()) == GOLDEN_V1_PIXELS


def test_seeded_mlclipsim_score_on_a_fixed_pair(make_mlclipsim):
    metric = make_mlclipsim(seed=0)
    x = photo_like(96, 128, seed=1)[None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    y = (x + 0.05 * noise).clamp(0, 1)
    assert metric(x, y).item() == pytest.approx(GOLDEN_MLCLIPSIM, abs=1e-5)
    assert metric(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_one_rate_task_cell_on_fixed_data(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(2):
        save_rgb(images / f"im{seed}.png", photo_like(96, 128, seed=seed))
    ckpt = write_codec_checkpoint(tmp_path / "codec.ckpt", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = run(
            checkpoints=[str(ckpt)],
            tasks=["consistency"],
            data_roots={"consistency": str(images)},
            out=tmp_path / "out",
            task_model="resnet18",
            task_weights="none",
            workers=0,
            device="cpu",
            progress=False,
        )
    cell = {r["metric"]: r for r in rows if r["codec"] != "uncompressed"}
    assert cell["top1_agreement"]["value"] == GOLDEN_AGREEMENT
    assert cell["kl"]["value"] == pytest.approx(GOLDEN_KL, rel=1e-4)
    assert cell["kl"]["bpp"] == pytest.approx(GOLDEN_BPP, rel=1e-9)
    assert cell["kl"]["bpp_file"] == pytest.approx(GOLDEN_BPP_FILE, rel=1e-9)


# bmshj2018-hyperprior N=16 M=24, torch.manual_seed(0), photo_like(128, 192, seed=3)
# (container version 3: version 2's 146 bytes and 14 of entropy checks; payload 80 bytes;
# digest with the origin zeroed)
GOLDEN_BYTES, GOLDEN_PAYLOAD, GOLDEN_CHECKS = 160, 80, (3422052625,)
GOLDEN_DIGEST = "ee17a05cae834e0376c41f6f17115c44f63a5a0900df746960b5929a90eb7b21"
GOLDEN_PIXELS = "20257f5e5833124a9675d53ba279444be18a6c6ccd9680f4ad77470372c165bf"
# the tiny test tower (conftest), seed 0, default layers and alpha
GOLDEN_MLCLIPSIM = 0.9961228
# that codec's checkpoint, two photo_like images, seeded random ResNet-18
# (bpp: the payload of 224x224 crops padded with zeros to 256x256; the file adds 80 bytes)
GOLDEN_AGREEMENT, GOLDEN_KL = 100.0, 0.8980777
GOLDEN_BPP, GOLDEN_BPP_FILE = 0.029974489795918366, 0.04272959183673469
# lic 0.1 (506c1b0): that codec, photo_like(100, 90, seed=3), version 1, edge padding
GOLDEN_V1 = (
    "4c4943420114626d73686a323031382d68797065727072696f7286b2df47e42a60b7000000640000005a0000"
    "00065b322c20325d020000000831fa52890000000000000030413459370f2f6136693d955ac12dece8f932b2"
    "b1952a32369640c0f9c24338f73d2b33ae6a2c1ed35940525d403e16c8f97a6ff7"
)
GOLDEN_V1_PIXELS = "94301690886b7b456782badc911bc3a1786291ad0607e2ea9073b4cbd4f46e5c"
