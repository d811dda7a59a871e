"""Training: objectives optimise, aux loss converges, real rate matches the estimate, resume
continues exactly, bad files are skipped, checkpoints rebuild the codec without CLIP."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import photo_like, save_rgb

from lic.codecs import BitstreamCodec, load_checkpoint
from lic.codecs.io import Bitstream, payload_bpp
from lic.data.images import load_image
from lic.losses import estimated_bpp
from lic.training import CodecModule, ImageDataModule

ROOT = Path(__file__).resolve().parents[1]
TINY = {"N": 16, "M": 24}


def photo_batch(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.stack([photo_like(size, size, seed=seed + i) for i in range(n)])


def make_module(**kwargs) -> CodecModule:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return CodecModule(**({"codec_args": TINY, "val_metrics": ["psnr"]} | kwargs))


def optimise(module: CodecModule, x: torch.Tensor, steps: int) -> list[dict[str, float]]:
    """Plain loop over the module's own loss, optimiser and clipping; returns the history."""
    optimizer = module.configure_optimizers()
    history = []
    torch.manual_seed(1)
    for _ in range(steps):
        losses = module.criterion(module._forward(x), x)
        aux = module.codec.aux_loss()
        optimizer.zero_grad()
        (losses["loss"] + aux).backward()
        module.on_before_optimizer_step(optimizer)
        optimizer.step()
        history.append({"loss": float(losses["loss"].detach()), "aux": float(aux.detach())})
    return history


@pytest.mark.parametrize(
    "distortion", ["mse", "lpips", "mlclipsim", {"mse": 1.0, "mlclipsim": 500.0}, "ms_ssim"]
)
def test_a_few_steps_lower_each_objective(distortion, tiny_clip):
    names = list(distortion) if isinstance(distortion, dict) else [distortion]
    metric_args = {
        "mlclipsim": {"model": tiny_clip, "pretrained": None},
        "lpips": {"pretrained": False},
    }
    metric_args = {k: v for k, v in metric_args.items() if k in names}
    lmbda = 0.0130 if "mse" in names else 20.0  # D of the others is O(0.1), not O(100)
    module = make_module(distortion=distortion, metric_args=metric_args, lmbda=lmbda, lr=1e-3)
    x = photo_batch(2, 170 if distortion == "ms_ssim" else 64)  # 170: not a stride multiple
    if distortion == "ms_ssim":  # no gradient far from the target: warm-start from MSE
        warm = make_module(lr=1e-3)
        optimise(warm, x, steps=30)
        module.codec.load_state_dict(warm.codec.state_dict())
    before = module.criterion(module._forward(x), x)
    history = optimise(module, x, steps=12)
    after = module.criterion(module._forward(x), x)
    assert history[-1]["loss"] < history[0]["loss"]
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["distortion"] < before["distortion"]


def test_channels_last_codec_gives_the_same_loss_and_gradients():
    """Rounding instead of noise (eval mode): CompressAI draws the noise with empty_like,
    whose values fall on other elements in channels-last, so only layout may differ."""
    x = photo_batch(2, 80)  # 80: padded to the stride
    results = []
    for channels_last in (False, True):
        module = make_module(channels_last=channels_last).eval()
        loss = module.criterion(module._forward(x), x)["loss"]
        loss.backward()
        grads = [p.grad for p in module.codec.g_s.parameters()]
        results.append((loss.detach(), grads))
    (loss, grads), (loss_cl, grads_cl) = results
    torch.testing.assert_close(loss_cl, loss, rtol=1e-5, atol=0)
    for g, g_cl in zip(grads, grads_cl, strict=True):
        torch.testing.assert_close(g_cl, g, rtol=1e-4, atol=1e-6)
    module = make_module(channels_last=True)
    assert module.codec.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_aux_loss_falls():
    """The quantiles converge under the shared optimiser (slowly: their tail logits are
    saturated at the start, so real runs take ~1e5 steps at aux_lr 1e-3)."""
    module = make_module(aux_lr=0.3)
    aux = [h["aux"] for h in optimise(module, photo_batch(), steps=60)]
    assert all(b < a for a, b in itertools.pairwise(aux))
    assert aux[-1] < 0.95 * aux[0]


