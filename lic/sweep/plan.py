"""A sweep file and the training runs it stands for (plain Python: planning loads no torch).

A sweep file (YAML) names LightningCLI base configs, a grid over any config keys, fixed
arguments, an output root, launcher settings and an eval section. Every grid point is one
`lic train fit` run in `<out>/<codec>_<objective>_lambda<lambda>/` (lic.training.naming, the
folder `lic train` itself writes). A run is *done* when its marker file records the same
arguments; a run with a `last.ckpt` but no such marker resumes from it.

A sweep file is code by design, but its names and values must not become commands: submitit
writes the name, the output root and the launcher values into an sbatch script line by line,
so control characters there are refused, and the parts of a run's folder name must be
file-name parts (`safe_name`), its lambda a positive number.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lic.codecs.vbr import is_vbr_codec
from lic.data.files import positive_number, read_json_capped, safe_name, sanitised
from lic.errors import InputError, UsageError
from lic.metrics.objective import objective_name
from lic.training.naming import run_name

log = logging.getLogger(__name__)

SWEEP_KEYS = ("name", "base", "grid", "fixed", "out", "launcher", "eval")
LAUNCHERS = ("local", "slurm")
NAME_KEYS = ("model.codec", "model.distortion", "model.lmbda")
OWNED_KEYS = {"trainer.default_root_dir": "out (or --out)", "ckpt_path": "the sweep (resume)"}
DONE_MARKER = "sweep_done.json"
GRID_CONFIG = "config"  # a grid over whole config files (added after the base configs)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""Characters that end or rewrite a line of the sbatch script (newline, CR, tab, escape...)."""
MARKER_SLACK = 64 * 1024
"""A done marker holds the run's arguments (at most twice their compact JSON once indented),
its extra launcher arguments and a time stamp: this much over the arguments' JSON is slack
enough for a real one; larger ones are not read (the run resumes from its last.ckpt)."""
_warned: set[str] = set()  # marker warnings already given (status() is asked many times)


@dataclass(frozen=True)
class Run:
    """One grid point: its folder and the `lic train` arguments that train it."""

    name: str
    run_dir: Path
    args: tuple[str, ...]
    point: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def marker(self) -> Path:
        return self.run_dir / DONE_MARKER

    def status(self) -> str:
        """'done' (finished with these arguments), 'resume' (has last.ckpt) or 'new'."""
        if self.recorded_args() == list(self.args) and self.last_ckpt.is_file():
            return "done"
        return "resume" if self.last_ckpt.is_file() else "new"

    def recorded_args(self) -> list | None:
        """The arguments the done marker records, or None: no marker, or one that is too large
        or malformed (then warned about once, and the run is trained again or resumed)."""
        if not self.marker.is_file():
            return None
        cap = MARKER_SLACK + 2 * len(json.dumps(list(self.args)))
        try:
            record = read_json_capped(self.marker, cap)
            if not isinstance(record, dict) or not isinstance(record.get("args"), list):
                raise InputError(f"{self.marker}: field 'args' missing or not a list")
        except (InputError, OSError) as err:
            if str(err) not in _warned:
                _warned.add(str(err))
                log.warning("%s; the run is not taken as done", err)
            return None
        return record["args"]

    def command(self, extra: Sequence[str] = ()) -> str:
        """The equivalent shell command (what the job runs, in-process)."""
        return shlex.join(["lic", "train", *self.args, *extra])


@dataclass
class Sweep:
    """A parsed sweep file; paths of configs and eval data are relative to the file."""

    source: Path
    name: str
    base: list[Path]
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    out: Path
    launcher: dict[str, dict[str, Any]]
    eval: dict[str, Any] | None
    sets: dict[str, Any] = field(default_factory=dict)

    def runs(self) -> list[Run]:
        """Every grid point in file order (the last grid key varies fastest)."""
        keys = list(self.grid)
        runs: dict[str, Run] = {}
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            configs = [*self.base, *point.get(GRID_CONFIG, [])]
            settings = {k: v for k, v in {**self.fixed, **point, **self.sets}.items()}
            settings.pop(GRID_CONFIG, None)
            name = _run_name(self.source, configs, settings)
            if name in runs:
                raise UsageError(
                    f"{self.source}: grid points {runs[name].point} and {point} both train "
                    f"{name}; a run folder is named by {', '.join(NAME_KEYS)} only"
                )
            args = ["fit", *(a for c in configs for a in ("--config", str(c)))]
            args += ["--trainer.default_root_dir", str(self.out)]
            args += [a for k, v in settings.items() for a in (f"--{k}", cli_value(v))]
            runs[name] = Run(name, self.out / name, tuple(args), point)
        return list(runs.values())


