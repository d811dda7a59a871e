"""Load a frozen OpenCLIP image tower and the preprocessing it was trained with.

Tags are resolved to a local file here rather than inside open_clip, so that an offline
machine fails in seconds with instructions (open_clip would retry the hub for a minute)
and so that the tag's QuickGELU flag is honoured (open_clip 3.x only warns about it, and
OpenAI's weights in a GELU tower give subtly wrong features).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import open_clip
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from torch import nn

from lic.weights import WeightsUnavailableError, is_reachable

_HF_DEFAULT_FILE = "open_clip_pytorch_model.bin"
_HF_SAFETENSORS_FILE = "open_clip_model.safetensors"


@dataclass(frozen=True)
class ClipTower:
    """An OpenCLIP image tower with the input size and normalisation it expects."""

    visual: nn.Module
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    depth: int


def _hf_url(cfg: dict) -> str:
    repo, filename = os.path.split(cfg["hf_hub"])
    return f"{hf_constants.ENDPOINT}/{repo}/resolve/main/{filename or _HF_DEFAULT_FILE}"


def _cached_weights(cfg: dict, cache_dir: str | None) -> str | None:
    """The tag's weights file if a previous download left it on this machine."""
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else [_HF_SAFETENSORS_FILE, _HF_DEFAULT_FILE]
        for name in names:
            path = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(path, str):
                return path
    if cfg.get("url"):
        path = os.path.join(
            cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"])
        )
        if os.path.isfile(path):
            return path
    return None


def _unavailable_message(model: str, tag: str, cfg: dict) -> str:
    source = _hf_url(cfg) if cfg.get("hf_hub") else cfg.get("url", "?")
    file_model, note = model, ""
    if cfg.get("quick_gelu") and "quickgelu" not in model:
        file_model = f"{model}-quickgelu"
        note = f" ('{file_model}': these weights were trained with QuickGELU)"
    return (
        f"Cannot get the weights of open_clip model '{model}' pretrained='{tag}': no cached "
        f"copy and no connection to {source.split('/resolve')[0]}.\n"
        f'  Either fill the cache on a machine with network access (python -c "import '
        f"open_clip; open_clip.create_model('{model}', pretrained='{tag}')\") and copy "
        f"~/.cache/huggingface here,\n"
        f"  or download {source}\n"
        f"  and pass the file{note}: MLCLIPSim(model='{file_model}', pretrained='/path/to/file'),"
        f" `lic score -o model={file_model} -o pretrained=/path/to/file`, or the same two keys"
        f" in a config."
    )


def resolve_weights(
    model: str, pretrained: str | None, cache_dir: str | None = None
) -> tuple[str | None, dict]:
    """Map `pretrained` (None, a file path or an open_clip tag) to a local file and tag config."""
    if pretrained is None:
        return None, {}
    if os.path.isfile(pretrained):
        return pretrained, {}
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise ValueError(
            f"pretrained='{pretrained}' is neither a file nor an open_clip tag of '{model}'. "
            f"Tags: {', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'}"
        )
    path = _cached_weights(cfg, cache_dir)
    if path is not None:
        return path, cfg
    source = _hf_url(cfg) if cfg.get("hf_hub") else cfg.get("url", "")
    if not source or not is_reachable(source):
        raise WeightsUnavailableError(_unavailable_message(model, pretrained, cfg))
    return open_clip.download_pretrained(cfg, cache_dir=cache_dir), cfg


def _vit_depth(visual: nn.Module) -> int | None:
    """Number of transformer blocks of an open_clip ViT or timm-backed ViT tower."""
    if not hasattr(visual, "forward_intermediates"):
        return None
    for owner, attr in (("transformer", "resblocks"), ("trunk", "blocks")):
        blocks = getattr(getattr(visual, owner, None), attr, None)
        if blocks is not None:
            return len(blocks)
    return None


def load_clip_tower(
    model: str = "ViT-B-32", pretrained: str | None = "openai", cache_dir: str | None = None
) -> ClipTower:
    """Build the image tower of an open_clip model, frozen and in eval mode."""
    if model not in open_clip.list_models():
        raise ValueError(f"Unknown open_clip model '{model}'. See open_clip.list_models().")
    path, tag_cfg = resolve_weights(model, pretrained, cache_dir)
    if path is None:
        warnings.warn(
            f"ML-CLIPSim uses a randomly initialised '{model}' tower: its scores "
            "mean nothing. Use pretrained=None in tests only.",
            stacklevel=3,
        )
    preprocess = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}
    try:
        clip = open_clip.create_model(
            model,
            pretrained=path,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
            force_preprocess_cfg=preprocess or None,
        )
    except RuntimeError as err:
        if path is None:
            raise
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{path} is not a checkpoint of open_clip model '{model}': {first_line}"
        ) from None
    visual = clip.visual
    depth = _vit_depth(visual)
    if depth is None:
        raise ValueError(f"'{model}' has no ViT image tower; ML-CLIPSim needs patch tokens.")
    visual.requires_grad_(False).eval()
    cfg = visual.preprocess_cfg
    size = (
        tuple(visual.image_size)
        if isinstance(visual.image_size, (tuple, list))
        else (visual.image_size, visual.image_size)
    )
    return ClipTower(
        visual=visual, image_size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), depth=depth
    )
