"""Codecs: a registry over CompressAI models, real bitstreams, and checkpoint loading."""

from lic.codecs import mlicpp  # noqa: F401  (registers "mlicpp")
from lic.codecs.checkpoint import (
    CheckpointInfo,
    init_codec_weights,
    load_checkpoint,
    save_codec_checkpoint,
)
from lic.codecs.io import Bitstream, BitstreamCodec, BitstreamError, bitstream_bpp
from lic.codecs.registry import codec_stride, create_codec, list_codecs, register_codec

__all__ = [
    "Bitstream",
    "BitstreamCodec",
    "BitstreamError",
    "CheckpointInfo",
    "bitstream_bpp",
    "codec_stride",
    "create_codec",
    "init_codec_weights",
    "list_codecs",
    "load_checkpoint",
    "register_codec",
    "save_codec_checkpoint",
]
