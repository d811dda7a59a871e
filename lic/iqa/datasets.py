"""Readers for quality-assessment datasets in their official layouts.

Scored sets give (reference, distorted, score) items; pair sets give (reference, A, B, p(A))
with p(A) the share of judges (people or models) preferring A.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lic.errors import DatasetLayoutError


@dataclass
class ScoredSet:
    name: str
    items: list[tuple[Path, Path, float]]
    higher_better: bool  # MOS: True; DMOS: False


@dataclass
class PairSet:
    name: str
    pairs: list[tuple[Path, Path, Path, float]] = field(default_factory=list)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetLayoutError(f"{path}: missing ({what})")
    return path


def _index(folder: Path) -> dict[str, Path]:
    """Files of a folder by lower-case name (the sets mix I01.BMP and i01_01_1.bmp)."""
    _require(folder, "image folder")
    return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}


def _lookup(index: dict[str, Path], name: str, folder: Path, source: Path) -> Path:
    try:
        return index[name.lower()]
    except KeyError:
        raise DatasetLayoutError(f"{source}: names {name}, which is not in {folder}") from None


def _rows(path: Path, columns: Iterable[str]) -> list[dict[str, str]]:
    _require(path, "score file")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(columns) - set(rows[0] if rows else {})
    if not rows or missing:
        raise DatasetLayoutError(
            f"{path}: expected columns {sorted(columns)}, missing {sorted(missing) or 'all rows'}"
        )
    return rows


def _number(text: str, source: Path, line: object) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetLayoutError(f"{source}:{line}: '{text}' is not a number") from None


def read_tid2013(root: Path) -> ScoredSet:
    """`mos_with_names.txt` ('score name' lines), `reference_images/`, `distorted_images/`."""
    source = _require(root / "mos_with_names.txt", "TID2013 scores")
    refs, dists = _index(root / "reference_images"), _index(root / "distorted_images")
    items = []
    for n, line in enumerate(source.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetLayoutError(f"{source}:{n}: expected 'score name', got '{line}'")
        score, name = _number(parts[0], source, n), parts[1]
        ref = _lookup(refs, f"{name.split('_')[0]}.bmp", root / "reference_images", source)
        items.append((ref, _lookup(dists, name, root / "distorted_images", source), score))
    return ScoredSet("tid2013", items, higher_better=True)


def read_kadid10k(root: Path) -> ScoredSet:
    """`dmos.csv` (dist_img, ref_img, dmos: higher is better despite the name), `images/`."""
    source = root / "dmos.csv"
    images = _index(root / "images")
    items = [
        (
            _lookup(images, r["ref_img"], root / "images", source),
            _lookup(images, r["dist_img"], root / "images", source),
            _number(r["dmos"], source, r["dist_img"]),
        )
        for r in _rows(source, ("dist_img", "ref_img", "dmos"))
    ]
    return ScoredSet("kadid10k", items, higher_better=True)


CSIQ_FOLDERS = {1: "awgn", 2: "jpeg", 3: "jpeg2000", 4: "fnoise", 5: "blur", 6: "contrast"}


def read_csiq(root: Path) -> ScoredSet:
    """`csiq.DMOS.xlsx` (sheet all_by_image), `src_imgs/<image>.png`,
    `dst_imgs/<type>/<image>.<type>.<level>.png`."""
    import pandas as pd

    source = _require(root / "csiq.DMOS.xlsx", "CSIQ scores")
    try:
        sheet = pd.read_excel(source, sheet_name="all_by_image")
    except (ValueError, KeyError) as err:
        raise DatasetLayoutError(f"{source}: no readable sheet 'all_by_image' ({err})") from None
    missing = {"image", "dst_idx", "dst_lev", "dmos"} - set(sheet.columns)
    if missing:
        raise DatasetLayoutError(f"{source}: sheet all_by_image lacks columns {sorted(missing)}")
    refs = _index(root / "src_imgs")
    items = []
    for row in sheet.itertuples():
        image, folder = str(row.image), CSIQ_FOLDERS.get(int(row.dst_idx))
        if folder is None:
            raise DatasetLayoutError(f"{source}: unknown dst_idx {row.dst_idx}")
        dists = _index(root / "dst_imgs" / folder)
        items.append(
            (
                _lookup(refs, f"{image}.png", root / "src_imgs", source),
                _lookup(
                    dists,
                    f"{image}.{folder}.{int(row.dst_lev)}.png",
                    root / "dst_imgs" / folder,
                    source,
                ),
                float(row.dmos),
            )
        )
    return ScoredSet("csiq", items, higher_better=False)


LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


def read_live(root: Path) -> ScoredSet:
    """LIVE release 2: `dmos.mat` (dmos, orgs), `refnames_all.mat`, `refimgs/`, and
    `jp2k/ jpeg/ wn/ gblur/ fastfading/` with img<N>.bmp in that order; the reference
    copies (orgs == 1) are left out, as is customary."""
    from scipy.io import loadmat

    dmos_file = _require(root / "dmos.mat", "LIVE scores")
    names_file = _require(root / "refnames_all.mat", "LIVE reference names")
    try:
        mat, names = loadmat(dmos_file), loadmat(names_file)["refnames_all"].ravel()
        dmos, orgs = mat["dmos"].ravel(), mat["orgs"].ravel()
    except (KeyError, ValueError) as err:
        raise DatasetLayoutError(
            f"{dmos_file} / {names_file}: unexpected content ({err})"
        ) from None
    total = sum(n for _, n in LIVE_FOLDERS)
    if not len(dmos) == len(orgs) == len(names) == total:
        raise DatasetLayoutError(f"{dmos_file}: expected {total} entries, got {len(dmos)}")
    refs, items, k = _index(root / "refimgs"), [], 0
    for folder, count in LIVE_FOLDERS:
        dists = _index(root / folder)
        for i in range(1, count + 1):
            if not orgs[k]:
                ref_name = str(names[k].ravel()[0] if hasattr(names[k], "ravel") else names[k])
                items.append(
                    (
                        _lookup(refs, ref_name, root / "refimgs", names_file),
                        _lookup(dists, f"img{i}.bmp", root / folder, dmos_file),
                        float(dmos[k]),
                    )
                )
            k += 1
    return ScoredSet("live", items, higher_better=False)


def read_pipal(root: Path) -> ScoredSet:
    """PIPAL training set: `Train_Label/*.txt` ('A0001_00_00.bmp,1431.4' lines),
    `Train_Ref/A0001.bmp`, `Train_Dis/`."""
    labels = _require(root / "Train_Label", "PIPAL labels")
    refs, dists = _index(root / "Train_Ref"), _index(root / "Train_Dis")
    items = []
    for source in sorted(labels.glob("*.txt")):
        for n, line in enumerate(source.read_text().splitlines(), 1):
            if not line.strip():
                continue
            name, sep, score = line.partition(",")
            if not sep:
                raise DatasetLayoutError(f"{source}:{n}: expected 'name,score', got '{line}'")
            ref = _lookup(refs, f"{name.split('_')[0]}.bmp", root / "Train_Ref", source)
            items.append(
                (
                    ref,
                    _lookup(dists, name.strip(), root / "Train_Dis", source),
                    _number(score, source, n),
                )
            )
    if not items:
        raise DatasetLayoutError(f"{labels}: no label lines")
    return ScoredSet("pipal", items, higher_better=True)


def _csv_file(root: Path, default: str) -> Path:
    return root / default if root.is_dir() else root


def _existing(path: str, base: Path, source: Path) -> Path:
    resolved = Path(path) if Path(path).is_absolute() else base / path
    if not resolved.is_file():
        raise DatasetLayoutError(f"{source}: names {path}, which does not exist")
    return resolved


def read_score_csv(root: Path) -> ScoredSet:
    """Generic `ref,dist,score` CSV (paths relative to the CSV's folder); a `dmos` column
    instead of `score` means lower is better."""
    source = _csv_file(root, "scores.csv")
    with _require(source, "ref,dist,score CSV").open(newline="") as f:
        header = next(csv.reader(f), [])
    column = "dmos" if "dmos" in header and "score" not in header else "score"
    items = [
        (
            _existing(r["ref"], source.parent, source),
            _existing(r["dist"], source.parent, source),
            _number(r[column], source, r["dist"]),
        )
        for r in _rows(source, ("ref", "dist", column))
    ]
    return ScoredSet(source.stem, items, higher_better=column == "score")


def read_pair_csv(root: Path) -> PairSet:
    """`ref,A,B,p` CSV, p = share of judges preferring A (paths relative to the CSV)."""
    source = _csv_file(root, "pairs.csv")
    pairs = []
    for r in _rows(source, ("ref", "A", "B", "p")):
        p = _number(r["p"], source, r["A"])
        if not 0 <= p <= 1:
            raise DatasetLayoutError(f"{source}: p={p} outside [0, 1]")
        pairs.append(
            (
                _existing(r["ref"], source.parent, source),
                _existing(r["A"], source.parent, source),
                _existing(r["B"], source.parent, source),
                p,
            )
        )
    return PairSet(source.stem, pairs)


READERS: dict[str, Callable[[Path], ScoredSet | PairSet]] = {
    "tid2013": read_tid2013,
    "kadid10k": read_kadid10k,
    "csiq": read_csiq,
    "live": read_live,
    "pipal": read_pipal,
    "csv": read_score_csv,
    "pairs": read_pair_csv,
    "pcmp": read_pair_csv,  # PCMP's pairs.csv is a pair CSV (plus provenance columns)
}


def read_dataset(name: str, root: str | Path) -> ScoredSet | PairSet:
    if name not in READERS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(READERS)}")
    root = Path(root)
    if not root.exists():
        raise DatasetLayoutError(f"{root}: no such file or directory")
    return READERS[name](root)
