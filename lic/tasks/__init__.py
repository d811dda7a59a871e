"""Downstream tasks of the rate-task harness, by name."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from lic.lazy import lazy_exports
from lic.tasks.catalog import TASK_CLASSES

if TYPE_CHECKING:
    from lic.tasks.base import Task


class _Tasks(Mapping):
    """name -> Task class, each imported on first use (listing the names loads no torch)."""

    def __getitem__(self, name: str) -> type[Task]:
        module, _, attribute = TASK_CLASSES[name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(TASK_CLASSES)

    def __len__(self) -> int:
        return len(TASK_CLASSES)


TASKS: Mapping[str, type[Task]] = _Tasks()
_BASE = ("Accumulator", "DatasetLayoutError", "Sample", "Task")
__getattr__ = lazy_exports(__name__, dict.fromkeys(_BASE, "lic.tasks.base"))


def create_task(
    name: str,
    root: str,
    model: str | None = None,
    weights: str | None = None,
    limit: int | None = None,
    metrics: Sequence[str] | None = None,
    metric_args: Mapping[str, Mapping] | None = None,
    protocol: str | None = None,
) -> Task:
    """Task `name` on `root`; `metrics` chooses among a task's `metric_choices` (fidelity)
    and `metric_args` are their constructor arguments; tasks whose metrics are fixed ignore
    both. `protocol` is the answer protocol of tasks that offer several (SEED-Bench); others
    ignore it."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; known: {', '.join(TASKS)}")
    options = {}
    if TASKS[name].metric_choices:  # tasks whose metrics are chosen take their arguments too
        options = {"metrics": metrics, "metric_args": metric_args}
    if TASKS[name].protocols and protocol is not None:
        options["protocol"] = protocol
    return TASKS[name](root, model=model, weights=weights, limit=limit, **options)


__all__ = ["TASKS", "Accumulator", "DatasetLayoutError", "Sample", "Task", "create_task"]
