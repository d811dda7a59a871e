"""Training-step time: a naive PyTorch loop against lic's Lightning step, per objective.

    python benchmarks/train_step.py [--device cuda] [--batch 16] [--size 256] [--repeats 20]
        [--codecs bmshj2018-hyperprior mbt2018-mean] [--clip-pretrained none|openai|PATH]
        [--variants lic lic-1pass lic-compile lic-bf16clip lic-cl lic-amp lic-fast]

The naive loop is issue 7's baseline: CompressAI codec, Adam, `bpp + lambda * D`, with D =
255^2 MSE, or a hand-written multi-layer CLIP feature loss (bicubic resize to 224,
reference features without grad, four blocks + global embedding), or both. The lic step runs
`CodecModule.training_step` plus backward and the optimiser step, exactly as Lightning's
automatic optimisation does. Reported: median ms/step over `--repeats` after warm-up,
images/s, peak memory, and the ratios the issue asks for (mse+mlclipsim / mse, and naive /
lic images/s). Each lic variant (one tower pass, torch.compile, bf16 tower, channels-last
codec, bf16 autocast, all together) is also checked against eager float32 lic: relative
error of the loss and of the codec gradient on one batch. Random CLIP weights
(`--clip-pretrained none`) cost the same arithmetic.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings
from functools import partial

import open_clip
import torch
import torch.nn.functional as F

from lic.codecs import create_codec
from lic.losses import estimated_bpp
from lic.metrics.registry import MSE_LOSS_SCALE as MSE_SCALE
from lic.training import CodecModule

OBJECTIVES = {
    "mse": {"mse": 1.0},
    "mlclipsim": {"mlclipsim": 1000.0},
    "mse+mlclipsim": {"mse": 1.0, "mlclipsim": 1000.0},
}


class NaiveClipLoss(torch.nn.Module):
    """The baseline's hand-written CLIP feature loss (what users write before lic)."""

    def __init__(self, pretrained: str | None) -> None:
        super().__init__()
        model = open_clip.create_model("ViT-B-32", pretrained=pretrained)
        self.visual = model.visual.eval().requires_grad_(False)
        cfg = self.visual.preprocess_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    def features(self, x):
        x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
        out = self.visual.forward_intermediates(
            (x - self.mean) / self.std, indices=[2, 5, 8, 11], output_fmt="NLC"
        )
        return out["image_intermediates"], out["image_features"]

    def forward(self, x, x_hat):
        with torch.no_grad():
            tx, gx = self.features(x)
        ty, gy = self.features(x_hat)
        layers = sum(F.cosine_similarity(a, b, dim=-1).mean(1) for a, b in zip(tx, ty, strict=True))
        sim = 0.5 * layers / len(tx) + 0.5 * F.cosine_similarity(gx, gy, dim=-1)
        return (1 - sim).mean()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(steps: dict, device: torch.device, repeats: int, warmup: int = 3) -> dict:
    """Median seconds per step of each path, timed in rounds (one step of every path per
    round, in turn) so that a machine's drift hits every path alike; peak memory per path is
    taken over its warm-up (CPU: the process's peak RSS so far, which only grows)."""
    peaks = {}
    for path, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            step()
        sync(device)
        peaks[path] = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
    times: dict[str, list[float]] = {path: [] for path in steps}
    for _ in range(repeats):
        for path, step in steps.items():
            start = time.perf_counter()
            step()
            sync(device)
            times[path].append(time.perf_counter() - start)
    return {path: (statistics.median(t), peaks[path]) for path, t in times.items()}


def naive_step_fn(codec_name: str, objective: str, x: torch.Tensor, pretrained):
    codec = create_codec(codec_name, quality=3).to(x.device).train()
    clip = NaiveClipLoss(pretrained).to(x.device) if "mlclipsim" in objective else None
    main = [p for n, p in codec.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in codec.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, 1e-4), torch.optim.Adam(aux, 1e-3)
    weights = OBJECTIVES[objective]

    def step():
        out = codec(x)
        loss = estimated_bpp(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
        if "mse" in weights:
            loss = loss + 0.013 * MSE_SCALE * F.mse_loss(out["x_hat"], x)
        if clip is not None:
            loss = loss + 0.013 * weights["mlclipsim"] * clip(x, out["x_hat"])
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        codec.aux_loss().backward()
        aux_opt.step()

    return step


# lic variants: (ML-CLIPSim arguments, CodecModule arguments, bf16 autocast of the codec)
VARIANTS = {
    "lic": ({}, {}, False),
    "lic-1pass": ({"one_pass": True}, {}, False),
    "lic-compile": ({"compile": True}, {}, False),
    "lic-bf16clip": ({"dtype": "bf16"}, {}, False),
    "lic-cl": ({}, {"channels_last": True}, False),
    "lic-compile-bf16clip": ({"compile": True, "dtype": "bf16"}, {}, False),
    "lic-amp": ({"dtype": "bf16"}, {"channels_last": True}, True),
    "lic-fast": (
        {"one_pass": True, "compile": True, "dtype": "bf16"},
        {"channels_last": True},
        True,
    ),
}


def lic_module(codec_name: str, objective: str, device, pretrained, variant: tuple) -> CodecModule:
    metric_args, module_args, _ = variant
    torch.manual_seed(0)  # every variant starts from the same codec weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module = CodecModule(
            codec=codec_name,
            codec_args={"quality": 3},
            distortion=OBJECTIVES[objective],
            metric_args={"mlclipsim": {"pretrained": pretrained, **metric_args}}
            if "mlclipsim" in objective
            else None,
            val_metrics=[],
            **module_args,
        )
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer attached here
    return module.to(device).train()


