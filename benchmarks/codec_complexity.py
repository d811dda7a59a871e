"""Parameters, kMACs per pixel and real encode/decode latency of codecs, side by side.

    python benchmarks/codec_complexity.py --image KODAK/kodim01.png \
        [--device cuda] [--repeats 3] [--codecs mlicpp bmshj2018-hyperprior]

MACs are counted by torch.utils.flop_counter on the eval forward (FLOPs / 2; convolutions and
matmuls, which is what fvcore/thop count too). Latency is `BitstreamCodec.encode` and
`.decode` of the whole image with real entropy coding, median of --repeats after a warm-up.
Weights are random unless --ckpt NAME=PATH is given: the arithmetic is the same, though
entropy-coding time depends on how peaked the learned distributions are.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lic.codecs import BitstreamCodec, create_codec, load_checkpoint
from lic.codecs.io import pad_to_stride
from lic.data import load_image

DEFAULT_ARGS = {"mlicpp": {}, "bmshj2018-hyperprior": {"quality": 3}}


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="an RGB image, e.g. Kodak kodim01.png")
    p.add_argument("--codecs", nargs="+", default=list(DEFAULT_ARGS))
    p.add_argument("--ckpt", nargs="*", default=[], metavar="NAME=PATH")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    checkpoints = dict(item.split("=", 1) for item in args.ckpt)
    image = load_image(args.image)
    h, w = image.shape[-2:]
    print(
        f"image={args.image} {w}x{h} device={device} threads={torch.get_num_threads()} "
        f"repeats={args.repeats}"
    )
    print(
        f"{'codec':22} {'params':>12} {'kMACs/px':>10} {'encode ms':>10} {'decode ms':>10} "
        f"{'bpp':>7}"
    )
    for name in args.codecs:
        torch.manual_seed(0)
        if name in checkpoints:
            model = load_checkpoint(checkpoints[name], map_location=device)[0]
        else:
            model = create_codec(name, **DEFAULT_ARGS.get(name, {})).eval().to(device)
            model.update(force=True)
        x = pad_to_stride(image[None].to(device), 64)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        kmacs = counter.get_total_flops() / 2 / (h * w) / 1e3
        codec = BitstreamCodec(model)
        encode_s, data = timed(lambda c=codec: c.encode(image), device, args.repeats)
        decode_s, _ = timed(lambda c=codec, d=data: c.decode(d), device, args.repeats)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:22} {params:12,} {kmacs:10.1f} {1000 * encode_s:10.1f} "
            f"{1000 * decode_s:10.1f} {8 * len(data) / (h * w):7.3f}"
        )


if __name__ == "__main__":
    main()
