"""Launch to the end of a one-step training run: `lic train` against CompressAI's
examples/train.py on the same model, batch, patch and images.

    python benchmarks/train_launch.py --compressai-train PATH/TO/CompressAI/examples/train.py
        [--rounds 5] [--busy]

CompressAI's script is not part of its wheel: give the one of a CompressAI clone (1.2.8:
`git clone https://github.com/InterDigitalInc/CompressAI`). Both train
bmshj2018-hyperprior at CompressAI's quality 3 (N=128, M=192) on one batch of 8 random
192-px crops of the bundled photos (data/demo/train), 2 loader workers, as whole processes
and interleaved: CompressAI's for one epoch of one batch, then its test pass on one image;
lic's `lic train fit --config configs/demo.yaml --trainer.max_steps 1` without validation,
writing its checkpoint. Prints the median wall time of each and the ratio. `--busy` runs one
CPU-bound process beside them (a shared node).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def prepare(work: Path, compressai_train: Path) -> Callable[[int], dict[str, float]]:
    """Put the images in `work`; return what times round k: seconds of each side."""
    photos = sorted((ROOT / "data" / "demo" / "train").glob("*.png"))
    for split, files in (("train", photos[:8]), ("test", photos[8:9])):
        (work / "data" / split).mkdir(parents=True)
        for path in files:
            shutil.copy(path, work / "data" / split / path.name)
    theirs = [sys.executable, str(compressai_train.resolve()), "-d", str(work / "data")]
    theirs += ["-m", "bmshj2018-hyperprior", "-e", "1", "--batch-size", "8"]
    theirs += ["--test-batch-size", "1", "--patch-size", "192", "192", "-n", "2"]
    ours = ["lic", "train", "fit", "--config", str(ROOT / "configs" / "demo.yaml")]
    ours += ["--model.codec_args", "{N: 128, M: 192}", "--trainer.max_steps", "1"]
    ours += ["--trainer.limit_val_batches", "0", "--data.train_dir", str(work / "data" / "train")]

    def one_round(k: int) -> dict[str, float]:
        run = work / f"run{k}"
        run.mkdir()
        root = ["--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir"]
        return {"lic train": timed([*ours, *root, str(run)], run), "train.py": timed(theirs, run)}

    return one_round


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compressai-train", required=True, type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--busy", action="store_true", help="one CPU-bound process alongside")
    args = p.parse_args()
    one_round = prepare(Path(tempfile.mkdtemp(prefix="train_launch_")), args.compressai_train)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    times: dict[str, list[float]] = {"lic train": [], "train.py": []}
    try:
        for k in range(args.rounds):
            for name, seconds in one_round(k).items():
                times[name].append(seconds)
    finally:
        if busy:
            busy.kill()
    load = "next to one busy process" if args.busy else "quiet"
    print(f"{args.rounds} interleaved rounds, {load}: launch to the end of one training step")
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in median.items():
        print(f"{name:12} {seconds:6.2f} s  {times[name]}")
    print(f"lic / compressai {median['lic train'] / median['train.py']:.2f}x")


if __name__ == "__main__":
    main()
