"""Rate-quality curves from anywhere, for `lic bd` and `lic curves`: published, files, runs.

A curve is named by a spec:

- `published:NAME`: a curve of the catalogue of published Kodak curves
  (lic/data/published/kodak.json: points, source repository and commit, licence);
- `FILE.json`: CompressAI's results format `{"name": ..., "results": {"bpp": [...],
  "psnr-rgb": [...], "ms-ssim-rgb": [...]}}` or a flat `{"bpp": [...], "psnr": [...]}`;
- `FILE.csv`: a `bpp` column and one column per metric;
- `RESULTS.csv:CURVE`: one curve of a `lic eval` results.csv, named as lic's reports label it
  (`JPEG`, `bmshj2018-hyperprior / mse`, `mbt2018-mean (zoo, mse)`) or as `codec/objective`.

Metric names are matched without case, with '-' read as '_' and a trailing '_rgb' dropped
(`psnr-rgb` is `psnr`). `ms_ssim` is linear; `ms_ssim_db` is read as such or derived as
-10 log10(1 - ms_ssim), capped at 100 dB as lic's fidelity task does. An `ms_ssim` column whose
values all exceed 1 is in dB already and is read as such (the source says so).

Loads no torch: the labels of classical codecs are repeated here (a test keeps them equal to
lic.codecs.classical, which imports torch).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from lic.errors import InputError, UsageError
from lic.evaluation.bd import MIN_OVERLAP, bd_metric, bd_overlap, bd_rate
from lic.metrics import metric_info

PUBLISHED = "published:"
CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "published" / "kodak.json"
CATALOGUE_FORMAT = 1
ZOO_PREFIX = "compressai:"  # lic.evaluation.coders.ZOO_PREFIX (that module loads torch)
CLASSICAL_LABELS = {
    "jpeg": "JPEG",
    "webp": "WebP",
    "jpeg2000": "JPEG 2000",
    "avif": "AVIF",
    "heic": "HEIC (x265)",
    "jxl": "JPEG XL",
}
"""lic.codecs.classical.CLASSICAL_CODECS[name].label, without its torch import."""
DB_CAP = 100.0  # lic.tasks.fidelity.DB_CAP: ms_ssim_db stays finite for lossless points
RESULTS_COLUMNS = {"codec", "objective", "task", "metric", "bpp", "value"}
ALIASES = {"msssim": "ms_ssim", "ms_ssim_db_rgb": "ms_ssim_db"}

Table = dict[str, tuple[list, list]]
"""metric name -> (bpp values, metric values) of one curve, as read (unchecked)."""


@dataclasses.dataclass(frozen=True)
class Curve:
    """One rate-quality curve, points sorted by rate."""

    name: str  # the spec it was loaded from: what `lic bd` prints and writes
    bpp: np.ndarray
    values: np.ndarray
    metric: str
    source: str  # where the points come from, in words
    record: dict | None = dataclasses.field(default=None, compare=False)  # a published entry
    caveat: str = ""  # how its rate differs from the field's count ('' when it does not)


def metric_name(name: str) -> str:
    """The canonical name of a metric column or flag: 'MS-SSIM-RGB' -> 'ms_ssim'."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_").removesuffix("_rgb")
    return ALIASES.get(key, key)


