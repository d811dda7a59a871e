"""The task model's outputs on the original images, computed once and kept in `--out`.

A label-free task (consistency) compares each decoded image's prediction with the prediction
on the original; the fidelity task compares with ML-CLIPSim's tower features of the
original. That reference pass is the same for every cell, so the harness runs it once per
image: its outputs are the targets of every cell (and, for consistency, the `uncompressed`
row). They are stored in `OUT/references/`, one file per (task, model, weights,
preprocessing, device type), keyed by the SHA-256 of each image file's bytes, so a re-run,
an added checkpoint or a renamed image never runs the reference pass again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from lic.data.files import write_bytes_atomic

log = logging.getLogger(__name__)
FORMAT = 1


MAX_BYTES = 4 * 2**30
"""What one store keeps (in memory and in its file); past it, outputs are recomputed in every
cell. Consistency's logits are 4 KB an image; ML-CLIPSim's features 0.6 MB (ViT-B-32, four
blocks) to 2.4 MB (ViT-B-16), times the tiles of `resize: tiles`."""
MAX_FILE_BYTES = MAX_BYTES + 2**26  # the outputs plus torch.save's archive and key overhead


def _nbytes(output: Any) -> int:
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, dict):
        return sum(_nbytes(v) for v in output.values())
    if isinstance(output, (list, tuple)):
        return sum(_nbytes(v) for v in output)
    return 0


def _on_cpu(output: Any) -> Any:
    """A detached CPU copy of a tensor or of the tensors in dicts, lists and tuples."""
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().clone()
    if isinstance(output, dict):
        return {k: _on_cpu(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_on_cpu(v) for v in output)
    return output


class ReferenceStore:
    """Reference outputs (tensors) by image digest, for one model and preprocessing."""

    def __init__(self, folder: str | Path, identity: dict[str, Any]) -> None:
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        name = hashlib.sha256(self.identity.encode()).hexdigest()[:16]
        self.path = Path(folder) / f"{identity.get('task', 'task')}-{name}.pt"
        self.outputs: dict[str, Any] = {}
        self.added: dict[str, Any] = {}  # since the last `share`
        self.changed = False
        self.full = False
        self._load()
        self.nbytes = sum(_nbytes(v) for v in self.outputs.values())

    def _load(self) -> None:
        if not self.path.is_file():
            return
        size = self.path.stat().st_size
        if size > MAX_FILE_BYTES:  # torch.load reads it whole: a planted giant is not read
            log.warning(
                "%s: %d bytes, more than a reference cache holds (%d); recomputing it",
                self.path,
                size,
                MAX_FILE_BYTES,
            )
            return
        try:
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # any unreadable cache (truncated, other torch) is recomputed
            log.warning("%s: unreadable reference cache (%s); recomputing it", self.path, err)
            return
        if (
            isinstance(stored, dict)
            and stored.get("format") == FORMAT
            and stored.get("identity") == self.identity
        ):
            self.outputs = dict(stored["outputs"])

    def __contains__(self, key: str) -> bool:
        return key in self.outputs

    def keys(self) -> frozenset[str]:
        return frozenset(self.outputs)

    def __getitem__(self, key: str) -> Any:
        return self.outputs[key]

    def add(self, key: str, output: Any) -> None:
        """Keep `output` (a tensor, or dicts/lists of them: a fidelity metric's features)
        unless the store holds MAX_BYTES already."""
        size = _nbytes(output)
        if self.nbytes + size > MAX_BYTES:
            if not self.full:
                log.warning(
                    "%s: %d reference outputs fill %.1f GiB; the others are recomputed in "
                    "every cell",
                    self.path,
                    len(self.outputs),
                    self.nbytes / 2**30,
                )
            self.full = True
            return
        self.outputs[key] = self.added[key] = _on_cpu(output)
        self.nbytes += size
        self.changed = True

    def share(self, world: int) -> None:
        """Under torchrun, every rank gets the outputs the others added (rank 0 saves)."""
        if world > 1:
            import torch.distributed as dist

            gathered: list = [None] * world
            dist.all_gather_object(gathered, self.added)
            for added in gathered:
                fresh = {k: v for k, v in added.items() if k not in self.outputs}
                self.outputs.update(fresh)
                self.nbytes += sum(_nbytes(v) for v in fresh.values())
            self.changed = self.changed or any(gathered)
        self.added = {}

    def save(self) -> None:
        """Write the store (atomically) if anything was added."""
        if not self.changed:
            return
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "identity": self.identity, "outputs": self.outputs}, buffer)
        write_bytes_atomic(self.path, buffer.getvalue())
        self.changed = False
