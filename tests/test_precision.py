"""Entropy models stay at full precision under autocast, through hooks that leave CompressAI's
classes and state dicts alone."""

from __future__ import annotations

import copy

import pytest
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from lic.codecs import create_codec


def codec():
    torch.manual_seed(0)
    return create_codec("bmshj2018-hyperprior", N=16, M=24).eval()


def test_likelihoods_are_float32_and_unchanged_under_bf16_autocast():
    model, x = codec(), torch.rand(1, 3, 64, 64)
    reference = model(x)["likelihoods"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)["likelihoods"]
        assert torch.is_autocast_enabled("cpu")  # restored after every entropy forward
    for name in ("y", "z"):
        assert mixed[name].dtype == torch.float32
    # z reaches the bottleneck from a bf16 transform; its likelihoods are exact float32 math
    z = model.h_a(model.g_a(x).abs()).float()
    torch.testing.assert_close(mixed["z"], model.entropy_bottleneck(z)[1])
    assert (reference["y"] - mixed["y"]).abs().max() < 0.05  # only the bf16 transforms differ


def test_classes_state_and_copies_stay_compressai_s_own():
    model = codec()
    assert type(model.entropy_bottleneck) is EntropyBottleneck
    assert type(model.gaussian_conditional) is GaussianConditional
    clone = copy.deepcopy(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = clone(torch.rand(1, 3, 64, 64))
    assert out["likelihoods"]["z"].dtype == torch.float32
    from compressai.models import ScaleHyperprior

    assert clone.state_dict().keys() == ScaleHyperprior(16, 24).state_dict().keys()


def test_autocast_is_restored_when_an_entropy_forward_raises():
    model = codec()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError):
            model.entropy_bottleneck(torch.rand(1, 5, 4, 4))  # 5 channels: 24 expected
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_float64_stays_float64():
    model = codec().double()
    out = model(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    assert out["likelihoods"]["y"].dtype == torch.float64


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr"])
def test_variable_rate_likelihoods_are_float32_under_bf16_autocast(name):
    """bf16 training of a VBR codec keeps its entropy models (the VBR bottleneck included)
    at full precision, as for fixed-rate codecs."""
    torch.manual_seed(0)
    model, x = create_codec(name, N=16, M=24, vr_entbttlnck=True).train(), torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, stage=2, s=3)
    for likelihoods in out["likelihoods"].values():
        assert likelihoods.dtype == torch.float32 and torch.isfinite(likelihoods).all()
