"""Variable-rate codecs: CompressAI's VBR models (Kamisli, Racapé, Choi, DCC 2024) coded at
one of their rate levels.

A VBR model codes at level `s` with the quantization gain `Gain[s]` (step 1/Gain[s]; CompressAI
initialises the gains from 0.1 to 1 and never trains them) and was trained there with
`lmbda[s]`; both rise with the level, and so does the rate. Models built with `vr_entbttlnck`
(CompressAI's zoo hyperprior and mean-scale weights) also quantize the hyperprior z with a
gain-dependent step, so its entropy tables hold for one level only: `coding_at` recomputes
them for the level, as CompressAI's eval_model does (`update(scale=...)`), and puts the
checkpoint's tables back afterwards, so the model's weights and fingerprint never change.

Imports neither torch nor CompressAI at module level: run names and checkpoint metadata
need neither.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

VBR_CODECS = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr", "mbt2018-vbr")
STAGE = 2  # CompressAI's variable-rate code path (stage 1 codes like the fixed-rate model)
GAIN_KEY = "Gain"  # the state-dict key of the gains: one per level


def is_vbr_codec(name: str | None) -> bool:
    """True for the registry names of variable-rate codecs."""
    return name in VBR_CODECS


def is_variable_rate(model: nn.Module) -> bool:
    """True for a model that codes at several levels (it has one gain per level)."""
    import torch

    return isinstance(getattr(model, GAIN_KEY, None), torch.Tensor) and hasattr(model, "lmbda")


def level_count(model_or_state: nn.Module | dict) -> int:
    """Levels of a VBR model, or of its state dict (the length of its gain vector)."""
    import torch

    gain = (
        model_or_state.get(GAIN_KEY)
        if isinstance(model_or_state, dict)
        else getattr(model_or_state, GAIN_KEY, None)
    )
    if not isinstance(gain, torch.Tensor) or gain.ndim != 1 or gain.numel() < 1:
        raise ValueError("not a variable-rate codec (no gain vector)")
    return gain.numel()


def check_level(level: int, count: int) -> int:
    """`level` when the model has it; ValueError naming the valid range otherwise."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < count:
        raise ValueError(f"level {level}: this variable-rate codec has levels 0 to {count - 1}")
    return level


def check_lambdas(lambdas: Sequence[object], count: int, source: str) -> tuple[float, ...]:
    """One positive finite lambda per level, rising with the level (as the gains do)."""
    from lic.data.files import positive_number

    numbers = [positive_number(v) for v in lambdas]
    if len(numbers) != count or None in numbers:
        raise ValueError(
            f"{source}: expected {count} positive lambdas (one per level), got {lambdas!r}"
        )
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise ValueError(f"{source}: lambdas {numbers} must rise with the level")
    return tuple(numbers)


def default_lambdas(codec: str) -> tuple[float, ...]:
    """CompressAI's lambda list of a VBR codec (what its zoo weights were trained with)."""
    from lic.codecs.registry import create_codec

    return tuple(float(v) for v in create_codec(codec, N=2, M=2).lmbda)


TABLES = ("_quantized_cdf", "_offset", "_cdf_length")  # what an entropy bottleneck's update sets


@contextlib.contextmanager
def coding_at(model: nn.Module, level: int | None) -> Iterator[dict]:
    """The keyword arguments of `forward`/`compress`/`decompress` at `level` ({} for a
    fixed-rate model, level None), with the level's hyperprior tables in place meanwhile:
    those `update(scale=Gain[level])` makes, computed here without also rebuilding the
    Gaussian tables that do not depend on the level."""
    if level is None:
        if is_variable_rate(model):
            raise ValueError("a variable-rate codec codes at a level: give one")
        yield {}
        return
    if not is_variable_rate(model):
        raise ValueError(f"level {level}: the codec is not variable-rate")
    check_level(level, level_count(model))
    import torch

    if not getattr(model, "vr_entbttlnck", False):
        yield {"stage": STAGE, "s": level}
        return
    bottleneck = model.entropy_bottleneck
    saved = {name: getattr(bottleneck, name) for name in TABLES}
    with torch.no_grad():
        gain = torch.abs(model.Gain[level]).view(1)
        bottleneck.update_variable(
            force=True, qs=model.lower_bound_zqstep(model.gayn2zqstep(1 / gain))
        )
    try:
        yield {"stage": STAGE, "s": level}
    finally:
        for name, value in saved.items():
            setattr(bottleneck, name, value)


def level_tables(model: nn.Module) -> torch.Tensor | None:
    """The hyperprior CDF table `coding_at` computed for the level, or None when the model
    has none that depends on the level."""
    if not getattr(model, "vr_entbttlnck", False):
        return None
    return model.entropy_bottleneck._quantized_cdf


def resize_tables(model: nn.Module, state_dict: dict) -> None:
    """Give a VBR entropy bottleneck's tables the sizes in `state_dict`, as CompressAI's
    load_state_dict does for the fixed-rate bottleneck only (it would refuse them)."""
    from compressai.entropy_models.entropy_models_vbr import EntropyModelVbr

    for name, module in model.named_modules():
        if isinstance(module, EntropyModelVbr):
            for table in TABLES:
                value = state_dict.get(f"{name}.{table}")
                if value is not None:
                    getattr(module, table).resize_(value.shape)
