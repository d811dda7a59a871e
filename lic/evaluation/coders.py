"""Everything that turns an image into (decoded image, bits): checkpoints, CompressAI zoo
models and classical baselines.

Coders are small and picklable, so evaluation workers each hold a copy and code images in
parallel (`roundtrip`); or the main process codes whole batches on the GPU
(`roundtrip_batch`). Entropy coding runs on the CPU in any case. A checkpoint's codec is built
on first use (`prepare`) in the process that codes, so the main process of an evaluation whose
workers code never imports CompressAI (seconds of start-up it spends on the task model).
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from lic.codecs.checkpoint import build_codec, read_checkpoint
from lic.codecs.classical import classical_codec
from lic.codecs.io import LEVEL_VERSION, crop_image, pad_image
from lic.codecs.io import VERSION as CONTAINER_VERSION
from lic.codecs.padding import FIELD_PADDING, PADDINGS
from lic.codecs.vbr import check_level, coding_at, is_vbr_codec
from lic.data.files import sanitised
from lic.errors import LicError, UsageError, exit_code
from lic.losses import estimated_bits
from lic.metrics.objective import objective_name

ZOO_PREFIX = "compressai:"


class Bits(NamedTuple):
    """What one coded image costs: the entropy-coded payload (the rate the field reports,
    CompressAI eval_model's count) and the whole file (lic's container, a classical codec's
    file: then both are the file). `file` is None for likelihood estimates (no file)."""

    payload: float
    file: float | None


class Coder(ABC):
    """codec / objective / lambda / quality describe the curve point this coder makes; a
    variable-rate codec's points are its levels (`level`, with the level's lambda and no
    quality: CompressAI's fixed-rate zoo qualities 1-8 are other numbers)."""

    codec: str
    objective: str
    lmbda: float | None = None
    quality: int | None = None
    level: int | None = None
    rate_source: str = "bitstream"

    @property
    @abstractmethod
    def key(self) -> str:
        """Unique, file-name-safe identity of this point (checkpoint contents included)."""

    @abstractmethod
    def roundtrip(self, image: Tensor) -> tuple[Tensor, Bits | None]:
        """(3, H, W) in [0, 1] -> (decoded (3, H, W), bits or None when uncompressed)."""

    def roundtrip_batch(self, images: list[Tensor]) -> list[tuple[Tensor, Bits | None]]:
        """`roundtrip` of each image; learned codecs code images of one size together."""
        return [self.roundtrip(image) for image in images]

    def prepare(self) -> None:
        """Make ready to code (learned codecs build their model); CoderSetupError if not."""
        return

    def release(self) -> None:
        """Free what `prepare` built."""
        return

    @property
    def setup_error(self) -> CoderSetupError | None:
        """Why `prepare` failed (in this process), if it did."""
        return None

    def meta(self) -> dict:
        return {
            "codec": self.codec,
            "objective": self.objective,
            "lambda": self.lmbda,
            "quality": self.quality,
            "rate_source": self.rate_source,
            "key": self.key,
        }


class Uncompressed(Coder):
    codec, objective, rate_source = "uncompressed", "uncompressed", "none"

    @property
    def key(self) -> str:
        return "uncompressed"

    def roundtrip(self, image: Tensor) -> tuple[Tensor, None]:
        return image, None


class ClassicalCoder(Coder):
    """A classical codec (JPEG ... JPEG XL) at one quality; bits from the encoded file."""

    def __init__(self, name: str, quality: int) -> None:
        self.spec = classical_codec(name)
        self.spec.require()
        self.codec = self.objective = name
        self.quality = self.spec.check_quality(quality)

    @property
    def key(self) -> str:
        return f"{self.codec}-q{self.quality}"

    def meta(self) -> dict:
        return super().meta() | {"settings": self.spec.options(self.quality)}

    def roundtrip(self, image: Tensor) -> tuple[Tensor, Bits]:
        decoded, size = self.spec.roundtrip(image.cpu(), self.quality)
        return decoded, Bits(8.0 * size, 8.0 * size)


