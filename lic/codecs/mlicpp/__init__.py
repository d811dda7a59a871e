"""MLIC++ as published (`mlicpp`): the model, and reading the official checkpoints.

The codec registry (lic.codecs.registry) registers the model; exports load on first use, so
reading an official checkpoint's layout (`official`) imports no CompressAI.
"""

from __future__ import annotations

from lic.lazy import lazy_exports

_LAZY = {
    name: "lic.codecs.mlicpp.model"
    for name in ("GENERATIONS", "MLICPlusPlus", "official_scale_table")
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)
