"""ML-CLIPSim pinned against docs/design.md's definition, computed independently in float64."""

from __future__ import annotations

import copy
import socket
import time

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import photo_like

from lic.metrics import MLCLIPSim
from lic.metrics.clip_tower import resolve_weights
from lic.metrics.mlclipsim import default_layers
from lic.weights import WeightsUnavailableError


def reference_score(
    metric: MLCLIPSim, x: torch.Tensor, y: torch.Tensor, layers, weights, alpha: float
) -> torch.Tensor:
    """docs/design.md steps 1-5 by hand: squash resize, normalise, float64 tower, block outputs
    taken by forward hooks (class token dropped here), explicit loops over tokens."""
    net = copy.deepcopy(metric.net).double()
    mean = torch.tensor(net.preprocess_cfg["mean"], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(net.preprocess_cfg["std"], dtype=torch.float64).view(1, 3, 1, 1)

    def prep(img):
        img = F.interpolate(
            img.double(), size=(64, 64), mode="bicubic", antialias=True, align_corners=False
        )
        return (img - mean) / std

    captured = {}
    hooks = [
        net.transformer.resblocks[i].register_forward_hook(
            lambda _m, _inp, out, i=i: captured.__setitem__(i, out)
        )
        for i in layers
    ]
    with torch.no_grad():
        emb_x = net(prep(x))
        tokens_x = {i: captured[i][:, 1:] for i in layers}  # drop the class token
        emb_y = net(prep(y))
        tokens_y = {i: captured[i][:, 1:] for i in layers}
    for h in hooks:
        h.remove()

    def cos(a, b):
        return float((a @ b) / (a.norm() * b.norm()))

    scores = []
    for n in range(x.shape[0]):
        layer_term = 0.0
        for w, i in zip(weights, layers, strict=True):
            t_x, t_y = tokens_x[i][n], tokens_y[i][n]
            s_l = sum(cos(t_x[k], t_y[k]) for k in range(t_x.shape[0])) / t_x.shape[0]
            layer_term += w / sum(weights) * s_l
        scores.append((1 - alpha) * layer_term + alpha * cos(emb_x[n], emb_y[n]))
    return torch.tensor(scores, dtype=torch.float64)


def test_default_layers_match_design():
    assert default_layers(12) == (2, 5, 8, 11)
    assert default_layers(24) == (5, 11, 17, 23)
    assert default_layers(4) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("layers", "weights", "alpha"),
    [
        (None, None, 0.5),
        ((1, 3), (0.25, 0.75), 0.3),
        ((0, 2), (2.0, 1.0), 0.0),
        ((3,), None, 1.0),
    ],
)
def test_matches_independent_definition(make_mlclipsim, layers, weights, alpha):
    metric = make_mlclipsim(layers=layers, weights=weights, alpha=alpha)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 48, 72)
    y = (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
    layers = layers or (0, 1, 2, 3)
    expected = reference_score(metric, x, y, layers, weights or [1.0] * len(layers), alpha)
    got = metric(x, y)
    assert got.shape == (2,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("resize", ["squash", "center_crop", "tiles"])
def test_identical_images_score_one(make_mlclipsim, resize):
    x = photo_like(100, 150)[None]
    assert torch.allclose(make_mlclipsim(resize=resize)(x, x.clone()), torch.ones(1), atol=1e-6)


def test_score_falls_monotonically_with_noise(make_mlclipsim):
    metric = make_mlclipsim()
    x = photo_like()[None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    sigmas = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    scores = torch.cat([metric(x, (x + s * noise).clamp(0, 1)) for s in sigmas])
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert torch.all(scores[1:] < scores[:-1]), scores


def test_alpha_and_layer_weights_combine_as_defined(make_mlclipsim):
    x = photo_like()[None]
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    layer_sims, global_sim = make_mlclipsim().similarities(x, y)
    assert layer_sims.shape == (1, 4) and global_sim.shape == (1,)
    assert torch.all(layer_sims < 1) and torch.all(global_sim < 1)
    torch.testing.assert_close(make_mlclipsim(alpha=1.0)(x, y), global_sim)
    for k in range(4):
        one_hot = [1.0 if j == k else 0.0 for j in range(4)]
        torch.testing.assert_close(
            make_mlclipsim(alpha=0.0, weights=one_hot)(x, y), layer_sims[:, k]
        )
    mixed = make_mlclipsim(alpha=0.3, weights=[1, 0, 3, 0])(x, y)
    torch.testing.assert_close(
        mixed, 0.7 * (layer_sims[:, 0] + 3 * layer_sims[:, 2]) / 4 + 0.3 * global_sim
    )
    # weights follow the caller's layer order, whatever order the blocks are given in
    torch.testing.assert_close(
        make_mlclipsim(alpha=0.0, layers=(3, 1), weights=(1, 0))(x, y), layer_sims[:, 3]
    )


def test_tiles_average_native_resolution_tiles(make_mlclipsim):
    x = photo_like(64, 128)[None]  # exactly two 64x64 tiles
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    tiled = make_mlclipsim(resize="tiles")(x, y)
    squash = make_mlclipsim()
    per_tile = torch.cat([squash(x[..., :64], y[..., :64]), squash(x[..., 64:], y[..., 64:])])
    torch.testing.assert_close(tiled, per_tile.mean().reshape(1))


@pytest.mark.slow
def test_gradient_matches_finite_differences(make_mlclipsim):
    metric = make_mlclipsim(dtype=torch.float64)
    x = photo_like(8, 8, seed=2)[None].double()
    y = (
        x
        + 0.1
        * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ).clamp(0, 1)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: metric(x, d), (y,), eps=1e-6, atol=1e-6)


def test_gradients_reach_both_inputs_and_paths_agree(make_mlclipsim):
    metric = make_mlclipsim()
    x = photo_like()[None]
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(6))).clamp(0, 1)
    with torch.no_grad():
        plain = metric(x, y)  # one pass over [x; y]
    y_req = y.clone().requires_grad_(True)
    split = metric(x, y_req)  # reference without grad, distorted with grad
    split.sum().backward()
    torch.testing.assert_close(split.detach(), plain)
    assert y_req.grad.abs().sum() > 0
    x_req, y_req = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    metric(x_req, y_req).sum().backward()
    assert x_req.grad.abs().sum() > 0 and y_req.grad.abs().sum() > 0


