"""`lic data check TASK DIR`: find layout problems in seconds, before an hour-long evaluation.

The task's own reader does the work (required files, annotation parsing, sample list), then
the first and last samples are decoded; the count is compared with the official release.
"""

from __future__ import annotations

from pathlib import Path

from lic.data.catalog import SOURCES


def check_task_data(task_name: str, root: str | Path) -> list[str]:
    """Report lines; raises DatasetLayoutError / ImageReadError on the first problem."""
    from lic.tasks import TASKS

    task_class = TASKS[task_name]
    task = task_class(root, **task_class.layout_check_args)
    for index in sorted({0, len(task) - 1}):
        task.load(index)  # raises ImageReadError naming the file
    lines = [f"{task_name}: {root}: layout ok, {len(task)} samples; first and last decode"]
    # only a task with a dedicated data set: consistency and fidelity take any folder
    official = next((s for s in SOURCES.values() if s.tasks == (task_name,) and s.full_size), None)
    if official is not None and len(task) != official.full_size:
        lines.append(
            f"note: the official {official.name} release has {official.full_size} samples; "
            f"results on {len(task)} are not comparable with published numbers"
        )
    return lines
