"""Side jobs of training, as Lightning callbacks."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from lic.data.images import to_pil


class LogReconstructions(L.Callback):
    """Save the first `num_images` validation reconstructions each validation epoch.

    PNGs go to `<log_dir>/reconstructions/step_<global step>/`; a logger with `log_image`
    (WandbLogger) receives them too.
    """

    def __init__(self, num_images: int = 2) -> None:
        self.num_images = num_images

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs,
        batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or outputs is None:
            return
        first = batch_idx * len(batch["image"])
        if first >= self.num_images:
            return
        folder = (
            Path(trainer.log_dir or trainer.default_root_dir)
            / "reconstructions"
            / (f"step_{trainer.global_step}")
        )
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for i, x_hat in enumerate(outputs["x_hat"][: self.num_images - first]):
            image = to_pil(x_hat)
            image.save(folder / f"{first + i:03d}.png")
            images.append(image)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("val/reconstructions", images, step=trainer.global_step)


class StepProgressBar(TQDMProgressBar):
    """One bar over the whole run, `step N/max_steps`, when training is step-based.

    Lightning's bars count batches per epoch, which on a small set (one batch an epoch) and
    `max_epochs` unset reads "Epoch 171/-2"; lic's runs stop at `max_steps`. Epoch-based runs
    (`max_steps` -1) keep Lightning's per-epoch bar.
    """

    def _step_based(self, trainer: L.Trainer) -> bool:
        return trainer.max_steps is not None and trainer.max_steps > 0

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        if not self._step_based(trainer):
            super().on_train_epoch_start(trainer, *args)
            return
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # first epoch of this fit (resumed ones too)
            bar.reset(total=trainer.max_steps)
            bar.initial = bar.n = trainer.global_step
        bar.set_description("step")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._step_based(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and self._should_update(step, bar.total) and not bar.disable:
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar
