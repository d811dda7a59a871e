"""LightningModule: one codec trained on `bpp + lambda * D`, validated on real bitstreams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from lic.codecs.checkpoint import (
    CODEC_PREFIX,
    codec_state_dict,
    init_codec_weights,
    load_codec_state,
)
from lic.codecs.io import BitstreamCodec, crop_image, pad_image, payload_bpp
from lic.codecs.padding import FIELD_PADDING
from lic.codecs.registry import codec_stride, create_codec
from lic.errors import LicError
from lic.losses import RateDistortionLoss
from lic.metrics import create_metric, metric_info, metric_spec
from lic.metrics.objective import distortion_weights


class NonFiniteLossError(LicError):
    """Training diverged: a loss term (or a weight about to be saved) is NaN or infinite."""


class CodecModule(L.LightningModule):
    """A CompressAI-style codec and its rate-distortion objective.

    Args:
        codec: registry name (`lic.codecs.list_codecs()`).
        codec_args: constructor arguments, e.g. `{N: 128, M: 192}`, or `{quality: 3}`.
        lmbda: rate-distortion trade-off (docs/design.md grid for 255^2-scaled MSE).
        distortion: metric name or `{name: weight}` mix, e.g. `{mse: 1.0, mlclipsim: 0.5}`.
        metric_args: per-metric arguments, e.g. `{mlclipsim: {pretrained: /path/clip.bin}}`.
        lr, aux_lr: Adam learning rates of the codec and of the entropy-bottleneck quantiles.
        clip_max_norm: gradient-norm clip of the codec parameters (quantiles excluded).
        lr_milestones, lr_gamma: optional step decay of both learning rates.
        init: initial weights: `compressai:NAME:QUALITY[:METRIC]`, a lic checkpoint or a
            state-dict file.
        val_metrics: metrics reported on the validation images (besides bpp and loss).
        val_real_bpp: also encode every validation image to a real bitstream.
        channels_last: run the codec in channels-last memory format (faster convolutions on
            tensor cores); values are the same up to float rounding. On a 2-core CPU a
            step took 0.97-0.99x as long: no real gain there.
    """

    def __init__(
        self,
        codec: str = "bmshj2018-hyperprior",
        codec_args: dict | None = None,
        lmbda: float = 0.0130,
        distortion: str | dict[str, float] = "mse",
        metric_args: dict[str, dict] | None = None,
        lr: float = 1e-4,
        aux_lr: float = 1e-3,
        clip_max_norm: float = 1.0,
        lr_milestones: Sequence[int] | None = None,
        lr_gamma: float = 0.1,
        init: str | None = None,
        val_metrics: Sequence[str] = ("psnr", "ms_ssim"),
        val_real_bpp: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.codec = create_codec(codec, **dict(codec_args or {}))
        if init:
            init_codec_weights(self.codec, init)
        self.metrics = self._build_metrics(distortion, val_metrics, metric_args or {})
        self.criterion = RateDistortionLoss(distortion, lmbda, metrics=self.metrics)
        self.val_metric_names = tuple(dict.fromkeys(val_metrics))
        self.stride = codec_stride(self.codec)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.codec.to(memory_format=self.memory_format)
        # counted on the device: no host sync per step; not persistent: not a codec weight
        self.register_buffer("skipped_images", torch.zeros((), dtype=torch.long), persistent=False)
        self._bitstream_codec: BitstreamCodec | None = None

    @staticmethod
    def _build_metrics(
        distortion: str | dict[str, float], val_metrics: Sequence[str], metric_args: dict
    ) -> nn.ModuleDict:
        """Every metric the module uses, once: submodules, so they follow `.to(device)`; the
        loss and validation share an instance (and its frozen network)."""
        names = list(dict.fromkeys([*distortion_weights(distortion), *val_metrics]))
        unknown = sorted(set(metric_args) - set(names))
        if unknown:
            raise ValueError(f"metric_args for metrics not in distortion or val_metrics: {unknown}")
        return nn.ModuleDict({n: create_metric(n, **dict(metric_args.get(n) or {})) for n in names})

    # ---- optimisation ----------------------------------------------------------------------
    def _parameter_groups(self) -> tuple[list[Tensor], list[Tensor]]:
        main, aux = [], []
        for name, param in self.codec.named_parameters():
            (aux if name.endswith("quantiles") else main).append(param)
        return main, aux

    def configure_optimizers(self):
        # One Adam with two groups equals CompressAI's two optimisers: the aux loss reaches
        # only the quantiles and the rate-distortion loss never does (in training mode).
        main, aux = self._parameter_groups()
        optimizer = torch.optim.Adam(
            [{"params": main, "lr": self.hparams.lr}, {"params": aux, "lr": self.hparams.aux_lr}],
            fused=self.device.type == "cuda",  # one kernel for the update instead of many
        )
        if not self.hparams.lr_milestones:
            return optimizer
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.hparams.lr_milestones), gamma=self.hparams.lr_gamma
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.hparams.clip_max_norm:
            torch.nn.utils.clip_grad_norm_(self._parameter_groups()[0], self.hparams.clip_max_norm)

    def _forward(self, x: Tensor) -> dict:
        """Codec output for any image size, padded as the real bitstreams are (FIELD_PADDING,
        so val/bpp and val/bpp_real see the same pixels) and `x_hat` cropped back."""
        padded = pad_image(x, self.stride, FIELD_PADDING)
        out = self.codec(padded.contiguous(memory_format=self.memory_format))
        out["x_hat"] = crop_image(out["x_hat"], *x.shape[-2:], self.stride, FIELD_PADDING)
        return out

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x = batch["image"]
        out = self._forward(x)
        losses = self.criterion(out, x)
        aux_loss = self.codec.aux_loss()
        self._stop_if_not_finite(losses | {"aux_loss": aux_loss})
        self.skipped_images += batch["skipped"].sum().long()
        mse = (out["x_hat"].float() - x).square().mean()
        psnr = -10 * torch.log10(mse)
        shown = {"loss": losses["loss"], "bpp": losses["bpp"], "D": losses["distortion"]}
        self.log_dict(shown | {"psnr": psnr}, prog_bar=True, logger=False, batch_size=len(x))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(x))
        self.log_dict({"train/psnr": psnr, "train/aux_loss": aux_loss}, batch_size=len(x))
        self.log("train/skipped_images", self.skipped_images.float(), reduce_fx="max")
        return losses["loss"] + aux_loss

    def _stop_if_not_finite(self, terms: dict[str, Tensor]) -> None:
        """Stop at the first step whose loss is NaN or infinite, before the optimizer puts it
        into the weights (one boolean per step reaches the host; the progress bar's logged
        values already sync every step)."""
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = [f"{k}={float(v):g}" for k, v in zip(terms, values, strict=True) if not v.isfinite()]
        raise NonFiniteLossError(
            f"step {self.global_step}: non-finite loss ({', '.join(bad)}); training stopped "
            "before the update (lower the learning rate or check the data)"
        )

    # ---- validation on real bitstreams ----------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.codec.update(force=True)
        if self.hparams.val_real_bpp:
            self._bitstream_codec = BitstreamCodec(self.codec, padding=FIELD_PADDING)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        x = batch["image"]
        n, _, h, w = x.shape
        out = self._forward(x)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        logs = {f"val/{k}": v for k, v in self.criterion(out, x).items()}
        for name in self.val_metric_names:
            if min(h, w) >= metric_spec(name).min_side:
                logs[f"val/{name}"] = self.metrics[name](x, out["x_hat"]).mean()
        if self._bitstream_codec is not None:
            real = [payload_bpp(self._bitstream_codec.encode(img)) for img in x]
            logs["val/bpp_real"] = torch.tensor(real).mean()
        self.log_dict(logs, batch_size=n, sync_dist=True)
        return {"x_hat": out["x_hat"]}

    def on_validation_epoch_end(self) -> None:
        """One console line per validation: what the real bitstreams achieve."""
        if self.trainer.sanity_checking:
            return
        metrics = self.trainer.callback_metrics
        parts = [f"step {self.global_step} validation:"]
        shown = [("bpp_real", "bpp (real)", ""), ("bpp", "bpp (estimated)", "")]
        for name in self.val_metric_names:
            info = metric_info(name)
            shown.append((name, info.display, info.unit))
        for key, label, unit in shown:
            if f"val/{key}" in metrics:
                value = float(metrics[f"val/{key}"])
                parts.append(f"{label} {value:.2f} {unit}" if unit else f"{label} {value:.4f}")
        self.print(" ".join(parts))

    # ---- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store entropy tables computed once, so encoder and decoder machines share them;
        refuse to write weights that are not finite."""
        bad = [n for n, p in self.codec.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"step {self.global_step}: codec weights are not finite ({', '.join(bad[:3])}); "
                "no checkpoint written"
            )
        self.codec.update(force=True)
        checkpoint["state_dict"].update(self.codec.state_dict(prefix=CODEC_PREFIX))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Size the entropy tables as stored (and refuse another architecture clearly)."""
        load_codec_state(self.codec, codec_state_dict(checkpoint["state_dict"]), "checkpoint")