def _run_name(source: Path, configs: Sequence[Path], settings: Mapping[str, Any]) -> str:
    """The run's folder name, from parts checked to be file-name parts: a codec or objective
    such as 'x/../../y' would otherwise put a run (and its writes) outside the sweep's out."""
    codec, distortion = (_value(source, configs, k, settings) for k in NAME_KEYS[:2])
    variable_rate = is_vbr_codec(codec)  # one run for all lambdas: no lambda in its name
    lmbda = None if variable_rate else _value(source, configs, NAME_KEYS[2], settings)
    safe_name(codec, f"{source}: model.codec")
    try:
        objective = objective_name(distortion)
    except (TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{source}: model.distortion {distortion!r}: {err}") from None
    safe_name(objective, f"{source}: model.distortion (objective)")
    return run_name(codec, distortion, lmbda)


def _value(source: Path, configs: Sequence[Path], key: str, settings: Mapping[str, Any]) -> Any:
    """A naming key's value as `lic train` resolves it: the last writer wins (configs in
    order, then fixed, grid and --set)."""
    value = settings.get(key)
    if key not in settings:
        for values in map(_base_values, reversed(configs)):
            if key in values:
                value = values[key]
                break
    if value is None:
        raise UsageError(
            f"{source}: {key} is set nowhere (configs, fixed, grid or --set); "
            "the run folders are named after it"
        )
    if key == "model.lmbda":
        return _lambda(source, value)
    return value


def _lambda(source: Path, value: Any) -> float:
    """A lambda as a positive finite number (it names the run folder and labels the curve)."""
    number = positive_number(value)
    if number is None:
        raise UsageError(f"{source}: model.lmbda {value!r} is not a positive number")
    return number


def cli_value(value: Any) -> str:
    """A config value as one command-line word (JSON is YAML; strings pass unchanged)."""
    return value if isinstance(value, str) else json.dumps(value)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'lmbda': 1}} -> {'model.lmbda': 1}; a dotted key's value is kept whole."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        flat[dotted] = value
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
    return flat


def _base_values(path: Path) -> dict[str, Any]:
    return _flatten(_read_yaml(path, "base config"))


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"{what} {path}: cannot read it ({' '.join(str(err).split())})") from None
    if not isinstance(values, dict):
        raise InputError(f"{what} {path}: expected a mapping")
    return values


def _config_paths(source: Path, entry: Any) -> list[Path]:
    """LightningCLI config files named in a sweep file (one or a list), relative to it;
    each must be a readable mapping."""
    entries = [entry] if isinstance(entry, str) else entry or []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise InputError(f"{source}: expected a config file or a list of them, got {entry!r}")
    paths = [(source.parent / e).resolve() for e in entries]
    for path in paths:
        _read_yaml(path, "config")
    return paths


