"""Every tensor that must follow a module is registered on it.

`.to(torch.float64)` is the CPU stand-in for `.to("cuda")`: a tensor it leaves behind (a plain
attribute, a metric kept in a dict) would stay on the CPU after a device move and fail at
the first step on a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint
from torch import Tensor, nn

from lic.codecs import load_checkpoint
from lic.metrics.frozen import FrozenNetMetric
from lic.tasks import create_task
from lic.training.module import CodecModule


def module_tensors(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Parameters, buffers and tensor attributes of every submodule, frozen networks (kept
    outside the module tree on purpose) included."""
    for prefix, sub in module.named_modules():
        tensors = {**sub._parameters, **sub._buffers}
        tensors |= {k: v for k, v in vars(sub).items() if isinstance(v, Tensor)}
        for name, tensor in tensors.items():
            if tensor is not None:
                yield f"{prefix}.{name}", tensor
        if isinstance(sub, FrozenNetMetric):
            yield from ((f"{prefix}.net.{n}", t) for n, t in module_tensors(sub.net))


def left_behind(module: nn.Module) -> list[str]:
    module.to(torch.float64)
    return [
        n for n, t in module_tensors(module) if t.is_floating_point() and t.dtype != torch.float64
    ]


def test_training_module_moves_every_metric_with_it(tiny_clip):
    """A validation-only ML-CLIPSim, built with metric_args, is a submodule like the loss."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module = CodecModule(
            codec_args={"N": 16, "M": 24},
            distortion="mse",
            val_metrics=["psnr", "mlclipsim"],
            metric_args={"mlclipsim": {"model": tiny_clip, "pretrained": None, "alpha": 0.25}},
        )
    assert module.metrics["mlclipsim"].alpha == 0.25  # metric_args reach validation metrics
    assert module.criterion.terms["mse"].metric is module.metrics["mse"]  # shared, not twice
    assert left_behind(module) == []
    x = photo_like(64, 64)[None].double()
    out = module._forward(x)
    assert out["x_hat"].dtype == torch.float64
    assert module.metrics["mlclipsim"](x, out["x_hat"].clamp(0, 1)).shape == (1,)
    assert not any(k.startswith("metrics.") for k in module.state_dict())  # no CLIP in ckpts


def test_unknown_metric_args_are_refused():
    with pytest.raises(ValueError, match="not in distortion or val_metrics"):
        CodecModule(codec_args={"N": 16, "M": 24}, metric_args={"lpips": {"net": "vgg"}})


def test_harness_codec_and_task_models_move_with_their_module(tmp_path, tiny_clip):
    codec, _ = load_checkpoint(write_codec_checkpoint(tmp_path / "c.ckpt"))
    assert left_behind(codec) == []
    (tmp_path / "images").mkdir()
    save_rgb(tmp_path / "images" / "a.png", photo_like(64, 64))
    consistency = create_task("consistency", tmp_path / "images", model="resnet18", weights="none")
    assert left_behind(consistency.build_model(torch.device("cpu"))) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fidelity = create_task(
            "fidelity", tmp_path / "images", model=tiny_clip, weights="none", metrics=["mlclipsim"]
        )
    assert left_behind(fidelity.build_model(torch.device("cpu"))) == []
