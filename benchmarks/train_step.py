"""Training-step time: a naive PyTorch loop against lic's Lightning step, per objective.

    python benchmarks/train_step.py [--device cuda] [--batch 16] [--size 256] [--repeats 20]
        [--codecs bmshj2018-hyperprior mbt2018-mean] [--clip-pretrained none|openai|PATH]

The naive loop is issue 7's baseline: CompressAI codec, Adam, `bpp + lambda * D`, with D =
255^2 MSE, or a hand-written multi-layer CLIP feature loss (bicubic resize to 224,
reference features without grad, four blocks + global embedding), or both. The lic step runs
`CodecModule.training_step` plus backward and the optimiser step, exactly as Lightning's
automatic optimisation does. Reported: median ms/step over `--repeats` after warm-up,
images/s, peak memory, and the ratios the issue asks for (mse+mlclipsim / mse, and naive /
lic images/s). Random CLIP weights (`--clip-pretrained none`) cost the same arithmetic.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

import open_clip
import torch
import torch.nn.functional as F

from lic.codecs import create_codec
from lic.losses import MSE_SCALE, estimated_bpp
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


def time_steps(step, device: torch.device, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


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


def lic_step_fn(codec_name: str, objective: str, x: torch.Tensor, pretrained):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module = (
            CodecModule(
                codec=codec_name,
                codec_args={"quality": 3},
                distortion=OBJECTIVES[objective],
                metric_args={"mlclipsim": {"pretrained": pretrained}}
                if "mlclipsim" in objective
                else None,
                val_metrics=[],
            )
            .to(x.device)
            .train()
        )
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer attached here
    optimizer = module.configure_optimizers()
    batch = {"image": x, "skipped": torch.zeros(len(x), dtype=torch.long)}

    def step():
        loss = module.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        module.on_before_optimizer_step(optimizer)
        optimizer.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="default: 16 on GPU, 2 on CPU")
    p.add_argument("--size", type=int, default=None, help="default: 256 on GPU, 128 on CPU")
    p.add_argument("--repeats", type=int, default=None, help="default: 20 GPU, 5 CPU")
    p.add_argument("--codecs", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    p.add_argument("--clip-pretrained", default="none")
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
    print(f"{'codec':22} {'objective':14} {'path':6} {'ms/step':>9} {'img/s':>8} {'peak MiB':>9}")
    results = {}
    for codec in args.codecs:
        for objective in args.objectives:
            for path, make in (("naive", naive_step_fn), ("lic", lic_step_fn)):
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                step = make(codec, objective, x, pretrained)
                median = statistics.median(time_steps(step, device, repeats))
                peak = (
                    torch.cuda.max_memory_allocated() / 2**20
                    if gpu
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                )
                results[(codec, objective, path)] = median
                print(
                    f"{codec:22} {objective:14} {path:6} {1000 * median:9.1f} "
                    f"{batch / median:8.1f} {peak:9.0f}"
                )
    for codec in args.codecs:
        for path in ("naive", "lic"):
            if (codec, "mse+mlclipsim", path) in results and (codec, "mse", path) in results:
                ratio = results[(codec, "mse+mlclipsim", path)] / results[(codec, "mse", path)]
                print(
                    f"{codec} {path}: step(mse+mlclipsim) / step(mse) = {ratio:.2f}x "
                    "(goal for lic: <= 1.15x)"
                )
        if (codec, "mlclipsim", "naive") in results:
            speed = results[(codec, "mlclipsim", "naive")] / results[(codec, "mlclipsim", "lic")]
            print(f"{codec}: lic / naive images/s with mlclipsim = {speed:.2f}x (goal: >= 3x)")
    if not gpu:
        print("CPU peak memory is the process's peak RSS so far (it only grows).")


if __name__ == "__main__":
    main()
