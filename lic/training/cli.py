"""`train.py`: LightningCLI for CodecModule + ImageDataModule, with lic's run folders and errors.

Every run writes under `<trainer.default_root_dir>/<codec>_<objective>_lambda<lambda>/`
(a variable-rate codec's: `<codec>_<objective>_vbr/`)
(`checkpoints/`, `logs/version_N/`, `config.yaml`), so a second lambda or objective never
overwrites the first, and re-running the same command with `--ckpt_path last` resumes it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from lic.devices import passive_openmp_waits

passive_openmp_waits()  # before torch loads: shared nodes (measured in docs/design.md)

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

from lic.errors import UsageError, exit_program, run_entry_point  # noqa: E402
from lic.startup import imports_done  # noqa: E402
from lic.training.naming import run_name  # noqa: E402
from lic.training.resume import latest_version  # noqa: E402

__all__ = ["LicCLI", "main", "run_name"]


def _as_plain(value: object) -> object:
    """jsonargparse Namespaces (a dict distortion) as plain dicts."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _require_the_accelerator(accelerator: object) -> None:
    """A GPU config on a machine without one is a usage error, told before anything loads."""
    import torch

    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"--trainer.accelerator {accelerator}: this machine has no CUDA GPU. "
            "To train on this machine's CPU, add --trainer.accelerator cpu"
        )


def _require_sound_model_arguments(model: object) -> None:
    """Codec, distortion, lambda and learning rates checked before anything is built: a
    mistyped name or a negative lambda is one line (exit 2), not a failure minutes later."""
    from lic.codecs.registry import list_codecs
    from lic.data.files import positive_number
    from lic.metrics import metric_spec
    from lic.metrics.objective import distortion_weights

    if model.codec not in list_codecs():
        raise UsageError(f"--model.codec '{model.codec}': one of {', '.join(list_codecs())}")
    try:
        for name in distortion_weights(_as_plain(model.distortion)):
            metric_spec(name)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--model.distortion {_as_plain(model.distortion)!r}: {err}") from None
    for flag, value in (("lr", model.lr), ("aux_lr", model.aux_lr)):
        if positive_number(value) is None:
            raise UsageError(f"--model.{flag} {value}: give a positive number")
    _require_sound_lambdas(model.codec, model.lmbda)


def _require_sound_lambdas(codec: str, lmbda: object) -> None:
    """One positive lambda, or for a variable-rate codec a list of them (one per level,
    checked against its levels when it is built) or null (the codec's own list)."""
    from lic.codecs.vbr import is_vbr_codec
    from lic.data.files import positive_number

    if not is_vbr_codec(codec):
        if positive_number(lmbda) is None:
            raise UsageError(f"--model.lmbda {lmbda}: give a positive number")
        return
    if lmbda is None:
        return
    if not isinstance(lmbda, (list, tuple)) or any(positive_number(v) is None for v in lmbda):
        raise UsageError(
            f"--model.lmbda {lmbda}: variable-rate codec '{codec}' trains at one lambda per "
            "level: give a list of positive numbers, e.g. [0.0018,0.0035,...], or null for "
            "CompressAI's"
        )


def _require_a_checkpoint_to_resume(config: object, checkpoint_dirs: list[str]) -> None:
    """`--ckpt_path last` resumes a run folder's last.ckpt; none there (a mistyped lambda
    names another folder) must not silently train from step 0."""
    if config.get("ckpt_path") != "last":
        return
    if not any((Path(d) / "last.ckpt").is_file() for d in checkpoint_dirs):
        raise UsageError(
            f"--ckpt_path last: no last.ckpt in {', '.join(checkpoint_dirs)} (check the "
            "codec, distortion and lambda, which name the run folder; drop --ckpt_path for "
            "a new run)"
        )


def _resumes(ckpt_path: str | None, run_dir: Path) -> bool:
    """Whether the fit continues this run (`last`, or a checkpoint of its own folder) rather
    than starting one, from nothing or from another run's weights."""
    if ckpt_path is None:
        return False
    return ckpt_path == "last" or Path(ckpt_path).resolve().is_relative_to(run_dir.resolve())


