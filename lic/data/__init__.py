"""Data: image I/O, training datasets, and the catalog of evaluation data sets (`lic data`).

Exports load on first use (PEP 562): the catalog and errors import no torch.
"""

from __future__ import annotations

import importlib

from lic.errors import DatasetLayoutError, ImageReadError

_LAZY = {
    name: "lic.data.images"
    for name in ("IMAGE_SUFFIXES", "list_images", "load_image", "save_image")
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lic.data' has no attribute '{name}'")


__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetLayoutError",
    "ImageReadError",
    "list_images",
    "load_image",
    "save_image",
]
