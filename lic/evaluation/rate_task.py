"""The rate-task harness: code every task image with every coder, run the task model, report.

One *cell* is (coder, task). Worker processes load, prepare and code images (entropy coding
runs on the CPU) while the main process runs the task model on batches on the device. One
loader streams every cell of a task, so its workers start once, load each image once for all
cells (while a memory budget lasts) and code the next cell while the model finishes the last
one. The uncompressed cell comes first: its model outputs are the references the other cells
compare against, and while the model computes them the workers build the codecs, which the
main process never imports (CompressAI's import chain takes a second of CPU). A failed image
is counted and listed, never dropped silently; a codec that cannot be built stops the run
with its error. Each finished cell is written
to `out/cells/` (VLM tasks also write every answer to `out/answers/`), so a re-run with the
same `--out` skips it. Under torchrun the images of a cell are sharded over ranks and the
metric states are merged exactly on rank 0.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lic.codecs.entropy_check import EntropyMismatchError
from lic.codecs.io import BitstreamError
from lic.data.files import inside, read_json_capped, safe_name, write_text_atomic
from lic.data.images import ImageReadError
from lic.devices import resolve_device
from lic.errors import InputError, UsageError
from lic.evaluation.bootstrap import add_intervals
from lic.evaluation.coders import Bits, Coder, CoderSetupError, Uncompressed, build_coders
from lic.evaluation.config import CONFIG_NAME, EvalConfig
from lic.evaluation.curves import PUBLISHED
from lic.evaluation.parallel import AUTO, plan_threads, task_workers, worker_threads
from lic.evaluation.per_image import (
    AlignValues,
    ImageRates,
    images_path,
    read_images,
    write_images,
)
from lic.evaluation.references import ReferenceStore
from lic.startup import imports_done
from lic.tasks import Task, create_task
from lic.tasks.base import weights_label
from lic.tasks.catalog import FIDELITY_METRICS

if TYPE_CHECKING:
    from lic.evaluation.align_scores import TaskAligner
    from lic.evaluation.report import ResultRow

log = logging.getLogger(__name__)
CELL_FORMAT = 2  # 2: bpp is the entropy-coded payload, bpp_file the file (1: the file)


@dataclass
class Coded:
    """One image after the codec: what a worker hands back to the main process."""

    index: int
    sample_id: str
    image: torch.Tensor | None = None
    key: str | None = None  # digest of the image file, for tasks that use references
    original: torch.Tensor | None = None  # the prepared original, when its reference is missing
    target: Any = None
    bits: Bits | None = None
    pixels: int = 0
    error: str | None = None
    fatal: CoderSetupError | None = None  # a coder cannot be built: the run stops

    def fail(self, err: Exception) -> None:
        self.image = None
        self.error = str(err) if self.sample_id in str(err) else f"{self.sample_id}: {err}"


CODING_ERRORS = (
    ImageReadError,
    BitstreamError,
    EntropyMismatchError,  # a device whose coding is not deterministic: that image fails
    ValueError,
    RuntimeError,
    OSError,
)
CODING_MODES = ("workers", "device")
KEPT_ORIGINALS_BYTES = 512 * 2**20
"""Prepared images each loading process keeps for the task's later cells (the first ones
that fit: in cell-after-cell order an LRU cache would drop each just before its next use)."""


class CodedImages(Dataset):
    """Loads, prepares and (unless `code` is False) codes the task images of every cell, cell
    after cell (item k is image `indices[k % n]` of cell `k // n`); runs inside DataLoader
    workers. For a task that uses references, `known` holds the digests of images whose
    reference output is cached: the others also send their original; the uncompressed coder
    loads nothing for them. `keep_input` (--align): every coded image is sent with its input
    and its file's digest."""

    def __init__(
        self,
        task: Task,
        coders: Sequence[Coder],
        indices: Sequence[int],
        batch_size: int = 16,
        code: bool = True,
        known: frozenset[str] | None = None,
        keep_input: bool = False,
    ) -> None:
        self.task, self.coders, self.indices, self.code = task, list(coders), list(indices), code
        self.batch_size, self.known, self.keep_input = batch_size, known, keep_input
        if known is not None or keep_input:
            task.sample_digests  # hashed here once, not in every worker  # noqa: B018
        self.kept: dict[int, tuple] = {}
        self.kept_bytes, self.keep_budget = 0, KEPT_ORIGINALS_BYTES
        self.cell = -1  # the cell this process codes now

    def __len__(self) -> int:
        return len(self.coders) * len(self.indices)

    @property
    def per_cell(self) -> int:
        """Batches per cell."""
        return -(-len(self.indices) // self.batch_size)

    def batches(self) -> list[list[int]]:
        """Items in batches that never span two cells, cell after cell."""
        n, size = len(self.indices), self.batch_size
        return [
            list(range(start, min(start + size, (cell + 1) * n)))
            for cell in range(len(self.coders))
            for start in range(cell * n, (cell + 1) * n, size)
        ]

    def __getitem__(self, k: int) -> Coded:
        cell, index = divmod(k, len(self.indices))
        coder, index = self.coders[cell], self.indices[index]
        item = Coded(index, self.task.sample_id(index))
        if cell != self.cell:
            self.enter_cell(cell)
        try:
            if self.code:
                coder.prepare()
        except CoderSetupError as err:
            item.fatal = err
            return item
        uncompressed = isinstance(coder, Uncompressed)
        try:
            if self.known is not None or self.keep_input:
                item.key = self.task.sample_digest(index)
            cached = self.known is not None and item.key in self.known
            if cached and uncompressed and self.task.reference_is_prediction:
                return item  # its row is its cached reference output
            item.image, item.target = self.load(index)
            item.pixels = item.image.shape[-2] * item.image.shape[-1]
            missing_reference = self.known is not None and item.key not in self.known
            if missing_reference or (self.keep_input and not uncompressed):
                item.original = item.image
            if self.code:
                item.image, item.bits = coder.roundtrip(item.image)
        except CODING_ERRORS as err:
            item.fail(err)
        return item

    def enter_cell(self, cell: int) -> None:
        """This process moves on to `cell` (cells come in order): the codecs of the cells
        before it are freed, the next one is built in the background meanwhile."""
        self.cell = cell
        if self.code:  # (else this process's main thread codes with them: kept)
            for done in self.coders[:cell]:
                done.release()
            ahead = self.coders[cell + 1 : cell + 2]
            threading.Thread(target=prepare_coders, args=(ahead,), daemon=True).start()

    def load(self, index: int) -> tuple[torch.Tensor, Any]:
        """`task.load`, kept for the later cells while `keep_budget` lasts (copies go out:
        the main process may share the memory of what it is sent)."""
        if index in self.kept:
            return copy.deepcopy(self.kept[index])
        image, target = self.task.load(index)
        size = image.numel() * image.element_size()
        if len(self.coders) > 1 and self.kept_bytes + size <= self.keep_budget:
            self.kept[index] = copy.deepcopy((image, target))
            self.kept_bytes += size
        return image, target


def start_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: one torch thread. The loader hands batches to its workers
    in turn, so a worker sees the same images in every cell only when a cell's batch count
    is a multiple of the worker count: else it keeps none."""
    worker_threads(worker_id)
    info = torch.utils.data.get_worker_info()
    if info.dataset.per_cell % info.num_workers:
        info.dataset.keep_budget = 0


def prepare_coders(coders: Iterable[Coder]) -> None:
    for coder in coders:
        with contextlib.suppress(CoderSetupError):  # kept; raised for its cell's first item
            coder.prepare()


def code_on_device(coder: Coder, items: list[Coded], device: torch.device) -> None:
    """Code loaded items in one batch on `device`; if the batch fails, image by image, so
    that a bad image fails alone."""
    images = [c.image.to(device, non_blocking=True) for c in items]
    try:
        results = coder.roundtrip_batch(images)
    except CODING_ERRORS:
        results = []
        for item, image in zip(items, images, strict=True):
            try:
                results.append(coder.roundtrip(image))
            except CODING_ERRORS as err:
                item.fail(err)
                results.append((None, None))
    for item, (image, bits) in zip(items, results, strict=True):
        if item.error is None:
            item.image, item.bits = image, bits


def coded_in_thread(batches: Iterator[list[Coded]], ahead: int = 1) -> Iterator[list[Coded]]:
    """`batches`, loaded and coded from now on in a thread of this process (one torch
    thread, as a worker process codes), `ahead` batches queued beside the one being coded:
    coding overlaps the task model as with a worker process, without a second interpreter's
    memory. Errors are raised to the caller; a caller that stops early frees the thread."""
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    threads = torch.get_num_threads()

    def produce() -> None:
        torch.set_num_threads(1)  # this thread's, and the default of threads started later
        try:
            for batch in batches:
                ready.put((batch, None))
                if stop.is_set():
                    return
            ready.put((None, None))
        except BaseException as err:  # re-raised in the caller
            ready.put((None, err))
        finally:
            torch.set_num_threads(threads)  # the default back as it was

    threading.Thread(target=produce, name="lic-coding", daemon=True).start()
    return _received(ready, stop)


def _received(ready: queue.Queue, stop: threading.Event) -> Iterator[list[Coded]]:
    """`coded_in_thread`'s batches as they arrive."""
    try:
        while True:
            batch, err = ready.get()
            if err is not None:
                raise err
            if batch is None:
                return
            yield batch
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblocks a waiting put; the thread then sees `stop`
                ready.get_nowait()


def _as_list(batch: list[Coded]) -> list[Coded]:
    return batch


def task_outputs(
    task: Task,
    coder: Coder,
    model: torch.nn.Module,
    items: list[Coded],
    device: torch.device,
    references: ReferenceStore | None,
) -> tuple[list, list]:
    """(predictions, targets) of coded items. With `references`, the targets are the model's
    outputs on the originals, from the store or computed here once and added to it; the
    uncompressed coder's predictions are those outputs (no second pass)."""
    if references is None:
        images = [c.image.to(device, non_blocking=True) for c in items]
        targets = [c.target for c in items]
        return task.predict(model, images, targets), targets
    computed = {}
    missing = [c for c in items if c.key not in references]
    if missing:
        originals = [(c.original if c.original is not None else c.image) for c in missing]
        outputs = task.reference_outputs(model, [o.to(device) for o in originals])
        for item, output in zip(missing, outputs, strict=True):
            computed[item.key] = output
            references.add(item.key, output)  # kept while the store's budget lasts
    targets = [computed[c.key] if c.key in computed else references[c.key] for c in items]
    if isinstance(coder, Uncompressed) and task.reference_is_prediction:
        return targets, targets
    images = [c.image.to(device, non_blocking=True) for c in items]
    return task.predict_against(model, images, [c.target for c in items], targets), targets


@dataclass
class CellResult:
    meta: dict
    metrics: dict[str, float]
    bpp: float | None
    n_images: int
    failures: list[dict] = field(default_factory=list)  # {"image": id, "error": message}
    seconds: float = 0.0
    records: list[dict] | None = None  # per-question answers of VLM tasks
    accumulator: Any = None  # the merged per-image state (lic.tasks.base.Accumulator)
    rates: ImageRates = field(default_factory=ImageRates)
    bpp_file: float | None = None
    rate_mean: str = "images"
    known: bool = False  # written from the task's known values (Task.known_uncompressed)
    align: AlignValues = field(default_factory=AlignValues)  # --align metric values

    def to_json(self) -> dict:
        return {
            "format": CELL_FORMAT,
            "meta": self.meta,
            "metrics": self.metrics,
            "bpp": self.bpp,
            "bpp_file": self.bpp_file,
            "rate_mean": self.rate_mean,
            "n_images": self.n_images,
            "n_failed": len(self.failures),
            "failures": self.failures,
            "seconds": self.seconds,
        }


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate_cells(
    task: Task,
    coders: Sequence[Coder],
    model: torch.nn.Module | Callable[[], torch.nn.Module],
    device: torch.device,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = True,
    coding: str = "workers",
    references: ReferenceStore | None = None,
    aligner: TaskAligner | None = None,
) -> Iterator[CellResult]:
    """Metric, mean bpp and failures of each coder on one task (sharded under torchrun), one
    CellResult per coder as soon as its cell is done; one loader streams all cells.

    `coding`: "workers" codes each image in the loader's worker processes on the CPU;
    "device" has the workers only load, and codes each batch here on `device` (learned
    codecs run their transforms batched; entropy coding stays on this CPU).
    `references`: the cached reference outputs of a task that `uses_reference` (required
    for it); missing ones are computed in the same batches and added. `model` may be a
    function that builds it: called once the workers have started, so that the first
    images are coded while the model is built. `aligner`: the `--align` metrics, scored on
    every coded image against its input.
    """
    if task.uses_reference and references is None:
        raise ValueError(f"the {task.name} task needs a ReferenceStore")
    if coding not in CODING_MODES:
        raise ValueError(f"coding must be one of {CODING_MODES}, got '{coding}'")
    # Without workers a light task model (PSNR, MS-SSIM) codes in a thread beside it, on the
    # CPU: GPU coding sets process-wide cuDNN/TF32 flags (entropy_check.deterministic_coding)
    # and building a model may trace it with torch.fx, which patches every module's call.
    threaded = workers == 0 and coding == "workers" and task.light_model and device.type == "cpu"
    if coding == "device" or (workers == 0 and not threaded):
        for coder in coders:  # this thread codes: every codec built (and checked) first
            coder.prepare()
    elif threaded:  # the thread builds each codec when its cell comes, the next ahead;
        for coder in [c for c in coders if not isinstance(c, Uncompressed)][:1]:
            coder.prepare()  # the first here: its imports and errors before the stream starts
    rank, world = _distributed()
    images = CodedImages(
        task,
        coders,
        range(rank, len(task), world),
        batch_size,
        code=coding == "workers",
        known=references.keys() if references is not None else None,
        keep_input=aligner is not None,
    )
    loader = DataLoader(
        images,
        batch_sampler=images.batches(),
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=start_worker,
        pin_memory=device.type == "cuda",
    )
    imports_done()  # lic eval's console: codecs built, before the workers fork (lic.startup)
    batches = coded_in_thread(iter(loader)) if threaded else iter(loader)  # coding starts
    if not isinstance(model, torch.nn.Module):
        model = model()
    for coder in coders:
        cell_batches = itertools.islice(batches, images.per_cell)
        options = (coding, references, progress, aligner)
        yield run_cell(task, coder, model, device, cell_batches, *options)


def evaluate_cell(task: Task, coder: Coder, *args: Any, **options: Any) -> CellResult:
    """`evaluate_cells` of one coder (the same arguments after the coder)."""
    [result] = evaluate_cells(task, [coder], *args, **options)
    return result


def run_cell(
    task: Task,
    coder: Coder,
    model: torch.nn.Module,
    device: torch.device,
    batches: Iterable[list[Coded]],
    coding: str,
    references: ReferenceStore | None,
    progress: bool,
    aligner: TaskAligner | None = None,
) -> CellResult:
    """The task model (and the `aligner`'s metrics) over one cell's batches; then the states
    of all ranks merged."""
    rank, world = _distributed()
    accumulator = task.new_accumulator()
    align = AlignValues(identity=aligner.identity() if aligner is not None else {})
    aligned = aligner is not None and not isinstance(coder, Uncompressed)
    bits, failures, n_ok = [], [], 0
    start = time.perf_counter()
    bar = tqdm(
        total=len(range(rank, len(task), world)),
        unit="img",
        disable=not progress or rank != 0,
        desc=f"{task.name} {coder.key}",
        leave=False,
    )
    with torch.inference_mode():
        for batch in batches:
            fatal = next((c.fatal for c in batch if c.fatal is not None), None)
            if fatal is not None:
                raise fatal
            if coding == "device":
                loaded = [c for c in batch if c.error is None and c.image is not None]
                code_on_device(coder, loaded, device)
            good = [c for c in batch if c.error is None]
            failures += [{"image": c.sample_id, "error": c.error} for c in batch if c.error]
            if good:
                predictions, targets = task_outputs(task, coder, model, good, device, references)
                accumulator.update(predictions, targets, [c.sample_id for c in good])
                if aligned:
                    decoded = [c.image.to(device, non_blocking=True) for c in good]
                    inputs = [c.original for c in good]
                    scores = aligner.score(inputs, decoded, [c.key for c in good])
                    align.add([c.sample_id for c in good], scores)
                bits += [(c.bits, c.pixels, c.sample_id) for c in good if c.bits is not None]
                n_ok += len(good)
            bar.update(len(batch))
    bar.close()
    state = {"acc": accumulator.state(), "bits": bits, "failures": failures, "n_ok": n_ok}
    state["align"] = align.values
    if references is not None:
        references.share(world)
    if world > 1:
        states = [None] * world
        dist.all_gather_object(states, state)
        accumulator = task.new_accumulator()
        bits, failures, n_ok = [], [], 0
        for other in states:
            accumulator.merge(other["acc"])
            bits += other["bits"]
            failures += other["failures"]
            n_ok += other["n_ok"]
            for name, values in other["align"].items():
                align.values.setdefault(name, {}).update(values)
    rates = ImageRates()
    for (payload, file), pixels, sample_id in bits:
        rates.add(sample_id, payload, file, pixels)
    return CellResult(
        meta={**coder.meta(), **task.description()},
        metrics=accumulator.compute(),
        bpp=rates.mean("images"),  # as stored; reports average as the run's --rate-mean says
        bpp_file=rates.mean("images", file=True),
        n_images=n_ok,
        failures=sorted(failures, key=lambda f: (f["image"], f["error"])),
        seconds=time.perf_counter() - start,
        records=accumulator.records(),
        accumulator=accumulator,
        rates=rates,
        align=align,
    )


def rows_of(cell: dict, task_metrics: Sequence[str]) -> list[ResultRow]:
    """The results rows of a cell, one per task metric."""
    meta = cell["meta"]
    return [
        {
            "codec": meta["codec"],
            "objective": meta["objective"],
            "lambda": meta["lambda"],
            "quality": meta["quality"],
            "level": meta.get("level"),
            "task": meta["task"],
            "weights": weights_label(meta),
            "metric": metric,
            "bpp": cell["bpp"],
            "bpp_file": cell["bpp_file"],
            "value": cell["metrics"][metric],
            "ci_low": cell.get("ci", {}).get(metric, (None, None))[0],
            "ci_high": cell.get("ci", {}).get(metric, (None, None))[1],
            "n_images": cell["n_images"],
            "n_failed": cell["n_failed"],
            "rate_source": meta["rate_source"],
            "padding": meta.get("padding"),
            "rate_mean": cell.get("rate_mean") if cell["bpp"] is not None else None,
            "checkpoint": meta.get("checkpoint"),
        }
        for metric in task_metrics
    ]


def write_records(path: Path, result: CellResult) -> None:
    """One JSON line per question: what the model answered and how it was parsed."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in result.records or ()))


CELL_BYTES, CELL_BYTES_PER_IMAGE = 2**20, 4096
"""A cell file's cap: its metrics and metadata, plus a failure line per image at most."""


def read_cell(path: Path, n_images: int = 0) -> dict | None:
    """A finished cell, or None when there is none to reuse: absent, of another format,
    unreadable (a truncated file is named in the log and recomputed) or larger than a real
    cell of `n_images` can be (read no further than that)."""
    if not path.is_file():
        return None
    try:
        cell = read_json_capped(path, CELL_BYTES + CELL_BYTES_PER_IMAGE * n_images)
    except (OSError, InputError) as err:
        log.warning("%s: unreadable cell file (%s); recomputing it", path, err)
        return None
    if not isinstance(cell, dict) or cell.get("format") != CELL_FORMAT or "meta" not in cell:
        return None
    return cell


class Finished(NamedTuple):
    """A finished cell: its JSON and its per-image state."""

    cell: dict
    accumulator: Any
    rates: ImageRates
    align: AlignValues


def reuse_cell(
    path: Path, meta: dict, task: Task, align: dict[str, dict] | None = None
) -> Finished | None:
    """A finished cell of this `meta` with its per-image state, or None when it must be
    computed (absent, another setting, no per-image state, no values of the `--align`
    metrics of identity `align` for a coded cell, or a cell whose numbers its per-image
    state does not give: named in the log). The cell's reported numbers are always
    recomputed from that state, never taken from its JSON."""
    cell = read_cell(path, len(task))
    if cell is None or cell["meta"] != meta:
        return None
    if not _failure_records(cell):
        log.warning("%s: its failures are not lic's records; recomputing it", path)
        return None
    accumulator = task.new_accumulator()
    stored = read_images(images_path(path), accumulator, len(task), cell.get("images_sha256"))
    if stored is None:
        return None
    rates, values = stored
    if align and meta["codec"] != Uncompressed.codec and not values.covers(align):
        log.info("%s: computed without these --align metrics; recomputing it", path)
        return None
    metrics, n_images = accumulator.compute(), len(accumulator.image_ids())
    if not _same_numbers(cell, metrics, n_images):
        log.warning("%s: its numbers differ from its per-image state; recomputing it", path)
        return None
    return Finished({**cell, "metrics": metrics, "n_images": n_images}, accumulator, rates, values)


def _same_numbers(cell: dict, metrics: dict, n_images: int) -> bool:
    """Whether a cell file reports what its per-image state gives (NaN equals NaN)."""
    stored = cell.get("metrics")
    if cell.get("n_images") != n_images or not isinstance(stored, dict):
        return False
    if stored.keys() != metrics.keys():
        return False
    for name, value in metrics.items():
        other = stored[name]
        if not isinstance(other, (int, float)) or isinstance(other, bool):
            return False
        both_nan = math.isnan(value) and math.isnan(other)
        if not both_nan and not math.isclose(other, value, rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def _failure_records(cell: dict) -> bool:
    """Whether a cell file lists its failures as lic writes them: n_failed records
    {"image": id, "error": message}."""
    failures = cell.get("failures")
    return (
        isinstance(failures, list)
        and len(failures) == cell.get("n_failed")
        and all(
            isinstance(f, dict)
            and f.keys() == {"image", "error"}
            and all(isinstance(v, str) for v in f.values())
            for f in failures
        )
    )


def run(config: EvalConfig | None = None, **options: Any) -> list[dict]:
    """Evaluate every (coder, task) cell not yet in `config.out`, then write the reports and
    the resolved `config.yaml`. Give an EvalConfig or its fields as keywords. `coding`: see
    `evaluate_cell`; with `workers=0` images are coded on `device` anyway. `anchor`: the curve
    BD numbers refer to (`report.resolve_anchor`; default each codec's mse curve)."""
    from lic.evaluation.report import (
        published_points,
        rate_convention,
        reports_line,
        resolve_anchor,
        write_reports,
    )

    config = dataclasses.replace(config, **options) if config else EvalConfig(**options)
    published = [*config.published]
    if (config.anchor or "").startswith(PUBLISHED):
        published.append(config.anchor)
    if published:
        require_published_data(config, published)
    requested = config
    device = resolve_device(config.device)
    plan = plan_threads(config.workers, config.threads, device.type, None, config.batch_size)
    config = dataclasses.replace(
        config, workers=plan.workers, threads=plan.threads, batch_size=plan.batch_size
    )
    codec_device = device if plan.workers == 0 or config.coding == "device" else "cpu"
    ckpt_meta = {path: tuple(label) for path, label in config.ckpt_meta.items()}
    coders = build_coders(
        config.checkpoints,
        config.baselines,
        config.qualities,
        config.estimate_rate,
        codec_device,
        ckpt_meta,
        config.pad,
        config.levels,
    )
    anchor_curve = resolve_anchor(config.anchor, [(c.codec, c.objective) for c in coders])
    out = Path(requested.out)
    created = [p for p in (out, out / "cells", out / CONFIG_NAME) if not p.exists()]
    prepare_out(requested)  # only now: a refused input leaves nothing behind
    rank, _ = _distributed()
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        auto = frozenset(k for k in ("batch_size", "workers") if getattr(requested, k) == AUTO)
        cells = evaluate_tasks(config, coders, device, out, auto)
    except BaseException:
        remove_unless_used(out, created)  # a task refused its data or weights
        raise
    finally:
        torch.set_num_threads(threads)
    rows = [row for cell, metrics in cells for row in rows_of(cell, metrics)]
    if rank == 0:
        convention = rate_convention(config.pad, config.rate_mean, config.estimate_rate)
        section, aligned = (
            align_cells(config, out, [c for c, _ in cells]) if config.align else ("", [])
        )
        written = write_reports(
            out,
            rows,
            [cell for cell, _ in cells],
            use_wandb=config.use_wandb,
            anchor=anchor_curve,
            convention=convention,
            published=published_points(published, rows),
            sections=[section],
        )
        log.info("%s", reports_line(out, [*written, *aligned]))
    return rows


def align_cells(config: EvalConfig, out: Path, cells: Sequence[dict]) -> tuple[str, list[Path]]:
    """alignment.csv and its plot from the cells' per-image rows: summary.md's section and
    the files written."""
    from lic.evaluation.align_scores import align_metric_names
    from lic.evaluation.alignment_report import networks_note, write_alignment
    from lic.tasks import TASKS

    per_image = [row for cell in cells for row in cell.get("per_image", ())]
    outcomes = {t: TASKS[t].outcomes for t in config.tasks if TASKS[t].outcomes}
    metrics = align_metric_names(config.align)
    weights = networks_note(metrics, config.task_weights)
    options = (config.bootstrap, config.bootstrap_seed, weights)
    return write_alignment(out, per_image, outcomes, metrics, *options)


def prepare_out(config: EvalConfig) -> Path:
    """Create OUT/cells and write the resolved config (rank 0)."""
    out = Path(config.out)
    try:
        (out / "cells").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    if _distributed()[0] == 0:
        write_text_atomic(out / CONFIG_NAME, config.resolved().to_yaml())
    return out


def remove_unless_used(out: Path, created: Sequence[Path]) -> None:
    """Remove what this run `created` in `out` (folder, cells/, config.yaml) while no cell
    has been written: a run that stops before its first cell leaves nothing behind."""
    if any((out / "cells").glob("*")):
        return
    for path in reversed(created):
        with contextlib.suppress(OSError):  # a folder holding anything else stays
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()


def require_published_data(config: EvalConfig, names: Sequence[str]) -> None:
    """Published curves (known `names`) are Kodak curves: the fidelity task must see exactly
    the 24 Kodak images (by their pixels), or the run stops before it codes anything."""
    from lic.data.catalog import SOURCES
    from lic.data.fetch import require_exact_set
    from lic.evaluation.curves import load_catalogue, published_record

    catalogue = load_catalogue()
    for name in names:
        published_record(name.removeprefix(PUBLISHED), catalogue)
    why = "--anchor/--published: a published curve"
    if config.limit is not None and config.limit < len(SOURCES["kodak"].files):
        raise UsageError(f"{why} is measured on all 24 Kodak images; drop --limit")
    require_exact_set("kodak", config.data_roots["fidelity"], why)


def evaluate_tasks(
    config: EvalConfig,
    coders: Sequence[Coder],
    device: torch.device,
    out: Path,
    auto: frozenset[str] = frozenset(),
) -> list[tuple[dict, tuple[str, ...]]]:
    """Every (coder, task) cell with its task's metrics, in coder order, task after task
    (`evaluate_task`); the `--align` metrics are built once for every machine task."""
    from lic.evaluation.report import random_note

    scorer = None
    cells = []
    for task_name in config.tasks:
        fidelity_args = config.metrics or FIDELITY_METRICS
        task = create_task(
            task_name,
            config.data_roots[task_name],
            model=config.task_model,
            weights=config.task_weights,
            limit=config.limit,
            metrics=config.metrics,
            metric_args={k: v for k, v in config.metric_args.items() if k in fidelity_args},
            protocol=config.seed_protocol,
        )
        if task.random_weights and _distributed()[0] == 0:
            log.warning("%s: %s (--task-weights none)", task_name, random_note(task.model_name))
        aligner = None
        if config.align and task.outcomes:
            from lic.evaluation.align_scores import AlignScorer, TaskAligner

            if scorer is None:
                scorer = AlignScorer(config.align, config.task_weights, config.metric_args)
                scorer.to(device)
            aligner = TaskAligner(scorer, task, out / "references", device)
        cells += evaluate_task(config, task, coders, device, out, auto, aligner)
    return cells


def evaluate_task(
    config: EvalConfig,
    task: Task,
    coders: Sequence[Coder],
    device: torch.device,
    out: Path,
    auto: frozenset[str] = frozenset(),
    aligner: TaskAligner | None = None,
) -> list[tuple[dict, tuple[str, ...]]]:
    """The cells of one task: finished cells are read, the others evaluated in one stream
    (the uncompressed cell first) and each written as soon as it is done. `auto`: the
    options given as auto, resolved here for the task: on the CPU its own batch size
    (`Task.cpu_batch`), its coding layout (`parallel.task_workers`)."""
    references = None
    if task.uses_reference:
        identity = task.reference_identity() | {"device": device.type}
        references = ReferenceStore(out / "references", identity)
    paths = {coder.key: cell_path(out, task.name, coder) for coder in coders}
    align = aligner.identity() if aligner is not None else None
    done: dict[str, Finished] = {}
    for coder in coders:
        meta = {**coder.meta(), **task.description()}
        if finished := reuse_cell(paths[coder.key], meta, task, align):
            done[coder.key] = finished
    pending = reference_first([c for c in coders if c.key not in done])
    stores = (references, aligner)
    for coder, result in known_cells(task, pending):
        done[coder.key] = write_cell(task, coder, result, paths[coder.key], *stores)
    pending = [c for c in pending if c.key not in done]
    model = functools.partial(task.build_model, device)
    batch_size, workers = config.batch_size, config.workers
    if "batch_size" in auto and device.type == "cpu" and task.cpu_batch:
        batch_size = task.cpu_batch
    if "workers" in auto:
        workers = task_workers(workers, device.type, task.light_model)
    options = (batch_size, workers, config.progress, config.coding, references, aligner)
    if pending:  # (the stream builds the model even for no cell)
        results = evaluate_cells(task, pending, model, device, *options)
        for coder, result in zip(pending, results, strict=True):
            done[coder.key] = write_cell(task, coder, result, paths[coder.key], *stores)
    names = aligner.names if aligner is not None else ()
    for coder in coders:
        cell, accumulator, rates, values = done[coder.key]
        cell["bpp"] = rates.mean(config.rate_mean)  # from the per-image state, as asked
        cell["bpp_file"] = rates.mean(config.rate_mean, file=True)
        cell["rate_mean"] = config.rate_mean
        if _distributed()[0] == 0:
            align_values = {n: values.values[n] for n in names if n in values.values}
            add_intervals(
                cell,
                task,
                accumulator,
                rates,
                config.bootstrap,
                config.bootstrap_seed,
                config.rate_mean,
                align_values,
            )
    return [(done[coder.key].cell, task.metrics) for coder in coders]


def cell_path(out: Path, task_name: str, coder: Coder) -> Path:
    """OUT/cells/<task>__<coder key>.json, checked to stay inside OUT (a key holds names
    read from checkpoints)."""
    name = safe_name(f"{task_name}__{coder.key}", "cell name")
    return inside(out, Path("cells") / f"{name}.json")


def known_cells(task: Task, coders: Sequence[Coder]) -> Iterator[tuple[Coder, CellResult]]:
    """The uncompressed cell of a task that knows it (`Task.known_uncompressed`: a
    full-reference metric's score of an image against itself), written without loading or
    scoring an image; every sample counts as done."""
    scores = task.known_uncompressed()
    if scores is None:
        return
    for coder in coders:
        if isinstance(coder, Uncompressed):
            accumulator = task.new_accumulator()
            ids = [task.sample_id(i) for i in range(len(task))]
            accumulator.update([scores] * len(ids), [None] * len(ids), ids)
            result = CellResult(
                meta={**coder.meta(), **task.description()},
                metrics=accumulator.compute(),
                bpp=None,
                n_images=len(ids),
                accumulator=accumulator,
                known=True,
            )
            yield coder, result


def reference_first(coders: Sequence[Coder]) -> list[Coder]:
    """The uncompressed cell first: its model outputs are the references of the others (it
    loads and runs nothing for images whose reference is cached)."""
    return sorted(coders, key=lambda coder: not isinstance(coder, Uncompressed))


def write_cell(
    task: Task,
    coder: Coder,
    result: CellResult,
    path: Path,
    references: ReferenceStore | None,
    aligner: TaskAligner | None = None,
) -> Finished:
    """Write a cell, its per-image results and new reference outputs and features (on rank
    0); return it as a finished cell."""
    cell = result.to_json()
    if _distributed()[0] == 0:
        if references is not None:
            references.save()
        if aligner is not None:
            aligner.save()
        if result.records is not None:
            write_records(path.parent.parent / "answers" / path.with_suffix(".jsonl").name, result)
        out = path.parent.parent
        digest = write_images(images_path(path), result.accumulator, result.rates, result.align)
        cell["images_sha256"] = digest
        write_text_atomic(path, json.dumps(cell, indent=1), out)
        log_cell(task.name, coder.key, result)
    return Finished(cell, result.accumulator, result.rates, result.align)


def log_cell(task_name: str, key: str, result: CellResult) -> None:
    """One line per cell, numbers rounded as the reports round them."""
    rate = f"{result.bpp:.4f} bpp" if result.bpp is not None else "uncompressed"
    values = ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items())
    images = result.n_images + len(result.failures)
    rate_of = images / max(result.seconds, 1e-9)
    speed = "known values, not computed" if result.known else f"{rate_of:.1f} img/s"
    log.info(
        "%s %s: %s, %s; %d images (%d failed), %s",
        task_name,
        key,
        rate,
        values,
        result.n_images,
        len(result.failures),
        speed,
    )