class CoderSetupError(LicError):
    """A codec that cannot be built (a checkpoint of another architecture, missing weights):
    the run stops with its line, in the main process also when a worker met it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code

    def __reduce__(self) -> tuple:
        return (CoderSetupError, (str(self), self.exit_code))


class LearnedCoder(Coder):
    """A CompressAI-style model: real bitstreams (default) or likelihood estimates of the
    rate; images are padded (`padding`, lic.codecs.io.PADDINGS: eval_model's zeros by
    default) and cropped back. Subclasses `build` the eval-mode codec; it is built once, on
    first use, in the process that codes (thread-safe: a worker may build it in the
    background while it loads other images)."""

    def __init__(
        self,
        estimate_rate: bool = False,
        device: str | torch.device = "cpu",
        padding: str = FIELD_PADDING,
    ) -> None:
        if padding not in PADDINGS:
            raise UsageError(f"--pad {padding}: one of {', '.join(PADDINGS)}")
        self.rate_source = "estimate" if estimate_rate else "bitstream"
        self.device, self.padding = device, padding
        self._model: torch.nn.Module | None = None
        self._bitstreams = None
        self._error: CoderSetupError | None = None
        self._lock = threading.Lock()

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """The eval-mode codec on `self.device`."""

    def prepare(self) -> None:
        """Build the codec unless built; a failure is kept and raised again on every call."""
        with self._lock:
            if self._model is None and self._error is None:
                try:
                    from lic.codecs.io import BitstreamCodec
                    from lic.codecs.registry import codec_stride

                    model = self.build()
                    if self.rate_source != "estimate":
                        self._bitstreams = BitstreamCodec(
                            model, padding=self.padding, level=self.level
                        )
                    self.stride, self._model = codec_stride(model), model
                except Exception as err:
                    text = str(err) if isinstance(err, LicError) else f"{type(err).__name__}: {err}"
                    self._error = CoderSetupError(text, exit_code(err))
                    self._error.__cause__ = err
            if self._error is not None:
                raise self._error.with_traceback(None)

    def release(self) -> None:
        """Free the built codec (a worker past this coder's cell); `prepare` builds it again."""
        with self._lock:
            self._model = self._bitstreams = None

    @property
    def setup_error(self) -> CoderSetupError | None:
        return self._error

    @property
    def model(self) -> torch.nn.Module:
        self.prepare()
        return self._model

    @property
    def bitstreams(self):
        """The real-bitstream coder (lic.codecs.BitstreamCodec), or None when estimating."""
        self.prepare()
        return self._bitstreams

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def meta(self) -> dict:
        """With real bitstreams, the container version: cells of files written otherwise
        (version 2: no entropy checks, other scales for batch-coded images) are recomputed."""
        version = CONTAINER_VERSION if self.level is None else LEVEL_VERSION
        container = {"container": version} if self.rate_source == "bitstream" else {}
        level = {} if self.level is None else {"level": self.level}
        return super().meta() | {"padding": self.padding} | container | level

    def roundtrip_batch(self, images: list[Tensor]) -> list[tuple[Tensor, Bits]]:
        """Real bitstreams, one compress() and one decompress() call per image size: the
        transforms run batched on the codec's device; decoded images stay there."""
        if self.bitstreams is None:
            return super().roundtrip_batch(images)
        by_size: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(i)
        results: list = [None] * len(images)
        for indices in by_size.values():
            data = self.bitstreams.encode_batch(torch.stack([images[i] for i in indices]))
            decoded = self.bitstreams.decode_batch(data)
            for i, image, d in zip(indices, decoded, data, strict=True):
                results[i] = (image, container_bits(d))
        return results

    @torch.inference_mode()
    def roundtrip(self, image: Tensor) -> tuple[Tensor, Bits]:
        h, w = image.shape[-2:]
        if self.bitstreams is not None:
            data = self.bitstreams.encode(image)
            return self.bitstreams.decode(data)[0].cpu(), container_bits(data)
        device = next(self.model.parameters()).device
        with coding_at(self.model, self.level) as at:
            out = self.model(pad_image(image[None].to(device), self.stride, self.padding), **at)
        decoded = crop_image(out["x_hat"][0], h, w, self.stride, self.padding)
        return decoded.clamp(0, 1).cpu(), Bits(float(estimated_bits(out["likelihoods"])), None)


def container_bits(data: bytes) -> Bits:
    """A lic container's payload (its entropy-coded strings) and whole size, in bits."""
    from lic.codecs.io import Bitstream

    return Bits(8.0 * Bitstream.from_bytes(data).payload_bytes, 8.0 * len(data))


class CheckpointCoder(LearnedCoder):
    """A lic checkpoint, or a file without lic metadata (an official MLIC++ `.pth.tar`):
    then `meta` = (objective, lambda) labels it, else its file name stands for the objective.
    The file is read (and its metadata checked) here, or `read` is its `read_checkpoint`
    result; the codec is built on first use. A variable-rate checkpoint codes at `level`
    (its lambda is that level's)."""

    def __init__(
        self,
        path: str | Path,
        estimate_rate: bool = False,
        device: str | torch.device = "cpu",
        meta: tuple[str, float | None] | None = None,
        padding: str = FIELD_PADDING,
        level: int | None = None,
        read: tuple | None = None,
    ) -> None:
        super().__init__(estimate_rate, device, padding)
        self.path = Path(path)
        objective, lmbda = meta or (None, None)
        info, self._state = read or read_checkpoint(self.path, lmbda=lmbda, distortion=objective)
        label = sanitised(info.hparams.get("label", self.path.name))
        self.info, self.codec = info, info.codec
        self.objective = label if info.distortion is None else objective_name(info.distortion)
        self.lmbda, self.distortion = info.lmbda, info.distortion
        if (level is None) != (info.lambdas is None):
            raise UsageError(f"{path}: a level is for variable-rate checkpoints, each needs one")
        if level is not None:
            self.level = check_level(level, len(info.lambdas))
            self.lmbda = info.lambdas[level]
        stat = os.stat(self.path)
        identity = f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        self._digest = hashlib.sha256(identity.encode()).hexdigest()[:10]

    def build(self) -> torch.nn.Module:
        return build_codec(self.info, self._state, str(self.path)).to(self.device).eval()

    @property
    def key(self) -> str:
        pad = "" if self.padding == FIELD_PADDING else f"-{self.padding}"
        level = "" if self.level is None else f"-L{self.level}"
        point = f"{self.codec}-{self.objective}-l{self.lmbda}{level}"
        return f"{point}-{self.rate_source}{pad}-{self._digest}"

    def meta(self) -> dict:
        return super().meta() | {"checkpoint": str(self.path), "distortion": self.distortion}


@dataclass(frozen=True)
class ZooEntry:
    """`compressai:NAME[:QUALITIES][:METRIC]`: a CompressAI zoo model at some qualities (a
    variable-rate model: one file, at some of its levels)."""

    name: str
    qualities: tuple[int, ...]
    metric: str = "mse"

    @property
    def codec(self) -> str:
        return f"{ZOO_PREFIX}{self.name}"

    @property
    def variable_rate(self) -> bool:
        return is_vbr_codec(self.name)


def _zoo_points(name: str, metric: str) -> tuple[int, ...]:
    """The qualities of a zoo model, or the levels of a variable-rate one."""
    if is_vbr_codec(name):
        from lic.codecs.vbr import default_lambdas

        return tuple(range(len(default_lambdas(name))))
    from compressai.zoo.image import model_urls

    return tuple(sorted(model_urls[name][metric]))


def _quality_list(text: str) -> tuple[int, ...]:
    """'3', '1-8' or '1,3,5' -> qualities."""
    out: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(part)
        out += range(int(low), int(high) + 1) if dash else [int(low)]
    return tuple(dict.fromkeys(out))


def parse_zoo_spec(spec: str, levels: Sequence[int] | None = None) -> ZooEntry:
    """Parse and check a zoo entry against CompressAI's own tables of pretrained weights; a
    variable-rate model's QUALITIES are its levels (`levels`, then all, when not given)."""
    from compressai.zoo.image import model_urls
    from compressai.zoo.image_vbr import model_urls as vbr_urls

    ZOO_URLS = model_urls | vbr_urls
    usage = f"expected {ZOO_PREFIX}NAME[:QUALITIES][:METRIC] (e.g. {ZOO_PREFIX}mbt2018-mean:1-8)"
    parts = spec.removeprefix(ZOO_PREFIX).split(":")
    name, rest = parts[0], parts[1:]
    metric = rest.pop() if rest and not rest[-1][:1].isdigit() else "mse"
    if name not in ZOO_URLS or len(rest) > 1:
        raise UsageError(f"'{spec}': {usage}; zoo models: {', '.join(ZOO_URLS)}")
    if metric not in ZOO_URLS[name]:
        raise UsageError(f"'{spec}': {name} has metrics {', '.join(ZOO_URLS[name])}")
    known = _zoo_points(name, metric)
    default = tuple(levels) if levels is not None and is_vbr_codec(name) else known
    try:
        qualities = _quality_list(rest[0]) if rest else default
    except ValueError:
        raise UsageError(f"'{spec}': bad qualities; {usage}") from None
    if not qualities or not set(qualities) <= set(known):
        what = "levels" if is_vbr_codec(name) else "qualities"
        raise UsageError(f"'{spec}': {name} ({metric}) has {what} {known}")
    return ZooEntry(name, qualities, metric)


class ZooCoder(LearnedCoder):
    """A CompressAI zoo model, loaded by CompressAI's own zoo function (pretrained=True),
    once its weights are in the torch hub cache or downloadable (checked here)."""

    def __init__(
        self,
        entry: ZooEntry,
        quality: int,
        estimate_rate: bool = False,
        device: str | torch.device = "cpu",
        padding: str = FIELD_PADDING,
    ) -> None:
        from lic.codecs.checkpoint import require_zoo_weights

        super().__init__(estimate_rate, device, padding)
        require_zoo_weights(entry.name, None if entry.variable_rate else quality, entry.metric)
        self.entry = entry
        self.codec, self.objective, self.quality = entry.codec, entry.metric, int(quality)
        if entry.variable_rate:  # a point is a level and its lambda (no zoo quality)
            from lic.codecs.vbr import default_lambdas

            self.level, self.quality = self.quality, None
            self.lmbda = default_lambdas(entry.name)[self.level]
        self.prepare()  # here, once: a download must not happen in every worker

    def build(self) -> torch.nn.Module:
        from compressai.zoo import image_models

        from lic.codecs.checkpoint import entropy_tables_ready

        quality = self.quality if self.level is None else 0  # (unused by the VBR zoo)
        model = image_models[self.entry.name](
            quality=quality, metric=self.entry.metric, pretrained=True, progress=False
        )
        model.codec_name = self.entry.name
        if not entropy_tables_ready(model):
            model.update(force=True)
        return model.to(self.device).eval()

    @property
    def key(self) -> str:
        name = self.codec.removeprefix(ZOO_PREFIX)
        pad = "" if self.padding == FIELD_PADDING else f"-{self.padding}"
        point = f"q{self.quality}" if self.level is None else f"L{self.level}"
        return f"zoo-{name}-{self.objective}-{point}-{self.rate_source}{pad}"


def _checkpoint_coders(
    path: str | Path,
    estimate_rate: bool,
    device: str | torch.device,
    meta: tuple[str, float | None] | None,
    padding: str,
    levels: Sequence[int] | None,
) -> list[CheckpointCoder]:
    """One coder of a fixed-rate checkpoint; one per level of a variable-rate one (the file
    read once)."""
    objective, lmbda = meta or (None, None)
    read = read_checkpoint(path, lmbda=lmbda, distortion=objective)
    lambdas = read[0].lambdas
    if lambdas is None:
        return [CheckpointCoder(path, estimate_rate, device, meta, padding, read=read)]
    chosen = range(len(lambdas)) if levels is None else levels
    for level in chosen:
        try:
            check_level(level, len(lambdas))
        except ValueError as err:
            raise UsageError(f"--levels: {path}: {err}") from None
    return [
        CheckpointCoder(path, estimate_rate, device, meta, padding, level, read)
        for level in dict.fromkeys(chosen)
    ]


def build_coders(
    checkpoints: Sequence[str | Path],
    baselines: Sequence[str] = (),
    qualities: dict[str, Sequence[int]] | None = None,
    estimate_rate: bool = False,
    device: str | torch.device = "cpu",
    ckpt_meta: dict[str, tuple[str, float | None]] | None = None,
    padding: str = FIELD_PADDING,
    levels: Sequence[int] | None = None,
) -> list[Coder]:
    """The uncompressed reference, every checkpoint or zoo entry (`compressai:...`) and every
    grid point of each classical baseline (its default grid unless `qualities` names one).
    `ckpt_meta`: (objective, lambda) of checkpoint paths that do not record them; `padding`:
    how learned codecs pad (lic.codecs.io.PADDINGS); `levels`: the levels variable-rate
    codecs code at (all when None), one point of their curve each."""
    from lic.codecs.checkpoint import zoo_weight_files
    from lic.weights import require_hub_files

    ckpt_meta = ckpt_meta or {}
    zoo = [parse_zoo_spec(str(c), levels) for c in checkpoints if str(c).startswith(ZOO_PREFIX)]
    require_hub_files([f for e in zoo for f in zoo_weight_files(e.name, e.qualities, e.metric)])
    coders: list[Coder] = [Uncompressed()]
    for ckpt in checkpoints:
        if str(ckpt).startswith(ZOO_PREFIX):
            entry = parse_zoo_spec(str(ckpt), levels)
            coders += [ZooCoder(entry, q, estimate_rate, device, padding) for q in entry.qualities]
        else:
            coders += _checkpoint_coders(
                ckpt, estimate_rate, device, ckpt_meta.get(str(ckpt)), padding, levels
            )
    qualities = qualities or {}
    for name in baselines:
        grid = qualities.get(name) or classical_codec(name).qualities
        coders += [ClassicalCoder(name, q) for q in grid]
    return coders
