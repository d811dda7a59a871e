"""Image-folder datasets for codec training and validation.

An unreadable file is logged once and replaced by the next readable one, and the sample
says how many it skipped, so a bad file never ends an epoch at hour 20 and the count
reaches the training log exactly, whatever the number of workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lic.data.images import ImageReadError, list_images, load_image
from lic.errors import InputError

log = logging.getLogger(__name__)


class ImageFolderDataset(Dataset):
    """Every image under `root` (any layout), as {"image": (3, h, w), "index": file index,
    "skipped": unreadable files passed over to reach it}.

    `crop`: random crops of that size for training (images smaller than the crop are
    edge-padded, not refused), `center_crop` for validation, or neither for whole images.
    """

    def __init__(
        self, root: str | Path, crop: int | None = None, center_crop: int | None = None
    ) -> None:
        self.files = list_images(root)
        if not self.files:
            raise InputError(f"{root}: no images found (suffixes .png .jpg .webp ...)")
        if crop and center_crop:
            raise ValueError("choose crop (random) or center_crop, not both")
        if crop:
            self.set_crop(crop)
        elif center_crop:
            self.transform = v2.CenterCrop(center_crop)  # zero-pads smaller images
        else:
            self.transform = None
        self._warned: set[int] = set()

    def set_crop(self, size: int) -> None:
        """Random crops of `size` from now on (e.g. a larger patch schedule stage)."""
        self.transform = v2.RandomCrop(size, pad_if_needed=True, padding_mode="edge")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        """The image at `index`, or the next readable one after it."""
        for skipped in range(len(self.files)):
            i = (index + skipped) % len(self.files)
            try:
                image = load_image(self.files[i])
            except ImageReadError as err:
                if i not in self._warned:
                    self._warned.add(i)
                    log.warning("skipping unreadable training image %s", err)
                continue
            if self.transform is not None:
                image = self.transform(image)
            return {"image": image, "index": i, "skipped": skipped}
        raise RuntimeError(
            f"none of the {len(self.files)} images under the dataset root can be read"
        )
