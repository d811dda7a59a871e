"""MLIC++ as published: lic's MLICPlusPlus against numbers pinned from the official code.

How the pinned numbers were made (once, outside lic; the official code is not in lic):
JiangWeibeta/MLIC at commit 4aa9d2a, folder MLIC++, run on CPU with CompressAI 1.2.8 and two
import shims (`compressai.ops.ste_round = compressai.ops.quantize_ste`, the 1.2.0b3 name of
the same op; `torch.cuda.synchronize` made a no-op for its timers). The official
`MLICPlusPlus(config)` with N=48, M=96, slice_num=3, context_window=5 (32-channel slices:
every branch runs, and the third slice's inter-slice attention has two heads) -- for
"2023-09", with `g_s = SynthesisTransformOld(N, M)` and every LRP replaced by
`LatentResidualPredictionOld(M + (i + 1) * slice_ch, slice_ch)` -- was put in eval mode,
filled by `hashed_weights_(model, y_gain=1.5)` below, `update(force=True)` was called, and
x = torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(1)) was run through
forward (y_likelihoods, z_likelihoods), compress (digest: sha256 hex[:16] of the string),
decompress of those strings (x_hat clamped to [0, 1]), and forward in train mode after
torch.manual_seed(0). Tree digests: sha256 hex[:16] of the "key (shape)" lines of the full
model's state dict (N=192, M=320, slice_num=10), and of its named_modules() names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from conftest import photo_like

from lic.codecs import Bitstream, BitstreamCodec, create_codec
from lic.codecs.mlicpp import MLICPlusPlus, official_scale_table
from lic.codecs.mlicpp.contexts import anchor_mask, squeeze, unsqueeze, window_mask

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = {"N": 48, "M": 96, "slice_num": 3}
POSITIONS = [(0, 5, 7), (1, 64, 100), (2, 127, 191)]
OFFICIAL = {
    "current": {
        "x_hat_sum": 42900.077137579676,
        "x_hat_abs_sum": 44373.283919157926,
        "x_hat_at": [0.6104961037635803, 0.9813189506530762, 0.587790846824646],
        "y_bits": 24454.54990270367,
        "z_bits": 550.2487287145346,
        "y_string": (3032, "d24154cb7841edd0"),
        "z_string": (76, "d8dcccda267b7044"),
        "decoded_sum": 41415.32730170712,
        "train_y_bits": 24553.414770704094,
        "train_x_hat_sum": 42900.077137579676,
        "full_tree": ("91e81ad759e937f1", "13a16b9cf7df9f9c"),
        "full_params": 83_501_408,
    },
    "2023-09": {
        "x_hat_sum": 43186.78700492857,
        "x_hat_abs_sum": 44754.6805317183,
        "x_hat_at": [0.48375943303108215, 0.9643456935882568, 0.5188868641853333],
        "y_bits": 24457.1218543735,
        "z_bits": 550.2487287145346,
        "y_string": (3032, "db25ebd4ac225ce8"),
        "z_string": (76, "d8dcccda267b7044"),
        "decoded_sum": 41716.602025011554,
        "train_y_bits": 24553.27413125948,
        "train_x_hat_sum": 43186.78700492857,
        "full_tree": ("76dd9d66cd583c04", "5b49d692d2d52884"),
        "full_params": 116_716_928,
    },
}


def hashed_weights_(model: torch.nn.Module, y_gain: float) -> None:
    """Fill every parameter but the entropy bottleneck's quantiles from a hash of its key,
    scaled so that y carries about 2.7 bits per latent and x_hat stays near [0, 1]."""
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("quantiles"):
                continue
            seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1
            n = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed))
            if key.endswith(".beta"):
                value = 1.0 + 0.1 * n.abs()
            elif key.endswith(".gamma"):
                value = 0.1 * n.abs() / p.shape[0] ** 0.5
            elif "norm" in key and key.endswith("weight"):
                value = 1.0 + 0.1 * n
            elif key.startswith("entropy_bottleneck.") or "relative_position" in key:
                value = 0.5 * n
            elif p.ndim >= 2:
                value = n / (p[0].numel() ** 0.5)
            else:
                value = 0.05 * n
            if ".fusion.6." in key:  # entropy parameters: scales near 1, means near 0
                value = 0.1 * value
                if key.endswith("bias"):
                    value[: p.shape[0] // 2] += 1.0
            if key.startswith("g_s.synthesis_transform.7."):  # x_hat near 0.5
                value = 0.1 * value + (0.5 if key.endswith("bias") else 0.0)
            if key == "g_a.analysis_transform.6.weight":
                value = value * y_gain
            p.copy_(value)


def hashed(generation: str = "current") -> MLICPlusPlus:
    model = create_codec("mlicpp", **SMALL, generation=generation).eval()
    hashed_weights_(model, y_gain=1.5)
    model.update(force=True)
    return model


def fixed_input() -> torch.Tensor:
    return torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(1))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def tree_digests(model: torch.nn.Module) -> tuple[str, str]:
    keys = "\n".join(f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items())
    names = "\n".join(n for n, _ in model.named_modules())
    return digest(keys.encode()), digest(names.encode())


@pytest.mark.parametrize("generation", ["current", "2023-09"])
def test_full_model_has_the_official_tree_and_size(generation):
    model = MLICPlusPlus(generation=generation)
    expected = OFFICIAL[generation]
    assert sum(p.numel() for p in model.parameters()) == expected["full_params"]
    assert tree_digests(model) == expected["full_tree"]


@pytest.mark.parametrize("generation", ["current", "2023-09"])
def test_forward_matches_the_official_forward(generation):
    model, expected = hashed(generation), OFFICIAL[generation]
    with torch.no_grad():
        out = model(fixed_input())
    x_hat, lik = out["x_hat"].double(), out["likelihoods"]
    assert x_hat.sum().item() == pytest.approx(expected["x_hat_sum"], rel=1e-6)
    assert x_hat.abs().sum().item() == pytest.approx(expected["x_hat_abs_sum"], rel=1e-6)
    got = [x_hat[0, c, i, j].item() for c, i, j in POSITIONS]
    assert got == pytest.approx(expected["x_hat_at"], abs=1e-5)
    assert -lik["y"].double().log2().sum().item() == pytest.approx(expected["y_bits"], rel=1e-6)
    assert -lik["z"].double().log2().sum().item() == pytest.approx(expected["z_bits"], rel=1e-6)
    assert expected["y_bits"] / lik["y"].numel() > 2  # the latents carry bits


@pytest.mark.parametrize("generation", ["current", "2023-09"])
def test_bitstreams_are_the_official_ones(generation):
    model, expected = hashed(generation), OFFICIAL[generation]
    x = fixed_input()
    with torch.no_grad():
        out = model.compress(x)
        (y_string,), (z_string,) = out["strings"]
        assert (len(y_string), digest(y_string)) == expected["y_string"]
        assert (len(z_string), digest(z_string)) == expected["z_string"]
        decoded = model.decompress(out["strings"], out["shape"])["x_hat"]
        forward = model(x)["x_hat"].clamp(0, 1)
    assert decoded.double().sum().item() == pytest.approx(expected["decoded_sum"], rel=1e-6)
    assert torch.equal(decoded, forward)  # one loop codes, decodes and runs forward


def test_training_forward_matches_the_official_one():
    model, expected = hashed().train(), OFFICIAL["current"]
    torch.manual_seed(0)
    out = model(fixed_input())
    y_bits = -out["likelihoods"]["y"].double().log2().sum().item()
    assert y_bits == pytest.approx(expected["train_y_bits"], rel=1e-6)
    x_hat_sum = out["x_hat"].double().sum().item()
    assert x_hat_sum == pytest.approx(expected["train_x_hat_sum"], rel=1e-6)
    out["x_hat"].mean().backward()  # rounding passes gradients (straight-through)
    assert model.g_a.analysis_transform[0].conv1.weight.grad.abs().sum() > 0


def test_batched_forward_equals_one_image_at_a_time():
    model = hashed()
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:])
    torch.testing.assert_close(batched["x_hat"][1:], single["x_hat"], rtol=0, atol=1e-4)
    torch.testing.assert_close(batched["likelihoods"]["y"][1:], single["likelihoods"]["y"])


def test_checkerboard_squeeze_round_trips_and_masks_windows():
    anchor = anchor_mask(4, 6, torch.device("cpu"))
    assert int(anchor.sum()) == 12 and not anchor[0, 0, 0, 0] and anchor[0, 0, 0, 1]
    x = torch.randn(2, 3, 4, 6)
    for half, mask in ((True, anchor), (False, ~anchor)):
        assert torch.equal(squeeze(x, half).flatten(), x[mask.expand_as(x)])  # raster order
        assert torch.equal(unsqueeze(squeeze(x, half), half), torch.where(mask, x, 0.0))
    mask = window_mask(anchor, 3)  # (L, 9, 9): 0 only where query and key are anchors
    assert mask.shape == (24, 9, 9) and set(mask.unique().tolist()) == {-100.0, 0.0}
    centre = 4  # position (0, 1) is an anchor; its left neighbour (0, 0) is not
    assert mask[1, centre, centre] == 0 and mask[1, centre, centre - 1] == -100


def test_scale_table_is_the_official_one():
    table = official_scale_table()
    assert table.shape == (64,) and table[0].item() == pytest.approx(0.11)
    assert table[-1].item() == pytest.approx(256.0)
    assert torch.equal(hashed().gaussian_conditional.scale_table, table)


def test_refuses_slices_narrower_than_32_channels():
    with pytest.raises(ValueError, match="32"):
        create_codec("mlicpp", N=32, M=64, slice_num=4)
    with pytest.raises(ValueError, match="generation"):
        create_codec("mlicpp", **SMALL, generation="2022")


@pytest.mark.slow
def test_container_wraps_the_official_strings():
    codec = BitstreamCodec(hashed())
    stream = Bitstream.from_bytes(codec.encode(fixed_input()))
    assert [(len(s), digest(s)) for s in stream.streams] == [
        OFFICIAL["current"]["y_string"],
        OFFICIAL["current"]["z_string"],
    ]


@pytest.mark.slow
def test_container_round_trip_pads_and_crops():
    codec = BitstreamCodec(hashed())
    x = photo_like(70, 99, seed=4)[None]
    decoded = codec.decode(codec.encode(x))
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1


def official_file(path, generation: str = "current", tables: bool = True, prefix: str = ""):
    """An official-format MLIC++ file as its train.py writes it: epoch, loss, Adam and
    MultiStepLR states, CompressAI 1.2.0b3 entropy-bottleneck key names."""
    model = hashed(generation)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(main, lr=1e-4)
    aux_optimizer = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[80, 100], gamma=0.1)
    old_names = {"matrices.": "_matrix", "biases.": "_bias", "factors.": "_factor"}
    state = {}
    for key, value in model.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(f"entropy_bottleneck.{new}", f"entropy_bottleneck.{old}")
        if not tables and key.endswith(("_quantized_cdf", "_offset", "_cdf_length")):
            value = value.new_zeros(0)
        state[prefix + key] = value
    torch.save(
        {
            "epoch": 120,
            "state_dict": state,
            "loss": 0.7,
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
        },
        path,
    )
    return path


@pytest.mark.parametrize("generation", ["current", "2023-09"])
def test_official_checkpoint_loads_with_its_configuration(tmp_path, generation):
    from lic.codecs import load_checkpoint

    path = official_file(tmp_path / "mlicpp_mse_q3.pth.tar", generation)
    model, info = load_checkpoint(path, lmbda=0.0067, distortion="mse")
    assert info.codec == "mlicpp" and info.codec_args == SMALL | {
        "context_window": 5,
        "generation": generation,
    }
    assert (info.lmbda, info.distortion) == (0.0067, "mse")
    assert info.hparams["label"] == "mlicpp_mse_q3.pth.tar" and info.hparams["epoch"] == 120
    with torch.no_grad():
        out = model.compress(fixed_input())
    assert digest(out["strings"][0][0]) == OFFICIAL[generation]["y_string"][1]


def test_official_checkpoint_without_tables_or_with_a_data_parallel_prefix(tmp_path):
    from lic.codecs import load_checkpoint

    path = official_file(tmp_path / "ddp.pth.tar", tables=False, prefix="module.")
    with pytest.warns(UserWarning, match="no entropy tables"):
        model, info = load_checkpoint(path)
    assert (info.lmbda, info.distortion) == (None, None)
    with torch.no_grad():
        out = model.compress(fixed_input())
    assert digest(out["strings"][0][0]) == OFFICIAL["current"]["y_string"][1]


def test_official_checkpoint_initialises_a_model_for_fine_tuning(tmp_path):
    from lic.codecs import init_codec_weights

    path = official_file(tmp_path / "official.pth.tar")
    model = create_codec("mlicpp", **SMALL)
    init_codec_weights(model, str(path))
    expected = hashed().state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    with pytest.raises(ValueError, match="does not hold weights"):
        init_codec_weights(create_codec("mlicpp", **SMALL, generation="2023-09"), str(path))


def test_fine_tunes_an_official_checkpoint_with_ml_clipsim(tmp_path, tiny_clip):
    """configs/mlicpp_mlclipsim.yaml's model, initialised from an official file (the small
    configuration and a tiny CLIP tower stand in for the published sizes)."""
    import yaml

    from lic.training import CodecModule

    config = yaml.safe_load((CONFIGS / "mlicpp_mlclipsim.yaml").read_text())["model"]
    assert config["codec_args"] == {"N": 192, "M": 320, "slice_num": 10, "context_window": 5}
    path = official_file(tmp_path / "official.pth.tar")
    module = CodecModule(
        codec=config["codec"],
        codec_args=SMALL,
        lmbda=config["lmbda"],
        distortion=config["distortion"],
        metric_args={"mlclipsim": {"model": tiny_clip, "pretrained": None}},
        init=str(path),
        val_metrics=[],
    )
    official_weight = hashed().g_a.analysis_transform[6].weight
    assert torch.equal(module.codec.g_a.analysis_transform[6].weight, official_weight)
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer here
    optimizer = module.configure_optimizers()
    batch = {
        "image": photo_like(128, 128, seed=1)[None],
        "skipped": torch.zeros(1, dtype=torch.long),
    }
    loss = module.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(module.codec.g_a.analysis_transform[6].weight, official_weight)


def test_evaluation_labels_an_official_checkpoint(tmp_path):
    from lic.evaluation.coders import build_coders

    path = official_file(tmp_path / "mlicpp_q3.pth.tar")
    unlabelled, labelled = (
        build_coders([path], ckpt_meta=meta)[1] for meta in (None, {str(path): ("mse", 0.0067)})
    )
    assert (unlabelled.codec, unlabelled.objective, unlabelled.lmbda) == (
        "mlicpp",
        "mlicpp_q3.pth.tar",
        None,
    )
    assert (labelled.objective, labelled.lmbda, labelled.distortion) == ("mse", 0.0067, "mse")
