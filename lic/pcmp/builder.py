"""Build PCMP: PSNR-matched distortion pairs labelled by the voters' consistency.

Each reference is one unit of work: its distorted images go to `out/images/<key>/` and its
pairs to `out/refs/<key>.json`, written atomically once the reference is done. A killed
build resumes at the first reference without a JSON; shards (`shard=(i, n)`) take every n-th
reference; `merge` writes `pairs.csv` and `stats.json` from all references' JSON in sorted
order, so the result does not depend on how the work was split or interrupted.

Records may come from other machines (shards) or other people, so `merge` reads each with a
size cap and checks it field by field: a malformed one is refused in one line naming the
file and the field (exit 2; deleting it makes `build` redo that reference), and its image
paths must stay inside the output folder.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lic.data.files import inside, read_json_capped, write_text_atomic
from lic.data.images import ImageReadError, list_images, load_image, save_image
from lic.errors import InputError, UsageError
from lic.pcmp.defaults import DEFAULT_FAMILIES, DEFAULT_TARGETS, DEFAULT_VOTERS, FAMILY_NAMES
from lic.pcmp.distortions import Family, create_family, image_seed
from lic.pcmp.distortions import match_psnr as match_family
from lic.pcmp.voters import VoterPanel, consistency, soft_label

log = logging.getLogger(__name__)

MAX_TARGETS = 32
"""Target PSNRs per build (a real one has 3 to 10); bounds a record's size (RECORD_CAP)."""
MAX_VOTERS = 32
"""Classifiers in the voter panel (a real one has 4); bounds a pair's size (PAIR_BYTES)."""
PAIR_BYTES = 3 * 4096 + 1024 + 2 * MAX_VOTERS * 96
"""A pair in a record at its largest: three paths of up to PATH_MAX (ref, A, B), its PSNRs,
parameters and family names, and two consistency columns (name and float) per voter."""
PAIRS_PER_TARGET = len(FAMILY_NAMES) * (len(FAMILY_NAMES) - 1) // 2
"""One pair per two families matched at a target PSNR."""
RECORD_CAP = 64 * 1024 + PAIRS_PER_TARGET * MAX_TARGETS * PAIR_BYTES
"""refs/<key>.json at its largest, plus slack for the reference's path and its skipped
(family, target) entries: about 12.5 MiB (a real record of 3 targets, 5 families, 4
voters holds about 30 pairs of 600 bytes: 20 KiB)."""
PAIR_FIELDS = ("ref", "A", "B", "target_psnr", "family_a", "family_b", "p")
"""Fields every pair holds (besides parameters, PSNRs and the voters' consistencies)."""


