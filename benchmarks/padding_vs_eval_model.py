"""lic's rate and PSNR against CompressAI's eval_model on the same weights, and what lic's
earlier edge padding (`replicate`) would report instead.

    python benchmarks/padding_vs_eval_model.py --images FOLDER [--ckpt CKPT] [--limit N]

For every image: CompressAI's own `eval_model.inference` (zeros, centred, to a multiple of
64; payload bytes; float32 PSNR) and lic's `BitstreamCodec` with `zeros` and `replicate`
(payload bytes; float64 PSNR of the 8-bit decoded image, as `lic eval` computes it). Prints
how many payloads are equal to the byte, the largest PSNR difference, and the median (range)
of replicate's payload ratio and PSNR gain over zeros. Only images whose sides are not both
multiples of 64 are affected by the padding. Default checkpoint: the bundled 0.013 demo.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from lic.codecs import BitstreamCodec, load_checkpoint
from lic.codecs.io import Bitstream
from lic.data.images import list_images, load_image
from lic.metrics.pixel import PSNR

DEMO = (
    Path(__file__).resolve().parents[1] / "checkpoints" / "demo-bmshj2018-hyperprior-mse-0.013.ckpt"
)


def lic_point(codec: BitstreamCodec, image: torch.Tensor) -> tuple[int, float]:
    """(payload bytes, PSNR in dB) of one image coded by lic."""
    data = codec.encode(image)
    decoded = (codec.decode(data) * 255).round() / 255
    return Bitstream.from_bytes(data).payload_bytes, float(PSNR()(image[None], decoded))


def main() -> None:
    from compressai.utils.eval_model.__main__ import inference

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="a folder of images (sides not multiples of 64)")
    p.add_argument("--ckpt", default=str(DEMO), help="a lic checkpoint (default: the 0.013 demo)")
    p.add_argument("--limit", type=int, help="first N images")
    args = p.parse_args()
    model = load_checkpoint(args.ckpt)[0].eval()
    zeros, replicate = (
        BitstreamCodec(model, padding="zeros"),
        BitstreamCodec(model, padding="replicate"),
    )
    equal, worst, ratios, gains, padded = 0, 0.0, [], [], 0
    paths = list_images(args.images)[: args.limit]
    for path in paths:
        image = load_image(path)
        h, w = image.shape[-2:]
        field = inference(model, image)
        field_bytes = round(field["bpp"] * h * w / 8)
        zero_bytes, zero_psnr = lic_point(zeros, image)
        edge_bytes, edge_psnr = lic_point(replicate, image)
        equal += zero_bytes == field_bytes
        worst = max(worst, abs(zero_psnr - float(field["psnr-rgb"])))
        if h % 64 or w % 64:
            padded += 1
            ratios.append(edge_bytes / zero_bytes)
            gains.append(edge_psnr - zero_psnr)
    print(f"{len(paths)} images from {args.images}, {args.ckpt}")
    print(f"payload equal to eval_model's, to the byte: {equal} of {len(paths)}")
    print(f"largest |PSNR(lic) - PSNR(eval_model)|: {worst:.2g} dB (eval_model: float32)")
    if padded:
        print(
            f"{padded} images need padding; replicate vs zeros: "
            f"payload x{statistics.median(ratios):.3f} "
            f"({min(ratios):.2f} to {max(ratios):.2f}), PSNR {statistics.median(gains):+.2f} dB "
            f"({min(gains):+.2f} to {max(gains):+.2f})"
        )


if __name__ == "__main__":
    main()
