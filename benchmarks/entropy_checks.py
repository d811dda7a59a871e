"""What the entropy-parameter checks and batch-invariant scales cost in time and bytes.

    python benchmarks/entropy_checks.py --images FOLDER [--ckpt CKPT] [--rounds 5]

Interleaved rounds, each timing (a) encode + decode of every image one at a time with the
checks, (b) the same with the checks' CRCs switched off, (c) `encode_batch` of the images'
256 x 256 crops with `h_s` run image by image (lic), (d) the same with `h_s` over the whole
batch (before; such files could not always be decoded alone). Prints medians and ratios,
and the bytes the checks add per file. Device: CPU (pass --device cuda on a GPU machine).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

import lic.codecs.io as codec_io
from lic.codecs import BitstreamCodec, load_checkpoint
from lic.codecs.entropy_check import _Trace
from lic.codecs.io import Bitstream
from lic.data.images import list_images, load_image

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEMO = CHECKPOINTS / "demo-bmshj2018-hyperprior-mse-0.013.ckpt"


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--ckpt", default=str(DEMO))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    model = load_checkpoint(args.ckpt)[0].to(args.device).eval()
    codec = BitstreamCodec(model)
    images = [load_image(path).to(args.device) for path in list_images(args.images)]
    crops = torch.stack([x[:, :256, :256] for x in images])

    def roundtrips() -> None:
        for image in images:
            codec.decode(codec.encode(image))

    def batch() -> None:
        codec.encode_batch(crops)

    unchecked = {"__call__": lambda self, indexes: None, "finish": lambda self: None}
    times: dict[str, list[float]] = {
        k: [] for k in ("checked", "unchecked", "per-image", "batched")
    }
    roundtrips(), batch()  # warm-up
    for _ in range(args.rounds):
        times["checked"].append(timed(roundtrips))
        with _patched() as patch:
            for name, value in unchecked.items():
                patch(_Trace, name, value)
            times["unchecked"].append(timed(roundtrips))
        times["per-image"].append(timed(batch))
        with _patched() as patch:
            patch(codec_io, "_batch_invariant", lambda model: contextlib.nullcontext())
            times["batched"].append(timed(batch))
    median = {k: statistics.median(v) for k, v in times.items()}
    data = codec.encode(images[0])
    extra = len(Bitstream.from_bytes(data).checks.to_bytes())
    print(f"{len(images)} images, {args.rounds} interleaved rounds, {args.device}, {args.ckpt}")
    ratio = median["checked"] / median["unchecked"]
    print(
        f"encode+decode with checks {median['checked']:.3f} s, "
        f"without {median['unchecked']:.3f} s: x{ratio:.3f}"
    )
    print(
        f"encode_batch of {len(crops)} crops, h_s per image {median['per-image']:.3f} s, "
        f"batched {median['batched']:.3f} s: x{median['per-image'] / median['batched']:.3f}"
    )
    print(f"bytes added by the checks: {extra} per file ({len(data)} bytes in all)")


@contextlib.contextmanager
def _patched():
    """setattr(target, name, value) for the block, undone after it."""
    undo = []

    def patch(target, name, value) -> None:
        undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    try:
        yield patch
    finally:
        for target, name, value in reversed(undo):
            setattr(target, name, value)


if __name__ == "__main__":
    main()
