"""`-o [METRIC.]KEY=VALUE`: metric constructor arguments, read the same way by every command
(`lic score`, `lic iqa`, `lic eval`). Plain data, no torch: parsers use it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from lic.errors import UsageError

OPTION_HELP = (
    "metric argument [METRIC.]KEY=VALUE (VALUE read as JSON when it parses), e.g. "
    "-o mlclipsim.pretrained=/path/clip.bin; METRIC. may be left out when one metric is used"
)


def parse_option(text: str) -> tuple[str, object]:
    """`KEY=VALUE` with VALUE read as JSON when it parses (numbers, lists, null), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected [METRIC.]KEY=VALUE, got '{text}'")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_option_flag(parser: argparse.ArgumentParser) -> None:
    """The repeatable `-o/--option` flag."""
    parser.add_argument(
        "-o",
        "--option",
        type=parse_option,
        action="append",
        default=[],
        metavar="[METRIC.]KEY=VALUE",
        help=OPTION_HELP,
    )


def metric_options(
    options: Sequence[tuple[str, object]], metrics: Sequence[str]
) -> dict[str, dict[str, object]]:
    """`[("mlclipsim.alpha", 0.3)]` -> `{"mlclipsim": {"alpha": 0.3}}` for the `metrics` in use;
    a key without a known `METRIC.` prefix belongs to the only metric, if there is one."""
    out: dict[str, dict[str, object]] = {}
    for key, value in options:
        metric, sep, name = key.partition(".")
        if not (sep and metric in metrics):
            if len(metrics) != 1:
                raise UsageError(
                    f"-o {key}=...: name the metric as METRIC.KEY, METRIC one of {list(metrics)}"
                )
            metric, name = metrics[0], key
        out.setdefault(metric, {})[name] = value
    return out
