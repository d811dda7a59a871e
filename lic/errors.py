"""One error convention for every entry point (`lic`, `train.py`, `eval_rate_task.py`).

A failure is one line on stderr, `error: <what went wrong and what to do>`, and an exit code:
2 for usage and input errors (a wrong flag, a missing folder, a corrupt file), 1 for runtime
failures (weights that cannot be had, a failing model). The traceback is printed only with
`LIC_DEBUG=1`. Imports nothing heavy, so every command can use it before torch is loaded.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from typing import NoReturn

USAGE_EXIT = 2
RUNTIME_EXIT = 1


class LicError(Exception):
    """An expected failure with a message written for the user; runtime (exit 1) by default."""

    exit_code = RUNTIME_EXIT


class UsageError(LicError, ValueError):
    """The command line or a configuration asks for something impossible (exit 2)."""

    exit_code = USAGE_EXIT


class InputError(LicError, ValueError):
    """An input file or folder is missing, corrupt or laid out wrongly (exit 2)."""

    exit_code = USAGE_EXIT


class ImageReadError(InputError):
    """An image file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class DatasetLayoutError(InputError):
    """A dataset folder without its official layout; the message says what is wrong."""


def debug_requested() -> bool:
    return os.environ.get("LIC_DEBUG", "").lower() in {"1", "true", "yes", "on"}


def exit_code(err: BaseException) -> int:
    """The exit code an exception stands for under the convention above."""
    if isinstance(err, KeyboardInterrupt):
        return 130
    if isinstance(err, LicError):
        return err.exit_code
    if isinstance(
        err, (argparse.ArgumentError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
    ):
        return USAGE_EXIT
    return RUNTIME_EXIT


def one_line(err: BaseException) -> str:
    """`error: ...` for the user; unexpected exceptions also name their type."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "error: interrupted"
    if isinstance(err, (LicError, OSError, argparse.ArgumentError)):
        return f"error: {text}"
    return f"error: {type(err).__name__}: {text} (LIC_DEBUG=1 shows the traceback)"


def run_entry_point(main: Callable[[], int | None]) -> int:
    """Run `main`, turning any exception into one line and an exit code (see module doc)."""
    try:
        return int(main() or 0)
    except SystemExit as done:  # argparse's own usage errors (code 2) and explicit exits
        code = done.code
        if isinstance(code, str):
            print(code if code.startswith("error:") else f"error: {code}", file=sys.stderr)
            return USAGE_EXIT
        return int(code or 0)
    except BaseException as err:
        if debug_requested():
            raise
        print(one_line(err), file=sys.stderr)
        return exit_code(err)


def exit_program(code: int) -> NoReturn:
    """End a lic process with `code`. The objects left are frozen first (`gc.freeze`): the
    interpreter runs full garbage collections while it tears its modules down, and over
    CompressAI's import chain (torch_geometric, transformers) that took 0.6 s of every run
    (measured on 2 CPU cores). atexit handlers run and objects are still freed by their
    reference counts (open files flushed); only garbage caught in reference cycles is left
    uncollected, as a process ending needs. For program entry points only, not for `main()`
    called in-process (a frozen heap is never collected)."""
    gc.freeze()
    sys.exit(code)
