"""Bounded fuzzing of `.lic` decoding: a few hundred CRC-valid mutations and forged headers,
built with the container's own writer, decoded in one subprocess (a crash in the native
decoder would kill it, and the last file it started names the culprit). Every file must be
refused with a BitstreamError or decode to an image of its declared size, and the
subprocess must stay within a few GB."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from conftest import photo_like, write_codec_checkpoint

from lic.codecs import BitstreamCodec, load_checkpoint
from lic.codecs.entropy_check import PER_CALL, EntropyChecks, Origin
from lic.codecs.io import Bitstream

SEED = 17
MAX_RSS_MB = 3000

WORKER = r"""
import json, resource, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)  # tiny images: threads only contend
from lic.codecs import BitstreamCodec, load_checkpoint
from lic.codecs.entropy_check import EntropyMismatchError
from lic.codecs.io import Bitstream, BitstreamError

model, _ = load_checkpoint(sys.argv[1])
codec = BitstreamCodec(model)
for path in sorted(Path(sys.argv[2]).glob("*.lic")):
    print(json.dumps({"start": path.name}), flush=True)
    try:
        data = path.read_bytes()
        image = codec.decode(data)
        header = Bitstream.from_bytes(data)
        result = {
            "decoded": list(image.shape[-2:]),
            "declared": [header.height, header.width],
            "finite": bool(image.isfinite().all()),
        }
    except (BitstreamError, EntropyMismatchError) as err:
        result = {"refused": str(err)}
    except Exception as err:
        result = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps({"file": path.name, **result}), flush=True)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"max_rss_mb": rss}), flush=True)
"""


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def _mutations(real: Bitstream, rng: np.random.Generator) -> dict[str, bytes]:
    """name -> file bytes; every file has a valid CRC, so the decoder's own checks answer."""
    body = real.to_bytes()[:-4]
    files = {}
    for i in range(150):  # random bytes anywhere (header or streams), CRC recomputed
        data = bytearray(body)
        for at in rng.integers(0, len(data), int(rng.integers(1, 4))):
            data[at] = int(rng.integers(0, 256))
        files[f"flip{i:03d}"] = _with_crc(bytes(data))
    for i in range(40):  # truncated or extended, CRC recomputed
        cut = int(rng.integers(0, len(body) + 16))
        files[f"cut{i:03d}"] = _with_crc(body[:cut] + bytes(max(0, cut - len(body))))
    for i in range(60):  # stream contents replaced, lengths kept: reach the native decoder
        # all streams (the entropy checks then refuse most), or the first alone (the
        # hyper-latent kept: the scales match and garbage reaches the y decoder)
        streams = tuple(
            _content(rng, len(s), i % 3) if i % 2 or k == 0 else s
            for k, s in enumerate(real.streams)
        )
        files[f"content{i:03d}"] = dataclasses.replace(real, streams=streams).to_bytes()
    for i in range(100):  # forged header fields through the writer
        files[f"forged{i:03d}"] = _forged(real, rng).to_bytes()
    return files


def _content(rng: np.random.Generator, n: int, kind: int) -> bytes:
    if kind == 0:
        return b"\xff" * n  # longest bypass runs
    if kind == 1:
        return bytes(n)
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _forged(real: Bitstream, rng: np.random.Generator) -> Bitstream:
    sides = [0, 1, 2, 63, 64, 65, 96, 128, 600, 3000, 30000, 2**31, 2**32 - 1]
    changes: dict[str, object] = {}
    field = rng.integers(0, 4)
    if field == 0:
        changes["height"], changes["width"] = (int(rng.choice(sides)) for _ in range(2))
    if field in (0, 1):
        choices = [[2, 2], [1, 1], [600, 600], [3000, 3000], [0, 0], [-1, 2], [2], [[2], 2], {}]
        changes["shape"] = choices[int(rng.integers(0, len(choices)))]
    if field == 2:
        count = int(rng.integers(0, 5))
        lengths = [int(rng.choice([0, 1, 4, 7, 8, 12, 48, 4096, 4 * 10**5])) for _ in range(count)]
        changes["streams"] = tuple(_content(rng, n, int(rng.integers(0, 3))) for n in lengths)
    if field == 3:  # the longest streams the checks let through, all bypass escapes
        most = 40 * 400 * 4 + 8  # MAX_STREAM_BYTES_PER_SYMBOL x symbols of 2 x 2 blocks
        changes["streams"] = (b"\xff" * 8, b"\xff" * most)
    return dataclasses.replace(real, **changes)


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory) -> tuple[list[dict], int, int]:
    root = tmp_path_factory.mktemp("fuzz")
    ckpt = write_codec_checkpoint(root / "codec.ckpt")
    model, _ = load_checkpoint(ckpt)
    real = Bitstream.from_bytes(BitstreamCodec(model).encode(photo_like(96, 128)))
    files = _mutations(real, np.random.default_rng(SEED))
    folder = root / "files"
    folder.mkdir()
    for name, data in files.items():
        (folder / f"{name}.lic").write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(ckpt), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [line["start"] for line in lines if "start" in line]
    assert proc.returncode == 0, (
        f"decoder died (code {proc.returncode}) on {started[-1] if started else '?'}: "
        f"{proc.stderr[-2000:]}"
    )
    results = [line for line in lines if "file" in line]
    rss = next(line["max_rss_mb"] for line in lines if "max_rss_mb" in line)
    return results, len(files), rss