def parse_sets(entries: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` entries; VALUE is YAML (`3`, `0.5`, `'{lpips: 500}'`, `[1, 2]`)."""
    sets = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key:
            raise UsageError(f"--set {entry}: expected KEY=VALUE, e.g. trainer.max_steps=3")
        try:
            sets[key] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            raise UsageError(f"--set {entry}: VALUE is not valid YAML") from None
    return sets


def _check_keys(source: Path, section: str, keys: Sequence[str]) -> None:
    for key in keys:
        if key in OWNED_KEYS:
            raise UsageError(f"{source}: {section} sets {key}; that is set by {OWNED_KEYS[key]}")
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise UsageError(f"{source}: {section} key {key!r}: expected section.key")


def _check_plain(source: Path, field: str, value: Any) -> None:
    """Refuse a control character anywhere in `value` (mapping keys, list items, strings):
    submitit writes such values into the sbatch script, where a newline would end the
    #SBATCH line and run the rest as shell."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(source, f"{field} key", key)
            _check_plain(source, f"{field}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(source, f"{field}[{i}]", item)
    elif isinstance(value, str) and CONTROL.search(value):
        raise InputError(
            f"{source}: {field} {value!r} holds a control character (newline, tab, ...); "
            "remove it: it would be written into the sbatch script"
        )


def _section(values: Mapping[str, Any], source: Path, key: str) -> dict[str, Any]:
    section = values.get(key) or {}
    if not isinstance(section, dict):
        raise InputError(f"{source}: '{key}' must be a mapping")
    return dict(section)


def load_sweep(path: str | Path, out: str | None = None, sets: Sequence[str] = ()) -> Sweep:
    """Read and check a sweep file; `out` and `sets` are the command line's --out and --set."""
    source = Path(path)
    values = _read_yaml(source, "sweep file")
    unknown = sorted(set(values) - set(SWEEP_KEYS))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {unknown}; known: {list(SWEEP_KEYS)}")
    base_paths = _config_paths(source, values.get("base"))
    if not base_paths:
        raise InputError(f"{source}: 'base' must list LightningCLI configs (relative to the file)")
    grid = _section(values, source, "grid")
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise InputError(f"{source}: grid key {key} must list one or more values")
    if GRID_CONFIG in grid:  # each value: a config file, or a list of them
        grid[GRID_CONFIG] = [_config_paths(source, v) for v in grid[GRID_CONFIG]]
    fixed, overrides = _section(values, source, "fixed"), parse_sets(sets)
    _check_keys(source, "grid", list(grid))
    _check_keys(source, "fixed", list(fixed))
    _check_keys(source, "--set", list(overrides))
    launcher = _section(values, source, "launcher")
    if set(launcher) - set(LAUNCHERS):
        raise InputError(f"{source}: launcher sections are {list(LAUNCHERS)}")
    launcher = {name: _section(launcher, source, name) for name in LAUNCHERS}
    for section, settings in launcher.items():
        _check_plain(source, f"launcher.{section}", settings)
    name = _sweep_name(source, values.get("name"))
    root = _out(source, out, values.get("out"), name)
    evaluation = _eval_section(values.get("eval"), source) if values.get("eval") else None
    return Sweep(source, name, base_paths, grid, fixed, root, launcher, evaluation, overrides)


def _sweep_name(source: Path, name: Any) -> str:
    """The sweep's name (job names, default out folder): a file-name part; the file's stem,
    made one, when the file names none."""
    if name in (None, ""):
        return sanitised(source.stem)
    _check_plain(source, "name", str(name))
    return safe_name(name, f"{source}: name")


def _out(source: Path, flag: str | None, value: Any, name: str) -> Path:
    """The output root: --out, the file's 'out', or runs/sweeps/<name>; no control
    characters (its path is written into the sbatch script's #SBATCH --output line)."""
    if flag:
        _check_plain(source, "--out", flag)
        return Path(flag).absolute()
    if value in (None, ""):
        return (Path("runs") / "sweeps" / name).absolute()
    if not isinstance(value, str):
        raise InputError(f"{source}: 'out' must be a folder path, got {value!r}")
    _check_plain(source, "out", value)
    return Path(value).absolute()


def _check_choices(source: Path, section: Mapping[str, Any]) -> None:
    """Tasks and fidelity metrics from the lists `lic eval` offers as choices."""
    from lic.tasks import TASKS
    from lic.tasks.fidelity import FidelityTask

    for key, known in (("tasks", TASKS), ("metrics", FidelityTask.metric_choices)):
        unknown = [v for v in section.get(key) or () if v not in known]
        if unknown:
            raise UsageError(f"{source}: eval.{key} {unknown} unknown; known: {sorted(known)}")


def missing_eval_data(sweep: Sweep) -> list[str]:
    """The eval section's data folders that do not exist here (checked before training)."""
    roots = (sweep.eval or {}).get("data_roots", {})
    return [f"{task}={root}" for task, root in roots.items() if not Path(root).exists()]


def _eval_section(section: Any, source: Path) -> dict[str, Any]:
    """EvalConfig fields (no checkpoints, no out: the sweep gives them) plus `slurm`; data
    roots relative to the sweep file. Checked now, so a typo stops the sweep before training."""
    from lic.evaluation.config import EvalConfig

    if not isinstance(section, dict):
        raise InputError(f"{source}: 'eval' must be a mapping of lic eval options")
    section = dict(section)
    for owned in ("checkpoints", "out"):
        if owned in section:
            raise UsageError(f"{source}: eval.{owned} is set by the sweep")
    roots = section.get("data_roots") or {}
    if not isinstance(roots, dict):
        raise InputError(f"{source}: eval.data_roots maps each task to its folder")
    section["data_roots"] = {
        task: str(root if Path(root).is_absolute() else (source.parent / root).resolve())
        for task, root in roots.items()
    }
    section.setdefault("progress", False)  # logs, not terminals
    if not isinstance(section.get("slurm") or {}, dict):
        raise InputError(f"{source}: eval.slurm must be a mapping of SLURM settings")
    _check_plain(source, "eval.slurm", section.get("slurm") or {})
    _check_choices(source, section)
    if section.get("baselines"):  # lic eval's syntax: NAME or NAME=Q1,Q2,... (checked here)
        from lic.evaluation.cli import parse_baselines

        names, grids = parse_baselines(list(section["baselines"]))
        section["baselines"], section["qualities"] = (
            names,
            {**grids, **section.get("qualities", {})},
        )
    options = {k: v for k, v in section.items() if k != "slurm"}
    try:
        EvalConfig.from_mapping({**options, "out": "check"}, f"{source}: eval")
    except TypeError as err:
        raise InputError(f"{source}: eval: {err}") from None
    return section
