"""What a bf16 CLIP tower costs ML-CLIPSim in exactness: scores and gradients against fp32.

    python benchmarks/bf16_error.py --images data/demo/val [--pretrained openai]
        [--qualities 5 10 20 40 80] [--device cuda]

Pairs: each image (bicubic to 256x256) against its JPEG at each quality. Reported: the
absolute error of the score (1 = identical), the relative error of the loss 1 - score, and
the relative error (norm of difference / norm) of d score / d y, each median and max.
"""

from __future__ import annotations

import argparse
import io
import statistics
import warnings

import torch
import torch.nn.functional as F

from lic.data.images import list_images, load_image, to_pil
from lic.metrics import MLCLIPSim


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return pil_to_tensor(Image.open(buffer)).float() / 255


def score_and_grad(metric: MLCLIPSim, x: torch.Tensor, y: torch.Tensor):
    y = y.clone().requires_grad_(True)
    score = metric(x, y)
    (grad,) = torch.autograd.grad(score.sum(), y)
    return score.detach(), grad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--pretrained", default="none")
    p.add_argument("--qualities", type=int, nargs="+", default=[5, 10, 20, 40, 80])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    pretrained = None if args.pretrained == "none" else args.pretrained
    metrics = {}
    for dtype in ("fp32", "bf16"):
        torch.manual_seed(0)  # the same random tower for both when --pretrained none
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            metrics[dtype] = MLCLIPSim(pretrained=pretrained, dtype=dtype, device=args.device)
    score_err, loss_err, grad_err = [], [], []
    for path in list_images(args.images):
        x = F.interpolate(load_image(path)[None], size=(256, 256), mode="bicubic", antialias=True)
        x = x.clamp(0, 1)
        for quality in args.qualities:
            y = jpeg(x[0], quality)[None]
            x_dev, y_dev = x.to(args.device), y.to(args.device)
            (s32, g32), (s16, g16) = (score_and_grad(m, x_dev, y_dev) for m in metrics.values())
            score_err.append(float((s16 - s32).abs()))
            loss_err.append(float((s16 - s32).abs() / (1 - s32).abs()))
            grad_err.append(float((g16 - g32).norm() / g32.norm()))
    print(f"{len(score_err)} pairs, ViT-B-32 pretrained={pretrained}, device={args.device}")
    for name, values in (
        ("|score bf16 - score fp32|", score_err),
        ("relative error of 1 - score", loss_err),
        ("relative error of d score / d y", grad_err),
    ):
        print(f"{name:34} median {statistics.median(values):.2e}  max {max(values):.2e}")


if __name__ == "__main__":
    main()
