"""Distortion families with one severity parameter each, and matching them to a target PSNR.

Continuous families are matched by bisection, discrete ones (codec qualities) by the nearest
value; a family that cannot come within the tolerance of the target is skipped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from lic.codecs.classical import classical_codec
from lic.codecs.padding import FIELD_PADDING
from lic.errors import UsageError
from lic.metrics.pixel import PSNR
from lic.pcmp.defaults import FAMILY_NAMES

_psnr = PSNR()


def psnr(reference: Tensor, distorted: Tensor) -> float:
    """PSNR in dB of two (3, H, W) images in [0, 1], on the 8-bit values that get saved."""
    quantised = (distorted.clamp(0, 1) * 255).round() / 255
    return float(_psnr(reference[None].double(), quantised[None].double()))


def image_seed(name: str) -> int:
    """A fixed seed per reference image, so noise is reproducible across runs and shards."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Family:
    """`apply(image, parameter, seed) -> image`; `increasing`: PSNR grows with the parameter."""

    name: str
    apply: Callable[[Tensor, float, int], Tensor]
    low: float
    high: float
    increasing: bool
    values: tuple[float, ...] | None = None  # discrete parameter values, sorted

    @property
    def discrete(self) -> bool:
        return self.values is not None


def _pillow(name: str) -> Callable[[Tensor, float, int], Tensor]:
    """A classical codec with the settings of the rate-task baselines (lic.codecs.classical)."""

    def apply(image: Tensor, quality: float, seed: int) -> Tensor:
        return classical_codec(name).roundtrip(image, int(quality))[0]

    return apply


def _blur(image: Tensor, sigma: float, seed: int) -> Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])


def _noise(image: Tensor, sigma: float, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (image + sigma * torch.randn(image.shape, generator=generator)).clamp(0, 1)


def _resample(image: Tensor, scale: float, seed: int) -> Tensor:
    h, w = image.shape[-2:]
    small = F.interpolate(
        image[None],
        size=(max(1, round(h * scale)), max(1, round(w * scale))),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _contrast(image: Tensor, factor: float, seed: int) -> Tensor:
    mean = image.mean(dim=(1, 2), keepdim=True)
    return (mean + factor * (image - mean)).clamp(0, 1)


FAMILIES: dict[str, Family] = {
    "jpeg": Family("jpeg", _pillow("jpeg"), 1, 100, True, tuple(range(1, 101))),
    "webp": Family("webp", _pillow("webp"), 0, 100, True, tuple(range(0, 101))),
    "blur": Family("blur", _blur, 0.1, 12.0, False),
    "noise": Family("noise", _noise, 0.0005, 0.5, False),
    "resample": Family("resample", _resample, 0.03, 0.999, True),
    "contrast": Family("contrast", _contrast, 0.0, 0.999, True),
}


def codec_family(checkpoints: Sequence[str]) -> Family:
    """A learned codec as a discrete family: parameter k is the k-th checkpoint, ordered by
    rate (so by lambda) as given."""
    from lic.codecs import BitstreamCodec, load_checkpoint

    if not checkpoints:
        raise UsageError("the 'codec' family needs codec checkpoints (--codec-ckpt)")
    codecs = [BitstreamCodec(load_checkpoint(p)[0], padding=FIELD_PADDING) for p in checkpoints]

    def apply(image: Tensor, k: float, seed: int) -> Tensor:
        codec = codecs[int(k)]
        return codec.decode(codec.encode(image))[0].cpu()

    return Family("codec", apply, 0, len(codecs) - 1, True, tuple(range(len(codecs))))


def create_family(name: str, codec_checkpoints: Sequence[str] = ()) -> Family:
    """Family `name` of FAMILY_NAMES; `codec` is built from lic checkpoints."""
    if name not in FAMILY_NAMES:
        raise UsageError(f"unknown family '{name}'; known: {list(FAMILY_NAMES)}")
    return FAMILIES[name] if name in FAMILIES else codec_family(codec_checkpoints)


@dataclass
class Match:
    family: str
    parameter: float
    psnr: float
    image: Tensor


def match_psnr(
    family: Family,
    reference: Tensor,
    target: float,
    seed: int,
    tolerance: float = 0.25,
    max_steps: int = 40,
) -> Match | None:
    """The distortion of `family` whose PSNR is within `tolerance` dB of `target`, or None."""

    def attempt(parameter: float) -> Match:
        image = family.apply(reference, parameter, seed)
        return Match(family.name, parameter, psnr(reference, image), image)

    if family.discrete:
        values = family.values
        lo, hi = 0, len(values) - 1  # binary search on the monotone PSNR(values[i])
        while hi - lo > 1:
            mid = (lo + hi) // 2
            above = attempt(values[mid]).psnr > target
            if above == family.increasing:
                hi = mid
            else:
                lo = mid
        best = min((attempt(values[i]) for i in {lo, hi}), key=lambda m: abs(m.psnr - target))
        return best if abs(best.psnr - target) <= tolerance else None
    lo, hi = family.low, family.high
    ends = attempt(lo), attempt(hi)
    if not min(m.psnr for m in ends) - tolerance <= target <= max(m.psnr for m in ends) + tolerance:
        return None
    for m in ends:
        if abs(m.psnr - target) <= tolerance:
            return m
    for _ in range(max_steps):
        mid = attempt((lo + hi) / 2)
        if abs(mid.psnr - target) <= tolerance:
            return mid
        if (mid.psnr < target) == family.increasing:
            lo = mid.parameter
        else:
            hi = mid.parameter
    return None
