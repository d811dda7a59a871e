"""Codecs: a registry over CompressAI models, real bitstreams, and checkpoint loading.

Exports are imported on first use (PEP 562): CompressAI's import chain takes seconds, and a
process that only reads checkpoint metadata or classical codecs (the evaluation's main
process, `lic eval --help`) never needs it.
"""

from __future__ import annotations

from lic.lazy import lazy_exports

_LAZY = {
    "CheckpointInfo": "lic.codecs.checkpoint",
    "init_codec_weights": "lic.codecs.checkpoint",
    "load_checkpoint": "lic.codecs.checkpoint",
    "save_codec_checkpoint": "lic.codecs.checkpoint",
    "Bitstream": "lic.codecs.io",
    "BitstreamCodec": "lic.codecs.io",
    "BitstreamError": "lic.codecs.io",
    "bitstream_bpp": "lic.codecs.io",
    "payload_bpp": "lic.codecs.io",
    "codec_stride": "lic.codecs.registry",
    "create_codec": "lic.codecs.registry",
    "list_codecs": "lic.codecs.registry",
    "register_codec": "lic.codecs.registry",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)