def load_curve(spec: str, metric: str, task: str | None = None) -> Curve:
    """The curve `spec` names (see the module doc), with its `metric` values; `task` picks
    among the tasks of a results.csv. InputError/UsageError with one line otherwise."""
    metric = metric_name(metric)
    if spec.startswith(PUBLISHED):
        return _published(spec, metric)
    path, curve = _split_spec(spec)
    if curve is not None:
        return _from_results(spec, path, curve, metric, task)
    if path.suffix.lower() == ".json":
        name, table = _json_table(path)
        return _make_curve(spec, _select(table, metric, str(path)), metric, f"{name} ({path})")
    if path.suffix.lower() == ".csv":
        fields, rows = _read_csv(path)
        if set(fields) >= RESULTS_COLUMNS:
            labels = ", ".join(f"{path}:{label}" for label in _results_curves(rows, path))
            raise UsageError(f"{path} is a lic results.csv; name one of its curves: {labels}")
        table = _csv_table(path, fields, rows)
        return _make_curve(spec, _select(table, metric, str(path)), metric, str(path))
    raise UsageError(
        f"'{spec}': expected published:NAME, a .json or .csv file, or RESULTS.csv:CURVE"
    )


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """(file, curve) of 'FILE' or 'FILE:CURVE': the shortest existing file before a ':'
    (curve names such as 'compressai:mbt2018-mean/mse' hold colons of their own)."""
    if Path(spec).is_file():
        return Path(spec), None
    for i, char in enumerate(spec):
        if char == ":" and Path(spec[:i]).is_file():
            return Path(spec[:i]), spec[i + 1 :]
    raise InputError(f"'{spec}': no such file (nor FILE:CURVE of an existing file)")


