"""Do a codec's files decode the same under every device and thread setting?

Each image is encoded under every setting and each file decoded under every setting; a
decode is compared, in 8-bit pixels, with the decode under the setting that encoded it:

- `identical`: the same pixels;
- `rounding`: pixels at most one level apart (the same latents; the synthesis transform's
  float rounding differs between settings);
- `refused`: the decoder refused the file (an entropy check, lic.codecs.entropy_check);
- `SILENT`: anything else: a wrong image without an error, which must never happen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lic.codecs.entropy_check import EntropyMismatchError
from lic.codecs.io import BitstreamCodec, BitstreamError
from lic.errors import UsageError

OUTCOMES = ("identical", "rounding", "refused", "SILENT")


@dataclass(frozen=True)
class Setting:
    device: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.device}/{self.threads}t"


@dataclass
class Cell:
    """Outcomes of decoding one setting's files under another."""

    counts: Counter = field(default_factory=Counter)
    reasons: list[str] = field(default_factory=list)

    def text(self) -> str:
        return ", ".join(f"{self.counts[o]} {o}" for o in OUTCOMES if self.counts[o])


def settings_of(devices: Sequence[str], threads: Sequence[int]) -> list[Setting]:
    """Every device x thread count; a device this machine lacks is a usage error."""
    for device in devices:
        kind = torch.device(device).type
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--devices {device}: no CUDA device here (run it where there is)")
    return [Setting(d, t) for d in devices for t in threads]


def _pixels(image: Tensor) -> Tensor:
    return (image.detach().float().cpu() * 255).round().to(torch.int16)


def _under(setting: Setting, model: torch.nn.Module, level: int | None) -> BitstreamCodec:
    torch.set_num_threads(setting.threads)
    return BitstreamCodec(model.to(setting.device), level=level)


def conformance(
    model: torch.nn.Module,
    images: Sequence[Tensor],
    settings: Sequence[Setting],
    level: int | None = None,
) -> dict[tuple[str, str], Cell]:
    """(encoded on, decoded on) -> Cell, for every pair of `settings` (labels); a
    variable-rate model codes at `level`."""
    threads = torch.get_num_threads()
    try:
        files, reference = {}, {}
        for setting in settings:
            codec = _under(setting, model, level)
            files[setting] = [codec.encode(image) for image in images]
            reference[setting] = [_pixels(codec.decode(data)) for data in files[setting]]
        matrix = {}
        for decoder in settings:
            codec = _under(decoder, model, level)
            for encoder in settings:
                cell = matrix[(encoder.label, decoder.label)] = Cell()
                for data, expected in zip(files[encoder], reference[encoder], strict=True):
                    outcome, reason = _decode(codec, data, expected)
                    cell.counts[outcome] += 1
                    if reason and reason not in cell.reasons:
                        cell.reasons.append(reason)
        return matrix
    finally:
        torch.set_num_threads(threads)


def _decode(codec: BitstreamCodec, data: bytes, expected: Tensor) -> tuple[str, str]:
    try:
        decoded = _pixels(codec.decode(data))
    except (EntropyMismatchError, BitstreamError) as err:
        return "refused", str(err)
    difference = int((decoded - expected).abs().max()) if decoded.shape == expected.shape else 255
    if difference == 0:
        return "identical", ""
    if difference <= 1:
        return "rounding", ""
    return "SILENT", f"decoded pixels differ by up to {difference} levels"