def test_validation_estimate_matches_the_real_payload_on_any_size():
    """val/bpp (the module's forward) and val/bpp_real (the bitstream's payload) code the same
    padded pixels: a size that is not a multiple of 64 is padded as the bitstream pads it."""
    module = make_module(codec_args={"N": 32, "M": 48}, lr=2e-3, aux_lr=5e-2)
    train = torch.cat([photo_batch(4, 96, seed=s) for s in (0, 4)])
    optimise(module, train, steps=150)
    model = module.codec.eval()
    model.update(force=True)
    h, w = 200, 250  # 28 and 6 pixels of padding (edge padding: 8 and 6, other pixels)
    image = photo_like(h, w, seed=99)[None]
    with torch.no_grad():
        out = module._forward(image)
    codec = BitstreamCodec(model)
    data = codec.encode(image)
    assert (codec.decode(data) - out["x_hat"].clamp(0, 1)).abs().max() < 1e-5  # edge: 0.29
    estimate = float(estimated_bpp(out["likelihoods"], h * w))
    real = payload_bpp(data)  # the range coder's overhead on a small model: about 1-2%
    assert 0 < (real - estimate) / estimate < 0.03, (real, estimate)  # edge estimate: 5.7%


@pytest.fixture
def image_folders(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    (train / "nested").mkdir(parents=True), val.mkdir()
    for i in range(6):
        save_rgb((train / "nested" if i % 2 else train) / f"{i}.png", photo_like(72, 90, seed=i))
    save_rgb(train / "small.png", photo_like(40, 50, seed=7))  # smaller than the crop
    (train / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for i in range(2):
        save_rgb(val / f"{i}.png", photo_like(70, 90, seed=20 + i))
    return train, val


class StepRecorder(L.Callback):
    """Records (global step, file indices) per batch; optionally dies at one step."""

    def __init__(self, die_at: int | None = None) -> None:
        self.die_at, self.seen = die_at, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.global_step, batch["index"].tolist()))
        if trainer.global_step == self.die_at:
            raise RuntimeError("killed")


def fit(folders, root, max_steps, recorder, ckpt_path=None, **module_kwargs):
    train, val = folders
    ckpt = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=root / "ckpt", save_last=True, every_n_train_steps=2
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        callbacks=[ckpt, recorder],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    data = ImageDataModule(str(train), str(val), patch_size=72, batch_size=2, num_workers=0)
    module = make_module(**module_kwargs)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, module


