"""Real bitstreams: one small container file per image, decodable from the file + checkpoint.

Layout (all integers big-endian):

    magic "LICB" | version u8 | padding u8 (version 2+) | level u8 (version 4)
    | codec-name length u8
    | codec name (UTF-8) | model fingerprint (8 bytes) | height u32 | width u32
    | shape length u32 | shape (JSON: the latent shapes compress() returned)
    | stream count u8 | per stream: length u32, bytes
    | (version 3) origin (8 bytes: device, torch and CUDA versions, system, machine)
    | check mode u8 | check count u8 | per check: CRC32 u32 of entropy parameters
    | CRC32 u32 of every byte before it

Version 4 is version 3 with the rate level a variable-rate codec coded at (lic.codecs.vbr);
it is written for those codecs only, so a fixed-rate codec's files stay version 3, byte for
byte.

The checks (lic.codecs.entropy_check) make a file that another device's arithmetic would
decode to a silently wrong image fail instead (EntropyMismatchError, exit 1); 14 bytes for
a hyperprior or mean-scale model, counted in `bpp_file`, never in the payload.

The fingerprint is a hash of the codec's weights and entropy tables, so a file decoded with
another checkpoint of the same architecture (another lambda, say) is refused instead of
turning into a wrong image. Images are padded before coding and cropped back after
decoding; the file records how (`PADDINGS`): by default as CompressAI's `eval_model` pads
(zeros, centred, to a multiple of 64 and of the codec's stride), so that the entropy-coded
payload (`Bitstream.payload_bytes`, the rate the field reports) is the published tools'
byte for byte; `replicate` repeats the bottom and right edges up to the stride (lic before
version 2; version 1 files decode that way).

Decoding trusts nothing in the file (CompressAI's native rANS decoder has no bounds checks,
so everything it is given is checked first): the size must be at most `max_pixels`
(default: Pillow's limit, `lic.data.images.pixel_limit()`); the latent shape must equal the
one derived from height, width and the codec's stride; the stream count must be the codec's;
every stream must be a whole number of 32-bit rANS words, at least the 8 bytes every encoder
flush writes, and no longer than the symbols it codes could need. Streams are then padded
with zeros, so that even a forged stream of that length cannot make the decoder read past
its buffer. A size the device has no memory left to decode (estimated from the largest
tensor of a probe decode) is refused too, instead of ending in the OOM killer. The shape
JSON is at most 1 KB.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from lic.codecs.entropy_check import (
    MAX_CHECKS,
    PER_CALL,
    TOTAL,
    EntropyChecks,
    Origin,
    traced,
)
from lic.codecs.padding import FIELD_PADDING, PADDINGS, blocks, padding_box
from lic.codecs.vbr import check_level, coding_at, is_variable_rate, level_count, level_tables
from lic.data.images import pixel_limit
from lic.devices import free_memory
from lic.errors import InputError

if TYPE_CHECKING:
    from compressai.models import CompressionModel

MAGIC = b"LICB"
VERSION = 3  # what fixed-rate codecs write
LEVEL_VERSION = 4  # what variable-rate codecs write: version 3 and the level
READS = (1, 2, 3, 4)  # version 1: no padding field (padded by `replicate`); 1-2: no checks
FINGERPRINT_BYTES = 8
MAX_SHAPE_BYTES = 1024
RANS_WORD, RANS_FLUSH = 4, 8  # rANS streams are 32-bit words; every flush writes two
# Bounds of CompressAI's rANS coder (cpp_exts/rans): a symbol costs at most one word plus
# its bypass words (a 32-bit value: at most 9 nibbles, one word each) when encoding; when
# decoding garbage, a symbol reads at most one word per step (8 bytes of padding per symbol
# cover it) and a run of 0xF bypass counts makes it read up to 15 more nibbles per nibble
# of real data (16 bytes of padding per stream byte).
MAX_STREAM_BYTES_PER_SYMBOL = 40
PAD_BYTES_PER_STREAM_BYTE, PAD_BYTES_PER_SYMBOL, PAD_SLACK = 16, 8, 4096
# Peak decode memory over the largest activation (float32): GDN and friends keep a few
# temporaries of that size (measured: 3.5x for bmshj2018-hyperprior N=128, M=192).
DECODE_MEMORY_FACTOR = 4


class BitstreamError(InputError):
    """A container file that is corrupt, truncated, forged, or made by another
    codec/checkpoint."""


@dataclass(frozen=True)
class Bitstream:
    codec: str
    fingerprint: bytes
    height: int
    width: int
    shape: object
    streams: tuple[bytes, ...]
    padding: str = FIELD_PADDING
    checks: EntropyChecks | None = None  # None: a version 1 or 2 file (nothing to check)
    level: int | None = None  # a variable-rate codec's level (version 4); None: fixed-rate

    @property
    def payload_bytes(self) -> int:
        """The entropy-coded strings alone: the bytes CompressAI's eval_model counts."""
        return sum(len(stream) for stream in self.streams)

    def to_bytes(self) -> bytes:
        name, shape = self.codec.encode(), json.dumps(self.shape).encode()
        version = VERSION if self.level is None else LEVEL_VERSION
        parts = [
            MAGIC,
            struct.pack(">BB", version, PADDINGS.index(self.padding)),
            b"" if self.level is None else struct.pack(">B", self.level),
            struct.pack(">B", len(name)),
            name,
            self.fingerprint,
            struct.pack(">III", self.height, self.width, len(shape)),
            shape,
            struct.pack(">B", len(self.streams)),
        ]
        for stream in self.streams:
            parts += [struct.pack(">I", len(stream)), stream]
        if self.checks is None:
            raise ValueError("a version 3 file records its entropy checks")
        parts.append(self.checks.to_bytes())
        body = b"".join(parts)
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Bitstream:
        if len(data) < 4 or data[:4] != MAGIC:
            raise BitstreamError("not a lic bitstream (bad magic)")
        if len(data) < 10:
            raise BitstreamError("truncated bitstream")
        body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
        if zlib.crc32(body) != crc:
            raise BitstreamError("CRC mismatch: the file is corrupt or truncated")
        reader = _Reader(body, offset=4)
        (version,) = reader.unpack(">B")
        if version not in READS:
            known = f"{', '.join(map(str, READS[:-1]))} and {READS[-1]}"
            raise BitstreamError(
                f"bitstream format version {version}; this lic reads versions {known} "
                "(a newer lic wrote it: upgrade lic to decode it)"
            )
        padding = "replicate"
        if version >= 2:
            (code,) = reader.unpack(">B")
            if code >= len(PADDINGS):
                raise BitstreamError(
                    f"padding code {code} is none of {dict(enumerate(PADDINGS))}: the file is "
                    "forged or from a newer lic"
                )
            padding = PADDINGS[code]
        level = reader.unpack(">B")[0] if version >= LEVEL_VERSION else None
        (name_len,) = reader.unpack(">B")
        codec = _text(reader.take(name_len), "codec name")
        fingerprint = reader.take(FINGERPRINT_BYTES)
        height, width, shape_len = reader.unpack(">III")
        if shape_len > MAX_SHAPE_BYTES:
            raise BitstreamError(
                f"latent shape field of {shape_len} bytes (at most {MAX_SHAPE_BYTES})"
            )
        shape = _shape(reader.take(shape_len))
        (count,) = reader.unpack(">B")
        streams = tuple(reader.take(reader.unpack(">I")[0]) for _ in range(count))
        checks = _checks(reader) if version >= 3 else None
        if reader.offset != len(body):
            raise BitstreamError("trailing bytes after the last stream")
        return cls(codec, fingerprint, height, width, shape, streams, padding, checks, level)