def _numbers(values: object, where: str, name: str) -> list[float]:
    if not isinstance(values, list):
        raise InputError(f"{where}: '{name}' is not a list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise InputError(f"{where}: '{name}' holds {v!r}, not a number")
        try:
            out.append(float(v))
        except ValueError:
            raise InputError(f"{where}: '{name}' holds {v!r}, not a number") from None
    return out


def _select(table: Table, metric: str, where: str) -> tuple[list[float], list[float], str]:
    """(bpp, values, note) of `metric`, deriving ms_ssim_db from ms_ssim (see module doc)."""
    base = "ms_ssim" if metric in ("ms_ssim", "ms_ssim_db") else metric
    if metric not in table and base not in table:
        have = ", ".join(sorted(table)) or "none"
        raise InputError(f"{where}: no {metric} values (metrics: {have})")
    key = metric if metric in table and metric != "ms_ssim" else base
    bpp, raw = table[key]
    bpp, values = _numbers(bpp, where, "bpp"), _numbers(raw, where, key)
    if key != "ms_ssim":
        return bpp, values, ""
    in_db = bool(values) and all(v > 1 for v in values)
    if not in_db and any(v > 1 for v in values):
        raise InputError(f"{where}: ms_ssim mixes values above 1 (dB) and below (linear)")
    if metric == "ms_ssim":
        linear = [1 - 10 ** (-v / 10) for v in values] if in_db else values
        return bpp, linear, "ms_ssim given in dB" if in_db else ""
    if in_db:
        return bpp, values, "ms_ssim given in dB"
    floor = 10 ** (-DB_CAP / 10)
    return bpp, [-10 * math.log10(max(1 - v, floor)) for v in values], "dB from ms_ssim"


def _make_curve(
    name: str,
    selected: tuple[list[float], list[float], str],
    metric: str,
    source: str,
    record: dict | None = None,
) -> Curve:
    """A checked curve: equal lengths, finite numbers, positive rates, 2 points or more."""
    bpp, values, note = selected
    where = source
    if len(bpp) != len(values):
        raise InputError(f"{where}: {len(bpp)} bpp values but {len(values)} {metric} values")
    rate, quality = np.asarray(bpp, dtype=float), np.asarray(values, dtype=float)
    if not (np.isfinite(rate).all() and np.isfinite(quality).all()):
        raise InputError(f"{where}: bpp and {metric} must be finite numbers")
    if (rate <= 0).any():
        raise InputError(f"{where}: bpp must be positive (got {rate.min():g})")
    if len(rate) < 2:
        raise InputError(f"{where}: {len(rate)} point(s) with {metric}; BD needs 2 or more")
    order = np.argsort(rate, kind="stable")
    text = f"{source}, {note}" if note else source
    return Curve(name, rate[order], quality[order], metric, text, record)


# ---- files -------------------------------------------------------------------------------
def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None


def _json_table(path: Path) -> tuple[str, Table]:
    """(name, table) of a CompressAI results file or a flat {bpp, metric...} file."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'results' or 'bpp'")
    columns = data.get("results", data)
    if not isinstance(columns, dict) or "bpp" not in {metric_name(k) for k in columns}:
        raise InputError(
            f'{path}: no bpp list; expected CompressAI\'s {{"name", "results": {{"bpp", '
            f'"psnr-rgb", ...}}}} or {{"bpp": [...], "psnr": [...]}}'
        )
    name = data.get("name") if isinstance(data.get("name"), str) else path.stem
    return name, _table(columns, str(path))


def _table(columns: dict, where: str) -> Table:
    """Table of a column dict (one bpp list, list-valued metric columns; others ignored)."""
    named: dict[str, tuple[str, object]] = {}
    for key, values in columns.items():
        canonical = metric_name(str(key))
        if canonical in named and named[canonical][1] != values:
            raise InputError(
                f"{where}: '{named[canonical][0]}' and '{key}' both give {canonical}, differently"
            )
        named.setdefault(canonical, (str(key), values))
    if "bpp" not in named:
        raise InputError(f"{where}: no bpp list")
    bpp = named.pop("bpp")[1]
    return {k: (bpp, v) for k, (_, v) in named.items() if isinstance(v, list)}


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            # cells stripped, a short row's missing cells empty, a long row's extras dropped
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
            fields = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from None
    if not fields:
        raise InputError(f"{path}: empty CSV (no header)")
    return fields, rows


def _csv_table(path: Path, fields: list[str], rows: list[dict]) -> Table:
    """Table of a CSV with a bpp column; a row with an empty bpp or value is left out."""
    names: dict[str, str] = {}
    for column in fields:
        if names.setdefault(metric_name(column), column) != column:
            same = f"'{names[metric_name(column)]}' and '{column}'"
            raise InputError(f"{path}: columns {same} both give {metric_name(column)}")
    if "bpp" not in names:
        raise InputError(f"{path}: no 'bpp' column (columns: {', '.join(fields)})")
    table: Table = {}
    for canonical, column in names.items():
        if canonical == "bpp":
            continue
        kept = [(r[names["bpp"]], r[column]) for r in rows if r[names["bpp"]] and r[column]]
        table[canonical] = ([b for b, _ in kept], [v for _, v in kept])
    return table


# ---- lic results.csv ---------------------------------------------------------------------
def curve_label(codec: str, objective: str) -> str:
    """The label lic's reports give a curve (lic.evaluation.report.curve_label): 'JPEG XL',
    'mbt2018-mean (zoo, mse)', 'mlicpp / mse'."""
    if codec in CLASSICAL_LABELS:
        return CLASSICAL_LABELS[codec]
    if codec.startswith(ZOO_PREFIX):
        return f"{codec.removeprefix(ZOO_PREFIX)} (zoo, {objective})"
    return f"{codec} / {objective}"


def _results_curves(rows: list[dict], path: Path) -> dict[str, tuple[str, str]]:
    """label -> (codec, objective) of the coded curves of a results.csv, in row order."""
    out: dict[str, tuple[str, str]] = {}
    for row in rows:
        if row["codec"] != "uncompressed" and row["bpp"]:
            curve = (row["codec"], row["objective"])
            out.setdefault(curve_label(*curve), curve)
    if not out:
        raise InputError(f"{path}: no coded curves (every row lacks a bpp)")
    return out


def _match_curve(name: str, curves: dict[str, tuple[str, str]], path: Path) -> tuple[str, str]:
    """The curve a user names: its label, codec/objective, or a codec with one curve."""
    if name in curves:
        return curves[name]
    found = [c for c in curves.values() if f"{c[0]}/{c[1]}" == name]
    found = found or [c for c in curves.values() if c[0] == name]
    if len(found) == 1:
        return found[0]
    if found:
        choices = ", ".join(f"{c}/{o}" for c, o in found)
        raise UsageError(f"{path}: '{name}' has several curves; name one: {choices}")
    raise UsageError(f"{path} has no curve '{name}'; its curves: {', '.join(curves)}")


def _from_results(spec: str, path: Path, name: str, metric: str, task: str | None) -> Curve:
    fields, rows = _read_csv(path)
    missing = RESULTS_COLUMNS - set(fields)
    if missing:
        raise InputError(f"{path}: not a lic results.csv (no {', '.join(sorted(missing))} column)")
    codec, objective = _match_curve(name, _results_curves(rows, path), path)
    label = curve_label(codec, objective)
    tables: dict[str, Table] = {}
    for row in rows:
        if (row["codec"], row["objective"]) == (codec, objective) and row["bpp"]:
            by_metric = tables.setdefault(row["task"], {})
            bpp, values = by_metric.setdefault(metric_name(row["metric"]), ([], []))
            bpp.append(row["bpp"])
            values.append(row["value"])
    usable = sorted(t for t, table in tables.items() if has_metric(table, metric))
    if task is not None and task not in tables:
        raise UsageError(f"{path}: '{label}' has no task '{task}' (tasks: {', '.join(tables)})")
    if task is None and len(usable) > 1:
        raise UsageError(
            f"{path}: '{label}' has {metric} for tasks {', '.join(usable)}; pick one with --task"
        )
    chosen = task or (usable[0] if usable else next(iter(tables)))
    where = f"{path}: {label} (task {chosen})"
    curve = _make_curve(spec, _select(tables[chosen], metric, where), metric, where)
    mine = [r for r in rows if (r["codec"], r["objective"]) == (codec, objective)]
    return dataclasses.replace(curve, caveat=rate_caveat(fields, mine))


FIELD_RATE = {"rate_source": ("bitstream",), "padding": ("zeros", ""), "rate_mean": ("images",)}
"""The field's count (CompressAI eval_model: coded payloads, zero padding, mean over images)
as results.csv's columns record it ('' padding: a classical codec's file)."""
RATE_DIFFERENCES = {
    "estimate": "its rates are likelihood estimates, not coded bitstreams",
    "replicate": "it pads by repeating edges, not with eval_model's zeros",
    "pixels": "its bpp is total bits over total pixels, not the mean over images",
}


def rate_caveat(fields: list[str], rows: list[dict]) -> str:
    """How a lic curve's rate differs from the field's count, in words ('' when it does not);
    a results.csv without a column predates it, so its rate is not the field's either."""
    differences = []
    for key, allowed in FIELD_RATE.items():
        if key not in fields:
            differences.append(f"no {key} column (a results.csv of an earlier lic version)")
            continue
        for value in sorted({r[key] or "" for r in rows} - set(allowed)):
            differences.append(RATE_DIFFERENCES.get(value, f"its {key} is {value!r}"))
    return "; ".join(differences)


