"""The metric registry: names, directions, losses, and the pixel metrics' numbers."""

from __future__ import annotations

import math
import socket
import warnings

import pytest
import torch
from conftest import photo_like

from lic.metrics import MetricLoss, create_metric, list_metrics, metric_spec
from lic.weights import WeightsUnavailableError


def test_registry_lists_the_required_metrics():
    assert {"mlclipsim", "clip_global", "lpips", "psnr", "ms_ssim", "mse"} <= set(list_metrics())
    assert list_metrics("clip*") == ["clip_global"]
    with pytest.raises(ValueError, match="known: "):
        create_metric("no_such_metric")


@pytest.mark.parametrize(
    ("name", "lower_better"),
    [
        ("mlclipsim", False),
        ("clip_global", False),
        ("lpips", True),
        ("psnr", False),
        ("ms_ssim", False),
        ("mse", True),
    ],
)
def test_each_metric_knows_its_direction(name, lower_better):
    assert metric_spec(name).lower_better is lower_better


@pytest.fixture
def pair():
    x = photo_like(176, 192)[None].repeat(2, 1, 1, 1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return x, (x + torch.tensor([0.02, 0.08]).view(2, 1, 1, 1) * noise).clamp(0, 1)


def test_mse_and_psnr_equal_hand_computation(pair):
    x, y = pair
    mse = [float(((x[i] - y[i]) ** 2).mean()) for i in range(2)]
    torch.testing.assert_close(create_metric("mse")(x, y), torch.tensor(mse))
    psnr = create_metric("psnr")(x, y)  # float64: dB values are compared to 1e-6
    exact = [float(((x[i].double() - y[i].double()) ** 2).mean()) for i in range(2)]
    torch.testing.assert_close(
        psnr, torch.tensor([10 * math.log10(1 / m) for m in exact], dtype=torch.float64)
    )
    assert psnr[0] > psnr[1]
    assert create_metric("psnr")(x, x).tolist() == [100.0, 100.0]  # capped, not inf
    assert create_metric("psnr", data_range=255.0)(x * 255, y * 255).allclose(psnr)


def test_ms_ssim(pair):
    x, y = pair
    metric = create_metric("ms_ssim")
    assert torch.allclose(metric(x, x), torch.ones(2))
    score = metric(x, y)
    assert score[0] > score[1] and torch.all(score < 1)
    with pytest.raises(ValueError, match="161"):
        metric(x[..., :100, :], y[..., :100, :])


@pytest.mark.parametrize(
    ("shape", "dtype", "data_range"),
    [((2, 3, 176, 192), torch.float32, 1.0), ((1, 3, 161, 227), torch.float64, 255.0)],
)
def test_ms_ssim_is_pytorch_msssims_in_value_and_gradient(shape, dtype, data_range):
    """CompressAI reports pytorch_msssim's MS-SSIM; lic's faster one must be the same
    function: odd sides (padded pooling), the smallest side allowed, 0..255 and float64."""
    from pytorch_msssim import ms_ssim

    x = photo_like(*shape[-2:])[None].repeat(shape[0], 1, 1, 1).to(dtype) * data_range
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    y = (x + 0.05 * data_range * noise).clamp(0, data_range).requires_grad_()
    y_ref = y.detach().clone().requires_grad_()
    metric = create_metric("ms_ssim", data_range=data_range).to(dtype)
    ours, theirs = metric(x, y), ms_ssim(x, y_ref, data_range=data_range, size_average=False)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)
    with torch.no_grad():  # the banded path (lic eval's)
        torch.testing.assert_close(metric(x, y), theirs, rtol=0, atol=tolerance)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(y.grad, y_ref.grad, rtol=1e-4, atol=tolerance)


def test_ms_ssim_in_float16_sums_in_float32():
    """rows x cols map values would overflow a float16 sum (inf for a 512 x 768 image)."""
    from pytorch_msssim import ms_ssim

    x = photo_like(512, 768)[None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    y = (x + 0.05 * noise).clamp(0, 1)
    ours = create_metric("ms_ssim")(x.half(), y.half())
    assert ours.dtype == torch.float16 and torch.isfinite(ours).all()
    theirs = ms_ssim(x.half(), y.half(), data_range=1.0, size_average=False)
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=0, atol=2e-3)


def test_ms_ssim_golden(pair):
    """pytorch_msssim 1.0.0 gives 0.980596125125885 and 0.8191210627555847 on this pair."""
    expected = [0.980596125125885, 0.8191210627555847]
    assert create_metric("ms_ssim")(*pair).tolist() == pytest.approx(expected, abs=2e-7)


def test_lpips_random_init_is_a_frozen_distance(pair):
    x, y = pair
    torch.manual_seed(0)
    metric = create_metric("lpips", pretrained=False)
    assert metric.lower_better
    assert torch.allclose(metric(x, x), torch.zeros(2), atol=1e-6)
    # random 1x1 "lin" weights may be negative: only trained LPIPS is a non-negative distance
    assert metric(x, y).shape == (2,) and torch.all(metric(x, y).abs() > 0)
    assert list(metric.parameters()) == [] and metric.state_dict() == {}


def test_losses_are_scalars_to_minimise(tiny_clip, pair):
    x, y = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ml_loss = create_metric("mlclipsim", as_loss=True, model=tiny_clip, pretrained=None)
        glob = create_metric("clip_global", model=tiny_clip, pretrained=None)
    assert isinstance(ml_loss, MetricLoss)
    loss = ml_loss(x, y)
    assert loss.ndim == 0 and loss > 0
    torch.testing.assert_close(loss, (1 - ml_loss.metric(x, y)).mean())
    assert glob.alpha == 1.0 and glob.lower_better is False
    torch.testing.assert_close(
        create_metric("psnr", as_loss=True)(x, y), -create_metric("psnr")(x, y).mean()
    )
    torch.testing.assert_close(
        create_metric("mse", as_loss=True)(x, y), 255.0**2 * create_metric("mse")(x, y).mean()
    )
    torch.testing.assert_close(
        create_metric("ms_ssim", as_loss=True)(x, y), (1 - create_metric("ms_ssim")(x, y)).mean()
    )


def test_identity_values_are_what_each_metric_computes_on_identical_images(tiny_clip):
    """The uncompressed row of the fidelity task is written from these, not computed."""
    x = photo_like(192, 200, seed=5)[None]
    options = {"lpips": {"pretrained": False}}
    options |= {n: {"model": tiny_clip, "pretrained": None} for n in ("mlclipsim", "clip_global")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name in list_metrics():
            spec = metric_spec(name)
            assert spec.identity is not None, name
            score = create_metric(name, **options.get(name, {}))(x, x.clone())
            assert float(score) == pytest.approx(spec.identity, abs=1e-6), name


def test_clip_global_refuses_alpha(tiny_clip):
    with pytest.raises(ValueError, match="alpha"):
        create_metric("clip_global", model=tiny_clip, pretrained=None, alpha=0.5)


def test_lpips_without_backbone_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    def refuse(*_args, **_kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"alexnet-owt-7be5be79\.pth"):
        create_metric("lpips")
