"""Downstream tasks of the rate-task harness, by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lic.tasks.base import Accumulator, DatasetLayoutError, Sample, Task
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