@pytest.mark.slow
def test_no_mutation_crashes_or_escapes_as_another_error(fuzz_run):
    results, tries, rss = fuzz_run
    assert len(results) == tries
    errors = [r for r in results if "error" in r]
    assert not errors, errors[:5]
    refused = sum("refused" in r for r in results)
    decoded = [r for r in results if "decoded" in r]
    print(f"fuzz: {tries} tries, {refused} refused, {len(decoded)} decoded, peak {rss} MB")
    assert all(r["decoded"] == r["declared"] and r["finite"] for r in decoded), decoded[:5]
    assert refused > tries // 2 and len(decoded) >= 40  # both outcomes really exercised
    assert rss < MAX_RSS_MB


def test_mutations_are_deterministic():
    origin = Origin.here(torch.device("cpu"))
    checks = EntropyChecks(PER_CALL, (0,), origin)
    real = Bitstream("c", b"\0" * 8, 96, 128, [2, 2], (b"\0" * 8, b"\0" * 48), checks=checks)
    one = _mutations(real, np.random.default_rng(SEED))
    two = _mutations(real, np.random.default_rng(SEED))
    assert one == two and len(one) == 350
    torch.manual_seed(0)  # (nothing random left behind for other tests)


# ---- received result folders: cells, per-image states and reference caches ---------------
def _received_run(images, out, ckpt) -> dict:
    """One consistency run (references cached) -> (codec, metric) -> (value, bpp)."""
    import warnings

    from lic.evaluation import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = run(
            checkpoints=[str(ckpt)],
            tasks=["consistency"],
            data_roots={"consistency": str(images)},
            out=out,
            task_model="resnet18",
            task_weights="none",
            workers=0,
            device="cpu",
            progress=False,
            bootstrap=0,
        )
    return {(r["codec"], r["metric"]): (r["value"], r["bpp"]) for r in rows}


def _mutate(data: bytes, rng: np.random.Generator, kind: str) -> bytes:
    if kind == "truncate":
        return data[: int(rng.integers(0, max(1, len(data))))]
    if kind == "flip":
        flipped = bytearray(data)
        for i in rng.integers(0, len(data), size=4):
            flipped[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(flipped)
    return data + bytes(70 * 2**20)  # oversize: past every cap of a two-image run


@pytest.mark.slow
def test_received_folder_mutations_are_reused_recomputed_or_refused(tmp_path, caplog):
    """Every read-back file of a result folder, truncated, bit-flipped or oversized: the
    re-run reports the clean numbers (reused or recomputed), never crashes and writes only
    inside --out."""
    from conftest import save_rgb

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(2):
        save_rgb(images / f"im{seed}.png", photo_like(96, 128, seed=seed))
    ckpt = write_codec_checkpoint(tmp_path / "codec.ckpt", seed=0)
    out = tmp_path / "received" / "out"
    clean = _received_run(images, out, ckpt)
    files = sorted(p for p in out.rglob("*") if p.parent.name in ("cells", "references"))
    assert {p.suffix for p in files} >= {".json", ".gz", ".pt"}
    pristine = {p: p.read_bytes() for p in files}
    rng = np.random.default_rng(SEED)
    outside = sorted(p for p in tmp_path.rglob("*") if out not in p.parents and p != out)
    for path in files:
        for kind in ("truncate", "flip", "oversize"):
            for p, data in pristine.items():
                p.write_bytes(data)
            path.write_bytes(_mutate(pristine[path], rng, kind))
            assert _received_run(images, out, ckpt) == clean, (path.name, kind)
    assert sorted(p for p in tmp_path.rglob("*") if out not in p.parents and p != out) == outside


def test_received_iqa_cache_mutations_are_recomputed_with_a_warning(tmp_path, caplog):
    """An IQA score cache, truncated, bit-flipped or oversized, 30 times: the scores are the
    clean ones (a flipped digit in a score is caught by the cache's SHA-256), each damaged
    file is named in a warning, and the cache is rewritten clean."""
    import logging

    from conftest import save_rgb

    from lic.iqa.benchmark import metric_scores

    reference = photo_like(32, 40, seed=1)
    save_rgb(tmp_path / "r.png", reference)
    pairs = []
    for i, level in enumerate([0.02, 0.05, 0.1, 0.2]):
        save_rgb(tmp_path / f"d{i}.png", (reference * (1 - level)).clamp(0, 1))
        pairs.append((tmp_path / "r.png", tmp_path / f"d{i}.png"))
    cache = tmp_path / "cache"
    clean = metric_scores("psnr", pairs, {}, "cpu", cache)[0]
    [path] = cache.glob("psnr-*.json")
    pristine = path.read_bytes()
    rng = np.random.default_rng(SEED)
    for i in range(30):
        kind = ("truncate", "flip", "oversize")[i % 3]
        path.write_bytes(_mutate(pristine, rng, kind))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = metric_scores("psnr", pairs, {}, "cpu", cache)[0]
        assert again.tolist() == clean.tolist(), kind
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(path) in m and "recomputing its scores" in m for m in warned), kind
        assert path.read_bytes() == pristine
