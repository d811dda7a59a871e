"""Build PCMP: PSNR-matched distortion pairs labelled by the voters' consistency.

Each reference is one unit of work: its distorted images go to `out/images/<key>/` and its
pairs to `out/refs/<key>.json`, written atomically once the reference is done. A killed
build resumes at the first reference without a JSON; shards (`shard=(i, n)`) take every n-th
reference; `merge` writes `pairs.csv` and `stats.json` from all references' JSON in sorted
order, so the result does not depend on how the work was split or interrupted.
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

from lic.data.images import ImageReadError, list_images, load_image, save_image
from lic.errors import InputError, UsageError
from lic.pcmp.defaults import DEFAULT_FAMILIES, DEFAULT_TARGETS, DEFAULT_VOTERS, FAMILY_NAMES
from lic.pcmp.distortions import Family, create_family, image_seed
from lic.pcmp.distortions import match_psnr as match_family
from lic.pcmp.voters import VoterPanel, consistency, soft_label

log = logging.getLogger(__name__)


def reference_key(root: Path, path: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace(os.sep, "__")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    refs, out = Path(refs), Path(out)
    unknown = [f for f in families if f not in FAMILY_NAMES]
    if unknown:
        raise UsageError(f"unknown families {unknown}; known: {list(FAMILY_NAMES)}")
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
        _write_atomically(record_path, json.dumps(record))
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
    """pairs.csv and stats.json from every reference's record, in sorted order."""
    out = Path(out)
    files = sorted((out / "refs").glob("*.json"))
    if not files:
        raise InputError(f"{out}: nothing to merge (no refs/*.json: run `lic pcmp build` first)")
    records = [json.loads(p.read_text()) for p in files]
    pairs = [row for r in records for row in r["pairs"]]
    skipped = Counter(s["family"] for r in records for s in r["skipped"])
    stats = {
        "references": len(records),
        "pairs": len(pairs),
        "failed_references": [r["ref"] for r in records if r.get("error")],
        "skipped_by_family": dict(sorted(skipped.items())),
    }
    if pairs:
        tmp = out / "pairs.csv.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(pairs[0]))
            writer.writeheader()
            writer.writerows(pairs)
        os.replace(tmp, out / "pairs.csv")
    _write_atomically(out / "stats.json", json.dumps(stats, indent=1))
    return stats
