"""LightningDataModule over image folders: random patches to train, whole images to validate."""

from __future__ import annotations

import os
from collections.abc import Iterator

import lightning as L
import torch
from jsonargparse.typing import path_type
from torch.utils.data import DataLoader, DistributedSampler

from lic.data.patches import ImageFolderDataset


class ResumableSampler(DistributedSampler):
    """Shuffled, rank-sharded order drawn from (seed, epoch) alone, which can start an epoch
    part-way: a run resumed mid-epoch continues with the very next batch.

    Lightning calls `set_epoch` every epoch and leaves DistributedSamplers unwrapped in DDP.
    """

    def __init__(
        self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=drop_last,
        )
        self._resume_epoch: int | None = None
        self._resume_skip = 0

    def resume(self, epoch: int, samples_done: int) -> None:
        """Skip this replica's first `samples_done` samples of `epoch` (once)."""
        self._resume_epoch, self._resume_skip = epoch, samples_done

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.epoch == self._resume_epoch:
            indices, self._resume_epoch = indices[self._resume_skip :], None
        return iter(indices)


ImageDir = path_type("dr")
"""A folder that must exist; in a YAML config, relative to that config file (jsonargparse)."""


class ImageDataModule(L.LightningDataModule):
    """Images of any folder layout.

    Args:
        train_dir: training images (any layout, searched recursively). In a YAML config a
            relative path is relative to the config file, so configs run from any folder.
        val_dir: validation images, e.g. Kodak; whole images unless `val_center_crop`.
        patch_size: random training crop; smaller images are edge-padded.
        batch_size, val_batch_size: whole-image validation needs val_batch_size 1 unless
            all images share one size.
        num_workers, pin_memory, persistent_workers: DataLoader settings.
        seed: data-order seed: epoch e sees a permutation drawn from (seed, e) alone.
        patch_schedule: `[[first_epoch, patch_size, batch_size], ...]` stages, e.g. MLIC++'s
            256 then 512 crops; needs `trainer.reload_dataloaders_every_n_epochs: 1`.
    """

    def __init__(
        self,
        train_dir: ImageDir,
        val_dir: ImageDir | None = None,
        patch_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int = 1,
        val_center_crop: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 0,
        patch_schedule: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # resolved here: LightningCLI's hparams keep the paths as written in the config
        self.train_dir = os.path.abspath(os.fspath(train_dir))
        self.val_dir = os.path.abspath(os.fspath(val_dir)) if val_dir is not None else None
        self.train_set: ImageFolderDataset | None = None
        self.val_set: ImageFolderDataset | None = None
        self._resume: dict[str, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = ImageFolderDataset(self.train_dir, crop=hp.patch_size)
        if stage in (None, "fit", "validate") and self.val_dir and self.val_set is None:
            self.val_set = ImageFolderDataset(self.val_dir, center_crop=hp.val_center_crop)

    def _loader(self, dataset: ImageFolderDataset, batch_size: int, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            **kwargs,
        )

    def stage(self) -> tuple[int, int]:
        """(patch size, batch size) for the current epoch under `patch_schedule`."""
        patch, batch = self.hparams.patch_size, self.hparams.batch_size
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        for first_epoch, stage_patch, stage_batch in sorted(self.hparams.patch_schedule or []):
            if epoch >= first_epoch:
                patch, batch = stage_patch, stage_batch
        return patch, batch

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        patch, batch_size = self.stage()
        self.train_set.set_crop(patch)
        sampler = ResumableSampler(
            self.train_set,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            seed=self.hparams.seed,
        )
        if self._resume is not None:
            sampler.resume(self._resume["epoch"], self._resume["batches"] * batch_size)
            self._resume = None
        return self._loader(
            self.train_set, batch_size, sampler=sampler, drop_last=len(sampler) >= batch_size
        )

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the epoch, so that a resumed run skips what it has seen."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches": progress.processed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict) if state_dict else None

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.hparams.val_batch_size)
