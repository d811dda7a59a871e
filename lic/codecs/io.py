"""Real bitstreams: one small container file per image, decodable from the file + checkpoint.

Layout (all integers big-endian):

    magic "LICB" | version u8 | codec-name length u8 | codec name (UTF-8)
    | model fingerprint (8 bytes) | height u32 | width u32
    | shape length u32 | shape (JSON: the latent shapes compress() returned)
    | stream count u8 | per stream: length u32, bytes
    | CRC32 u32 of every byte before it

The fingerprint is a hash of the codec's weights and entropy tables, so a file decoded with
another checkpoint of the same architecture (another lambda, say) is refused instead of
turning into a wrong image. Images are padded to the codec's stride by edge replication
and cropped back after decoding.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from torch import Tensor

from lic.codecs.registry import codec_stride

MAGIC = b"LICB"
VERSION = 1
FINGERPRINT_BYTES = 8


class BitstreamError(ValueError):
    """A container file that is corrupt, truncated, or made by another codec/checkpoint."""


@dataclass(frozen=True)
class Bitstream:
    codec: str
    fingerprint: bytes
    height: int
    width: int
    shape: object
    streams: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        name, shape = self.codec.encode(), json.dumps(self.shape).encode()
        parts = [
            MAGIC,
            struct.pack(">BB", VERSION, len(name)),
            name,
            self.fingerprint,
            struct.pack(">III", self.height, self.width, len(shape)),
            shape,
            struct.pack(">B", len(self.streams)),
        ]
        for stream in self.streams:
            parts += [struct.pack(">I", len(stream)), stream]
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
        version, name_len = reader.unpack(">BB")
        if version != VERSION:
            raise BitstreamError(f"bitstream format version {version}; this lic reads {VERSION}")
        codec = reader.take(name_len).decode()
        fingerprint = reader.take(FINGERPRINT_BYTES)
        height, width, shape_len = reader.unpack(">III")
        shape = json.loads(reader.take(shape_len))
        (count,) = reader.unpack(">B")
        streams = tuple(reader.take(reader.unpack(">I")[0]) for _ in range(count))
        if reader.offset != len(body):
            raise BitstreamError("trailing bytes after the last stream")
        return cls(codec, fingerprint, height, width, shape, streams)


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


class BitstreamCodec:
    """Encode images to container bytes and back with one (eval-mode, updated) codec."""

    def __init__(self, model: CompressionModel) -> None:
        self.model = model.eval()
        self.name = getattr(model, "codec_name", type(model).__name__)
        self.stride = codec_stride(model)
        self.fingerprint = model_fingerprint(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def codes_batches(self) -> bool:
        """Whether one compress() call may code several images (MLIC++: one at a time)."""
        return getattr(self.model, "codes_batches", True)

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
        h, w = x.shape[-2:]
        with torch.autocast(self.device.type, enabled=False):  # code in fp32, always
            out = self.model.compress(pad_to_stride(x.to(self.device, torch.float32), self.stride))
        if any(len(group) != len(x) for group in out["strings"]):
            raise ValueError("expected one string per entropy stage and image")
        shape = _plain(out["shape"])
        return [
            Bitstream(
                self.name, self.fingerprint, h, w, shape, tuple(bytes(g[i]) for g in out["strings"])
            ).to_bytes()
            for i in range(len(x))
        ]

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

    def decode(self, data: bytes) -> Tensor:
        """Container bytes -> (1, 3, H, W) float32 in [0, 1] on the codec's device."""
        return self._decompress([self._parse(data)])

    def decode_batch(self, data: list[bytes]) -> list[Tensor]:
        """Containers -> (3, H, W) images; files of one size and latent shape are decoded by
        one decompress() call."""
        streams = [self._parse(d) for d in data]
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(streams):
            key = (s.height, s.width, json.dumps(s.shape)) if self.codes_batches else i
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
        strings = [[s.streams[k] for s in streams] for k in range(len(first.streams))]
        with torch.autocast(self.device.type, enabled=False):
            x_hat = self.model.decompress(strings, first.shape)["x_hat"]
        return x_hat[..., : first.height, : first.width].clamp(0, 1)


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
