"""Random task weights leave a trace in every output: the log, summary.md, results.csv,
per_image.csv and the plot titles; numbers that need no network carry none."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lic.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "val"
NOTE = "random mobilenet_v3_small: format check only"


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def titles(monkeypatch) -> list[str]:
    """Every figure and panel title the plots set."""
    seen: list[str] = []
    for cls, name in ((Figure, "suptitle"), (Axes, "set_title")):
        original = getattr(cls, name)

        def record(self, label, *args, _original=original, **kwargs):
            seen.append(label)
            return _original(self, label, *args, **kwargs)

        monkeypatch.setattr(cls, name, record)
    return seen


def run_eval(out: Path, *task: str) -> int:
    return main(
        [
            *("eval", *task, "--task-weights", "none", "--data-root", str(DEMO)),
            *("--baselines", "jpeg=50", "--out", str(out), "--limit", "2"),
            *("--workers", "0", "--device", "cpu", "--no-progress", "--bootstrap", "0"),
        ]
    )


def test_random_task_weights_are_said_in_every_output(tmp_path, caplog, titles):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    assert run_eval(out, "--task", "consistency", "--task-model", "mobilenet_v3_small") == 0
    assert f"consistency: {NOTE} (--task-weights none)" in caplog.messages
    summary = (out / "summary.md").read_text()
    assert f"**Random weights** (consistency: {NOTE})" in summary.splitlines()[2]
    results = read_csv(out / "results.csv")
    assert len(results) == 4 and {r["weights"] for r in results} == {"random"}
    per_image = read_csv(out / "per_image.csv")
    assert len(per_image) == 4 and {r["weights"] for r in per_image} == {"random"}
    assert titles == [f"consistency\n{NOTE}", "top-1 agreement (%)", "KL to uncompressed (nats)"]


def test_numbers_without_networks_are_not_called_random(tmp_path, caplog, titles):
    """PSNR needs no weights: `--task-weights none` changes nothing, so nothing says random."""
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    assert run_eval(out, "--task", "fidelity", "--metrics", "psnr") == 0
    assert not any("random" in m for m in caplog.messages)
    assert "Random" not in (out / "summary.md").read_text()
    assert {r["weights"] for r in read_csv(out / "results.csv")} == {""}
    assert titles == ["fidelity", "PSNR (dB)"]
