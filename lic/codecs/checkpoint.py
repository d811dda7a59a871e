"""Rebuild a codec from a lic training checkpoint, or initialise one from other weights.

A lic checkpoint is a Lightning checkpoint whose `hyper_parameters` hold the codec name and
constructor arguments, lambda, objective and metric configuration, and whose state dict holds
the codec under `codec.` (never the frozen metric networks).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lic.codecs.mlicpp.official import official_hparams, official_state_dict
from lic.codecs.vbr import (
    check_lambdas,
    default_lambdas,
    is_variable_rate,
    is_vbr_codec,
    level_count,
    resize_tables,
)
from lic.data.files import positive_number, safe_name
from lic.errors import InputError
from lic.weights import require_hub_files

if TYPE_CHECKING:
    from compressai.models import CompressionModel

CODEC_PREFIX = "codec."


@dataclass
class CheckpointInfo:
    codec: str
    codec_args: dict
    lmbda: float | None = None
    distortion: object = None
    hparams: dict = field(default_factory=dict)
    lambdas: tuple[float, ...] | None = None  # a variable-rate codec's, one per level

    def label(self) -> str:
        """'bmshj2018-hyperprior (mse, lambda 0.013)'; what a file does not record, it says."""
        if self.distortion is None and self.lmbda is None and self.lambdas is None:
            return f"{self.codec} (objective and lambda not recorded in the file)"
        from lic.metrics.objective import objective_name

        recorded = self.distortion is not None
        objective = objective_name(self.distortion) if recorded else "objective not recorded"
        lmbda = "lambda not recorded" if self.lmbda is None else f"lambda {self.lmbda:g}"
        if self.lambdas is not None:
            lmbda = (
                f"{len(self.lambdas)} levels, lambdas {self.lambdas[0]:g} to {self.lambdas[-1]:g}"
            )
        return f"{self.codec} ({objective}, {lmbda})"


# buffers that update() fills and loading resizes: their shapes follow no constructor argument
ENTROPY_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def load_codec_state(model: CompressionModel, state_dict: dict, source: str) -> None:
    """Load weights (resizing entropy tables as CompressAI does) or say why they do not fit."""
    name = getattr(model, "codec_name", type(model).__name__)
    try:
        resize_tables(model, state_dict)
        model.load_state_dict(state_dict, strict=True)
    except KeyError as err:  # CompressAI resizes the tables before the strict check
        raise InputError(
            f"{source} lacks {err} (no entropy tables: not a state dict of codec '{name}', "
            "or saved without them)"
        ) from None
    except RuntimeError as err:
        detail = str(err).strip().splitlines()
        raise InputError(
            f"{source} does not hold weights of codec '{name}' "
            f"{getattr(model, 'codec_args', '')}: {' '.join(detail[:3])[:400]}"
        ) from None


def check_codec_args(codec: str, codec_args: dict, state_dict: dict, source: str) -> None:
    """Refuse constructor arguments that do not build `state_dict`'s tensors, before the
    codec is allocated (`{N: 1000000}` would ask for terabytes): the shapes come from a build
    under FakeTensorMode, which allocates nothing. A codec whose initialisation reads tensor
    values cannot be built so; for it every integer argument must be at most the largest
    tensor side in the checkpoint (a channel count always is one)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lic.codecs.registry import create_codec

    try:
        with warnings.catch_warnings(), FakeTensorMode(allow_non_fake_inputs=True):
            warnings.simplefilter("ignore")
            model = create_codec(codec, **codec_args)
            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except ValueError as err:  # unknown codec or arguments it does not take
        raise InputError(f"{source}: {err}") from None
    except Exception:  # data-dependent initialisation, or sizes past int64
        largest = max((max(v.shape, default=1) for v in state_dict.values()), default=1)
        too_big = [f"{k}={v}" for k, v in _integers(codec_args) if v > largest]
        if too_big:
            raise InputError(
                f"{source}: codec_args {', '.join(too_big)} exceed every tensor side in the "
                f"checkpoint (at most {largest})"
            ) from None
        return
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} (codec_args give {shape})"
        for k, shape in shapes.items()
        if k in state_dict
        and not k.endswith(ENTROPY_TABLES)
        and tuple(state_dict[k].shape) != shape
    ]
    if wrong:
        raise InputError(
            f"{source} does not hold weights of codec '{codec}' {codec_args}: "
            f"{'; '.join(wrong[:3])}"
        )


