"""Everything that turns an image into (decoded image, bits): checkpoints and baselines.

Coders are small and picklable, so evaluation workers each hold a copy and code images in
parallel (`roundtrip`); or the main process codes whole batches on the GPU
(`roundtrip_batch`). Entropy coding runs on the CPU in any case.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import Tensor

from lic.codecs import BitstreamCodec, codec_stride, load_checkpoint
from lic.codecs.io import pad_to_stride
from lic.data.images import pillow_roundtrip
from lic.losses import estimated_bits

DEFAULT_QUALITIES = {"jpeg": (10, 20, 30, 50, 70, 90), "webp": (5, 15, 30, 50, 75, 90)}


class Coder(ABC):
    """codec / objective / lambda / quality describe the curve point this coder makes."""

    codec: str
    objective: str
    lmbda: float | None = None
    quality: int | None = None
    rate_source: str = "bitstream"

    @property
    @abstractmethod
    def key(self) -> str:
        """Unique, file-name-safe identity of this point (checkpoint contents included)."""

    @abstractmethod
    def roundtrip(self, image: Tensor) -> tuple[Tensor, float | None]:
        """(3, H, W) in [0, 1] -> (decoded (3, H, W), bits or None when uncompressed)."""

    def roundtrip_batch(self, images: list[Tensor]) -> list[tuple[Tensor, float | None]]:
        """`roundtrip` of each image; learned codecs code images of one size together."""
        return [self.roundtrip(image) for image in images]

    def meta(self) -> dict:
        return {
            "codec": self.codec,
            "objective": self.objective,
            "lambda": self.lmbda,
            "quality": self.quality,
            "rate_source": self.rate_source,
            "key": self.key,
        }


class Uncompressed(Coder):
    codec, objective, rate_source = "uncompressed", "uncompressed", "none"

    @property
    def key(self) -> str:
        return "uncompressed"

    def roundtrip(self, image: Tensor) -> tuple[Tensor, None]:
        return image, None


class PillowCoder(Coder):
    """JPEG or WebP through Pillow at one quality; bits from the encoded bytes."""

    def __init__(self, fmt: str, quality: int) -> None:
        if fmt not in DEFAULT_QUALITIES:
            raise ValueError(f"baseline must be one of {sorted(DEFAULT_QUALITIES)}, got '{fmt}'")
        self.codec = self.objective = fmt
        self.quality = int(quality)

    @property
    def key(self) -> str:
        return f"{self.codec}-q{self.quality}"

    def roundtrip(self, image: Tensor) -> tuple[Tensor, float]:
        decoded, size = pillow_roundtrip(image, self.codec, self.quality)
        return decoded, 8.0 * size


def objective_label(distortion: object) -> str:
    """'mse', 'lpips', or 'mse+mlclipsim' for a weighted mix."""
    if isinstance(distortion, dict):
        return "+".join(distortion)
    return str(distortion)


class CheckpointCoder(Coder):
    """A lic checkpoint: real bitstreams (default) or likelihood estimates of the rate."""

    def __init__(
        self, path: str | Path, estimate_rate: bool = False, device: str | torch.device = "cpu"
    ) -> None:
        self.path = Path(path)
        self.model, info = load_checkpoint(self.path, map_location=device)
        self.codec, self.objective = info.codec, objective_label(info.distortion)
        self.lmbda, self.distortion = info.lmbda, info.distortion
        self.rate_source = "estimate" if estimate_rate else "bitstream"
        self.bitstreams = None if estimate_rate else BitstreamCodec(self.model)
        self.stride = codec_stride(self.model)
        stat = os.stat(self.path)
        identity = f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        self._digest = hashlib.sha256(identity.encode()).hexdigest()[:10]

    @property
    def key(self) -> str:
        return f"{self.codec}-{self.objective}-l{self.lmbda}-{self.rate_source}-{self._digest}"

    def meta(self) -> dict:
        return super().meta() | {"checkpoint": str(self.path), "distortion": self.distortion}

    def roundtrip_batch(self, images: list[Tensor]) -> list[tuple[Tensor, float]]:
        """Real bitstreams, one compress() and one decompress() call per image size: the
        transforms run batched on the codec's device; decoded images stay there."""
        if self.bitstreams is None:
            return super().roundtrip_batch(images)
        by_size: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(i)
        results: list = [None] * len(images)
        for indices in by_size.values():
            data = self.bitstreams.encode_batch(torch.stack([images[i] for i in indices]))
            decoded = self.bitstreams.decode_batch(data)
            for i, image, d in zip(indices, decoded, data, strict=True):
                results[i] = (image, 8.0 * len(d))
        return results

    @torch.inference_mode()
    def roundtrip(self, image: Tensor) -> tuple[Tensor, float]:
        h, w = image.shape[-2:]
        if self.bitstreams is not None:
            data = self.bitstreams.encode(image)
            return self.bitstreams.decode(data)[0].cpu(), 8.0 * len(data)
        device = next(self.model.parameters()).device
        out = self.model(pad_to_stride(image[None].to(device), self.stride))
        return out["x_hat"][0, :, :h, :w].clamp(0, 1).cpu(), float(
            estimated_bits(out["likelihoods"])
        )
