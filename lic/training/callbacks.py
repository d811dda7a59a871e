"""Side jobs of training, as Lightning callbacks."""

from __future__ import annotations

from pathlib import Path

import lightning as L

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
