"""Rebuild a codec from a lic training checkpoint, or initialise one from other weights.

A lic checkpoint is a Lightning checkpoint whose `hyper_parameters` hold the codec name and
constructor arguments, lambda, objective and metric configuration, and whose state dict holds
the codec under `codec.` (never the frozen metric networks).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from compressai.models import CompressionModel
from compressai.zoo.image import model_urls as ZOO_URLS
from compressai.zoo.pretrained import load_pretrained

from lic.codecs.registry import create_codec
from lic.weights import require_hub_file

CODEC_PREFIX = "codec."


@dataclass
class CheckpointInfo:
    codec: str
    codec_args: dict
    lmbda: float | None = None
    distortion: object = None
    hparams: dict = field(default_factory=dict)


def load_codec_state(model: CompressionModel, state_dict: dict, source: str) -> None:
    """Load weights (resizing entropy tables as CompressAI does) or say why they do not fit."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        name = getattr(model, "codec_name", type(model).__name__)
        detail = str(err).strip().splitlines()
        raise ValueError(
            f"{source} does not hold weights of codec '{name}' "
            f"{getattr(model, 'codec_args', '')}: {' '.join(detail[:3])[:400]}"
        ) from None


def codec_state_dict(state_dict: dict) -> dict:
    """The codec's own weights out of a LightningModule state dict (keys `codec.*`)."""
    return {k[len(CODEC_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(CODEC_PREFIX)}


def save_codec_checkpoint(
    model: CompressionModel, path: str | Path, lmbda: float | None = None, distortion: object = None
) -> Path:
    """Write the smallest file `load_checkpoint` reads: the codec with its entropy tables
    (run `update()` first) and the hyper-parameters that rebuild it, as training does."""
    torch.save(
        {
            "state_dict": model.state_dict(prefix=CODEC_PREFIX),
            "hyper_parameters": {
                "codec": model.codec_name,
                "codec_args": dict(model.codec_args),
                "lmbda": lmbda,
                "distortion": distortion,
            },
        },
        path,
    )
    return Path(path)


def entropy_tables_ready(model: CompressionModel) -> bool:
    """True when update() has filled the CDF tables that real bitstreams need."""
    tables = [b for n, b in model.named_buffers() if n.endswith("_quantized_cdf")]
    return bool(tables) and all(t.numel() > 0 for t in tables)


def _read(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except Exception as err:  # pickle/zip errors of every kind
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})"
        ) from None


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", expect_codec: str | None = None
) -> tuple[CompressionModel, CheckpointInfo]:
    """The eval-mode codec of a lic checkpoint, ready for real bitstreams, and its metadata."""
    ckpt = _read(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "codec" not in hparams or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not a lic codec checkpoint (no codec name in its "
            "hyper-parameters); CompressAI state dicts go through "
            "--model.init or init_codec_weights"
        )
    if expect_codec is not None and hparams["codec"] != expect_codec:
        raise ValueError(f"{path} is a '{hparams['codec']}' checkpoint, not '{expect_codec}'")
    model = create_codec(hparams["codec"], **dict(hparams.get("codec_args") or {}))
    load_codec_state(model, codec_state_dict(ckpt["state_dict"]), str(path))
    if not entropy_tables_ready(model):
        warnings.warn(
            f"{path} has no entropy tables; computing them now. Bitstreams are only "
            "portable between machines when the tables come from the checkpoint.",
            stacklevel=2,
        )
        model.update(force=True)
    info = CheckpointInfo(
        hparams["codec"],
        dict(hparams.get("codec_args") or {}),
        hparams.get("lmbda"),
        hparams.get("distortion"),
        dict(hparams),
    )
    return model.to(map_location).eval(), info


def init_codec_weights(model: CompressionModel, spec: str) -> None:
    """Initialise from `compressai:NAME:QUALITY[:METRIC]` (the CompressAI zoo), a lic
    checkpoint, or a file holding a plain codec state dict."""
    if spec.startswith("compressai:"):
        state = _zoo_state_dict(spec)
    else:
        ckpt = _read(spec)
        if isinstance(ckpt, dict) and "state_dict" in ckpt:
            state = codec_state_dict(ckpt["state_dict"]) or ckpt["state_dict"]
        else:
            state = ckpt
        state = load_pretrained(state)
    load_codec_state(model, state, spec)


def _zoo_state_dict(spec: str) -> dict:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[2].isdigit():
        raise ValueError(f"expected compressai:NAME:QUALITY[:METRIC], got '{spec}'")
    name, quality, metric = parts[1], int(parts[2]), parts[3] if len(parts) == 4 else "mse"
    try:
        url = ZOO_URLS[name][metric][quality]
    except KeyError:
        raise ValueError(
            f"the CompressAI zoo has no '{name}' quality {quality} for '{metric}'"
        ) from None
    require_hub_file(
        url,
        f"CompressAI '{name}' quality {quality} ({metric})",
        alternative=", or pass the file's path as --model.init",
    )
    state = torch.hub.load_state_dict_from_url(url, progress=False, map_location="cpu")
    return load_pretrained(state)
