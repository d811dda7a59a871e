"""Time ML-CLIPSim on one 768x512 Kodak pair (reference vs. a JPEG of it), CPU or GPU.

    python benchmarks/score_pair.py --image data/demo/val/kodim23.png [--device cuda]

Without the real weights (offline), `--pretrained none` times the same architecture with
random weights: the arithmetic, and so the time, is identical.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings
from pathlib import Path

import torch

from lic.data.images import load_image, pillow_roundtrip
from lic.metrics import MLCLIPSim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image", default=str(Path(__file__).resolve().parents[1] / "data/demo/val/kodim23.png")
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai", help="tag, file, or 'none'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pretrained = None if args.pretrained.lower() == "none" else args.pretrained

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        start = time.perf_counter()
        metric = MLCLIPSim(model=args.model, pretrained=pretrained, device=device)
        build_s = time.perf_counter() - start
    ref = load_image(args.image)
    dist = pillow_roundtrip(ref, "jpeg", 20)[0]
    x, y = ref[None].to(device), dist[None].to(device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            score = metric(x, y)
        float(score)  # forces completion on any device
        return time.perf_counter() - t0

    once()  # warm-up
    times = [once() for _ in range(args.repeats)]
    with torch.inference_mode():
        score = float(metric(x, y))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"device={device} threads={torch.get_num_threads()} model={args.model} "
        f"pretrained={pretrained} image={args.image} size={tuple(ref.shape[1:])}"
    )
    print(f"build: {build_s:.2f} s   score(JPEG q20) = {score:.4f}")
    print(
        f"per pair: median {1000 * statistics.median(times):.1f} ms over {args.repeats} "
        f"(min {1000 * min(times):.1f}, max {1000 * max(times):.1f})"
    )
    print(f"peak RSS: {peak:.0f} MiB (process start {rss_start:.0f} MiB)")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
