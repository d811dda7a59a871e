"""Checkpoints and result folders from someone else are untrusted: names read from them never
lead a path out of --out, read-back files are capped in size, and a reused cell's numbers are
those of its per-image state."""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest
from conftest import photo_like, save_rgb, write_codec_checkpoint

from lic.data.files import (
    TooLargeError,
    inside,
    read_capped,
    safe_name,
    sanitised,
    write_text_atomic,
)
from lic.errors import InputError
from lic.evaluation import run
from lic.evaluation.cli import main as eval_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("untrusted_images")
    for i, (h, w) in enumerate([(64, 80), (72, 64)]):
        save_rgb(root / f"img{i}.png", photo_like(h, w, seed=20 + i))
    return root


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("distortion", "x/../../../ESCAPED", "cannot name a file"),
        ("lmbda", "0.013/../../../../X", "is not a positive number"),
        ("lmbda", float("nan"), "is not a positive number"),
    ],
)
def test_crafted_checkpoint_metadata_is_refused_with_nothing_written(
    folder, tmp_path, capsys, field, value, message
):
    kwargs = {"distortion": value} if field == "distortion" else {"lmbda": value}
    (tmp_path / "inbox").mkdir()
    ckpt = write_codec_checkpoint(tmp_path / "inbox" / "codec.ckpt", **kwargs)
    out = tmp_path / "a" / "b" / "c" / "out"
    flags = ["--data-root", str(folder), "--out", str(out), "--no-progress", "--workers", "0"]
    code = eval_main(["--ckpt", str(ckpt), "--task", "fidelity", "--metrics", "psnr", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and str(ckpt) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]  # nothing anywhere else


def test_names_and_paths():
    assert safe_name("mse1+mlclipsim1000", "objective") == "mse1+mlclipsim1000"
    for bad in ("a/b", "..", "", "x\ny", "a b"):
        with pytest.raises(InputError):
            safe_name(bad, "name")
    assert sanitised("my model (q3).pth.tar") == "my_model__q3_.pth.tar"
    assert sanitised("../..") == "_"
    with pytest.raises(InputError, match="resolves outside"):
        inside("/tmp/out", "cells/../../x.json")
    assert inside("/tmp/out", "cells/x.json") == Path("/tmp/out/cells/x.json").resolve()


def test_atomic_writers_take_paths_as_given_with_a_relative_root(tmp_path, monkeypatch):
    """`lic eval --out runs/x` writes runs/x/results.json, not runs/x/runs/x/results.json."""
    monkeypatch.chdir(tmp_path)
    written = write_text_atomic(Path("runs/x/results.json"), "{}", Path("runs/x"))
    assert written == tmp_path / "runs/x/results.json"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == [
        "runs/x/results.json"
    ]
    with pytest.raises(InputError, match="resolves outside"):
        write_text_atomic(Path("runs/y.json"), "{}", Path("runs/x"))


def test_read_capped_stops_a_gzip_bomb_early(tmp_path):
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(bytes(100 * 2**20), compresslevel=9))  # 100 MiB of zeros
    assert bomb.stat().st_size < 2**20
    tracemalloc.start()
    with pytest.raises(TooLargeError, match="decompresses to more than 1,048,576 bytes"):
        read_capped(bomb, 2**20, gzipped=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20


def _run(folder: Path, out: Path, ckpt: Path) -> list[dict]:
    return run(
        checkpoints=[str(ckpt)],
        tasks=["fidelity"],
        data_roots={"fidelity": str(folder)},
        out=out,
        workers=0,
        progress=False,
        metrics=["psnr"],
        bootstrap=0,
    )


def _learned(rows: list[dict]) -> dict:
    return next(r for r in rows if r["codec"] != "uncompressed")


@pytest.mark.slow
def test_received_folder_tampered_bombed_or_oversized_is_recomputed(folder, tmp_path, caplog):
    ckpt = write_codec_checkpoint(tmp_path / "codec.ckpt")
    out = tmp_path / "out"
    clean = _learned(_run(folder, out, ckpt))
    [cell] = (out / "cells").glob("fidelity__bmshj*.json")
    images = cell.with_name(cell.stem + ".images.json.gz")
    original = (cell.read_bytes(), images.read_bytes())

    # 1. tampered numbers: never reported, the cell is recomputed
    tampered = json.loads(original[0])
    tampered["metrics"]["psnr"], tampered["bpp"] = 99.0, 0.0001
    cell.write_text(json.dumps(tampered))
    with caplog.at_level("WARNING"):
        again = _learned(_run(folder, out, ckpt))
    assert again["value"] == clean["value"] and again["bpp"] == clean["bpp"]
    assert "differ from its per-image state" in caplog.text
    with (out / "results.csv").open() as f:
        assert all(float(r["value"]) != 99.0 for r in csv.DictReader(f))

    # 2. a gzip bomb in the per-image state, its digest forged to match
    bomb = gzip.compress(bytes(200 * 2**20), compresslevel=9)
    images.write_bytes(bomb)
    forged = json.loads(original[0]) | {"images_sha256": hashlib.sha256(bomb).hexdigest()}
    cell.write_text(json.dumps(forged))
    caplog.clear()
    with caplog.at_level("WARNING"):
        tracemalloc.start()
        again = _learned(_run(folder, out, ckpt))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert again["value"] == clean["value"]
    assert "decompresses to more than" in caplog.text
    assert peak < 64 * 2**20  # the 200 MiB never materialise

    # 3. a per-image file that is not the one its cell recorded
    images.write_bytes(gzip.compress(json.dumps({"format": 2}).encode()))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _learned(_run(folder, out, ckpt))["value"] == clean["value"]
    assert "not the per-image file its cell was written with" in caplog.text

    # 4. an oversized cell file
    cell.write_text(json.dumps(json.loads(cell.read_text()) | {"pad": "x" * 3 * 2**20}))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _learned(_run(folder, out, ckpt))["value"] == clean["value"]
    assert "holds more than" in caplog.text


def test_every_writer_under_out_goes_through_lic_data_files():
    """Walk every call in lic/: files are written only by lic.data.files' atomic writers
    (which check a root when given), except the listed writes of user-named outputs."""
    allowed = {
        ("lic/data/files.py", "open"),  # the writers themselves
        ("lic/cli.py", "open"),  # tmp.open inside atomic_path (score and iqa tables)
        ("lic/pcmp/builder.py", "open"),  # tmp.open inside atomic_path (pairs.csv)
        ("lic/pcmp/builder.py", "write_text"),  # tmp.write_text inside atomic_path
        ("lic/sweep/jobs.py", "open"),  # the run's lock file, append mode, never read
        ("lic/codecs/checkpoint.py", "save"),  # torch.save of `lic export`'s chosen file
        ("lic/evaluation/references.py", "save"),  # torch.save into a BytesIO
        ("lic/evaluation/report.py", "savefig"),  # into a BytesIO, then the atomic writer
    }
    found = set()
    for path in sorted((ROOT / "lic").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                name = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
                if name != "open" or not _writes(node):
                    continue
                found.add((str(path.relative_to(ROOT)), "open"))
                continue
            attr = node.func.attr
            if attr in ("write_text", "write_bytes", "savefig") or (
                attr == "open" and _writes(node)
            ):
                found.add((str(path.relative_to(ROOT)), attr))
            if attr == "save" and getattr(node.func.value, "id", "") == "torch":
                found.add((str(path.relative_to(ROOT)), "save"))
    assert found <= allowed, sorted(found - allowed)


def _writes(call: ast.Call) -> bool:
    """Whether an open() call's mode (positional or keyword) writes or appends."""
    modes = [a.value for a in call.args[1:2] if isinstance(a, ast.Constant)]
    modes += [k.value.value for k in call.keywords if k.arg == "mode"]
    return any(isinstance(m, str) and any(c in m for c in "wax+") for m in modes)
