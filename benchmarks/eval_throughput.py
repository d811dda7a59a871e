"""Whole-process throughput of `lic eval` against the plain serial loop, interleaved.

    python benchmarks/eval_throughput.py IMAGES [--ckpt CKPT] [--pairs 3]
        [--loops plain batched batched+channels-last] [-- EXTRA lic eval ARGS]

Both sides are fresh processes timed from start to exit (imports, model building, every cell):
A = `lic eval --task consistency` with one checkpoint (the bundled demo codec by default) into
a fresh --out, so it computes the uncompressed cell too; B = `benchmarks/serial_loop.py`, what
a user would write (per image: resize/crop, compress, decompress, ResNet-50 on the original and
the decoded image, one call each). The ResNet-50 has random weights (`--task-weights none`:
the arithmetic of the trained one). Runs alternate A B A B ... so that a machine's drift hits
both; the table gives each pair, the medians and the throughput ratio (B's seconds / A's).
`--loops` times more variants of the loop in every round (serial_loop.py flags joined by `+`:
`batched`, one call of batch 2 for both images; `channels-last`), each with its ratio column.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = ROOT / "checkpoints" / "demo-bmshj2018-hyperprior-mse-0.013.ckpt"


def timed(command: list[str]) -> tuple[float, str]:
    """Seconds of a whole process, and its output (raises with its output if it fails)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def harness(images: Path, ckpt: Path, extra: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "lic", "eval", "--ckpt", str(ckpt)]
        command += ["--task", "consistency", "--data-root", str(images), "--out", out]
        command += ["--task-model", "resnet50", "--task-weights", "none", "--no-progress"]
        seconds, _ = timed(command + extra)
        results = (Path(out) / "results.csv").read_text()
    return seconds, results


def serial(images: Path, ckpt: Path, *flags: str) -> tuple[float, str]:
    script = str(ROOT / "benchmarks" / "serial_loop.py")
    return timed([sys.executable, script, str(images), str(ckpt), "--weights", "none", *flags])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path, help="an image folder (e.g. Kodak)")
    p.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first")
    p.add_argument("--loops", nargs="+", default=["plain"], help="loop variants (see above)")
    p.add_argument("extra", nargs="*", help="more lic eval options, after --")
    args = p.parse_args()
    for _ in range(args.warmup):  # bytecode and page caches, as in any second run
        harness(args.images, args.ckpt, args.extra)
        serial(args.images, args.ckpt)
    a, loops = [], {flags: [] for flags in args.loops}
    for _ in range(args.pairs):
        seconds, results = harness(args.images, args.ckpt, args.extra)
        a.append(seconds)
        for flags, times in loops.items():
            options = [f"--{f}" for f in flags.split("+") if f != "plain"]
            seconds, loop_log = serial(args.images, args.ckpt, *options)
            times.append(seconds)
    n_images = loop_log.split()[1]
    print(f"cores {os.cpu_count()}, {n_images} images, {args.ckpt.name}, consistency task, ")
    print(f"ResNet-50 (random weights), lic eval {' '.join(args.extra) or '(defaults)'}\n")
    names = [f"loop {flags}" for flags in loops]
    print("| round | lic eval (s) | " + " | ".join(f"{n} (s) | ratio" for n in names) + " |")
    print("|---|---|" + "---|---|" * len(loops))
    for i, x in enumerate(a):
        cells = " | ".join(f"{t[i]:.2f} | {t[i] / x:.2f}x" for t in loops.values())
        print(f"| {i + 1} | {x:.2f} | {cells} |")
    ma = statistics.median(a)
    cells = " | ".join(
        f"{statistics.median(t):.2f} | {statistics.median(t) / ma:.2f}x "
        f"(pairs {statistics.median(y / x for x, y in zip(a, t, strict=True)):.2f}x)"
        for t in loops.values()
    )
    print(f"| median | {ma:.2f} | {cells} |")
    print("ratio: the loop's seconds over lic eval's (lic eval's throughput over the loop's)")
    print(f"\nserial loop: {loop_log.strip()}")
    print("lic eval results.csv (last run):\n" + results.strip())


if __name__ == "__main__":
    main()
