"""Training: the codec LightningModule, the image DataModule, and callbacks.

The classes are imported on first use (PEP 562), so `lic.training.naming` (run folder names,
read by `lic sweep`) loads no torch.
"""

from __future__ import annotations

from lic.lazy import lazy_exports

_LAZY = {
    "LogReconstructions": "lic.training.callbacks",
    "ImageDataModule": "lic.training.datamodule",
    "ResumableSampler": "lic.training.datamodule",
    "CodecModule": "lic.training.module",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = ["CodecModule", "ImageDataModule", "LogReconstructions", "ResumableSampler"]
