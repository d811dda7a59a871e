"""Writing files so that a crash or a second writer never leaves half a file, and planning
outputs so that no command overwrites an input or an earlier result unasked."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lic.errors import UsageError


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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


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


def check_output_file(out: Path | None, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse (UsageError), before any work, an output file that is a folder, is one of the
    inputs, exists while `overwrite` is not set, or lies under no writable folder."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    if _key(out) in {_key(p) for p in inputs}:
        raise UsageError(f"--out {out} is an input")
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out} exists (pass --overwrite to replace it)")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {parent} is not a writable folder")


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))
