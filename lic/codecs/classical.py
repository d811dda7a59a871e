"""Classical image codecs (JPEG to JPEG XL), one record each, coded through Pillow and plugins.

Each record fixes the encoder settings that decide a rate-distortion curve (speed/effort,
chroma subsampling, bit depth) so that every curve lic draws is reproducible, names the
package that provides the codec, and holds a default quality grid that spans about 0.1-2 bpp
on Kodak. Images are coded as 8-bit RGB; the rate is the size of the encoded file.

| codec    | library                       | fixed settings                                   |
|----------|-------------------------------|--------------------------------------------------|
| jpeg     | Pillow (libjpeg-turbo)        | Pillow defaults: 4:2:0, baseline, standard tables |
| webp     | Pillow (libwebp)              | lossy, method 4 (Pillow's default), 4:2:0         |
| jpeg2000 | Pillow (OpenJPEG)             | 9/7 wavelet, ICT, 6 levels, 1 layer; Q = ratio    |
| avif     | Pillow>=11.3 (libavif, libaom) | speed 6, tune psnr, 4:4:4, 8 bit                 |
| heic     | pillow-heif (libheif, x265)   | HEVC intra, preset slower, tune psnr, 4:4:4, 8 bit |
| jxl      | pillow-jxl-plugin (libjxl)    | VarDCT, effort 7, XYB (libjxl's default), 8 bit   |

JPEG and WebP keep Pillow's defaults, as CompressAI's published Kodak curves do; for
jpeg2000 the quality Q is OpenJPEG's compression ratio (rate = 24 / Q bpp, the JP2 container
included), so the rate is controlled directly. AVIF and HEIC are tuned for PSNR (the
strongest anchor on the PSNR axis; BPG is x265 at 4:4:4 too); JPEG XL has no PSNR tuning.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lic.errors import LicError, UsageError

if TYPE_CHECKING:  # this module loads no torch: `lic eval --help` lists the codecs
    from torch import Tensor

EXTRA = "codecs"


class CodecUnavailableError(LicError, ImportError):
    """The package that provides a classical codec is not installed."""


def _quality(q: int) -> dict:
    return {"quality": int(q)}


def _ratio(q: int) -> dict:
    return {"quality_mode": "rates", "quality_layers": [int(q)]}


def _pillow_feature(feature: str) -> Callable[[], bool]:
    def check() -> bool:
        from PIL import features

        return bool(features.check(feature))

    return check


def _import(module: str, then: str | None = None) -> Callable[[], bool]:
    """True once `module` is imported (and `then`, a function of it, called): plugins
    register their format with Pillow on import."""

    def load() -> bool:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return False
        if then:
            getattr(mod, then)()
        return True

    return load


@dataclass(frozen=True)
class ClassicalCodec:
    """One classical codec: how to encode and decode it, its settings and default grid."""

    name: str
    label: str
    extension: str
    pil_format: str
    qualities: tuple[int, ...]  # default grid, about 0.1-2 bpp on Kodak
    quality_range: tuple[int, int]
    settings: dict = field(default_factory=dict)  # fixed save() options besides the quality
    quality_options: Callable[[int], dict] = _quality
    providers: tuple[Callable[[], bool], ...] = ()  # any one makes the codec available
    package: str = "Pillow"

    def require(self) -> None:
        """Register the codec's plugin with Pillow, or say which extra installs it."""
        if not _available(self.name):
            raise CodecUnavailableError(
                f"baseline '{self.name}' needs {self.package}: pip install 'lic[{EXTRA}]'"
            )

    def check_quality(self, quality: int) -> int:
        low, high = self.quality_range
        if not low <= int(quality) <= high:
            raise UsageError(
                f"baseline '{self.name}' takes qualities in [{low}, {high}], got {quality}"
            )
        return int(quality)

    def options(self, quality: int) -> dict:
        """Every save() option of one grid point: the fixed settings and the quality (a deep
        copy: pillow-heif writes into the dicts it is given)."""
        return copy.deepcopy(self.settings) | self.quality_options(self.check_quality(quality))

    def encode(self, image: Tensor, quality: int) -> bytes:
        """(3, H, W) in [0, 1] -> the codec's file, as 8-bit RGB."""
        from lic.data.images import pillow_encode

        self.require()
        return pillow_encode(image, self.pil_format, **self.options(quality))

    def decode(self, data: bytes) -> Tensor:
        from lic.data.images import pillow_decode

        self.require()
        return pillow_decode(data)

    def roundtrip(self, image: Tensor, quality: int) -> tuple[Tensor, int]:
        """(decoded (3, H, W) in [0, 1], file size in bytes)."""
        data = self.encode(image, quality)
        return self.decode(data), len(data)


CLASSICAL_CODECS: dict[str, ClassicalCodec] = {
    c.name: c
    for c in (
        ClassicalCodec(
            "jpeg",
            "JPEG",
            ".jpg",
            "JPEG",
            (5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
            (1, 100),
        ),
        ClassicalCodec(
            "webp", "WebP", ".webp", "WEBP", (0, 5, 15, 30, 50, 75, 90), (0, 100), {"method": 4}
        ),
        ClassicalCodec(
            "jpeg2000",
            "JPEG 2000",
            ".jp2",
            "JPEG2000",
            (240, 192, 128, 96, 64, 48, 32, 24, 16, 12),
            (1, 2400),
            {"irreversible": True, "mct": 1, "num_resolutions": 6, "no_jp2": False},
            _ratio,
            (_pillow_feature("jpg_2000"),),
            "Pillow built with OpenJPEG",
        ),
        ClassicalCodec(
            "avif",
            "AVIF",
            ".avif",
            "AVIF",
            (10, 20, 30, 40, 50, 60, 70, 80),
            (0, 100),
            {"speed": 6, "subsampling": "4:4:4", "codec": "aom", "advanced": {"tune": "psnr"}},
            providers=(_pillow_feature("avif"), _import("pillow_avif")),
            package="Pillow>=11.3 with libavif (or pillow-avif-plugin)",
        ),
        ClassicalCodec(
            "heic",
            "HEIC (x265)",
            ".heic",
            "HEIF",
            (5, 10, 15, 20, 30, 40, 50, 55),
            (0, 100),
            {"chroma": 444, "enc_params": {"preset": "slower", "tune": "psnr"}},
            providers=(_import("pillow_heif", "register_heif_opener"),),
            package="pillow-heif",
        ),
        ClassicalCodec(
            "jxl",
            "JPEG XL",
            ".jxl",
            "JXL",
            (1, 5, 10, 20, 30, 50, 70, 80, 90),
            (0, 100),
            {"effort": 7, "decoding_speed": 0},
            providers=(_import("pillow_jxl"),),
            package="pillow-jxl-plugin",
        ),
    )
}


@functools.cache
def _available(name: str) -> bool:
    """Once per process: whether any provider of codec `name` works (plugins register)."""
    return any(provider() for provider in CLASSICAL_CODECS[name].providers) or not (
        CLASSICAL_CODECS[name].providers
    )


def classical_codec(name: str) -> ClassicalCodec:
    try:
        return CLASSICAL_CODECS[name]
    except KeyError:
        raise UsageError(
            f"unknown baseline '{name}'; known: {', '.join(CLASSICAL_CODECS)}"
        ) from None
