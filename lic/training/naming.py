"""The run folder name of a training run (codec, objective, lambda): one home for it.

`lic train` (lic.training.cli) puts each run under `<default_root_dir>/<run_name>/`; `lic
sweep` plans, skips and resumes runs by the same name. Plain Python: naming loads no torch.
"""

from __future__ import annotations

from collections.abc import Mapping

from lic.metrics.objective import objective_name


def run_name(codec: str, distortion: str | Mapping[str, float], lmbda: float) -> str:
    """Folder name of one training run: codec, objective and lambda."""
    return f"{codec}_{objective_name(distortion)}_lambda{lmbda:g}"
