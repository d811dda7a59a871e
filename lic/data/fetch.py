"""`lic data fetch`: download a data set with pooch and verify every image by its pixels.

The hash covers the decoded RGB pixels and the size, not the file bytes, so a mirror that
re-encodes the PNGs still verifies and a changed pixel does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from lic.data.catalog import SOURCES, DataSource
from lic.data.images import open_image
from lic.errors import InputError, LicError, UsageError


def pixel_sha256(path: str | Path) -> str:
    """sha256 of b'<width>x<height>' followed by the 8-bit RGB pixels, row-major."""
    with open_image(path) as image:  # a downloaded file is untrusted: pixel-limited open
        pixels = np.asarray(image.convert("RGB"))
    size = f"{pixels.shape[1]}x{pixels.shape[0]}".encode()
    return hashlib.sha256(size + pixels.tobytes()).hexdigest()


def default_folder(name: str) -> Path:
    """Where a fetched set goes without --to: $LIC_DATA or ~/.cache/lic/data, then the name."""
    root = os.environ.get("LIC_DATA") or Path.home() / ".cache" / "lic" / "data"
    return Path(root) / name


def verify(source: DataSource, folder: Path) -> list[str]:
    """Names of the set's files that are missing or whose pixels differ."""
    bad = []
    for name, digest in source.files.items():
        path = folder / name
        try:
            if pixel_sha256(path) != digest:
                bad.append(name)
        except (OSError, ValueError):
            bad.append(name)
    return bad


def require_exact_set(name: str, folder: str | Path, why: str) -> None:
    """UsageError unless `folder`'s images are exactly the catalog set `name` (by their
    pixels: file names and PNG encodings may differ): `why` says who needs it."""
    from lic.data.images import list_images

    source = SOURCES[name]
    paths = list_images(folder)
    wanted = set(source.files.values())
    found = set()
    for path in paths:
        try:
            found.add(pixel_sha256(path))
        except (OSError, ValueError):
            continue
    if len(paths) != len(wanted) or found != wanted:
        label = name.capitalize()
        raise UsageError(
            f"{why} is measured on the {len(wanted)} {label} images; {folder} holds "
            f"{len(paths)} image(s), {len(found & wanted)} of them {label}'s "
            f"(`lic data fetch {name}` downloads the set)"
        )


def fetch(name: str, folder: Path | None = None) -> Path:
    """Fetch the catalog's set `name` into `folder` (default: `default_folder(name)`)."""
    source = SOURCES.get(name)
    if source is None or not source.files:
        fetchable = [s.name for s in SOURCES.values() if s.files]
        raise UsageError(f"lic fetches only {', '.join(fetchable)}; '{name}': see `lic data`")
    return fetch_source(source, Path(folder or default_folder(name)))


def fetch_source(source: DataSource, folder: Path) -> Path:
    """Download what is missing or wrong, verify everything, return the folder."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # its per-file hash hints are not for our users
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    for file in verify(source, folder):
        url = source.base_url + file
        (folder / file).unlink(missing_ok=True)
        try:
            pooch.retrieve(url, known_hash=None, fname=file, path=folder, progressbar=False)
        except Exception as err:  # requests' connection errors, HTTP errors
            for path in created:  # an offline fetch leaves no empty folder behind
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise LicError(
                f"cannot download {url} ({type(err).__name__}); download the {source.name} "
                f"images from {source.download} into {folder} and run this again to verify them"
            ) from err
    bad = verify(source, folder)
    if bad:
        raise InputError(
            f"{folder}: {len(bad)} file(s) differ from the {source.name} release: "
            f"{', '.join(bad[:5])}; delete them and fetch again"
        )
    return folder
