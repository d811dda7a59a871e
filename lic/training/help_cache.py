"""`lic train ... --help` printed from a cache: no Lightning import for help already seen.

LightningCLI builds its parser from the signatures and docstrings of Lightning's Trainer and
lic's CodecModule and ImageDataModule, so printing its help means importing Lightning and
torch: 4-5 s on 2 cores, for text that depends only on the arguments, the terminal width,
the installed versions, lic's sources and the config files named. The first `--help` of
each such combination is rendered by LightningCLI and kept in ~/.cache/lic/help (or
$LIC_CACHE/help); later ones print the kept text in milliseconds, importing neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HELP_FLAGS = ("-h", "--help")
DISTRIBUTIONS = ("lic", "lightning", "jsonargparse", "torch", "compressai")
MAX_CONFIG_BYTES = 2**20  # a config file named in the arguments is part of the key


def wants_help(argv: Sequence[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def cache_folder() -> Path:
    root = os.environ.get("LIC_CACHE") or Path.home() / ".cache" / "lic"
    return Path(root) / "help"


def help_key(argv: Sequence[str]) -> str:
    """SHA-256 of everything the help text depends on."""
    digest = hashlib.sha256(json.dumps([list(argv), shutil.get_terminal_size().columns]).encode())
    for name in DISTRIBUTIONS:
        with contextlib.suppress(PackageNotFoundError):
            digest.update(f"{name}={version(name)};".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):  # an editable install changes without a version
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    for arg in argv:
        with contextlib.suppress(OSError, ValueError):
            if Path(arg).is_file() and Path(arg).stat().st_size <= MAX_CONFIG_BYTES:
                digest.update(Path(arg).read_bytes())
    return digest.hexdigest()


def cached_help(argv: Sequence[str]) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (cache_folder() / f"{help_key(argv)}.txt").read_text()
    return None


def print_help(argv: Sequence[str], render: Callable[[], int]) -> int:
    """Print the help for `argv`: the kept text, or what `render` (the real command)
    prints, kept for next time when it succeeds."""
    text = cached_help(argv)
    if text is not None:
        sys.stdout.write(text)
        return 0
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            code = render()
    except SystemExit as end:  # argparse ends --help with sys.exit(0)
        code = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
    sys.stdout.write(buffer.getvalue())
    if code == 0 and buffer.getvalue():
        with contextlib.suppress(OSError):
            from lic.data.files import write_text_atomic

            folder = cache_folder()
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / f"{help_key(argv)}.txt", buffer.getvalue())
    return code