def test_tower_is_frozen_hidden_and_follows_the_module(make_mlclipsim):
    metric = make_mlclipsim()
    assert list(metric.parameters()) == []
    assert metric.state_dict() == {}
    x = photo_like()[None]
    y = x.flip(-1).requires_grad_(True)
    metric.train()
    assert not metric.net.training
    metric(x, y).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in metric.net.parameters())
    metric.double()
    assert metric.net_dtype == torch.float64
    assert metric(x.double(), x.double()).item() == pytest.approx(1.0, abs=1e-12)
    holder = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), metric)  # e.g. inside a codec module
    assert len(list(holder.parameters())) == 2 and set(holder.state_dict()) == {
        "0.weight",
        "0.bias",
    }


def test_bf16_tower_keeps_float32_cosines(make_mlclipsim):
    x = photo_like()[None]
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    full, half = make_mlclipsim()(x, y), make_mlclipsim(dtype=torch.bfloat16)(x, y)
    assert half.dtype == torch.float32
    assert abs(float(half - full)) < 0.02


def _score_and_gradient(metric, x, y):
    y = y.clone().requires_grad_(True)
    score = metric(x, y)
    (grad,) = torch.autograd.grad(score.sum(), y)
    return score.detach(), grad


@pytest.mark.slow
@pytest.mark.parametrize(
    "fast",
    [{"one_pass": True}, {"compile": True}],
    ids=["one_pass", "compile"],
)
def test_speed_switches_keep_values_and_gradients(make_mlclipsim, fast):
    x = torch.stack([photo_like(seed=1), photo_like(seed=2)])
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    reference = _score_and_gradient(make_mlclipsim(), x, y)
    with torch.no_grad():
        no_grad_score = make_mlclipsim(**fast)(x, y)
    score, grad = _score_and_gradient(make_mlclipsim(**fast), x, y)
    torch.testing.assert_close(no_grad_score, reference[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(score, reference[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, reference[1], rtol=1e-4, atol=1e-7)
    assert grad.abs().sum() > 0


def test_precision_is_configurable_by_name(make_mlclipsim):
    assert make_mlclipsim(dtype="bf16").net_dtype == torch.bfloat16
    assert make_mlclipsim(dtype="float32").net_dtype == torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'half-ish'"):
        make_mlclipsim(dtype="half-ish")


def test_state_dict_checkpoint_loads_through_pretrained_path(tiny_clip, tmp_path):
    torch.manual_seed(11)
    clip = open_clip.create_model(tiny_clip, pretrained=None)
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    metric = MLCLIPSim(model=tiny_clip, pretrained=str(path))
    views = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = metric.net.forward_intermediates(views, indices=[1, 3], output_fmt="NLC")
        theirs = clip.eval().visual.forward_intermediates(views, indices=[1, 3], output_fmt="NLC")
    torch.testing.assert_close(ours["image_features"], theirs["image_features"], rtol=0, atol=0)
    for a, b in zip(ours["image_intermediates"], theirs["image_intermediates"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_of_another_architecture_is_a_clear_error(tiny_clip, tmp_path):
    other = open_clip.create_model(tiny_clip, pretrained=None, embed_dim=16)
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="is not a checkpoint of open_clip model"):
        MLCLIPSim(model=tiny_clip, pretrained=str(path))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_offline_tag_fails_fast_with_instructions(no_network, tmp_path):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        MLCLIPSim(pretrained="openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 15  # no hub retry loop
    message = str(info.value)
    assert "pretrained='/path/to/file'" in message
    assert "ViT-B-32-quickgelu" in message  # the OpenAI weights need QuickGELU
    assert "open_clip_pytorch_model.bin" in message


def test_hf_offline_env_is_honoured_without_touching_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", pytest.fail)
    with pytest.raises(WeightsUnavailableError):
        resolve_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))


def test_cached_tag_weights_are_found_offline(no_network, tmp_path):
    repo, commit = "timm/vit_base_patch32_clip_224.openai", "0" * 40
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text(commit)
    path, cfg = resolve_weights("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert path == str(snapshot / "open_clip_model.safetensors")
    assert cfg["quick_gelu"] is True


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ValueError, match="openai"):
        resolve_weights("ViT-B-32", "no-such-tag")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 1.5},
        {"layers": (0, 9)},
        {"layers": (1, 1)},
        {"weights": (1.0,)},
        {"weights": (-1, 1, 1, 1)},
        {"resize": "crop"},
    ],
)
def test_invalid_configuration_is_rejected(make_mlclipsim, kwargs):
    with pytest.raises(ValueError):
        make_mlclipsim(**kwargs)


