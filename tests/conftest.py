"""Shared fixtures: tiny random models and images the tests make themselves (no downloads)."""

from __future__ import annotations

import json
import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

TINY_CLIP = "lic-test-tiny-vit"
_TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Name of a 4-block, 64x64-input ViT registered with open_clip for this test session."""
    path = tmp_path_factory.mktemp("clip_cfg") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(_TINY_CLIP_CFG))
    open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture
def make_mlclipsim(tiny_clip: str):
    """Factory for randomly initialised ML-CLIPSim metrics on the tiny tower (seeded)."""
    from lic.metrics import MLCLIPSim

    def make(**kwargs) -> MLCLIPSim:
        torch.manual_seed(kwargs.pop("seed", 0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return MLCLIPSim(model=tiny_clip, pretrained=None, **kwargs)

    return make


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, offline (torch.hub's folder set back after the test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LIC_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def photo_like(height: int = 96, width: int = 128, seed: int = 0) -> torch.Tensor:
    """A deterministic (3, H, W) image with what photos have: smooth shading, hard-edged
    objects of several colours, and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([0.6 * xx + 0.2, 0.5 * yy + 0.3, 0.4 * (1 - xx) * (1 - yy) + 0.3])
    rows, cols = np.mgrid[0:height, 0:width]
    for _ in range(6):  # discs of flat colour: hard edges
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.08, 0.25) * width
        img[:, (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = rng.uniform(0.05, 0.95, (3, 1))
    img += 0.04 * np.sin(2 * math.pi * (xx * 23 + yy * 17))[None] * rng.uniform(0.5, 1, (3, 1, 1))
    return torch.from_numpy(np.clip(img, 0, 1)).float()


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write an (H, W, C) uint8/uint16 array as PNG by hand (Pillow cannot write 16-bit RGB)."""
    h, w, c = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = pixels.astype(">u2" if depth == 16 else "u1").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def save_rgb(path: Path, image: torch.Tensor, **save_kwargs) -> Path:
    """Save a (3, H, W) [0, 1] tensor with Pillow in the format the suffix names."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def write_codec_checkpoint(
    path: Path,
    lmbda: float = 0.01,
    distortion: object = "mse",
    seed: int = 0,
    codec: str = "bmshj2018-hyperprior",
    codec_args: dict | None = None,
) -> Path:
    """A lic checkpoint of a tiny random codec, as training writes it (hparams + codec.*)."""
    from lic.codecs import create_codec, save_codec_checkpoint

    codec_args = codec_args or {"N": 16, "M": 24}
    torch.manual_seed(seed)
    model = create_codec(codec, **codec_args)
    model.update(force=True)
    return save_codec_checkpoint(model, path, lmbda=lmbda, distortion=distortion)