def reference_key(root: Path, path: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace(os.sep, "__")


def build_reference(
    path: Path,
    key: str,
    out: Path,
    families: Sequence[Family],
    targets: Sequence[float],
    panel: VoterPanel,
    mode: str,
    tolerance: float,
) -> dict:
    """Distort, match, vote and pair one reference; returns its JSON record."""
    reference = load_image(path)
    seed = image_seed(key)
    matches, skipped = {}, []
    for target in targets:
        for family in families:
            match = match_family(family, reference, target, seed, tolerance)
            if match is None:
                skipped.append({"family": family.name, "target": target})
            else:
                matches[(target, family.name)] = match
    images = out / "images" / key
    inside(out / "images", key)  # an image's name never leads a write elsewhere
    images.mkdir(parents=True, exist_ok=True)
    files = {}
    for (target, name), match in matches.items():
        files[(target, name)] = save_image(match.image, images / f"{name}_{target:g}dB.png")
    ordered = list(matches)
    probabilities = panel.probabilities([reference] + [matches[k].image for k in ordered])
    scores = {
        k: {
            voter: float(consistency(p[:1], p[i + 1 : i + 2], mode)[0])
            for voter, p in probabilities.items()
        }
        for i, k in enumerate(ordered)
    }
    pairs = []
    for target in targets:
        here = [k for k in ordered if k[0] == target]
        for a, b in itertools.combinations(here, 2):
            ma, mb = matches[a], matches[b]
            pairs.append(
                {
                    "ref": os.path.relpath(path, out),  # relative to pairs.csv, like A/B
                    "A": str(files[a].relative_to(out)),
                    "B": str(files[b].relative_to(out)),
                    "target_psnr": target,
                    "family_a": ma.family,
                    "family_b": mb.family,
                    "param_a": ma.parameter,
                    "param_b": mb.parameter,
                    "psnr_a": round(ma.psnr, 4),
                    "psnr_b": round(mb.psnr, 4),
                    **{f"cons_a_{v}": scores[a][v] for v in panel.names},
                    **{f"cons_b_{v}": scores[b][v] for v in panel.names},
                    "p": soft_label(scores[a], scores[b]),
                }
            )
    return {"ref": str(path), "pairs": pairs, "skipped": skipped}


def build(
    refs: str | Path,
    out: str | Path,
    targets: Sequence[float] = DEFAULT_TARGETS,
    families: Sequence[str] = DEFAULT_FAMILIES,
    voters: Sequence[str] = DEFAULT_VOTERS,
    voter_weights: str = "DEFAULT",
    mode: str = "prob",
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    codec_checkpoints: Sequence[str] = (),
    tolerance: float = 0.25,
    limit: int | None = None,
) -> dict:
    """Process this shard's references not yet done; merge when there is one shard."""
    refs, out = Path(refs), Path(out).absolute()  # absolute: the writers check it as root
    unknown = [f for f in families if f not in FAMILY_NAMES]
    if unknown:
        raise UsageError(f"unknown families {unknown}; known: {list(FAMILY_NAMES)}")
    if len(targets) > MAX_TARGETS or len(voters) > MAX_VOTERS:
        raise UsageError(f"at most {MAX_TARGETS} target PSNRs and {MAX_VOTERS} voters per build")
    paths = list_images(refs)[:limit]  # a missing folder fails here, before any output
    if not paths:
        raise InputError(f"{refs}: no reference images (suffixes .png .jpg .webp ...)")
    (out / "refs").mkdir(parents=True, exist_ok=True)
    chosen = [create_family(f, codec_checkpoints) for f in families]
    index, count = shard
    mine = paths[index::count]
    panel = VoterPanel(voters, voter_weights, device)
    done = failed = 0
    for path in mine:
        key = reference_key(refs, path)
        record_path = out / "refs" / f"{key}.json"
        inside(out / "refs", record_path.name)
        if record_path.is_file():
            continue
        try:
            record = build_reference(path, key, out, chosen, targets, panel, mode, tolerance)
        except ImageReadError as err:
            record, failed = (
                {"ref": str(path), "pairs": [], "skipped": [], "error": str(err)},
                failed + 1,
            )
            log.warning("skipping reference %s", err)
        write_text_atomic(record_path, json.dumps(record), out)
        done += 1
    summary = {
        "shard": f"{index}/{count}",
        "references": len(mine),
        "built_now": done,
        "failed_now": failed,
    }
    if count == 1:
        summary |= merge(out)
    return summary


def merge(out: str | Path) -> dict:
    """pairs.csv and stats.json from every reference's record, in sorted order; records are
    checked one at a time and their rows written as they come (memory: one record)."""
    out = Path(out).absolute()  # absolute: the writers check it as root
    files = sorted((out / "refs").glob("*.json"))
    if not files:
        raise InputError(f"{out}: nothing to merge (no refs/*.json: run `lic pcmp build` first)")
    stats: dict = {"references": len(files), "pairs": 0, "failed_references": []}
    skipped: Counter = Counter()
    tmp = out / f".pairs.csv.{os.getpid()}.tmp"
    try:
        with tmp.open("w", newline="") as f:
            writer = None
            for path in files:
                record = read_record(path, out)
                writer = _write_pairs(f, writer, record["pairs"], path)
                stats["pairs"] += len(record["pairs"])
                skipped.update(s["family"] for s in record["skipped"])
                if record.get("error"):
                    stats["failed_references"].append(record["ref"])
        if stats["pairs"]:
            os.replace(tmp, out / "pairs.csv")
    finally:
        tmp.unlink(missing_ok=True)
    stats["skipped_by_family"] = dict(sorted(skipped.items()))
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=1), out)
    return stats


