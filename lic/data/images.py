"""Reading images as RGB float tensors in [0, 1], whatever mode or bit depth they are stored in.

Pillow decodes every format, but reads 16-bit RGB PNGs as 8-bit; those go through
torchvision's PNG decoder, which keeps all 16 bits.

Every path checks one pixel limit from the file's header before any pixel is decoded
(`pixel_limit()`, by default Pillow's `Image.MAX_IMAGE_PIXELS`, 89,478,485 pixels; raise it
with `set_pixel_limit` or a command's `--max-pixels`): a decompression bomb is an
ImageReadError like any corrupt file. EXIF orientation is applied at load, so the tensor is
the image as viewers display it (and a compressed-then-decoded copy, written without EXIF,
displays the same).
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lic.data.files import atomic_path
from lic.errors import DatasetLayoutError, ImageReadError  # noqa: F401 (re-exported)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_limit = {"pixels": DEFAULT_MAX_PIXELS}
_pillow_limit_lock = threading.Lock()
EXIF_ORIENTATION = 0x0112


def pixel_limit() -> int:
    """Largest height x width any image (or bitstream) decode accepts in this process."""
    return _limit["pixels"]


def set_pixel_limit(pixels: int | None) -> None:
    """Raise or lower `pixel_limit()` for this process (None: back to the default)."""
    if pixels is not None and pixels < 1:
        raise ValueError(f"the pixel limit must be positive, got {pixels}")
    _limit["pixels"] = DEFAULT_MAX_PIXELS if pixels is None else int(pixels)


def _check_pixels(path: str | Path, width: int, height: int) -> None:
    limit = pixel_limit()
    if width * height > limit:
        raise ImageReadError(
            path,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {limit} "
            "(decompression bomb?; a larger limit: --max-pixels)",
        )


def _open_pillow(source: str | Path | io.BytesIO) -> Image.Image:
    """Image.open with Pillow's own bomb check replaced by `pixel_limit()` (which the caller
    checks): Pillow's global is only lifted, under a lock, when the limit was raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if 2 * (Image.MAX_IMAGE_PIXELS or pixel_limit()) >= pixel_limit():
            return Image.open(source)
        with _pillow_limit_lock:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def open_image(source: str | Path | io.BytesIO, name: str | Path | None = None) -> Image.Image:
    """Image.open whose size is checked against `pixel_limit()` before any pixel is decoded
    (ImageReadError naming `name`, default `source`, otherwise), for every Pillow read."""
    name = source if name is None else name
    try:
        image = _open_pillow(source)
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            name, f"exceeds the limit of {pixel_limit()} pixels (decompression bomb?): {err}"
        ) from None
    try:
        _check_pixels(name, *image.size)
    except ImageReadError:
        image.close()
        raise
    return image


def _is_16bit_png(data: bytes) -> bool:
    # IHDR is the first chunk: width, height at bytes 16-23, bit depth at byte 24.
    return len(data) > 24 and data[:8] == _PNG_SIGNATURE and data[24] == 16


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 when absent or unreadable)."""
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block is no reason to refuse the pixels
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """(..., H, W) as displayed under EXIF `orientation` (what ImageOps.exif_transpose does)."""
    rows, cols = x.ndim - 2, x.ndim - 1
    if orientation in (5, 6, 7, 8):
        x = x.transpose(rows, cols)
    flips = {2: (cols,), 3: (rows, cols), 4: (rows,), 6: (cols,), 7: (rows, cols), 8: (rows,)}
    return x.flip(flips[orientation]).contiguous() if orientation in flips else x


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
    """(3, H, W) float32 in [0, 1], EXIF orientation applied. Raises ImageReadError for
    unreadable files and for images over `pixel_limit()` (checked before decoding)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(path, err.strerror or str(err)) from None
    if not data:
        raise ImageReadError(path, "empty file")
    try:
        with open_image(io.BytesIO(data), path) as image:
            if _is_16bit_png(data):  # Pillow would read 8 bits; its header is checked
                _check_pixels(path, *_png_size(data))
                pixels = _decode_16bit_png(data)
            else:
                image.load()
                pixels = _pil_to_tensor(image)
            return apply_orientation(pixels, _orientation(image))
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, RuntimeError, ValueError, SyntaxError) as err:
        if isinstance(err, ImageReadError):
            raise
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
    """Write a tensor in [0, 1] as an 8-bit image (format by suffix), atomically: a reader
    never sees half a file."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: no image format for suffix '{path.suffix}'")
    with atomic_path(path) as tmp:
        to_pil(image).save(tmp, format=fmt)
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
