"""The plain serial loop a user would write for the consistency task: the baseline of
`eval_throughput.py`.

    python benchmarks/serial_loop.py IMAGES CKPT [--weights none] [--batched] [--channels-last]

For each image: resize the short side to 232 and centre-crop 224 (IMAGENET1K_V2's), pad
to the codec's stride, CompressAI `compress` / `decompress`, crop back, then ResNet-50 on the
original and on the decoded image, one call each (`--batched`: both in one call of batch 2;
`--channels-last`: the classifier in channels-last memory format). Prints images, top-1
agreement (%), mean bpp and seconds.
Only torch/torchvision/CompressAI calls and the checkpoint reader (a lic checkpoint needs it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.models import ResNet50_Weights, resnet50

from lic.codecs import load_checkpoint

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--weights", default="IMAGENET1K_V2", help="ResNet-50 weights, or none")
    p.add_argument("--batched", action="store_true", help="original and decoded in one call")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    start = time.perf_counter()
    codec = load_checkpoint(args.checkpoint, map_location="cpu")[0].eval()
    torch.manual_seed(0)
    weights = None if args.weights == "none" else ResNet50_Weights[args.weights]
    classifier = resnet50(weights=weights).eval()
    if args.channels_last:
        classifier = classifier.to(memory_format=torch.channels_last)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    files = sorted(f for f in args.images.rglob("*") if f.suffix.lower() in SUFFIXES)
    agree, bpp = 0, 0.0
    with torch.inference_mode():
        for file in files:
            x = TF.to_dtype(TF.pil_to_tensor(Image.open(file).convert("RGB")), scale=True)
            x = TF.center_crop(TF.resize(x, [232], antialias=True), [224])[None]
            h, w = x.shape[-2:]
            padded = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
            out = codec.compress(padded)
            x_hat = codec.decompress(out["strings"], out["shape"])["x_hat"]
            x_hat = x_hat[..., :h, :w].clamp(0, 1)
            bpp += 8 * sum(len(s[0]) for s in out["strings"]) / (h * w)
            if args.batched:
                logits = classifier((torch.cat([x, x_hat]) - mean) / std)
            else:
                logits = torch.cat([classifier((x - mean) / std), classifier((x_hat - mean) / std)])
            agree += int(logits[0].argmax() == logits[1].argmax())
    n = len(files)
    seconds = time.perf_counter() - start
    print(f"images {n} top1_agreement {100 * agree / n:.2f} bpp {bpp / n:.4f} s {seconds:.2f}")


if __name__ == "__main__":
    main()
