"""The harness's options as one typed record, shared by `lic eval` and the Python API.

`lic eval` writes the resolved record to `<out>/config.yaml`; `lic eval --config
<out>/config.yaml` runs it again (finished cells are skipped), from any folder: local paths
are stored absolute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lic.codecs.padding import FIELD_PADDING, PADDINGS
from lic.data.files import read_capped
from lic.errors import InputError, UsageError
from lic.evaluation.curves import PUBLISHED
from lic.evaluation.parallel import AUTO
from lic.metrics.registry import list_metrics, metric_spec

RATE_MEANS = ("images", "pixels")
"""How a cell's rate averages its images: `images`, the mean of per-image bpp (CompressAI's
eval_model, the learned-codec literature); `pixels`, total bits over total pixels (MPEG's
machine-vision test conditions). They differ when images differ in size."""

CONFIG_NAME = "config.yaml"
MAX_CONFIG_BYTES = 2**20  # a written config is a few KB; a thousand checkpoint paths fit


@dataclass
class EvalConfig:
    """Everything one evaluation needs; field names are the `lic eval` options' long names.

    `baselines` are classical codec names, `qualities` the grids that replace their defaults
    (`{jpeg: [5, 10]}`); `metric_args` the fidelity metrics' constructor arguments
    (`{mlclipsim: {pretrained: /path/clip.bin}}`); `ckpt_meta` maps a checkpoint path to
    `[objective, lambda]` for files that do not record them (official MLIC++ files).
    `levels` are the levels variable-rate codecs code at (all when None; docs/vbr.md).
    `workers` (coding processes), `threads` (the task model's torch threads) and
    `batch_size` (images per task-model call) are numbers or `auto`
    (`lic.evaluation.parallel.plan_threads`: chosen from the cores and device).
    The rate convention (docs/conventions.md): `pad` is how learned codecs pad (`zeros`,
    CompressAI eval_model's, or `replicate`); `rate_mean` how a cell's bpp averages its images
    (`images` or `pixels`). `anchor` may name a published curve (`published:vtm`, fidelity
    only, on the 24 Kodak images), `published` names published curves drawn on its plots.
    `align` lists full-reference metrics computed per image on every machine task's input
    and decoded image, to measure which one predicts the task's outcome (alignment.csv;
    lic.evaluation.alignment); `metric_args` also reach them.
    """

    checkpoints: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    data_roots: dict[str, str] = field(default_factory=dict)
    out: str = ""
    limit: int | None = None
    baselines: list[str] = field(default_factory=list)
    qualities: dict[str, list[int]] = field(default_factory=dict)
    anchor: str | None = None
    published: list[str] = field(default_factory=list)
    pad: str = FIELD_PADDING
    rate_mean: str = "images"
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    seed_protocol: str = "generate"
    metrics: list[str] | None = None
    align: list[str] = field(default_factory=list)
    metric_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int | str = AUTO
    workers: int | str = AUTO
    threads: int | str = AUTO
    device: str = "auto"
    coding: str = "workers"
    estimate_rate: bool = False
    task_model: str | None = None
    task_weights: str | None = None
    ckpt_meta: dict[str, list] = field(default_factory=dict)
    levels: list[int] | None = None
    use_wandb: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.checkpoints = [str(c) for c in self.checkpoints]
        self.tasks, self.out = list(self.tasks), str(self.out)
        self.data_roots = {task: str(root) for task, root in self.data_roots.items()}
        self.baselines, self.published = list(self.baselines), list(self.published)
        self.metrics = list(self.metrics) if self.metrics else None
        missing = [t for t in self.tasks if t not in self.data_roots]
        if missing:
            raise UsageError(f"no data root for task(s) {missing}")
        if not self.out:
            raise UsageError("no output folder (--out)")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: give a positive number of images")
        if self.seed_protocol not in ("generate", "likelihood"):
            raise UsageError(f"seed_protocol '{self.seed_protocol}': generate or likelihood")
        if self.bootstrap < 0:
            raise UsageError(f"--bootstrap {self.bootstrap}: give a number of resamples (0: none)")
        for name, low in (("workers", 0), ("threads", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if value != AUTO and not (type(value) is int and value >= low):
                flag = name.replace("_", "-")
                raise UsageError(f"--{flag} {value}: give '{AUTO}' or an integer >= {low}")
        if self.metrics and "fidelity" not in self.tasks:
            raise UsageError("--metrics chooses the fidelity task's metrics; add --task fidelity")
        for name, value, choices in (
            ("pad", self.pad, PADDINGS),
            ("rate-mean", self.rate_mean, RATE_MEANS),
        ):
            if value not in choices:
                raise UsageError(f"--{name} {value}: one of {', '.join(choices)}")
        uses_published = self.published or (self.anchor or "").startswith(PUBLISHED)
        if uses_published and "fidelity" not in self.tasks:
            raise UsageError(
                "published curves (--anchor published:..., --published) are rate-distortion "
                "curves: add --task fidelity"
            )
        self._check_align()
        self.qualities = {name: list(grid) for name, grid in self.qualities.items()}
        self.ckpt_meta = {path: list(label) for path, label in self.ckpt_meta.items()}
        if self.levels is not None:
            self.levels = list(self.levels)
            if not self.levels or any(type(v) is not int or v < 0 for v in self.levels):
                raise UsageError(f"--levels {self.levels}: give levels as integers >= 0")

    def _check_align(self) -> None:
        """`--align` names full-reference metrics, for at least one machine task."""
        self.align = list(dict.fromkeys(self.align))
        if not self.align:
            return
        unknown = [
            n for n in self.align if n not in list_metrics() or not metric_spec(n).full_reference
        ]
        if unknown:
            choices = [n for n in list_metrics() if metric_spec(n).full_reference]
            raise UsageError(f"--align {' '.join(unknown)}: choose from {', '.join(choices)}")
        from lic.tasks import TASKS

        if not any(TASKS[t].outcomes for t in self.tasks if t in TASKS):
            machine = ", ".join(t for t in TASKS if TASKS[t].outcomes)
            raise UsageError(
                "--align measures which metric predicts a machine task's outcome: add a "
                f"machine task ({machine})"
            )

    def resolved(self) -> EvalConfig:
        """The same run with every local path absolute, so it re-runs from any folder."""

        def absolute(path: str) -> str:
            return str(Path(path).absolute()) if Path(path).exists() else path

        return dataclasses.replace(
            self,
            checkpoints=[absolute(c) for c in self.checkpoints],
            data_roots={task: absolute(root) for task, root in self.data_roots.items()},
            out=str(Path(self.out).absolute()),
            ckpt_meta={absolute(p): label for p, label in self.ckpt_meta.items()},
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> EvalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{source}: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> EvalConfig:
        """A config written by `lic eval` (or by hand); a malformed file is an input error."""
        try:
            values = yaml.safe_load(read_capped(path, MAX_CONFIG_BYTES).decode())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise InputError(f"--config {path}: cannot read it ({err})") from None
        if not isinstance(values, dict):
            raise InputError(f"--config {path}: expected a mapping of options")
        try:
            return cls.from_mapping(values, f"--config {path}")
        except TypeError as err:
            raise InputError(f"--config {path}: {err}") from None
