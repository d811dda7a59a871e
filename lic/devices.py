"""Device names as users type them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' is the first GPU when there is one, else the CPU; anything else as torch reads
    it, refused (UsageError) when it names no device or a GPU this machine does not have."""
    import torch

    from lic.errors import UsageError

    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if not count:
            raise UsageError(f"--device {name}: no CUDA GPU is visible here (use cpu)")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: {count} CUDA GPU(s) visible (cuda:0..{count - 1})")
    return device


def free_memory(device: torch.device) -> int | None:
    """Bytes a new allocation on `device` can have now (Linux MemAvailable for the CPU, the
    driver's free memory for a GPU); None where that cannot be told."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def passive_openmp_waits() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise): a
    spinning thread holds a core another process (a coder, a neighbour's job) needs. Only
    effective before torch is imported, so `lic eval` and `lic train` call it first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
