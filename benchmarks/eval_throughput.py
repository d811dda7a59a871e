"""Images/s of rate-task evaluation: the harness against a plain serial loop, same run.

    python benchmarks/eval_throughput.py --images data/demo/val [--device cuda]
        [--ckpt runs/demo/checkpoints/last.ckpt] [--workers 15] [--repeats 3]

Both paths take Kodak images through the consistency task at 224x224 (resize + centre crop),
real bitstreams with a hyperprior (quality 3 sizes, N=128 M=192, random weights unless
--ckpt), and a ResNet-50 (random weights: same arithmetic as the trained one). The serial
loop compresses, decompresses and classifies one image at a time on --device. The harness
runs twice: `--coding workers` (each worker codes images on the CPU) and `--coding device`
(workers load; the main process codes each batch on --device, transforms batched).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lic.codecs import BitstreamCodec, create_codec, load_checkpoint, save_codec_checkpoint
from lic.evaluation.coders import CheckpointCoder
from lic.evaluation.rate_task import evaluate_cell
from lic.tasks import create_task


def random_checkpoint(folder: Path) -> Path:
    model = create_codec("bmshj2018-hyperprior", quality=3)
    model.update(force=True)
    return save_codec_checkpoint(
        model, folder / "hyperprior_q3_random.ckpt", lmbda=0.0067, distortion="mse"
    )


def serial(task, ckpt: Path, model: torch.nn.Module, device: torch.device) -> float:
    codec = BitstreamCodec(load_checkpoint(ckpt, map_location=device)[0])
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(task)):
            image, _ = task.load(i)
            decoded = codec.decode(codec.encode(image.to(device)))[0]
            task.predict(model, [decoded])
            task.predict(model, [image.to(device)])  # the consistency reference
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(task) / (time.perf_counter() - start)


def harness(task, ckpt: Path, model, device, workers: int, batch_size: int, coding: str) -> float:
    on_device = coding == "device" or workers == 0
    coder = CheckpointCoder(ckpt, device=device if on_device else "cpu")
    start = time.perf_counter()
    result = evaluate_cell(
        task,
        coder,
        model,
        device,
        batch_size=batch_size,
        workers=workers,
        progress=False,
        coding=coding,
    )
    assert not result.failures, result.failures
    return result.n_images / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(Path(__file__).resolve().parents[1] / "data/demo/val"))
    p.add_argument("--ckpt", type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=max(1, (torch.get_num_threads() or 2) - 1))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    task = create_task("consistency", args.images, model="resnet50", weights="none")
    model = task.build_model(device)
    with tempfile.TemporaryDirectory() as folder:
        ckpt = args.ckpt or random_checkpoint(Path(folder))
        serial(task, ckpt, model, device)  # warm-up (allocator, cudnn autotune, page cache)
        s = [serial(task, ckpt, model, device) for _ in range(args.repeats)]
        h = {
            coding: [
                harness(task, ckpt, model, device, args.workers, args.batch_size, coding)
                for _ in range(args.repeats)
            ]
            for coding in ("workers", "device")
        }
    print(
        f"device={device} cpu_threads={torch.get_num_threads()} workers={args.workers} "
        f"batch={args.batch_size} images={len(task)} (224x224) repeats={args.repeats}"
    )
    print(f"serial loop: median {statistics.median(s):.2f} img/s  {[round(v, 2) for v in s]}")
    for coding, values in h.items():
        print(
            f"harness, --coding {coding:7}: median {statistics.median(values):.2f} img/s  "
            f"{[round(v, 2) for v in values]}  speed-up "
            f"{statistics.median(values) / statistics.median(s):.2f}x (goal >= 4x on the GPU)"
        )


if __name__ == "__main__":
    main()