def _write_pairs(
    f: TextIO, writer: csv.DictWriter | None, pairs: list[dict], path: Path
) -> csv.DictWriter | None:
    """Write `pairs` as CSV rows; the first pair gives the columns, which every later pair
    must have too (records built with other voters cannot share one pairs.csv)."""
    for i, pair in enumerate(pairs):
        if writer is None:
            writer = csv.DictWriter(f, fieldnames=list(pair))
            writer.writeheader()
        if set(pair) != set(writer.fieldnames):
            other = sorted(set(pair) ^ set(writer.fieldnames))
            raise _malformed(path, f"pairs[{i}]", f"differs from earlier records in {other}")
        writer.writerow(pair)
    return writer


def _malformed(path: Path, field: str | None, what: str) -> InputError:
    """The one-line refusal of a record: its file, the field, and how to rebuild it."""
    where = f"field '{field}' " if field else ""
    return InputError(
        f"{path}: {where}{what}; delete the file and run `lic pcmp build` again "
        "to rebuild that reference"
    )


def read_record(path: Path, out: Path) -> dict:
    """One reference's record, read with RECORD_CAP and checked field by field (InputError
    naming the file and the field): what merge writes into pairs.csv and stats.json."""
    try:
        record = read_json_capped(path, RECORD_CAP)
    except InputError as err:
        raise InputError(f"{err}; delete it and run `lic pcmp build` again") from None
    if not isinstance(record, dict):
        raise _malformed(path, None, "is not a PCMP record (a JSON object)")
    for key, kind in (("ref", str), ("pairs", list), ("skipped", list)):
        if key not in record:
            raise _malformed(path, key, "is missing")
        if not isinstance(record[key], kind):
            raise _malformed(path, key, f"is not a {kind.__name__}")
    if not isinstance(record.get("error", ""), str):
        raise _malformed(path, "error", "is not a str")
    for i, entry in enumerate(record["skipped"]):
        if not isinstance(entry, dict) or entry.get("family") not in FAMILY_NAMES:
            raise _malformed(path, f"skipped[{i}].family", "is not a PCMP family")
    for i, pair in enumerate(record["pairs"]):
        _check_pair(pair, f"pairs[{i}]", path, out)
    return record


def _check_pair(pair: object, field: str, path: Path, out: Path) -> None:
    """A pair's fields: plain values, families known, p in [0, 1], A and B inside `out`."""
    if not isinstance(pair, dict):
        raise _malformed(path, field, "is not a JSON object")
    for key in PAIR_FIELDS:
        if key not in pair:
            raise _malformed(path, f"{field}.{key}", "is missing")
    for key, value in pair.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _malformed(path, f"{field}.{key}", f"holds {value!r}, not a number or text")
    for key in ("family_a", "family_b"):
        if pair[key] not in FAMILY_NAMES:
            raise _malformed(path, f"{field}.{key}", f"{pair[key]!r} is not a PCMP family")
    if isinstance(pair["p"], str) or not 0 <= pair["p"] <= 1:
        raise _malformed(path, f"{field}.p", f"{pair['p']!r} is not a share in [0, 1]")
    for key in ("A", "B"):
        try:
            inside(out, pair[key])
        except (InputError, TypeError, ValueError):  # not text; a NUL character
            raise _malformed(
                path, f"{field}.{key}", f"{pair[key]!r} is not a path inside {out}"
            ) from None
