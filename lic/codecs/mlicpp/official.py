"""Official MLIC++ checkpoints (JiangWeibeta/MLIC train.py files: a dict with `state_dict`,
`epoch`, `loss` and optimizer/scheduler states): recognise them and read the configuration
(N, M, slice_num, context_window, weight generation) from the tensor shapes.

Key spellings of CompressAI 1.2.0b3 (`entropy_bottleneck._matrix0`, ...) are left to
CompressionModel.load_state_dict, which maps them onto today's names; the `module.` prefix
of multi-GPU training is dropped here.
"""

from __future__ import annotations

import math

from torch import Tensor

MARKER = "entropy_parameters_anchor.0.fusion.0.weight"
OLD_SYNTHESIS = "g_s.synthesis_transform.0.skip.weight"  # 2023-09: first block M -> N
OLD_LRP = "lrp_anchor.0.lrp_transform.6.weight"  # 2023-09: four-conv LRP


def official_state_dict(ckpt: object) -> dict[str, Tensor] | None:
    """The model state dict of an official MLIC++ file (or bare state dict), else None."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        return None
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    return state if MARKER in state and "g_a.analysis_transform.0.conv1.weight" in state else None


def official_codec_args(state: dict[str, Tensor], source: str) -> dict:
    """MLICPlusPlus arguments that rebuild the model these weights belong to."""
    try:
        N = state["g_a.analysis_transform.0.conv1.weight"].shape[0]
        M = state["g_a.analysis_transform.6.weight"].shape[0]
        slice_ch = state["local_context.0.qkv_proj.weight"].shape[1]
        table = state["local_context.0.relative_position_table"].shape[0]
    except KeyError as err:
        raise ValueError(f"{source}: an incomplete MLIC++ state dict (no {err})") from None
    old = [key in state for key in (OLD_SYNTHESIS, OLD_LRP)]
    if old[0] != old[1]:
        raise ValueError(
            f"{source}: mixes MLIC++ weight generations (old synthesis: {old[0]}, "
            f"old LRP: {old[1]})"
        )
    window = (math.isqrt(table) + 1) // 2
    return {
        "N": int(N),
        "M": int(M),
        "slice_num": int(M // slice_ch),
        "context_window": int(window),
        "generation": "2023-09" if old[0] else "current",
    }


def official_hparams(ckpt: dict, state: dict[str, Tensor], path: str) -> dict:
    """lic checkpoint hyper-parameters for an official file: the inferred configuration,
    the file name as its label, and no lambda/objective (the file does not record them)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return {
        "codec": "mlicpp",
        "codec_args": official_codec_args(state, path),
        "lmbda": None,
        "distortion": None,
        "label": name,
        "source": "official MLIC++ checkpoint (JiangWeibeta/MLIC)",
        "epoch": ckpt.get("epoch") if isinstance(ckpt, dict) else None,
    }
