"""Entropy-parameter checks: a file decodes to the encoder's image or is refused.

A learned decoder recomputes its entropy model's scale-table indexes from the hyper-latent.
Float differences between devices, GPU types or thread counts can move a scale across a
table boundary; the rANS decoder then desynchronises and returns a valid-looking wrong
image (CompressAI issues #20, #47, #279, #309). The encoder therefore records a CRC32 of the
indexes of every `GaussianConditional.build_indexes` call, in coding order, per image; the
decoder recomputes them and compares **before** it decodes with them:

- per call, when a file makes at most `MAX_CHECKS` calls (hyperprior and mean-scale models:
  one; MLIC++: one per slice half), so a mismatch stops before that stream or slice;
- else one CRC over all calls (the autoregressive models: one call per latent position),
  compared when decoding ends, before any image is returned.

The file also records where it was encoded (`Origin`: device type, torch and CUDA versions,
system, machine; 8 fixed bytes), so a refusal names both sides.

Means are not checked: they shift a decoded value by their own float error and never
desynchronise the coder; any scale they feed later is checked as an index.

`deterministic_coding` also turns off what makes GPU arithmetic differ the most from the
CPU's (TF32 convolutions and matmuls, cuDNN's autotuned algorithm choice) while coding.
"""

from __future__ import annotations

import contextlib
import platform
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lic.errors import LicError

MAX_CHECKS = 32  # per-call CRCs a file holds before it holds one over all calls
PER_CALL, TOTAL = 1, 2  # the check modes, by their code in a container


class EntropyMismatchError(LicError):
    """The decoder's entropy parameters differ from the encoder's: decoding would give a
    silently wrong image (a runtime failure, exit 1: the file itself is valid)."""


DEVICES = ("cpu", "cuda", "mps", "xpu")  # by code; 255: another device type
SYSTEMS = ("Linux", "Darwin", "Windows")  # by code + 1; 0: another system
MACHINES = ("x86_64", "aarch64", "arm64", "AMD64")  # by code + 1; 0: another machine


def _version(text: str | None, parts: int) -> tuple[int, ...]:
    numbers = [int(p) if p.isdigit() else 0 for p in (text or "").split("+")[0].split(".")]
    return tuple(min(n, 255) for n in (numbers + [0] * parts)[:parts])


def _code(name: str, names: Sequence[str], other: int, first: int = 0) -> int:
    return names.index(name) + first if name in names else other


@dataclass(frozen=True)
class Origin:
    """Where a file was encoded, in 8 fixed bytes (so bpp_file does not depend on it):
    device type, torch major.minor.patch, CUDA major.minor (0.0 without), system, machine."""

    fields: tuple[int, ...]

    @classmethod
    def here(cls, device: torch.device) -> Origin:
        device_code = _code(device.type, DEVICES, 255)
        system = _code(platform.system(), SYSTEMS, 0, first=1)
        machine = _code(platform.machine(), MACHINES, 0, first=1)
        torch_version = _version(torch.__version__, 3)
        cuda = _version(torch.version.cuda, 2) if device.type == "cuda" else (0, 0)
        return cls((device_code, *torch_version, *cuda, system, machine))

    def text(self) -> str:
        device, major, minor, patch, cuda_major, cuda_minor, system, machine = self.fields
        words = [DEVICES[device] if device < len(DEVICES) else "another device"]
        words.append(f"torch {major}.{minor}.{patch}")
        if cuda_major:
            words.append(f"CUDA {cuda_major}.{cuda_minor}")
        os_name = SYSTEMS[system - 1] if 0 < system <= len(SYSTEMS) else "another system"
        arch = MACHINES[machine - 1] if 0 < machine <= len(MACHINES) else "another machine"
        return "; ".join([*words, f"{os_name} {arch}"])


