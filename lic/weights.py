"""Getting pretrained weights, and failing fast with instructions when they cannot be had.

Every pretrained model in lic (CLIP towers, LPIPS' AlexNet, task models) goes through here,
so an offline machine gets one clear error in seconds instead of a library's retry loop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from urllib.parse import urlparse

from lic.errors import LicError

_TRUE = {"1", "true", "yes", "on"}
RANDOM_WEIGHTS = "none"
"""The weights name that asks for a randomly initialised (seeded) model: pipeline checks."""


def random_weights(name: str | None) -> bool:
    """True when `name` asks for random weights (`none`, any case)."""
    return name is not None and name.lower() == RANDOM_WEIGHTS


class WeightsUnavailableError(LicError, RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable from here."""


def offline_requested() -> bool:
    """True when the user asked the Hugging Face / torch hubs to stay offline."""
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "LIC_OFFLINE"))


def is_reachable(url: str, timeout: float = 3.0) -> bool:
    """One TCP connect to the URL's host: cheap proof that a download can start at all."""
    if offline_requested():
        return False
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub_file(url: str, what: str, alternative: str = "") -> None:
    """Raise WeightsUnavailableError unless torch.hub has `url` cached or can download it.

    `what` names who needs the file; `alternative` adds another way to supply it.
    """
    require_hub_files([(url, what)], alternative)


def require_hub_files(needs: Sequence[tuple[str, str]], alternative: str = "") -> None:
    """`require_hub_file` for several (url, who needs it) at once: one error lists every
    file that is missing, so an offline machine is filled in one copy, not one per try."""
    import torch

    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    missing = [
        (url, what)
        for url, what in needs
        if not os.path.isfile(os.path.join(folder, os.path.basename(url)))
    ]
    reachable: dict[str, bool] = {}  # one probe per host
    missing = [
        (url, what)
        for url, what in missing
        if not reachable.setdefault(urlparse(url).netloc, is_reachable(url))
    ]
    if not missing:
        return
    if len(missing) == 1:
        (url, what), cached = missing[0], os.path.join(folder, os.path.basename(missing[0][0]))
        raise WeightsUnavailableError(
            f"{what} needs {url}, which is neither cached nor downloadable from here.\n"
            f"  Fetch it on a machine with network access and copy it to {cached}\n"
            f"  (or set TORCH_HOME so that $TORCH_HOME/hub/checkpoints holds it){alternative}."
        )
    listed = "; ".join(f"{url} ({what})" for url, what in missing)
    raise WeightsUnavailableError(
        f"{len(missing)} weight files are neither cached nor downloadable from here: {listed}.\n"
        f"  Fetch them on a machine with network access and copy them to {folder}\n"
        f"  (or set TORCH_HOME so that $TORCH_HOME/hub/checkpoints holds them){alternative}."
    )