def test_mismatched_inputs_are_rejected(make_mlclipsim):
    metric = make_mlclipsim()
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 30))
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.rand(3, 32, 32), torch.rand(3, 32, 32))


@pytest.mark.parametrize(
    "options", [{}, {"alpha": 0.0}, {"alpha": 1.0}, {"resize": "tiles"}, {"layers": (0, 3)}]
)
def test_reference_features_once_score_every_distortion_as_forward(make_mlclipsim, options):
    """One tower pass on the reference (what lic eval caches), then any distorted version:
    the same score as forward(x, y)."""
    metric = make_mlclipsim(**options)
    x = torch.stack([photo_like(64, 128, seed=1), photo_like(64, 128, seed=2)])
    features = metric.reference_features(x)
    assert len(features) == 2
    for level in (0.02, 0.2):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
        y = (x + level * noise).clamp(0, 1)
        torch.testing.assert_close(metric.score_features(features, y), metric(x, y))
    one = metric.reference_features(x[1:])
    torch.testing.assert_close(metric.score_features(one, y[1:]), metric(x[1:], y[1:]))


def test_reference_features_of_another_layout_are_refused(make_mlclipsim):
    metric = make_mlclipsim(resize="tiles")
    features = metric.reference_features(photo_like(64, 128)[None])  # two tiles
    with pytest.raises(ValueError, match="another view layout"):
        metric.score_features(features, photo_like(64, 64)[None])
    with pytest.raises(ValueError, match="2 reference features for 1 images"):
        metric.score_features(features * 2, photo_like(64, 128)[None])
