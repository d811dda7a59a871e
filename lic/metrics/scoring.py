"""Score (reference, distorted) file pairs with a metric; a bad pair is recorded, never fatal."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lic.data.files import atomic_path
from lic.data.images import ImageReadError, list_images, load_image


@dataclass
class PairScore:
    reference: str
    distorted: str
    score: float | None = None
    error: str | None = None


def pair_folders(ref_dir: str | Path, dist_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair images of two folders by file name without suffix (a.png with a.jpg).

    Raises ValueError when a distorted image has no reference or a name is ambiguous.
    """
    refs, dists = _by_stem(ref_dir), _by_stem(dist_dir)
    missing = sorted(set(dists) - set(refs))
    if missing:
        raise ValueError(
            f"{len(missing)} file(s) in {dist_dir} have no reference in {ref_dir}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    if not dists:
        raise ValueError(f"no images in {dist_dir}")
    return [(refs[stem], dists[stem]) for stem in sorted(dists)]


def _by_stem(folder: str | Path) -> dict[str, Path]:
    root, out = Path(folder), {}
    for path in list_images(root):
        key = str(path.relative_to(root).with_suffix(""))
        if key in out:
            raise ValueError(f"ambiguous name '{key}' in {root}: {out[key].name} and {path.name}")
        out[key] = path
    return out


@torch.inference_mode()
def score_pairs(
    metric: nn.Module, pairs: Iterable[tuple[Path, Path]], device: torch.device | str = "cpu"
) -> list[PairScore]:
    """One score per pair; unreadable files and size mismatches become `error` entries."""
    results = []
    for ref_path, dist_path in pairs:
        row = PairScore(str(ref_path), str(dist_path))
        try:
            ref, dist = load_image(ref_path), load_image(dist_path)
            if ref.shape != dist.shape:
                raise ImageReadError(
                    dist_path,
                    f"size {tuple(dist.shape[1:])} differs from the "
                    f"reference's {tuple(ref.shape[1:])}",
                )
            row.score = float(metric(ref[None].to(device), dist[None].to(device))[0])
        except (ImageReadError, ValueError) as err:
            row.error = str(err)
        results.append(row)
    return results


def write_csv(rows: Sequence[PairScore], path: str | Path, metric_name: str) -> None:
    with atomic_path(path) as tmp, tmp.open("x", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reference", "distorted", metric_name, "error"])
        for r in rows:
            writer.writerow(
                [r.reference, r.distorted, "" if r.score is None else r.score, r.error or ""]
            )
