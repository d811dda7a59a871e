"""Codec registry over CompressAI models (and lic's own, e.g. MLIC++), built by name.

Models are CompressAI `CompressionModel`s, unchanged, so their state dicts load into
CompressAI's own classes and CompressAI zoo weights load into them. Each built codec carries
`codec_name` and `codec_args`, so a checkpoint alone can rebuild it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from compressai.models import CompressionModel
from compressai.registry import MODELS
from compressai.zoo.image import cfgs as ZOO_CFGS

from lic.codecs.precision import keep_entropy_models_fp32
from lic.codecs.vbr import VBR_CODECS

_CODECS: dict[str, Callable[..., CompressionModel]] = {}

COMPRESSAI_CODECS = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
    "elic2022-chandelier",
    *VBR_CODECS,  # variable-rate (lic.codecs.vbr)
)
DEFAULT_STRIDE = 64


def register_codec(name: str):
    """Decorator registering a CompressionModel class (or factory) under `name`."""

    def wrap(factory: Callable[..., CompressionModel]) -> Callable[..., CompressionModel]:
        if name in _CODECS:
            raise ValueError(f"codec '{name}' is already registered")
        _CODECS[name] = factory
        return factory

    return wrap


for _name in COMPRESSAI_CODECS:
    register_codec(_name)(MODELS[_name])


def list_codecs(pattern: str = "*") -> list[str]:
    return sorted(n for n in _CODECS if fnmatch.fnmatch(n, pattern))


def create_codec(name: str, quality: int | None = None, **kwargs) -> CompressionModel:
    """Build codec `name` from constructor arguments, or from a CompressAI zoo `quality`
    (which fixes N and M as the zoo does)."""
    if name not in _CODECS:
        raise ValueError(f"unknown codec '{name}'; known: {', '.join(list_codecs())}")
    if quality is not None:
        if name not in ZOO_CFGS or quality not in ZOO_CFGS[name]:
            raise ValueError(f"codec '{name}' has no CompressAI zoo quality {quality}")
        kwargs = dict(zip(("N", "M"), ZOO_CFGS[name][quality], strict=False)) | kwargs
    try:
        model = _CODECS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"codec '{name}': {err}") from None
    model.codec_name, model.codec_args = name, dict(kwargs)
    return keep_entropy_models_fp32(model)


def codec_stride(model: CompressionModel) -> int:
    """Multiple that image sides must have: the product of all down-samplings (64 here)."""
    return int(getattr(model, "downsampling_factor", DEFAULT_STRIDE))


def _register_lic_codecs() -> None:
    from lic.codecs.mlicpp.model import MLICPlusPlus

    register_codec("mlicpp")(MLICPlusPlus)


_register_lic_codecs()
