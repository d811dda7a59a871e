"""A resumed run continues its own log: the same `logs/version_N/`, one metrics.csv.

Lightning's loggers start a new version on every fit, and its CSV writer deletes the
metrics.csv of a version it is handed; a resume of a killed run would leave its curves split
over two folders, or lose the first part.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lic.data.files import write_csv_atomic


def latest_version(logs_root: str | os.PathLike) -> int | None:
    """The highest N of `logs_root/version_N/`, or None when there is none."""
    root = Path(logs_root)
    versions = [
        int(d.name.removeprefix("version_"))
        for d in (root.iterdir() if root.is_dir() else [])
        if d.is_dir() and d.name.removeprefix("version_").isdigit()
    ]
    return max(versions, default=None)


class ResumedCSVWriter(ExperimentWriter):
    """metrics.csv of a resumed run: the rows from before the checkpoint are kept; rows from
    the steps after it (trained before a kill, trained again now) are replaced by the new."""

    def _check_log_dir_exists(self) -> None:
        self._kept: list[dict[str, str]] | None = None
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                reader = csv.DictReader(file)
                self._kept = list(reader)
                self.metrics_keys = sorted(reader.fieldnames or [])

    def save(self) -> None:
        if self._kept is not None and self.metrics:
            first = min(int(m["step"]) for m in self.metrics)
            kept = [row for row in self._kept if int(float(row["step"])) < first]
            write_csv_atomic(self.metrics_file_path, kept, self.metrics_keys, None)
            self._kept = None
        super().save()