def _checks(reader: _Reader) -> EntropyChecks:
    """The entropy checks of a version 3 file (lic.codecs.entropy_check)."""
    origin = Origin(reader.unpack(">8B"))
    mode, count = reader.unpack(">BB")
    if mode not in (PER_CALL, TOTAL) or count > MAX_CHECKS or (mode == TOTAL and count != 1):
        raise BitstreamError(f"entropy check mode {mode} with {count} checks cannot be lic's")
    crcs = tuple(reader.unpack(">I")[0] for _ in range(count))
    return EntropyChecks(mode, crcs, origin)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BitstreamError(f"{what} is not UTF-8") from None


def _shape(raw: bytes) -> object:
    """The latent shape field: JSON, bounded in size by the caller; checked by the codec."""
    try:
        return json.loads(_text(raw, "latent shape"))
    except (json.JSONDecodeError, RecursionError):
        raise BitstreamError("latent shape field is not valid JSON") from None


def _shape_rule(one: object, two_by_three: object) -> object:
    """How each number of compress()'s shape grows with the blocks, from the shapes of a
    1x1-block and a 2x3-block probe: constant ("c"), with the rows ("h") or the columns
    ("w"). Raises ValueError for a shape that does not grow linearly."""
    if (
        isinstance(one, dict)
        and isinstance(two_by_three, dict)
        and one.keys() == two_by_three.keys()
    ):
        return {k: _shape_rule(v, two_by_three[k]) for k, v in one.items()}
    if isinstance(one, list) and isinstance(two_by_three, list) and len(one) == len(two_by_three):
        return [_shape_rule(a, b) for a, b in zip(one, two_by_three, strict=True)]
    if isinstance(one, int) and isinstance(two_by_three, int):
        for kind, factor in (("c", 1), ("h", 2), ("w", 3)):
            if two_by_three == factor * one:
                return (kind, one)
    raise ValueError(f"latent shape {one} -> {two_by_three} does not grow with the image")


