"""Writing files so that a crash or a second writer never leaves half a file, planning
outputs so that no command overwrites an input or an earlier result unasked, and reading
back what lic wrote as untrusted: names checked before they touch a path (`safe_name`),
paths kept inside their folder (`inside`), sizes capped while reading (`read_capped`)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import secrets
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from lic.errors import InputError, UsageError

SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")
"""What a name lic derives from data (a checkpoint's objective, a sweep's name, a label)
may hold before it becomes part of a file name: no separators, no control characters."""
READ_CHUNK = 1 << 20


class TooLargeError(InputError):
    """A file lic reads back is larger (or decompresses to more) than a real one can be."""


def safe_name(value: object, what: str) -> str:
    """`value` as a file-name part: InputError (exit 2) unless it is a non-empty string of
    SAFE_NAME characters other than '.' and '..'."""
    text = str(value)
    if not SAFE_NAME.fullmatch(text) or text in (".", ".."):
        raise InputError(
            f"{what} {text!r} cannot name a file: use letters, digits and . _ + - only"
        )
    return text


def sanitised(text: object) -> str:
    """`text` made a file-name part: every character outside SAFE_NAME becomes '_' (for labels
    that only name things, such as a checkpoint's file name standing for its objective)."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(text)).strip(".")
    return name or "_"


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` (relative to `root`, or absolute) once it resolves inside `root`; InputError
    otherwise: no name read from a file may lead a write or read out of its folder."""
    return within(root, Path(root).resolve() / path, shown=path)


def positive_number(value: object) -> float | None:
    """`value` (a number or its text, not a bool) as a positive finite float; None when it
    is not one. Lambdas read from files and configs name folders and label curves."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes: its identity whatever its name or folder."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


DIGEST_THREADS = 4
"""Files hashed at once by `file_digests` (hashlib releases the GIL; more threads also hide
the latency of network file systems)."""


def file_digests(paths: Sequence[str | Path]) -> list[str]:
    """`file_digest` of each path, in order, on a few threads (measured: 1.3 GB/s a core,
    so ImageNet val's 6.4 GB take about 5 s of CPU once read)."""
    threads = max(1, min(DIGEST_THREADS, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(file_digest, paths))


def read_capped(path: str | Path, cap: int, gzipped: bool = False) -> bytes:
    """The bytes of `path` (decompressed, when `gzipped`), read in chunks and refused with
    TooLargeError as soon as they pass `cap`: a gzip bomb never fills memory."""
    with open(path, "rb") as raw:
        return _read_stream(gzip.GzipFile(fileobj=raw) if gzipped else raw, cap, path, gzipped)


def gunzip_capped(data: bytes, cap: int, name: str | Path) -> bytes:
    """`gzip.decompress(data)`, refused (TooLargeError naming `name`) past `cap` bytes."""
    return _read_stream(gzip.GzipFile(fileobj=io.BytesIO(data)), cap, name, True)


def _read_stream(stream: BinaryIO, cap: int, name: str | Path, gzipped: bool) -> bytes:
    chunks, size = [], 0
    try:
        while chunk := stream.read(min(READ_CHUNK, cap + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                kind = "decompresses to" if gzipped else "holds"
                raise TooLargeError(
                    f"{name} {kind} more than {cap:,} bytes, more than a real one can; "
                    "it was not written by lic (or is corrupt)"
                )
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{name}: corrupt or truncated ({err})") from None
    return b"".join(chunks)


def read_json_capped(path: str | Path, cap: int, gzipped: bool = False) -> object:
    """`read_capped` parsed as JSON; InputError naming the file when it is not JSON."""
    data = read_capped(path, cap, gzipped)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` for the block to write; renamed over `path`
    (atomically, on the same file system) when the block succeeds, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data reaches the disk before the name does
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def within(root: str | Path, path: str | Path, shown: str | Path | None = None) -> Path:
    """`path` (as given: relative to the working folder, or absolute) once it resolves
    inside `root` (likewise); InputError naming `shown` (default `path`) otherwise. `inside`
    is for names relative to root."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        shown = path if shown is None else shown
        raise InputError(f"{shown} resolves outside {root}; refusing to read or write it")
    return target


def write_bytes_atomic(path: str | Path, data: bytes, root: str | Path | None = None) -> Path:
    """Write `data` to `path` atomically; with `root`, only if `path` resolves inside it."""
    if root is not None:
        path = within(root, path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, root: str | Path | None = None) -> Path:
    return write_bytes_atomic(path, text.encode(), root)


def write_csv_atomic(
    path: str | Path, rows: Sequence[dict], fieldnames: Sequence[str], root: str | Path | None
) -> Path:
    """A CSV of `rows` (missing fields empty), written as `write_text_atomic` writes."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue(), root)


def plan_outputs(
    inputs: Sequence[Path], out_dir: Path, suffix: str, overwrite: bool = False
) -> list[Path]:
    """`out_dir/<input stem><suffix>` for every input (creating `out_dir`), refused
    (UsageError) before any work when `out_dir` is not a writable folder, two inputs share an
    output, an output is one of the inputs, or an output exists and `overwrite` is not set."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir}: cannot create it ({err.strerror or err})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--out-dir {out_dir} is not writable")
    outputs = [out_dir / f"{Path(p).stem}{suffix}" for p in inputs]
    seen: dict[Path, Path] = {}
    sources = {_key(p) for p in inputs}
    for source, out in zip(inputs, outputs, strict=True):
        key = _key(out)
        if key in seen:
            raise UsageError(f"{seen[key]} and {source} would both be written to {out}")
        seen[key] = source
        if key in sources:
            raise UsageError(f"{out} is an input; writing it would destroy that input")
        if out.exists() and not overwrite:
            raise UsageError(f"{out} exists (pass --overwrite to replace it)")
    return outputs


def check_output_file(
    out: Path | None, overwrite: bool, inputs: Sequence[Path] = (), name: str = "--out"
) -> None:
    """Refuse (UsageError), before any work, an output file that is a folder, is one of the
    inputs, exists while `overwrite` is not set, or lies under no writable folder; `name`:
    the argument that gave it, as the message calls it."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"{name} {out} is a folder; give a file name")
    if _key(out) in {_key(p) for p in inputs}:
        raise UsageError(f"{name} {out} is an input")
    if out.exists() and not overwrite:
        raise UsageError(f"{name} {out} exists (pass --overwrite to replace it)")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{name} {out}: {parent} is not a writable folder")


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))
