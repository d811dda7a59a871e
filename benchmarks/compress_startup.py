"""`lic compress` against a plain CompressAI script, whole process, interleaved.

    python benchmarks/compress_startup.py IMAGE [IMAGE ...] [--pairs 5]

A = `lic compress --ckpt CKPT IMAGES --out-dir TMP`; B = the script a CompressAI user would
write for the same checkpoint: build `ScaleHyperprior(N, M)`, load the state dict, then per
image read, pad to 64, `compress`, write the strings. Both are fresh processes timed from
start to exit, alternated A B A B; the table gives each pair, the medians and B / A.
Import time dominates both at a few images: CompressAI itself imports torch_geometric (and
through it transformers), so both sides pay that.
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
PLAIN = """
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from compressai.models import ScaleHyperprior
from PIL import Image

ckpt, out, files = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
state = torch.load(ckpt, map_location="cpu", weights_only=True)
args = state["hyper_parameters"]["codec_args"]
model = ScaleHyperprior(args["N"], args["M"])
model.load_state_dict({k.removeprefix("codec."): v for k, v in state["state_dict"].items()})
model.eval()
with torch.inference_mode():
    for file in files:
        x = TF.to_dtype(TF.pil_to_tensor(Image.open(file).convert("RGB")), scale=True)[None]
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
        strings = model.compress(x)["strings"]
        (out / Path(file).with_suffix(".bin").name).write_bytes(b"".join(s[0] for s in strings))
"""


def timed(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+")
    p.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    p.add_argument("--pairs", type=int, default=5)
    args = p.parse_args()
    a, b = [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.pairs):
            out = Path(folder) / f"lic{i}"
            lic = [sys.executable, "-m", "lic", "compress", "--ckpt", str(args.ckpt)]
            a.append(timed([*lic, *args.images, "--out-dir", str(out)]))
            out = Path(folder) / f"plain{i}"
            out.mkdir()
            plain = [sys.executable, "-c", PLAIN, str(args.ckpt), str(out), *args.images]
            b.append(timed(plain))
    print(f"{len(args.images)} images, {args.ckpt.name}, whole process\n")
    print("| pair | lic compress (s) | plain CompressAI (s) | lic / plain |")
    print("|---|---|---|---|")
    for i, (x, y) in enumerate(zip(a, b, strict=True), 1):
        print(f"| {i} | {x:.2f} | {y:.2f} | {x / y:.3f} |")
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"| median | {ma:.2f} | {mb:.2f} | {ma / mb:.3f} |")


if __name__ == "__main__":
    main()