@dataclass(frozen=True)
class EntropyChecks:
    """What a file records of its encoder's entropy parameters and where it ran."""

    mode: int  # PER_CALL or TOTAL
    crcs: tuple[int, ...]  # one per call (PER_CALL), or one over all calls (TOTAL)
    origin: Origin

    @classmethod
    def of_calls(cls, crcs: Sequence[int], origin: Origin) -> EntropyChecks:
        if len(crcs) <= MAX_CHECKS:
            return cls(PER_CALL, tuple(crcs), origin)
        return cls(TOTAL, (combined(crcs),), origin)

    def to_bytes(self) -> bytes:
        head = struct.pack(">8BBB", *self.origin.fields, self.mode, len(self.crcs))
        return head + b"".join(struct.pack(">I", crc) for crc in self.crcs)


def combined(crcs: Sequence[int]) -> int:
    return zlib.crc32(b"".join(struct.pack(">I", crc) for crc in crcs))


class _Trace:
    """Per image, the CRC32 of each build_indexes call's indexes; with `expected`, each
    call is compared before the decoder uses its indexes."""

    def __init__(self, images: int, expected: Sequence[EntropyChecks | None] | None, here: str):
        self.crcs: list[list[int]] = [[] for _ in range(images)]
        self.expected, self.here = expected, here

    def __call__(self, indexes: Tensor) -> None:
        if indexes.shape[0] != len(self.crcs):
            raise RuntimeError(
                f"build_indexes on {indexes.shape[0]} images while coding {len(self.crcs)}: "
                "this codec must code one image at a time (codes_batches = False)"
            )
        host = indexes.detach().to("cpu", torch.int32).contiguous().numpy()
        for image, (crcs, row) in enumerate(zip(self.crcs, host, strict=True)):
            crcs.append(zlib.crc32(row.tobytes()))
            checks = self.expected[image] if self.expected else None
            if checks is not None and checks.mode == PER_CALL:
                call = len(crcs) - 1
                if call >= len(checks.crcs) or crcs[call] != checks.crcs[call]:
                    raise self.mismatch(checks, f"entropy stage {call + 1}")

    def finish(self) -> None:
        """Calls counted and the all-calls CRC compared (decoding), before any image out."""
        for crcs, checks in zip(self.crcs, self.expected or (), strict=True):
            if checks is None:
                continue
            made = tuple(crcs) if checks.mode == PER_CALL else (combined(crcs),)
            if made != checks.crcs:
                raise self.mismatch(checks, "the entropy stages")

    def mismatch(self, checks: EntropyChecks, where: str) -> EntropyMismatchError:
        return EntropyMismatchError(
            f"entropy parameters of {where} differ from the encoder's (encoded on "
            f"{checks.origin.text()}; decoding on {self.here}): the image "
            "would be silently wrong; decode on the encoding device type, or re-encode here"
        )


@contextlib.contextmanager
def traced(
    model: torch.nn.Module,
    images: int,
    device: torch.device,
    expected: Sequence[EntropyChecks | None] | None = None,
) -> Iterator[_Trace]:
    """Record (encoding) or check (decoding: `expected`, None for files without checks)
    every scale-table lookup of `model` while the block codes `images` images."""
    from compressai.entropy_models import GaussianConditional

    trace = _Trace(images, expected, Origin.here(device).text())
    hooked = [m for m in model.modules() if isinstance(m, GaussianConditional)]

    def wrap(build):
        def build_indexes(scales: Tensor) -> Tensor:
            indexes = build(scales)
            trace(indexes)
            return indexes

        return build_indexes

    saved = [module.__dict__.get("build_indexes") for module in hooked]
    for module in hooked:
        module.build_indexes = wrap(module.build_indexes)  # an instance attribute: this model
    try:
        with deterministic_coding(device):
            yield trace
        if expected is not None:
            trace.finish()
    finally:
        for module, before in zip(hooked, saved, strict=True):
            if before is None:
                del module.build_indexes
            else:
                module.build_indexes = before


@contextlib.contextmanager
def deterministic_coding(device: torch.device) -> Iterator[None]:
    """No TF32 and no autotuned or non-deterministic cuDNN algorithms while coding (CUDA:
    the GPU settings that differ most from CPU arithmetic); restored afterwards."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32)
    cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32 = (
        False,
        True,
        False,
        False,
    )
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32 = saved
