"""How the harness shares the CPU between the task model and the coding processes.

Worker processes load and code images (one torch thread each) while the main process runs
the task model; with none the main process codes (in a thread beside a light model:
`task_workers`). On a GPU machine the model needs no CPU threads to speak of, so the
workers get the cores. On a CPU-only machine the model gets every core and a few workers
time-share them: the model is most of the work (ResNet-50 at 224 px costs several times a
small hyperprior's round trip), so coding fills the gaps the model leaves. For that to work,
OpenMP threads that wait at a barrier must sleep instead of spinning (a spinning thread
holds the core the coder needs: measured several times slower on 2 cores), which is why
`lic eval` sets OMP_WAIT_POLICY=PASSIVE (unless set) before it loads torch; a script calling
`run()` sets it before importing torch. This module imports no torch for that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

AUTO = "auto"
CPU_CORES_PER_WORKER = 4  # a worker codes while the model runs on about this many cores
MAX_WORKERS = 8
CPU_BATCH, DEVICE_BATCH = 8, 16
"""Images per task-model call. On 2 CPU cores ResNet-50 (channels-last) took 40-42 ms per
image at batch 4-8 against 44 at 16 (cache), and a smaller first batch starts the model
sooner; accelerators want larger batches."""


def cpu_cores() -> int:
    """Cores this process may run on (its affinity, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """`workers` coding processes (0: code in the main process), the main process's torch
    threads for the task model, and images per task-model call."""

    workers: int
    threads: int
    batch_size: int = DEVICE_BATCH


def plan_threads(
    workers: int | str,
    threads: int | str,
    device_type: str,
    cores: int | None = None,
    batch_size: int | str = AUTO,
) -> ThreadPlan:
    """Resolve `auto` workers, threads and batch size for this machine and the task model's
    device type."""
    cores = cores or cpu_cores()
    if workers == AUTO:
        if device_type == "cpu":
            workers = max(1, min(MAX_WORKERS, cores // CPU_CORES_PER_WORKER))
        else:
            workers = max(1, min(MAX_WORKERS, cores - 1))
    if threads == AUTO:
        threads = cores if device_type == "cpu" else max(1, cores - int(workers))
    if batch_size == AUTO:
        batch_size = CPU_BATCH if device_type == "cpu" else DEVICE_BATCH
    return ThreadPlan(int(workers), int(threads), int(batch_size))


def task_workers(planned: int, device_type: str, light_model: bool) -> int:
    """`auto` coding workers for one task. A task whose model costs little next to coding
    (PSNR and MS-SSIM) that would get one coding process on the CPU codes in a thread of the
    main process instead: the same overlap of coding and scoring without a second
    interpreter's memory (fidelity, 24 Kodak images, 2 cores, benchmarks/vs_compressai.py:
    0.89x the process layout's time at 0.97x its summed memory quiet; 0.93x and 0.92x next
    to a busy process, measured before lic.startup). A heavy model keeps its process:
    beside ResNet-50 a coding thread was 1.14x slower (entropy coding holds the GIL the
    model's calls need), and building a model may trace it with torch.fx, which patches
    every module's call."""
    if device_type == "cpu" and light_model and planned == 1:
        return 0
    return planned


def worker_threads(_: int) -> None:
    """DataLoader worker_init_fn: workers share the cores; each codes one image at a time."""
    import torch

    torch.set_num_threads(1)
