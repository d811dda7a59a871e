"""How images are padded to a codec's size multiple before coding (no torch: the CLI's
choices come from here).

`zeros` is CompressAI eval_model's padding, the one behind the published learned-codec
curves: constant 0, centred (the odd pixel right and bottom), to a multiple of 64
(`compute_padding(h, w, min_div=2**6)`) and of the codec's stride. `replicate` repeats the
bottom and right edges up to the stride (lic before container version 2): fewer, cheaper
pixels to code, so a smaller payload and a higher PSNR than the field's on sizes that are
not multiples of 64.
"""

from __future__ import annotations

import math

PADDINGS = ("zeros", "replicate")  # by their code in a container file (lic.codecs.io)
FIELD_PADDING = "zeros"  # lic's default everywhere: training, evaluation, `lic compress`
FIELD_MULTIPLE = 64


def pad_multiple(stride: int, padding: str) -> int:
    """What both sides of a padded image are multiples of."""
    if padding not in PADDINGS:
        raise ValueError(f"padding '{padding}': one of {PADDINGS}")
    return math.lcm(stride, FIELD_MULTIPLE) if padding == "zeros" else stride


def padding_box(height: int, width: int, stride: int, padding: str) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) pixels added."""
    multiple = pad_multiple(stride, padding)
    extra_h, extra_w = -height % multiple, -width % multiple
    if padding == "replicate":
        return 0, extra_w, 0, extra_h
    return extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2


def blocks(height: int, width: int, stride: int, padding: str) -> tuple[int, int]:
    """Stride x stride blocks of the padded image: (rows, columns)."""
    left, right, top, bottom = padding_box(height, width, stride, padding)
    return (height + top + bottom) // stride, (width + left + right) // stride
