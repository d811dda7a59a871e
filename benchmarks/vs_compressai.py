"""lic eval's fidelity task against CompressAI's eval_model on the same weights and images:
wall time, summed peak memory, and the numbers (which must agree).

    python benchmarks/vs_compressai.py --images KODAK [--ckpt CKPT] [--rounds 5] [--busy]
        [--variant 'w1=--workers 1' ...] [--compressai-train CompressAI/examples/train.py]

The lic checkpoint is exported as a CompressAI state dict; each round runs, as whole
processes and interleaved,

    python -m compressai.utils.eval_model checkpoint IMAGES -a ARCH -p STATE_DICT
    lic eval --ckpt CKPT --task fidelity --metrics psnr ms_ssim --data-root IMAGES --out NEW

(each in its defaults; lic's include bootstrap intervals, bd.csv, plots and summary.md);
each `--variant NAME=ARGS` adds a lic run with those options (e.g. another --workers).
`--compressai-train` adds, in the same rounds, launch to the end of one training step of
`lic train` against CompressAI's examples/train.py (`train_launch.py`: same model, batch,
patch and images).
Memory is the peak over the run of the summed PSS of the process and its children, sampled
every 20 ms. `--busy` runs one CPU-bound process beside them (a shared node). Prints the
medians and lic's ratios, and checks mean PSNR (1e-5 dB), MS-SSIM (5e-6) and bpp (1e-9)
agree (MS-SSIM: float32, eval_model on 0..255, lic on 0..1). Also times `--help`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from train_launch import prepare  # a sibling script

from lic.codecs import load_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEMO = CHECKPOINTS / "demo-bmshj2018-hyperprior-mse-0.013.ckpt"
HELPS = [
    ["lic", "--help"],
    ["lic", "eval", "--help"],
    ["lic", "train", "fit", "--help"],
    ["lic", "compress", "--help"],
    ["lic", "bd", "--help"],
    ["lic", "sweep", "--help"],
]


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak summed PSS in MB, stdout) of one process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # ended between listing and reading
                total += p.memory_full_info().pss
        peak = max(peak, total)
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, peak / 2**20, out


def lic_numbers(out: Path) -> dict[str, float]:
    with (out / "results.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["codec"] != "uncompressed"]
    numbers = {r["metric"]: float(r["value"]) for r in rows}
    return {"psnr": numbers["psnr"], "ms_ssim": numbers["ms_ssim"], "bpp": float(rows[0]["bpp"])}


def compressai_numbers(stdout: str) -> dict[str, float]:
    results = json.loads(stdout[stdout.index("{") :])["results"]
    names = {"psnr": "psnr-rgb", "ms_ssim": "ms-ssim-rgb", "bpp": "bpp"}
    return {k: float(np.mean(results[name])) for k, name in names.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="e.g. the 24 Kodak images")
    p.add_argument("--ckpt", default=str(DEMO))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--busy", action="store_true", help="one CPU-bound process alongside")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also time lic eval with these extra options, e.g. 'w1=--workers 1'",
    )
    p.add_argument("--compressai-train", type=Path, help="CompressAI's examples/train.py")
    args = p.parse_args()
    variants = {"lic": []} | {
        name: extra.split() for name, _, extra in (v.partition("=") for v in args.variant)
    }
    model, info = load_checkpoint(args.ckpt)
    work = Path(tempfile.mkdtemp(prefix="vs_compressai_"))
    torch.save(model.state_dict(), work / "state_dict.pth")
    theirs = [sys.executable, "-m", "compressai.utils.eval_model", "checkpoint", args.images]
    theirs += ["-a", info.codec, "-p", str(work / "state_dict.pth")]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    times: dict[str, list] = {name: [] for name in variants} | {"eval_model": []}
    train = prepare(work / "train", args.compressai_train) if args.compressai_train else None
    try:
        for k in range(args.rounds):
            for name, extra in variants.items():
                out = work / f"{name}{k}"
                ours = ["lic", "eval", "--ckpt", args.ckpt, "--task", "fidelity", "--metrics"]
                ours += ["psnr", "ms_ssim", "--data-root", args.images, "--out", str(out)]
                times[name].append(measured([*ours, *extra])[:2])
            seconds, memory, stdout = measured(theirs)
            times["eval_model"].append((seconds, memory))
            for name, launch in (train(k) if train else {}).items():
                times.setdefault(name, []).append((launch, float("nan")))
        mine, ref = lic_numbers(work / f"lic{args.rounds - 1}"), compressai_numbers(stdout)
    finally:
        if busy:
            busy.kill()
    for key, tolerance in (("psnr", 1e-5), ("ms_ssim", 5e-6), ("bpp", 1e-9)):
        agree = abs(mine[key] - ref[key]) <= tolerance
        verdict = "agree" if agree else "DIFFER"
        print(f"{key}: lic {mine[key]:.7f}, eval_model {ref[key]:.7f} ({verdict})")
    median = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in times.items()}
    load = "next to one busy process" if args.busy else "quiet"
    print(f"{args.rounds} interleaved rounds, {load}, {psutil.cpu_count()} cores")
    print(f"{'':12} {'wall s':>8} {'peak MB':>9}")
    for name, (seconds, memory) in median.items():
        print(f"{name:12} {seconds:8.2f} {memory:9.0f}")
    c, d = median["eval_model"]
    for name in variants:
        a, b = median[name]
        print(f"{name + ' / eval':12} {a / c:8.2f}x {b / d:8.2f}x")
    if train:
        ratio = median["lic train"][0] / median["train.py"][0]
        print(f"lic train / train.py launch to the end of one step {ratio:.2f}x")
    for cmd in HELPS:
        seconds = statistics.median(measured(cmd)[0] for _ in range(3))
        print(f"{' '.join(cmd):28} {seconds:.2f} s")


if __name__ == "__main__":
    main()