class LicCLI(LightningCLI):
    """LightningCLI whose runs live in their own folder and whose errors are one line."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model, trainer = config.model, config.trainer
        _require_the_accelerator(trainer.accelerator)
        _require_sound_model_arguments(model)
        root = Path(trainer.default_root_dir or "runs")
        run_dir = root / run_name(model.codec, _as_plain(model.distortion), model.lmbda)
        trainer.default_root_dir = str(run_dir)
        checkpoint_dirs = []
        for callback in trainer.callbacks or []:
            if callback.class_path.endswith("ModelCheckpoint"):
                if not callback.init_args.dirpath:
                    callback.init_args.dirpath = str(run_dir / "checkpoints")
                checkpoint_dirs.append(str(callback.init_args.dirpath))
        _require_a_checkpoint_to_resume(config, checkpoint_dirs or [str(run_dir / "checkpoints")])
        self.run_dir, self.resuming = run_dir, _resumes(config.get("ckpt_path"), run_dir)
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                init_args.save_dir = str(run_dir)
                if "name" in init_args:
                    init_args.name = "logs"
                numbered = str(logger.class_path).endswith(("CSVLogger", "TensorBoardLogger"))
                if self.resuming and numbered and init_args.get("version") is None:
                    logs_root = Path(init_args.save_dir) / (init_args.get("name") or "")
                    init_args.version = latest_version(logs_root)  # None: a new version_0
        if self.resuming:  # its checkpoints are this run's own, to be continued
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Lightning's trainer with lic's step counter unless the config names a bar."""
        from lightning.pytorch.callbacks import ProgressBar

        from lic.training.callbacks import StepProgressBar

        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_config.get("callbacks") or []
        wants_bar = trainer_config.get("enable_progress_bar") is not False
        if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            trainer_config["callbacks"] = [*callbacks, StepProgressBar()]
        trainer = super().instantiate_trainer(**kwargs)
        imports_done()  # model, data and trainer built: before loader workers fork
        return trainer

    def before_fit(self) -> None:
        """Say where the run lives; a resumed CSV log continues its metrics.csv."""
        from lightning.pytorch.loggers import CSVLogger

        from lic.training.resume import ResumedCSVWriter

        print(f"run folder: {self.run_dir}", flush=True)
        for logger in self.trainer.loggers:
            if self.resuming and isinstance(logger, CSVLogger) and logger._experiment is None:
                os.makedirs(logger.root_dir, exist_ok=True)
                logger._experiment = ResumedCSVWriter(logger.log_dir)  # Lightning's would delete

    def after_fit(self) -> None:
        """Make `last.ckpt` the final state. Lightning writes it at the end of fit only when
        no checkpoint was written during the fit, so with max_steps not a multiple of
        every_n_train_steps (or after a resume) it would keep an earlier step."""
        from lightning.pytorch.trainer.states import TrainerStatus

        trainer = self.trainer
        if trainer.state.status != TrainerStatus.FINISHED:
            return
        for callback in trainer.checkpoint_callbacks:
            if callback.save_last and callback._last_global_step_saved != trainer.global_step:
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        print(f"run folder: {self.run_dir} (step {trainer.global_step})", flush=True)


def _quiet_third_party_notices() -> None:
    """Drop notices that concern Lightning's own code or products, not the user's run."""
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # torch vs Lightning internals
    # lic's ResumableSampler resumes mid-epoch (tests/test_training.py), which Lightning cannot see
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def main(args: list[str] | None = None) -> int:
    """`train.py` / the console: LightningCLI with lic's error convention."""
    from lic.training.datamodule import ImageDataModule
    from lic.training.module import CodecModule

    _quiet_third_party_notices()

    def run() -> None:
        LicCLI(
            CodecModule,
            ImageDataModule,
            save_config_kwargs={"overwrite": True},
            args=args,
            parser_kwargs={"exit_on_error": False},
        )

    return run_entry_point(run)


if __name__ == "__main__":
    exit_program(main())
