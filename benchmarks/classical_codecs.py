"""Encode and decode time per image of each classical baseline, over its default grid.

    python benchmarks/classical_codecs.py --images KODAK_DIR [--codecs jpeg avif] [--limit 8]

Times `ClassicalCodec.encode` (8-bit RGB in, file bytes out) and `.decode` (bytes in,
tensor out) with the registry's fixed settings, i.e. exactly what the rate-task baselines
run; the mean over images and grid points is reported with the mean bpp. Encoders use their
own threads (libaom, x265, libjxl), so the time depends on the cores free.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lic.codecs.classical import CLASSICAL_CODECS, classical_codec
from lic.data.images import list_images, load_image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="a folder of images, e.g. Kodak")
    p.add_argument("--codecs", nargs="+", default=list(CLASSICAL_CODECS))
    p.add_argument("--limit", type=int, help="first N images")
    args = p.parse_args()
    images = [load_image(path) for path in list_images(args.images)[: args.limit]]
    print(f"{len(images)} images from {args.images}")
    print(f"{'codec':10} {'points':>6} {'encode s/img':>13} {'decode s/img':>13} {'mean bpp':>9}")
    for name in args.codecs:
        codec = classical_codec(name)
        codec.require()
        encode, decode, bpp = [], [], []
        for quality in codec.qualities:
            for image in images:
                start = time.perf_counter()
                data = codec.encode(image, quality)
                encode.append(time.perf_counter() - start)
                start = time.perf_counter()
                codec.decode(data)
                decode.append(time.perf_counter() - start)
                bpp.append(8 * len(data) / (image.shape[-2] * image.shape[-1]))
        print(
            f"{name:10} {len(codec.qualities):6d} {statistics.mean(encode):13.3f} "
            f"{statistics.mean(decode):13.3f} {statistics.mean(bpp):9.3f}"
        )


if __name__ == "__main__":
    main()