def _apply_rule(rule: object, rows: int, cols: int) -> object:
    if isinstance(rule, dict):
        return {k: _apply_rule(v, rows, cols) for k, v in rule.items()}
    if isinstance(rule, list):
        return [_apply_rule(v, rows, cols) for v in rule]
    kind, value = rule
    return value * {"c": 1, "h": rows, "w": cols}[kind]


@dataclass(frozen=True)
class StreamLayout:
    """What every file of one codec holds, measured on probe images: the stream count, the
    latent symbols (all streams together) of one stride x stride block of padded pixels,
    and how compress()'s latent shape follows from the image size."""

    streams: int
    symbols_per_block: int
    shape_rule: object
    floats_per_pixel: float = 0.0  # the largest tensor of a decode, per padded pixel

    def symbols(self, height: int, width: int, stride: int, padding: str) -> int:
        rows, cols = blocks(height, width, stride, padding)
        return rows * cols * self.symbols_per_block

    def shape(self, height: int, width: int, stride: int, padding: str) -> object:
        """The latent shape compress() reports for a height x width image."""
        return _apply_rule(self.shape_rule, *blocks(height, width, stride, padding))


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data, self.offset = data, offset

    def take(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise BitstreamError("truncated bitstream")
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def model_fingerprint(model: CompressionModel) -> bytes:
    """Hash of the weights and entropy tables that encoder and decoder must share."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()[:FINGERPRINT_BYTES]


def pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Edge-replicate the bottom and right so both sides are multiples of `stride`."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % stride, -w % stride
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def pad_image(x: Tensor, stride: int, padding: str) -> Tensor:
    """(N, 3, H, W) padded for coding as `padding` says (see PADDINGS)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding '{padding}': one of {PADDINGS}")
    box = padding_box(*x.shape[-2:], stride, padding)
    if not any(box):
        return x
    mode = "constant" if padding == "zeros" else "replicate"
    return F.pad(x, box, mode=mode)


def crop_image(x: Tensor, height: int, width: int, stride: int, padding: str) -> Tensor:
    """The height x width image inside a decoded (padded) one."""
    left, _, top, _ = padding_box(height, width, stride, padding)
    return x[..., top : top + height, left : left + width]


class BitstreamCodec:
    """Encode images to container bytes and back with one (eval-mode, updated) codec; a
    variable-rate codec encodes at `level` (lic.codecs.vbr) and decodes at each file's."""

    def __init__(
        self,
        model: CompressionModel,
        max_pixels: int | None = None,
        padding: str = FIELD_PADDING,
        level: int | None = None,
    ) -> None:
        from lic.codecs.registry import codec_stride

        if padding not in PADDINGS:
            raise ValueError(f"padding '{padding}': one of {PADDINGS}")
        self.padding = padding
        self.model = model.eval()
        self.name = getattr(model, "codec_name", type(model).__name__)
        self.levels = level_count(model) if is_variable_rate(model) else None
        if level is not None and self.levels is None:
            raise ValueError(f"level {level}: codec '{self.name}' is not variable-rate")
        self.level = None if level is None else check_level(level, self.levels)
        self.stride = codec_stride(model)
        self.fingerprint = model_fingerprint(model)
        self.max_pixels = max_pixels

    def at_level(self, level: int) -> BitstreamCodec:
        """This codec encoding at another level; the measured layout (the same at every
        level) is shared, not measured again."""
        if self.levels is None:
            raise ValueError(f"level {level}: codec '{self.name}' is not variable-rate")
        other = copy.copy(self)
        other.level = check_level(level, self.levels)
        return other

    def _at(self, level: int | None) -> contextlib.AbstractContextManager[dict]:
        """coding_at the level (a variable-rate codec's probes use level 0 when none is set)."""
        if level is None and self.levels is not None:
            level = 0
        return coding_at(self.model, level)

    @functools.cached_property
    @torch.inference_mode()
    def layout(self) -> StreamLayout:
        """Measured once on probe images of 1x1 and 2x3 stride blocks (see StreamLayout)."""
        probes = {}
        with torch.autocast(self.device.type, enabled=False), self._at(self.level) as at:
            for rows, cols in ((1, 1), (2, 3)):
                size = (1, 3, rows * self.stride, cols * self.stride)
                x = torch.full(size, 0.5, device=self.device)
                probes[rows, cols] = self.model.compress(x, **at)
            likelihoods = self.model(x[..., : self.stride, : self.stride], **at)["likelihoods"]
            probe = probes[2, 3]
            largest = _largest_tensor(self.model, probe["strings"], probe["shape"], at)
        return StreamLayout(
            len(probes[1, 1]["strings"]),
            sum(t.numel() for t in likelihoods.values()),
            _shape_rule(_plain(probes[1, 1]["shape"]), _plain(probes[2, 3]["shape"])),
            largest / x.shape[-2:].numel(),
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def codes_batches(self) -> bool:
        """Whether one compress() call may code several images as one batch: only models
        whose entropy parameters come from `h_s` alone, which then runs image by image
        (`_batch_invariant`); the others' context and slice networks would give a batch
        other scales than a single image, so files coded together could not be decoded
        alone (MLIC++ sets False itself)."""
        from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

        explicit = getattr(self.model, "codes_batches", None)
        if explicit is not None:
            return bool(explicit)
        return type(self.model) in (FactorizedPrior, ScaleHyperprior, MeanScaleHyperprior)

    def encode(self, image: Tensor) -> bytes:
        """(3, H, W) or (1, 3, H, W) in [0, 1] -> container bytes."""
        x = image if image.ndim == 4 else image[None]
        if x.shape[0] != 1 or x.shape[1] != 3:
            raise ValueError(f"encode takes one RGB image, got shape {tuple(image.shape)}")
        return self._compress(x)[0]

    def encode_batch(self, images: Tensor) -> list[bytes]:
        """(N, 3, H, W) of one size -> one container per image, the same bytes as `encode`
        gives each; the transforms run once over the batch (on the codec's device)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_batch takes (N, 3, H, W), got {tuple(images.shape)}")
        if not self.codes_batches:
            return [self._compress(x[None])[0] for x in images]
        return self._compress(images)

    @torch.inference_mode()
    def _compress(self, x: Tensor) -> list[bytes]:
        if self.levels is not None and self.level is None:
            raise ValueError(
                f"codec '{self.name}' is variable-rate: choose a level (0 to {self.levels - 1})"
            )
        h, w = x.shape[-2:]
        with torch.autocast(self.device.type, enabled=False):  # code in fp32, always
            x = pad_image(x.to(self.device, torch.float32), self.stride, self.padding)
            traces = traced(self.model, len(x), self.device)
            with self._at(self.level) as at, traces as trace, _batch_invariant(self.model):
                self._trace_level_tables(trace, len(x))
                out = self.model.compress(x, **at)
        origin = Origin.here(self.device)
        if any(len(group) != len(x) for group in out["strings"]):
            raise ValueError("expected one string per entropy stage and image")
        shape = _plain(out["shape"])
        expected = self.layout.shape(h, w, self.stride, self.padding)
        if shape != expected:
            raise ValueError(
                f"codec '{self.name}' reports latent shape {shape} for a {w}x{h} image; "
                f"its files would not decode (expected {expected})"
            )
        return [
            Bitstream(
                self.name,
                self.fingerprint,
                h,
                w,
                shape,
                tuple(bytes(g[i]) for g in out["strings"]),
                self.padding,
                EntropyChecks.of_calls(trace.crcs[i], origin),
                self.level,
            ).to_bytes()
            for i in range(len(x))
        ]

    def _trace_level_tables(self, trace, images: int) -> None:
        """A variable-rate hyperprior's tables of the level are computed while coding, not
        read from the checkpoint: they are checked as the scales are, one CRC before all."""
        table = level_tables(self.model)
        if table is not None:
            trace(table.reshape(1, -1).expand(images, -1))

    def check(self, stream: Bitstream) -> None:
        if stream.codec != self.name:
            raise BitstreamError(
                f"bitstream of codec '{stream.codec}', but the checkpoint is '{self.name}'"
            )
        if stream.fingerprint != self.fingerprint:
            raise BitstreamError(
                f"bitstream encoded with another '{self.name}' checkpoint "
                "(weights or entropy tables differ)"
            )
        self._check_level(stream)
        self._check_size(stream)
        self._check_streams(stream)

    def _check_level(self, stream: Bitstream) -> None:
        if (stream.level is None) != (self.levels is None):
            kind = "no level" if stream.level is None else f"level {stream.level}"
            raise BitstreamError(
                f"bitstream with {kind}, but codec '{self.name}' is "
                f"{'fixed' if self.levels is None else 'variable'}-rate"
            )
        if stream.level is not None:
            try:
                check_level(stream.level, self.levels)
            except ValueError as err:
                raise BitstreamError(f"bitstream at {err}") from None

    def _check_size(self, stream: Bitstream) -> None:
        h, w, limit = stream.height, stream.width, self.max_pixels or pixel_limit()
        if h < 1 or w < 1 or h * w > limit:
            raise BitstreamError(
                f"image size {w}x{h} is outside 1..{limit} pixels (a larger limit: --max-pixels)"
            )
        rows, cols = blocks(h, w, self.stride, stream.padding)
        need = (
            DECODE_MEMORY_FACTOR * 4 * self.layout.floats_per_pixel * rows * cols * self.stride**2
        )
        free = free_memory(self.device)
        if free is not None and need > free:
            raise BitstreamError(
                f"decoding a {w}x{h} image with '{self.name}' needs about {need / 2**30:.1f} GiB; "
                f"{free / 2**30:.1f} GiB are free"
            )
        expected = self.layout.shape(h, w, self.stride, stream.padding)
        if stream.shape != expected:
            raise BitstreamError(
                f"latent shape {json.dumps(stream.shape)} does not fit a {w}x{h} image "
                f"('{self.name}' codes {expected})"
            )

    def _check_streams(self, stream: Bitstream) -> None:
        """Stream count and lengths a real encoder can produce (see the module docstring)."""
        layout = self.layout
        if len(stream.streams) != layout.streams:
            raise BitstreamError(
                f"{len(stream.streams)} streams; '{self.name}' files hold {layout.streams}"
            )
        most = (
            MAX_STREAM_BYTES_PER_SYMBOL
            * layout.symbols(stream.height, stream.width, self.stride, stream.padding)
            + RANS_FLUSH
        )
        for k, data in enumerate(stream.streams):
            n = len(data)
            if n < RANS_FLUSH or n % RANS_WORD or n > most:
                raise BitstreamError(
                    f"stream {k} of {n} bytes cannot be a rANS stream of this image "
                    f"(a multiple of {RANS_WORD}, {RANS_FLUSH} to {most} bytes)"
                )

    def _padded(self, stream: Bitstream) -> list[bytes]:
        """Streams followed by enough zeros that the decoder never reads past them."""
        symbols = self.layout.symbols(stream.height, stream.width, self.stride, stream.padding)
        return [
            data
            + bytes(
                PAD_BYTES_PER_STREAM_BYTE * len(data) + PAD_BYTES_PER_SYMBOL * symbols + PAD_SLACK
            )
            for data in stream.streams
        ]

    def decode(self, data: bytes) -> Tensor:
        """Container bytes -> (1, 3, H, W) float32 in [0, 1] on the codec's device."""
        return self._decompress([self._parse(data)])

    def decode_batch(self, data: list[bytes]) -> list[Tensor]:
        """Containers -> (3, H, W) images; files of one size and latent shape are decoded by
        one decompress() call."""
        streams = [self._parse(d) for d in data]
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(streams):
            same = (s.height, s.width, s.padding, s.level, json.dumps(s.shape))
            key = same if self.codes_batches else i
            groups.setdefault(key, []).append(i)
        images: list[Tensor] = [torch.empty(0)] * len(streams)
        for indices in groups.values():
            decoded = self._decompress([streams[i] for i in indices])
            for i, image in zip(indices, decoded, strict=True):
                images[i] = image
        return images

    def _parse(self, data: bytes) -> Bitstream:
        stream = Bitstream.from_bytes(data)
        self.check(stream)
        return stream

    @torch.inference_mode()
    def _decompress(self, streams: list[Bitstream]) -> Tensor:
        first = streams[0]
        padded = [self._padded(s) for s in streams]
        strings = [[p[k] for p in padded] for k in range(len(first.streams))]
        expected = [s.checks for s in streams]
        autocast = torch.autocast(self.device.type, enabled=False)
        checked = traced(self.model, len(streams), self.device, expected)
        with autocast, self._at(first.level) as at, checked as trace, _batch_invariant(self.model):
            self._trace_level_tables(trace, len(streams))
            x_hat = self.model.decompress(strings, first.shape, **at)["x_hat"]
        return crop_image(x_hat, first.height, first.width, self.stride, first.padding).clamp(0, 1)


@contextlib.contextmanager
def _batch_invariant(model: CompressionModel) -> Iterator[None]:
    """`model.h_s` run image by image while coding: a convolution over a batch may round
    differently from one over a single image, and the scales it gives must be the same
    whether a file was coded in a batch or alone (the entropy checks would refuse it)."""
    hyper = getattr(model, "h_s", None)
    if hyper is None:
        yield
        return
    forward = hyper.forward

    def one_at_a_time(z: Tensor) -> Tensor | tuple:
        if len(z) == 1:
            return forward(z)
        parts = [forward(z[i : i + 1]) for i in range(len(z))]
        if isinstance(parts[0], Tensor):
            return torch.cat(parts)
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))

    hyper.forward = one_at_a_time
    try:
        yield
    finally:
        del hyper.forward


