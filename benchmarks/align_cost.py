"""What `lic eval --align` costs: the same run with and without alignment metrics.

    python benchmarks/align_cost.py [--data data/demo/val] [--rounds 3] [--task consistency]
        [--weights none] [--device cpu]

Each round runs, as whole processes and interleaved, `lic eval` on the bundled demo
checkpoints and JPEG/WebP (default grids) with no `--align`, `--align psnr ms_ssim`,
`--align psnr lpips` and `--align psnr lpips mlclipsim`, each into a fresh folder. Prints
the median wall time of each and its ratio to the run without alignment. `--weights none`
(default: offline) uses random task and metric networks, which cost the same arithmetic as
pretrained ones; give `DEFAULT` where the weights are available.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "no --align": [],
    "psnr ms_ssim": ["--align", "psnr", "ms_ssim"],
    "psnr lpips": ["--align", "psnr", "lpips"],
    "psnr lpips mlclipsim": ["--align", "psnr", "lpips", "mlclipsim"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data" / "demo" / "val"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--task", default="consistency")
    p.add_argument("--weights", default="none")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    checkpoints = sorted(str(c) for c in (ROOT / "checkpoints").glob("*.ckpt"))
    base = ["lic", "eval", "--ckpt", *checkpoints, "--baselines", "jpeg", "webp"]
    base += ["--task", args.task, "--data-root", args.data, "--task-weights", args.weights]
    base += ["--device", args.device, "--no-progress"]
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, extra in VARIANTS.items():
            out = tempfile.mkdtemp(prefix="align_cost_")
            start = time.perf_counter()
            subprocess.run([*base, *extra, "--out", out], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["no --align"])
    print(f"{args.rounds} interleaved rounds, {args.task} on {args.data}, weights {args.weights}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:24} {median:7.2f} s  {median / plain:5.2f}x")


if __name__ == "__main__":
    main()
