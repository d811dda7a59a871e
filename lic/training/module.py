"""LightningModule: one codec trained on `bpp + lambda * D`, validated on real bitstreams; a
variable-rate codec (lic.codecs.vbr) at a level drawn per batch, with that level's lambda,
validated at every level (docs/vbr.md)."""

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
from lic.codecs.vbr import STAGE, check_lambdas, is_variable_rate, level_count
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
        lmbda: rate-distortion trade-off (docs/design.md grid for 255^2-scaled MSE); for a
            variable-rate codec one per level, or None for the codec's own list.
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
        vbr_stage1_steps: a variable-rate codec's first steps in CompressAI's stage 1 (its
            fixed-rate code path) at the top level's lambda, before stage 2 draws levels.
    """

    def __init__(
        self,
        codec: str = "bmshj2018-hyperprior",
        codec_args: dict | None = None,
        lmbda: float | list[float] | None = 0.0130,
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
        vbr_stage1_steps: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.codec = create_codec(codec, **dict(codec_args or {}))
        if init:
            init_codec_weights(self.codec, init)
        self.lambdas = self._level_lambdas(lmbda)
        self.metrics = self._build_metrics(distortion, val_metrics, metric_args or {})
        top = lmbda if self.lambdas is None else self.lambdas[-1]
        self.criterion = RateDistortionLoss(distortion, top, metrics=self.metrics)
        self.val_metric_names = tuple(dict.fromkeys(val_metrics))
        self.stride = codec_stride(self.codec)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.codec.to(memory_format=self.memory_format)
        # counted on the device: no host sync per step; not persistent: not a codec weight
        self.register_buffer("skipped_images", torch.zeros((), dtype=torch.long), persistent=False)
        self._bitstream_codec: BitstreamCodec | None = None

    def _level_lambdas(self, lmbda: object) -> tuple[float, ...] | None:
        """A variable-rate codec's lambdas, one per level (given, or the codec's list, which
        then codes with them); None for a fixed-rate codec, which takes one number."""
        name = self.codec.codec_name
        if not is_variable_rate(self.codec):
            if isinstance(lmbda, (list, tuple)) or lmbda is None:
                raise ValueError(f"lmbda {lmbda!r}: fixed-rate codec '{name}' takes one number")
            return None
        count = level_count(self.codec)
        self.codec.Gain.requires_grad_(False)  # CompressAI detaches it everywhere: no DDP gradient
        if lmbda is None:
            return tuple(float(v) for v in self.codec.lmbda)
        if not isinstance(lmbda, (list, tuple)):
            raise ValueError(
                f"lmbda {lmbda!r}: variable-rate codec '{name}' trains at one lambda per "
                f"level: give a list of {count}, or null for CompressAI's"
            )
        lambdas = check_lambdas(lmbda, count, "lmbda")
        self.codec.lmbda = list(lambdas)
        return lambdas

    def _training_point(self, step: int) -> dict:
        """The codec's arguments at training step `step`: {} for a fixed-rate codec; a
        variable-rate one runs CompressAI's stage 1 at the top level for `vbr_stage1_steps`
        steps, then stage 2 at a level drawn uniformly from the step (the same on every rank
        and after a resume)."""
        if self.lambdas is None:
            return {}
        top = len(self.lambdas) - 1
        if step < self.hparams.vbr_stage1_steps:
            return {"stage": 1, "s": top}
        generator = torch.Generator().manual_seed(int(step))
        return {"stage": STAGE, "s": int(torch.randint(top + 1, (1,), generator=generator))}

    def _aux_loss(self) -> Tensor:
        """CompressAI's aux loss, and that of variable-rate entropy bottlenecks, which
        CompressAI's `aux_loss` leaves out (their quantiles would never train)."""
        from compressai.entropy_models import EntropyBottleneckVbr

        vbr = [m.loss() for m in self.codec.modules() if isinstance(m, EntropyBottleneckVbr)]
        return torch.as_tensor(self.codec.aux_loss(), device=self.device) + sum(vbr)

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

    def _forward(self, x: Tensor, at: Mapping[str, int] | None = None) -> dict:
        """Codec output for any image size, padded as the real bitstreams are (FIELD_PADDING,
        so val/bpp and val/bpp_real see the same pixels) and `x_hat` cropped back; `at`: a
        variable-rate codec's stage and level."""
        padded = pad_image(x, self.stride, FIELD_PADDING)
        out = self.codec(padded.contiguous(memory_format=self.memory_format), **(at or {}))
        out["x_hat"] = crop_image(out["x_hat"], *x.shape[-2:], self.stride, FIELD_PADDING)
        return out

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x = batch["image"]
        at = self._training_point(self.global_step)
        out = self._forward(x, at)
        losses = self.criterion(out, x, None if self.lambdas is None else self.lambdas[at["s"]])
        aux_loss = self._aux_loss()
        self._stop_if_not_finite(losses | {"aux_loss": aux_loss})
        self.skipped_images += batch["skipped"].sum().long()
        mse = (out["x_hat"].float() - x).square().mean()
        psnr = -10 * torch.log10(mse)
        shown = {"loss": losses["loss"], "bpp": losses["bpp"], "D": losses["distortion"]}
        self.log_dict(shown | {"psnr": psnr}, prog_bar=True, logger=False, batch_size=len(x))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(x))
        self.log_dict({"train/psnr": psnr, "train/aux_loss": aux_loss}, batch_size=len(x))
        self.log("train/skipped_images", self.skipped_images.float(), reduce_fx="max")
        if at:
            self.log_dict({"train/level": float(at["s"]), "train/stage": float(at["stage"])})
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
            level = None if self.lambdas is None else 0
            self._bitstream_codec = BitstreamCodec(self.codec, padding=FIELD_PADDING, level=level)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        x = batch["image"]
        if self.lambdas is None:
            logs, x_hat = self._validate(x, {}, None, "val", self._bitstream_codec)
        else:  # every level: its estimated and real bpp, distortion, metrics and loss
            logs = {}
            for level, lmbda in enumerate(self.lambdas):
                real = self._bitstream_codec and self._bitstream_codec.at_level(level)
                at = {"stage": STAGE, "s": level}
                level_logs, x_hat = self._validate(x, at, lmbda, f"val/level{level}", real)
                logs |= level_logs
            losses = [logs[f"val/level{k}/loss"] for k in range(len(self.lambdas))]
            logs["val/loss"] = torch.stack(losses).mean()
        self.log_dict(logs, batch_size=len(x), sync_dist=True)
        return {"x_hat": x_hat}

    def _validate(
        self,
        x: Tensor,
        at: Mapping[str, int],
        lmbda: float | None,
        prefix: str,
        real: BitstreamCodec | None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Logs of one validation batch at one rate point, and its reconstructions."""
        h, w = x.shape[-2:]
        out = self._forward(x, at)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        logs = {f"{prefix}/{k}": v for k, v in self.criterion(out, x, lmbda).items()}
        for name in self.val_metric_names:
            if min(h, w) >= metric_spec(name).min_side:
                logs[f"{prefix}/{name}"] = self.metrics[name](x, out["x_hat"]).mean()
        if real is not None:
            logs[f"{prefix}/bpp_real"] = torch.tensor(
                [payload_bpp(real.encode(i)) for i in x]
            ).mean()
        return logs, out["x_hat"]

    def on_validation_epoch_end(self) -> None:
        """One console line per validation (per level of a variable-rate codec): what the
        real bitstreams achieve."""
        if self.trainer.sanity_checking:
            return
        prefixes = (
            ["val"] if self.lambdas is None else [f"val/level{k}" for k in range(len(self.lambdas))]
        )
        for prefix in prefixes:
            where = "" if prefix == "val" else f" {prefix.removeprefix('val/')}"
            self.print(f"step {self.global_step} validation{where}: {self._summary(prefix)}")

    def _summary(self, prefix: str) -> str:
        metrics = self.trainer.callback_metrics
        parts = []
        shown = [("bpp_real", "bpp (real)", ""), ("bpp", "bpp (estimated)", "")]
        for name in self.val_metric_names:
            info = metric_info(name)
            shown.append((name, info.display, info.unit))
        for key, label, unit in shown:
            if f"{prefix}/{key}" in metrics:
                value = float(metrics[f"{prefix}/{key}"])
                parts.append(f"{label} {value:.2f} {unit}" if unit else f"{label} {value:.4f}")
        return " ".join(parts)

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
        if self.lambdas is not None:  # what lic eval reads: a point per level
            levels = {"levels": len(self.lambdas), "lambdas": list(self.lambdas)}
            checkpoint.setdefault("hyper_parameters", {}).update(levels)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Size the entropy tables as stored (and refuse another architecture clearly)."""
        load_codec_state(self.codec, codec_state_dict(checkpoint["state_dict"]), "checkpoint")
