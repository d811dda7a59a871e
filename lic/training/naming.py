"""The run folder name of a training run (codec, objective, lambda; a variable-rate codec's
run has all the lambdas: `vbr`): one home for it.

`lic train` (lic.training.cli) puts each run under `<default_root_dir>/<run_name>/`; `lic
sweep` plans, skips and resumes runs by the same name. Plain Python: naming loads no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from lic.codecs.vbr import is_vbr_codec
from lic.metrics.objective import objective_name


def run_name(codec: str, distortion: str | Mapping[str, float], lmbda: object) -> str:
    """Folder name of one training run: codec, objective and lambda (`vbr` for a
    variable-rate codec, trained at every level's lambda: CompressAI's list, or `vbr-<hash>`
    for a list given, so that runs of two lists never share a folder)."""
    if is_vbr_codec(codec):
        if not isinstance(lmbda, (list, tuple)):
            return f"{codec}_{objective_name(distortion)}_vbr"
        listed = json.dumps([float(v) for v in lmbda]).encode()
        return f"{codec}_{objective_name(distortion)}_vbr-{hashlib.sha256(listed).hexdigest()[:8]}"
    return f"{codec}_{objective_name(distortion)}_lambda{lmbda:g}"
