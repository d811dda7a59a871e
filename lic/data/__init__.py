"""Data: image I/O, and (later) training patches, evaluation sets and task datasets."""

from lic.data.images import (
    IMAGE_SUFFIXES,
    DatasetLayoutError,
    ImageReadError,
    list_images,
    load_image,
    save_image,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetLayoutError",
    "ImageReadError",
    "list_images",
    "load_image",
    "save_image",
]