def has_metric(metrics, metric: str) -> bool:
    """Whether a curve with these metric names has `metric` (ms_ssim_db: also derived)."""
    return metric in metrics or (metric == "ms_ssim_db" and "ms_ssim" in metrics)


# ---- the catalogue of published curves ---------------------------------------------------
def load_catalogue(path: str | Path | None = None) -> dict:
    """The catalogue (default: the packaged Kodak one), checked for its format and names."""
    path = Path(path) if path is not None else CATALOGUE
    if not path.is_file():
        raise InputError(f"{path}: catalogue of published curves not found")
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != CATALOGUE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise InputError(f"{path}: catalogue format {found!r}; lic reads {CATALOGUE_FORMAT}")
    curves = data.get("curves")
    if not isinstance(curves, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str)
        and isinstance(c.get("points"), dict)
        for c in curves
    ):  # fmt: skip
        raise InputError(f"{path}: 'curves' must be a list of records with a name and points")
    return data


def published_record(name: str, catalogue: dict) -> dict:
    """The catalogue entry `name` (UsageError listing the known names)."""
    for record in catalogue["curves"]:
        if record["name"] == name:
            return record
    known = ", ".join(PUBLISHED + c["name"] for c in catalogue["curves"])
    raise UsageError(f"no published curve '{name}'; known: {known}")