def test_resume_after_a_kill_continues_where_it_stopped(image_folders, tmp_path):
    full = StepRecorder()
    fit(image_folders, tmp_path / "full", 7, full)

    dying = StepRecorder(die_at=5)
    with pytest.raises(RuntimeError, match="killed"):
        fit(image_folders, tmp_path / "run", 7, dying)
    saved = torch.load(tmp_path / "run" / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4

    resumed = StepRecorder()
    trainer, _ = fit(image_folders, tmp_path / "run", 7, resumed, ckpt_path="last")
    assert resumed.seen[0][0] == 4 and trainer.global_step == 7
    # the same batches, in the same order, as the run that was never killed
    assert [s for _, s in resumed.seen] == [s for _, s in full.seen[4:]]
    # optimiser state came back: Adam's step counts continue from the checkpoint's
    state = trainer.optimizers[0].state_dict()["state"]
    assert all(int(s["step"]) == 7 for s in state.values())
    assert int(saved["optimizer_states"][0]["state"][0]["step"]) == 4


def test_fit_skips_and_counts_unreadable_files_and_checkpoints_without_clip(
    image_folders, tmp_path, tiny_clip
):
    recorder = StepRecorder()
    trainer, module = fit(
        image_folders,
        tmp_path,
        8,
        recorder,
        distortion={"mse": 1.0, "mlclipsim": 100.0},
        metric_args={"mlclipsim": {"model": tiny_clip, "pretrained": None}},
        val_metrics=["psnr", "mlclipsim"],
    )
    assert trainer.global_step == 8
    assert module.skipped_images >= 1  # broken.png came up and was replaced, not fatal
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert all(k.startswith("codec.") for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["metric_args"]["mlclipsim"]["model"] == tiny_clip
    assert ckpt["hyper_parameters"]["distortion"] == {"mse": 1.0, "mlclipsim": 100.0}
    assert trainer.callback_metrics["val/bpp_real"] > 0
    model, info = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert info.codec == "bmshj2018-hyperprior" and info.codec_args == TINY
    codec = BitstreamCodec(model)
    x = photo_like(50, 70)
    assert codec.decode(codec.encode(x)).shape == (1, 3, 50, 70)


def test_checkpoint_of_another_architecture_cannot_resume(image_folders, tmp_path):
    fit(image_folders, tmp_path, 2, StepRecorder())
    with pytest.raises(ValueError, match="does not hold weights"):
        fit(
            image_folders,
            tmp_path,
            4,
            StepRecorder(),
            ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
            codec_args={"N": 16, "M": 32},
        )


@pytest.mark.slow
def test_demo_config_trains_and_feeds_lic_compress(tmp_path):
    """The bundled demo config on the bundled images, shortened, run from another folder (its
    data paths are relative to the config file), then `lic compress` / `lic decompress` on its
    checkpoint: what the README's quick start does, at CI size."""
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "fit",
        "--config",
        str(ROOT / "configs" / "demo.yaml"),
        "--data.patch_size",
        "64",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "2",
        "--model.codec_args",
        "{N: 16, M: 24}",
        "--trainer.max_steps",
        "4",
        "--trainer.val_check_interval",
        "4",
        "--trainer.enable_progress_bar",
        "false",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 4 validation: bpp (real)" in result.stdout
    run = tmp_path / "runs" / "bmshj2018-hyperprior_mse_lambda0.013"  # named after the run
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and list(run.rglob("metrics.csv"))
    assert list(run.rglob("reconstructions/*/000.png"))
    bits, decoded = tmp_path / "bits", tmp_path / "decoded"
    image = ROOT / "data" / "demo" / "val" / "kodim23.png"
    enc = run_lic("compress", "--ckpt", ckpt, image, "--out-dir", bits)
    assert enc.returncode == 0, enc.stderr
    dec = run_lic("decompress", "--ckpt", ckpt, bits / "kodim23.lic", "--out-dir", decoded)
    assert dec.returncode == 0, dec.stderr
    assert (decoded / "kodim23.png").is_file()
    (bits / "kodim23.lic").write_bytes((bits / "kodim23.lic").read_bytes()[:-3])
    bad = run_lic("decompress", "--ckpt", ckpt, bits / "kodim23.lic", "--out-dir", tmp_path / "d2")
    assert bad.returncode != 0 and "CRC mismatch" in bad.stderr, bad.stderr
    odd = tmp_path / "odd.png"  # 100 x 150: padded to 128 x 192 (zeros) or 112 x 160 (replicate)
    save_rgb(odd, photo_like(100, 150, seed=5))
    for pad in ("zeros", "replicate"):
        argv = ["--ckpt", ckpt, "--out-dir", tmp_path / pad]
        enc = run_lic("compress", *argv, "--pad", pad, odd)
        assert enc.returncode == 0, enc.stderr
        assert Bitstream.from_bytes((tmp_path / pad / "odd.lic").read_bytes()).padding == pad
        dec = run_lic("decompress", *argv, tmp_path / pad / "odd.lic")
        assert dec.returncode == 0, dec.stderr
        assert load_image(tmp_path / pad / "odd.png").shape == (3, 100, 150)


def run_lic(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lic.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
