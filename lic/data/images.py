"""Reading images as RGB float tensors in [0, 1], whatever mode or bit depth they are stored in.

Pillow decodes every format, but reads 16-bit RGB PNGs as 8-bit; those go through
torchvision's PNG decoder, which keeps all 16 bits.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lic.errors import DatasetLayoutError, ImageReadError  # noqa: F401 (re-exported)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_16bit_png(data: bytes) -> bool:
    # IHDR is the first chunk; byte 24 of the file is its bit depth.
    return len(data) > 24 and data[:8] == _PNG_SIGNATURE and data[24] == 16


def _decode_16bit_png(data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_png

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders
        warnings.simplefilter("ignore")
        pixels = decode_png(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
        )
    return pixels.to(torch.float32) / 65535.0


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        return torch.from_numpy(gray).clamp_(0, 1).expand(3, -1, -1).contiguous()
    if image.mode == "F":
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).expand(3, -1, -1).clone()
    rgb = np.asarray(image.convert("RGB"))  # palette, L, LA, RGBA (alpha dropped), CMYK, ...
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).to(torch.float32) / 255.0


def load_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]. Raises ImageReadError for unreadable files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(path, err.strerror or str(err)) from None
    if not data:
        raise ImageReadError(path, "empty file")
    try:
        if _is_16bit_png(data):
            return _decode_16bit_png(data)
        with Image.open(path) as image:
            image.load()
            return _pil_to_tensor(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, RuntimeError, ValueError, SyntaxError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ImageReadError(path, f"corrupt or truncated image ({reason})") from None


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted, by suffix (case-insensitive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    found: Iterable[Path] = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 1] as an 8-bit RGB Pillow image."""
    array = (image.detach().reshape(3, *image.shape[-2:]).float().clamp(0, 1) * 255).round()
    return Image.fromarray(array.to(torch.uint8).permute(1, 2, 0).cpu().numpy())


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a tensor in [0, 1] as an 8-bit image (format by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path)
    return path


def pillow_encode(image: torch.Tensor, fmt: str, **options) -> bytes:
    """The bytes Pillow (or a registered plugin) writes for `image` as 8-bit RGB in `fmt`;
    `options` are the format's save() parameters."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format=fmt.upper(), **options)
    return buffer.getvalue()


def pillow_decode(data: bytes) -> torch.Tensor:
    """(3, H, W) in [0, 1] of encoded bytes in any format Pillow (or a plugin) opens."""
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.load()
        return _pil_to_tensor(decoded)


def pillow_roundtrip(
    image: torch.Tensor, fmt: str, quality: int | None = None, **options
) -> tuple[torch.Tensor, int]:
    """(decoded (3, H, W) in [0, 1], encoded size in bytes) of a Pillow round trip in `fmt`
    at `quality` (if given) with further save() `options`."""
    if quality is not None:
        options["quality"] = int(quality)
    data = pillow_encode(image, fmt, **options)
    return pillow_decode(data), len(data)
