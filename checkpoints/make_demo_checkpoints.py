"""How `checkpoints/` is made: export trained demo runs codec-only and measure them.

    for l in 0.0035 0.013 0.0483; do python train.py fit --config configs/demo.yaml \
        --model.lmbda $l; done
    lic data fetch kodak
    python checkpoints/make_demo_checkpoints.py runs/bmshj2018-hyperprior_mse_lambda*/ \
        --kodak ~/.cache/lic/data/kodak

prints the rows of the table in checkpoints/README.md: file, lambda, the real bitstream's
payload bpp and the 8-bit decoded PSNR on the bundled kodim23 (pinned by tests/test_bundled.py), the
mean bpp and mean PSNR over the 24 Kodak images, and the file's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from pathlib import Path

import torch

from lic.codecs import BitstreamCodec, load_checkpoint, payload_bpp
from lic.codecs.checkpoint import save_codec_checkpoint
from lic.data.images import list_images, load_image

HERE = Path(__file__).resolve().parent


def measure(codec: BitstreamCodec, path: Path) -> tuple[float, float]:
    """(bpp of the real bitstream, PSNR in dB of the 8-bit decoded image)."""
    image = load_image(path)
    data = codec.encode(image)
    decoded = (codec.decode(data) * 255).round() / 255
    mse = (decoded - image).square().mean()
    return payload_bpp(data), float(-10 * torch.log10(mse))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders with checkpoints/last.ckpt")
    p.add_argument("--kodak", type=Path, required=True, help="the 24 Kodak images")
    args = p.parse_args()
    kodak = list_images(args.kodak)
    print("| file | lambda | kodim23 bpp | kodim23 PSNR | Kodak bpp | Kodak PSNR | sha256 |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        model, info = load_checkpoint(run / "checkpoints" / "last.ckpt")
        out = HERE / f"demo-{info.codec}-{info.distortion}-{info.lmbda:g}.ckpt"
        save_codec_checkpoint(model, out, lmbda=info.lmbda, distortion=info.distortion)
        model, _ = load_checkpoint(out)  # measure what is shipped
        codec = BitstreamCodec(model)
        bpp23, psnr23 = measure(codec, HERE.parent / "data" / "demo" / "val" / "kodim23.png")
        points = [measure(codec, image) for image in kodak]
        kodak_bpp = statistics.fmean(b for b, _ in points)
        kodak_psnr = statistics.fmean(q for _, q in points)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        print(
            f"| `{out.name}` | {info.lmbda:g} | {bpp23:.4f} | {psnr23:.2f} | "
            f"{kodak_bpp:.4f} | {kodak_psnr:.2f} | `{digest}` |"
        )


if __name__ == "__main__":
    main()
