"""Training a variable-rate codec: a level per batch with its lambda, validation at every
level, checkpoints that lic eval reads as one curve, run folders and the VBR sweep."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import photo_like, save_rgb

from lic.cli import main
from lic.codecs import load_checkpoint
from lic.errors import UsageError
from lic.evaluation.coders import build_coders
from lic.sweep.plan import load_sweep
from lic.training import CodecModule, ImageDataModule
from lic.training.cli import _require_sound_lambdas
from lic.training.naming import run_name

ROOT = Path(__file__).resolve().parents[1]
TINY = {"N": 8, "M": 12, "vr_entbttlnck": True}
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)  # CompressAI's


def vbr_module(**kwargs) -> CodecModule:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        args = {"codec": "bmshj2018-hyperprior-vbr", "codec_args": TINY, "lmbda": None}
        return CodecModule(**(args | {"val_metrics": ["psnr"]} | kwargs))


def test_lambdas_are_the_codecs_or_one_per_level():
    assert vbr_module().lambdas == LAMBDAS
    mine = [0.001 * 2**k for k in range(8)]
    module = vbr_module(lmbda=mine)
    assert module.lambdas == tuple(mine) and module.codec.lmbda == mine
    with pytest.raises(ValueError, match="one lambda per level"):
        vbr_module(lmbda=0.013)
    with pytest.raises(ValueError, match="expected 8 positive lambdas"):
        vbr_module(lmbda=[0.1, 0.2])
    with pytest.raises(ValueError, match="takes one number"):
        vbr_module(codec="bmshj2018-hyperprior", codec_args={"N": 8, "M": 12}, lmbda=[0.1])
    with pytest.raises(UsageError, match="one lambda per level"):
        _require_sound_lambdas("mbt2018-mean-vbr", 0.013)
    _require_sound_lambdas("mbt2018-mean-vbr", None)
    _require_sound_lambdas("mbt2018-mean-vbr", [0.01, 0.02])


def test_each_step_trains_one_level_with_its_lambda():
    """Stage 1 at the top level first, then stage 2 at a level drawn from the step alone;
    the loss is bpp + that level's lambda x D."""
    module = vbr_module(vbr_stage1_steps=2)
    points = [module._training_point(step) for step in range(12)]
    assert points[:2] == [{"stage": 1, "s": 7}] * 2
    assert {p["stage"] for p in points[2:]} == {2} and len({p["s"] for p in points[2:]}) > 3
    x = torch.stack([photo_like(64, 64, seed=i) for i in range(2)])
    out = module._forward(x, {"stage": 2, "s": 3})
    losses = module.criterion(out, x, module.lambdas[3])
    expected = losses["bpp"] + 0.013 * losses["distortion"]
    assert torch.allclose(losses["loss"], expected)


def test_aux_loss_reaches_the_variable_rate_bottleneck():
    module = vbr_module()
    module._aux_loss().backward()
    assert module.codec.entropy_bottleneck.quantiles.grad.abs().sum() > 0


@pytest.fixture
def folders(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    for i in range(4):
        save_rgb(train / f"{i}.png", photo_like(72, 90, seed=i))
    save_rgb(val / "0.png", photo_like(70, 90, seed=20))
    return train, val


def test_fit_validates_every_level_and_checkpoints_one_curve(folders, tmp_path):
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = L.Trainer(
        max_steps=3,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        val_check_interval=3,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    data = ImageDataModule(*map(str, folders), patch_size=64, batch_size=2, num_workers=0)
    trainer.fit(vbr_module(vbr_stage1_steps=1), datamodule=data)
    logged = trainer.callback_metrics
    real = [float(logged[f"val/level{k}/bpp_real"]) for k in range(8)]
    assert all(f"val/level{k}/psnr" in logged for k in range(8)) and "val/loss" in logged
    assert real[0] < real[-1]
    path = tmp_path / "ckpt" / "last.ckpt"
    _, info = load_checkpoint(path)
    assert info.lambdas == LAMBDAS and info.hparams["levels"] == 8
    coders = build_coders([str(path)])[1:]
    assert [c.lmbda for c in coders] == list(LAMBDAS)
    assert {(c.codec, c.objective) for c in coders} == {("bmshj2018-hyperprior-vbr", "mse")}


def test_run_folder_and_sweep_have_no_lambda_axis(capsys):
    assert run_name("mbt2018-mean-vbr", {"lpips": 500.0}, None) == "mbt2018-mean-vbr_lpips500_vbr"
    grids = [[0.001 * k for k in range(1, 9)], [0.002 * k for k in range(1, 9)]]
    named = {run_name("mbt2018-mean-vbr", "mse", grid) for grid in grids}
    assert len(named) == 2 and all(n.startswith("mbt2018-mean-vbr_mse_vbr-") for n in named)
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "objectives_vbr.yaml")
    names = {r.name for r in sweep.runs()}
    assert names == {
        f"{codec}_{objective}_vbr"
        for codec in ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr")
        for objective in ("mse", "lpips500", "mlclipsim2000")
    }
    assert sweep.eval["levels"] == [0, 1, 2, 3, 4, 5]
    sweep_file = str(ROOT / "configs" / "sweeps" / "objectives_vbr.yaml")
    assert main(["sweep", sweep_file, "--launcher", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-5%6" in out and "6 of 6 run(s) to train" in out


class Levels(L.Callback):
    """The (step, level) each training batch ran at."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        point = pl_module._training_point(trainer.global_step)
        self.seen.append((trainer.global_step, point["s"]))


def test_a_resumed_run_trains_the_levels_the_whole_run_would(folders, tmp_path):
    def fit(root: Path, max_steps: int, ckpt_path: str | None = None) -> Levels:
        levels = Levels()
        saving = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=root, save_last=True, every_n_train_steps=1
        )
        trainer = L.Trainer(
            max_steps=max_steps,
            callbacks=[saving, levels],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            limit_val_batches=0,
        )
        data = ImageDataModule(*map(str, folders), patch_size=64, batch_size=2, num_workers=0)
        trainer.fit(vbr_module(), datamodule=data, ckpt_path=ckpt_path)
        return levels

    whole = fit(tmp_path / "whole", 6)
    fit(tmp_path / "run", 3)
    resumed = fit(tmp_path / "run", 6, ckpt_path="last")
    assert resumed.seen == whole.seen[3:] and len({s for _, s in whole.seen}) > 1
    _, info = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert info.lambdas == LAMBDAS
