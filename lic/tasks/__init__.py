"""Downstream tasks of the rate-task harness, by name."""

from __future__ import annotations

from collections.abc import Sequence

from lic.tasks.base import Accumulator, DatasetLayoutError, Task
from lic.tasks.classification import ConsistencyTask, ImageNetTask
from lic.tasks.detection import COCODetectionTask
from lic.tasks.fidelity import FidelityTask
from lic.tasks.segmentation import VOCSegmentationTask
from lic.tasks.vqa import POPETask, SEEDBenchTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        ImageNetTask,
        VOCSegmentationTask,
        COCODetectionTask,
        ConsistencyTask,
        POPETask,
        SEEDBenchTask,
        FidelityTask,
    )
}


def create_task(
    name: str,
    root: str,
    model: str | None = None,
    weights: str | None = None,
    limit: int | None = None,
    metrics: Sequence[str] | None = None,
) -> Task:
    """Task `name` on `root`; `metrics` chooses among a task's `metric_choices` (fidelity)
    and is ignored by tasks whose metrics are fixed."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; known: {', '.join(TASKS)}")
    options = {"metrics": metrics} if metrics and TASKS[name].metric_choices else {}
    return TASKS[name](root, model=model, weights=weights, limit=limit, **options)


__all__ = ["TASKS", "Accumulator", "DatasetLayoutError", "Task", "create_task"]