def _integers(args: dict) -> list[tuple[str, int]]:
    found = []
    for key, value in args.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        found += [(key, v) for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return found


def codec_state_dict(state_dict: dict) -> dict:
    """The codec's own weights out of a LightningModule state dict (keys `codec.*`)."""
    return {k[len(CODEC_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(CODEC_PREFIX)}


def save_codec_checkpoint(
    model: CompressionModel, path: str | Path, lmbda: float | None = None, distortion: object = None
) -> Path:
    """Write the smallest file `load_checkpoint` reads: the codec with its entropy tables
    (run `update()` first) and the hyper-parameters that rebuild it, as training does; a
    variable-rate codec's file records its levels and their lambdas (the model's list)."""
    hparams = {
        "codec": model.codec_name,
        "codec_args": dict(model.codec_args),
        "lmbda": lmbda,
        "distortion": distortion,
    }
    if is_variable_rate(model):
        hparams |= {"levels": level_count(model), "lambdas": [float(v) for v in model.lmbda]}
    torch.save(
        {"state_dict": model.state_dict(prefix=CODEC_PREFIX), "hyper_parameters": hparams}, path
    )
    return Path(path)


def entropy_tables_ready(model: CompressionModel) -> bool:
    """True when update() has filled the CDF tables that real bitstreams need."""
    tables = [b for n, b in model.named_buffers() if n.endswith("_quantized_cdf")]
    return bool(tables) and all(t.numel() > 0 for t in tables)


def _read(path: str | Path) -> dict:
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a checkpoint")
    try:
        with warnings.catch_warnings():  # torch's remark on a plain pickle's protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except Exception as err:  # pickle/zip errors of every kind
        why = _why_unreadable(path, err)
        raise InputError(f"{path}: not a readable checkpoint ({why})") from None


def _why_unreadable(path: str | Path, err: Exception) -> str:
    """What the file is, in lic's words: torch's own message advises `weights_only=False`,
    i.e. running the file's code, which lic never does."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return (
            f"it holds {found.group(1)}; lic loads only tensors and plain values, so that a "
            "checkpoint cannot run code"
        )
    with open(path, "rb") as file:
        head = file.read(2)
    if head.startswith(b"PK"):
        return "a zip archive without torch's layout"
    if head.startswith(b"\x80"):  # pickle protocol 2 and later
        return "a pickle not written by torch.save, or holding more than tensors and values"
    return "neither torch's zip format nor a pickle"


def read_checkpoint(
    path: str | Path,
    expect_codec: str | None = None,
    lmbda: float | None = None,
    distortion: object = None,
) -> tuple[CheckpointInfo, dict]:
    """The metadata of a lic checkpoint (or an official MLIC++ `.pth.tar`) and its codec
    state dict, read without building the codec (nor importing CompressAI): enough to label a
    curve point; `build_codec` makes the codec. `lmbda`/`distortion` label files that lack
    them."""
    ckpt = _read(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    official = None if hparams else official_state_dict(ckpt)
    if official is not None:
        hparams = official_hparams(ckpt, official, str(path))
    elif not hparams or "codec" not in hparams or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not a lic codec checkpoint (no codec name in its "
            "hyper-parameters); CompressAI state dicts go through "
            "--model.init or init_codec_weights"
        )
    if expect_codec is not None and hparams["codec"] != expect_codec:
        raise ValueError(f"{path} is a '{hparams['codec']}' checkpoint, not '{expect_codec}'")
    state = official if official is not None else codec_state_dict(ckpt["state_dict"])
    lambdas = _level_lambdas(hparams, state, path)
    recorded = None if lambdas is not None else hparams.get("lmbda")
    info = CheckpointInfo(
        safe_name(hparams["codec"], f"{path}: codec"),
        dict(hparams.get("codec_args") or {}),
        _lambda(recorded if recorded is not None or lambdas else lmbda, path),
        hparams.get("distortion") if hparams.get("distortion") is not None else distortion,
        dict(hparams),
        lambdas,
    )
    if info.distortion is not None:
        _objective(info.distortion, path)
    return info, state


def _level_lambdas(hparams: dict, state: dict, path: str | Path) -> tuple[float, ...] | None:
    """A variable-rate checkpoint's lambdas, one per level (its gain vector's length): as
    recorded (`lambdas`, or a list `lmbda`), else CompressAI's list; None for fixed-rate."""
    if not is_vbr_codec(hparams["codec"]):
        return None
    try:
        count = level_count(state)
        recorded = hparams.get("lambdas")
        if recorded is None and isinstance(hparams.get("lmbda"), (list, tuple)):
            recorded = hparams["lmbda"]
        if recorded is None:
            recorded = default_lambdas(hparams["codec"])
        return check_lambdas(recorded, count, str(path))
    except ValueError as err:
        raise InputError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None


def _lambda(value: object, path: str | Path) -> float | None:
    """A checkpoint's lambda as a positive finite number (InputError otherwise): it labels
    curves and names files, so a string such as '0.013/../../X' never gets that far."""
    if value is None:
        return None
    number = positive_number(value)
    if number is None:
        raise InputError(f"{path}: lambda {value!r} in its metadata is not a positive number")
    return number


def _objective(distortion: object, path: str | Path) -> str:
    """The objective name of a checkpoint's distortion, checked to be a file-name part."""
    from lic.metrics.objective import objective_name

    try:
        name = objective_name(distortion)
    except (TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: distortion {distortion!r} in its metadata: {err}") from None
    return safe_name(name, f"{path}: distortion")


def build_codec(info: CheckpointInfo, state: dict, source: str) -> CompressionModel:
    """The eval-mode codec of `read_checkpoint`'s result, ready for real bitstreams; a state
    dict of another architecture is refused before anything large is allocated."""
    from lic.codecs.registry import create_codec

    check_codec_args(info.codec, info.codec_args, state, source)
    model = create_codec(info.codec, **info.codec_args)
    load_codec_state(model, state, source)
    if info.lambdas is not None:  # the lambdas it was trained with, e.g. for `lic export`
        model.lmbda = list(info.lambdas)
    if not entropy_tables_ready(model):
        warnings.warn(
            f"{source} has no entropy tables; computing them now. Bitstreams are only "
            "portable between machines when the tables come from the checkpoint.",
            stacklevel=3,
        )
        model.update(force=True)
    return model.eval()


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expect_codec: str | None = None,
    lmbda: float | None = None,
    distortion: object = None,
) -> tuple[CompressionModel, CheckpointInfo]:
    """The eval-mode codec of a lic checkpoint (or an official MLIC++ `.pth.tar`), ready for
    real bitstreams, and its metadata; `lmbda`/`distortion` label files that lack them."""
    info, state = read_checkpoint(path, expect_codec, lmbda, distortion)
    return build_codec(info, state, str(path)).to(map_location).eval(), info


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
        from compressai.zoo.pretrained import load_pretrained

        state = load_pretrained(state)
    load_codec_state(model, state, spec)


def _zoo_state_dict(spec: str) -> dict:
    parts = spec.split(":")
    name = parts[1] if len(parts) > 1 else ""
    if is_vbr_codec(name) and len(parts) in (2, 3):  # compressai:NAME-vbr[:METRIC]
        quality, metric = None, parts[2] if len(parts) == 3 else "mse"
    elif len(parts) not in (3, 4) or not parts[2].isdigit():
        raise ValueError(
            f"expected compressai:NAME:QUALITY[:METRIC] (variable-rate: compressai:NAME-vbr), "
            f"got '{spec}'"
        )
    else:
        quality, metric = int(parts[2]), parts[3] if len(parts) == 4 else "mse"
    url = require_zoo_weights(name, quality, metric, ", or pass the file's path as --model.init")
    state = torch.hub.load_state_dict_from_url(url, progress=False, map_location="cpu")
    from compressai.zoo.pretrained import load_pretrained

    state = load_pretrained(state)
    state.pop("QuantOffset", None)  # an old VBR buffer CompressAI's from_state_dict drops too
    return state


def zoo_url(name: str, quality: int | None, metric: str = "mse") -> str:
    """URL of CompressAI zoo weights: one file per quality, or one for all levels of a
    variable-rate model (`quality` None)."""
    try:
        if is_vbr_codec(name):
            from compressai.zoo.image_vbr import model_urls

            return model_urls[name][metric]
        from compressai.zoo.image import model_urls

        return model_urls[name][metric][quality]
    except KeyError:
        which = "" if quality is None else f" quality {quality}"
        raise ValueError(f"the CompressAI zoo has no '{name}'{which} for '{metric}'") from None


def require_zoo_weights(
    name: str, quality: int | None, metric: str = "mse", alternative: str = ""
) -> str:
    """URL of CompressAI zoo weights, once they are cached or downloadable (else the usual
    WeightsUnavailableError naming the file and the torch hub folder to put it in)."""
    needs = zoo_weight_files(name, [quality], metric)
    require_hub_files(needs, alternative)
    return needs[0][0]


def zoo_weight_files(
    name: str, qualities: Sequence[int | None], metric: str = "mse"
) -> list[tuple[str, str]]:
    """(URL, who needs it) of the CompressAI zoo weights of `name` at each quality (one
    file for all levels of a variable-rate model), for `require_hub_files`."""
    if is_vbr_codec(name):
        return [(zoo_url(name, None, metric), f"CompressAI '{name}' ({metric})")]
    return [
        (zoo_url(name, quality, metric), f"CompressAI '{name}' quality {quality} ({metric})")
        for quality in qualities
    ]
