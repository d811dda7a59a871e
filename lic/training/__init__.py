"""Training: the codec LightningModule, the image DataModule, and callbacks."""

from lic.training.callbacks import LogReconstructions
from lic.training.datamodule import ImageDataModule, ResumableSampler
from lic.training.module import CodecModule

__all__ = ["CodecModule", "ImageDataModule", "LogReconstructions", "ResumableSampler"]