def lic_loss(module: CodecModule, batch: dict, variant: tuple) -> torch.Tensor:
    with torch.autocast(batch["image"].device.type, torch.bfloat16, enabled=variant[2]):
        return module.training_step(batch, 0)


def lic_step_fn(codec_name: str, objective: str, x: torch.Tensor, pretrained, variant="lic"):
    variant = VARIANTS[variant]
    module = lic_module(codec_name, objective, x.device, pretrained, variant)
    optimizer = module.configure_optimizers()
    batch = {"image": x, "skipped": torch.zeros(len(x), dtype=torch.long, device=x.device)}

    def step():
        loss = lic_loss(module, batch, variant)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        module.on_before_optimizer_step(optimizer)
        optimizer.step()

    return step


def exactness(codec_name: str, objective: str, x: torch.Tensor, pretrained, variant: str):
    """Relative error of the loss and of the codec gradient against eager float32 lic, on
    one batch from the same weights; the quantisation noise is drawn from the same seed.
    The reference keeps the variant's memory format: CompressAI draws the noise with
    `empty_like(...).uniform_()`, whose values land on other elements in channels-last."""
    batch = {"image": x, "skipped": torch.zeros(len(x), dtype=torch.long, device=x.device)}
    results = []
    reference = ({}, VARIANTS[variant][1], False)
    for name in (reference, VARIANTS[variant]):
        module = lic_module(codec_name, objective, x.device, pretrained, name)
        torch.manual_seed(1)
        loss = lic_loss(module, batch, name)
        loss.backward()
        grad = torch.cat(
            [p.grad.flatten().float() for p in module.codec.parameters() if p.grad is not None]
        )
        results.append((loss.detach().float(), grad))
    (loss_ref, grad_ref), (loss, grad) = results
    return (
        float((loss - loss_ref).abs() / loss_ref.abs()),
        float((grad - grad_ref).norm() / grad_ref.norm()),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="default: 16 on GPU, 2 on CPU")
    p.add_argument("--size", type=int, default=None, help="default: 256 on GPU, 128 on CPU")
    p.add_argument("--repeats", type=int, default=None, help="default: 20 GPU, 5 CPU")
    p.add_argument("--codecs", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    p.add_argument("--clip-pretrained", default="none")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["lic", "lic-1pass", "lic-compile", "lic-bf16clip", "lic-cl", "lic-fast"],
        choices=list(VARIANTS),
        help="lic configurations to time besides the naive loop",
    )
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch, size = args.batch or (16 if gpu else 2), args.size or (256 if gpu else 128)
    repeats = args.repeats or (20 if gpu else 5)
    pretrained = None if args.clip_pretrained.lower() == "none" else args.clip_pretrained
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    print(
        f"device={device} batch={batch} size={size} repeats={repeats} "
        f"threads={torch.get_num_threads()} clip={pretrained}"
    )
    print(
        "\n| codec | objective | path | ms/step | img/s | vs lic | peak MiB | loss err | grad err |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    paths = {"naive": naive_step_fn} | {v: partial(lic_step_fn, variant=v) for v in args.variants}
    results = {}
    for codec in args.codecs:
        for objective in args.objectives:
            steps = {path: make(codec, objective, x, pretrained) for path, make in paths.items()}
            timed = interleaved(steps, device, repeats)
            del steps
            for path, (median, peak) in timed.items():
                errors = " | "
                if path not in ("naive", "lic"):
                    loss_err, grad_err = exactness(codec, objective, x, pretrained, path)
                    errors = f"{loss_err:.1e} | {grad_err:.1e}"
                results[(codec, objective, path)] = median
                versus = median / timed["lic"][0] if "lic" in timed else float("nan")
                print(
                    f"| {codec} | {objective} | {path} | {1000 * median:.1f} | "
                    f"{batch / median:.1f} | {versus:.2f}x | {peak:.0f} | {errors} |",
                    flush=True,
                )
    print("ratios (goals: mse+mlclipsim / mse <= 1.15x; lic / naive images/s >= 3x)")
    for codec in args.codecs:
        for path in paths:
            both, mse = (codec, "mse+mlclipsim", path), (codec, "mse", path)
            line = f"{codec} {path:13}"
            if both in results and mse in results:
                line += f" step(mse+mlclipsim)/step(mse) = {results[both] / results[mse]:.2f}x"
            naive = (codec, "mlclipsim", "naive")
            if path != "naive" and naive in results and (codec, "mlclipsim", path) in results:
                speed = results[naive] / results[(codec, "mlclipsim", path)]
                line += f"  images/s vs naive (mlclipsim) = {speed:.2f}x"
            print(line)
    print("loss/grad err: relative to eager float32 lic on one batch (goals 1e-3 / 1e-2).")
    if not gpu:
        print("CPU peak memory is the process's peak RSS so far (it only grows).")


if __name__ == "__main__":
    main()