def source_text(record: dict) -> str:
    """'owner/repo@abc1234' of a published curve (its repository at the commit read)."""
    source = record.get("source") or {}
    repo = str(source.get("repository", "?")).removeprefix("https://github.com/")
    commit = str(source.get("commit", ""))[:7]
    return f"{repo}@{commit}" if commit else repo


def _published(spec: str, metric: str) -> Curve:
    catalogue = load_catalogue()
    record = published_record(spec.removeprefix(PUBLISHED), catalogue)
    where = f"{spec} ({CATALOGUE.name})"
    # exact dB values a source gave (source_points.ms_ssim_db) beside the linear points
    extra = record.get("source_points") if isinstance(record.get("source_points"), dict) else {}
    table = _table({**extra, **record["points"]}, where)
    source = f"{record.get('label', record['name'])}, {source_text(record)}"
    return _make_curve(spec, _select(table, metric, where), metric, source, record)


def catalogue_metrics(record: dict) -> list[str]:
    """The metrics a published curve has points for."""
    return [metric_name(k) for k in record["points"] if metric_name(k) != "bpp"]


# ---- BD of one curve against another -----------------------------------------------------
BD_COLUMNS = [
    "curve",
    "anchor",
    "metric",
    "method",
    "bd_rate",
    "bd_metric",
    "overlap_low",
    "overlap_high",
    "overlap_fraction",
    "n_points_test",
    "n_points_anchor",
]
"""The columns of `lic bd --out`; the overlap is BD-rate's, on the quality axis."""


def compare(test: Curve, anchor: Curve, method: str = "pchip") -> tuple[dict, list[str]]:
    """A row of BD_COLUMNS (NaN for a value that cannot be had) and the notes saying why a
    value is missing or rests on a narrow overlap."""
    info = metric_info(test.metric)
    points = (anchor.bpp, anchor.values, test.bpp, test.values)
    quality, rate = bd_overlap(*points, axis="quality"), bd_overlap(*points, axis="rate")
    notes, narrow, values = [], [], {}
    for key, label, compute, overlap in (
        ("bd_rate", "BD-rate", bd_rate, quality),
        ("bd_metric", f"BD-{info.display}", bd_metric, rate),
    ):
        kwargs = {"higher_better": not info.lower_better} if key == "bd_rate" else {}
        try:
            values[key] = compute(*points, method=method, **kwargs)
        except ValueError as err:
            values[key] = math.nan
            notes.append(f"no {label}: {err}")
            continue
        axis = info.display if key == "bd_rate" else "rate"
        if overlap.fraction == 0:
            notes.append(f"no {label}: the curves do not overlap in {axis}")
        elif overlap.fraction < MIN_OVERLAP:
            unit = (f" {info.unit}" if info.unit else "") if key == "bd_rate" else " bpp"
            joint = f"{info.display} range" if key == "bd_rate" else "log-rate range"
            narrow.append(
                f"{label} over {overlap.low:.4g} to {overlap.high:.4g}{unit}, "
                f"{overlap.fraction:.0%} of the joint {joint}"
            )
    if test.caveat:  # the rate axis itself differs from the field's
        notes.append(test.caveat)
    if anchor.caveat:
        notes.append(f"the anchor {anchor.name}: {anchor.caveat}")
    if narrow:
        notes.append(
            f"narrow overlap: {'; '.join(narrow)} (< {MIN_OVERLAP:.0%}, where the bjontegaard "
            "package warns); BD averages only there, the rest of the curves is not compared"
        )
    row = {
        "curve": test.name,
        "anchor": anchor.name,
        "metric": test.metric,
        "method": method,
        **values,
        "overlap_low": quality.low,
        "overlap_high": quality.high,
        "overlap_fraction": quality.fraction,
        "n_points_test": len(test.bpp),
        "n_points_anchor": len(anchor.bpp),
    }
    return row, notes