def _largest_tensor(model: CompressionModel, strings: list, shape: object, at: dict) -> int:
    """Elements of the largest tensor any module outputs while decompress() decodes."""
    largest = 0

    def record(_module, _inputs, output) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output.numel())

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        model.decompress(strings, shape, **at)
    finally:
        for handle in handles:
            handle.remove()
    return largest


def _plain(shape: object) -> object:
    """compress()'s shape output (torch.Size, tuples, dicts of them) as JSON-able lists."""
    if isinstance(shape, dict):
        return {k: _plain(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)):
        return [_plain(v) for v in shape]
    return int(shape)


def bitstream_bpp(data: bytes, height: int, width: int) -> float:
    """Rate of a container file over the unpadded image: 8 * bytes / (H * W)."""
    return 8 * len(data) / (height * width)


def payload_bpp(data: bytes) -> float:
    """Rate of a container's entropy-coded strings over the unpadded image (the field's
    rate: CompressAI eval_model's 8 * sum of string bytes / (H * W))."""
    stream = Bitstream.from_bytes(data)
    return 8 * stream.payload_bytes / (stream.height * stream.width)


MAX_BYTES_PER_PIXEL = 4  # above raw 24-bit RGB: no real .lic file comes near it
MAX_HEADER_BYTES = 1 << 16


def read_bitstream_file(path: str | Path, max_pixels: int | None = None) -> bytes:
    """The bytes of a .lic file, refused before reading when the file is larger than any
    bitstream of an image within the pixel limit could be (a forged file never fills memory)."""
    path = Path(path)
    limit = MAX_HEADER_BYTES + MAX_BYTES_PER_PIXEL * (max_pixels or pixel_limit())
    size = path.stat().st_size
    if size > limit:
        raise BitstreamError(
            f"{path}: {size} bytes, more than a bitstream of an image within the pixel limit "
            f"can have ({limit}); raise --max-pixels if the image really is that large"
        )
    return path.read_bytes()
