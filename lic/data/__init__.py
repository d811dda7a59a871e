"""Data: image I/O, training datasets, and the catalog of evaluation data sets (`lic data`).

Exports load on first use (PEP 562): the catalog and errors import no torch.
"""

from __future__ import annotations

from lic.errors import DatasetLayoutError, ImageReadError
from lic.lazy import lazy_exports

_LAZY = {
    name: "lic.data.images"
    for name in ("IMAGE_SUFFIXES", "list_images", "load_image", "save_image")
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetLayoutError",
    "ImageReadError",
    "list_images",
    "load_image",
    "save_image",
]
