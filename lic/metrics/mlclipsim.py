"""ML-CLIPSim: multi-layer CLIP similarity, a differentiable full-reference quality metric.

Definition (docs/design.md, pinned by tests/test_mlclipsim.py):
    s_l = mean_i cos(t_x[l, i], t_y[l, i])   patch tokens of block l, class token excluded
    s_g = cos(e_x, e_y)                       final projected image embeddings
    ML-CLIPSim = (1 - alpha) * sum_l w_l s_l + alpha * s_g
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lic.metrics.clip_tower import load_clip_tower
from lic.metrics.frozen import FrozenNetMetric

RESIZE_MODES = ("squash", "center_crop", "tiles")
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp64": torch.float64,
    "float64": torch.float64,
}


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from itself or a YAML-friendly name ('bf16', 'float32', ...)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; choose from {sorted(DTYPES)}")
    return DTYPES[dtype]


def default_layers(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the tower: (2, 5, 8, 11) for 12 blocks."""
    return tuple(sorted({max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)}))


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine over the last dim in at least float32, even when the tower ran in bf16."""
    dtype = torch.promote_types(a.dtype, torch.float32)
    return F.cosine_similarity(a.to(dtype), b.to(dtype), dim=-1)


class MLCLIPSim(FrozenNetMetric):
    """Similarity in [-1, 1] (1: identical) of reference `x` and distorted `y`, shape (N,).

    Args:
        model: open_clip model name with a ViT image tower (`open_clip.list_models()`).
        pretrained: open_clip tag, path to a checkpoint file, or None (random, tests only).
        layers: 0-based blocks whose patch tokens are compared; default: one per quarter;
            "all": every block.
        weights: non-negative layer weights (normalised to sum to 1); default uniform.
        alpha: weight of the global-embedding cosine against the layer term.
        resize: "squash" (default: bicubic to the tower's size, no crop), "center_crop"
            (short side to size, then centre crop) or "tiles" (non-overlapping tiles at
            native resolution, scores averaged).
        device, dtype: where and in which precision the tower runs; cosines stay >= fp32.
            `dtype="bf16"` trades exactness for speed. Measured by benchmarks/bf16_error.py
            (120 Kodak/JPEG pairs at 256x256, ViT-B-32 with random weights, CPU): score error
            median 6e-5 (max 2e-4); relative error of 1 - score median 0.7% (max 7%);
            relative error of the gradient median 8% (max 27%). Beyond the 1e-2 gradient
            tolerance of the fp32 reference, so it is off by default. Speed: for GPUs with
            bf16 tensor cores; on a 2-core CPU a training step took 3.7-4.2x as long
            (benchmarks/train_step.py).
        one_pass: when only `y` needs gradients, run the tower once on [x; y] (reference
            half detached) instead of a no-grad pass on x and a pass on y. Same values; one
            set of kernel launches instead of two, but the backward pass also runs over the
            reference half. Pays off where launches dominate (a GPU at small batch); on a
            2-core CPU a training step took 1.2x as long, so it is off by default.
        compile: `torch.compile` the whole score (resize, normalise, tower, cosines): True
            or a torch.compile mode ("max-autotune-no-cudagraphs", ...). The first call
            (and each new input shape) compiles; values equal eager within float rounding.
            For GPUs; on a 2-core CPU a step took 1.04x as long after minutes of compiling.
    """

    lower_better = False

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "openai",
        layers: Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
        alpha: float = 0.5,
        resize: str = "squash",
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        cache_dir: str | None = None,
        one_pass: bool = False,
        compile: bool | str = False,
    ) -> None:
        tower = load_clip_tower(model, pretrained, cache_dir)
        super().__init__(tower.visual)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got '{resize}'")
        if layers == "all":
            layers = range(tower.depth)
        layers = tuple(default_layers(tower.depth) if layers is None else layers)
        if not layers or any(not -tower.depth <= i < tower.depth for i in layers):
            raise ValueError(f"layers {layers} outside the {tower.depth} blocks of '{model}'")
        self.layers = tuple(sorted({i % tower.depth for i in layers}))
        if len(self.layers) != len(layers):
            raise ValueError(f"layers {layers} name a block twice")
        weights = [1.0] * len(layers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(layers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"weights {weights} must be {len(layers)} non-negative numbers with a positive sum"
            )
        # Weights follow the caller's layer order; re-key them to the sorted block order.
        by_block = dict(zip((i % tower.depth for i in layers), weights, strict=True))
        self.register_buffer(
            "layer_weights",
            torch.tensor([by_block[i] / sum(weights) for i in self.layers], dtype=torch.float64),
            persistent=False,
        )
        self.register_buffer("mean", torch.tensor(tower.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tower.std).view(1, 3, 1, 1), persistent=False)
        self.model_name, self.pretrained = model, pretrained
        self.alpha, self.resize, self.image_size = float(alpha), resize, tower.image_size
        self.one_pass = bool(one_pass)
        self._score = self._similarities
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._score = torch.compile(self._similarities, mode=mode, dynamic=False)
        if device is not None:
            self.to(device)
        if dtype is not None:
            self.net.to(as_dtype(dtype))

    def extra_repr(self) -> str:
        return (
            f"model={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"layers={self.layers}, alpha={self.alpha}, resize={self.resize!r}"
        )

    # ---- preprocessing -------------------------------------------------------------------
    def _resize(self, images: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(images.shape[-2:]) == tuple(size):
            return images
        return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)

    def _views(self, images: Tensor) -> Tensor:
        """Tower inputs: (N, 3, S, S) for squash / center_crop, (N * T, 3, S, S) for tiles.
        Resized in at least float32 (a bf16 codec output under autocast included)."""
        images = images.to(torch.promote_types(images.dtype, torch.float32))
        (h, w), (sh, sw) = images.shape[-2:], self.image_size
        if self.resize == "squash":
            views = self._resize(images, (sh, sw))
        else:  # center_crop fits the short side; tiles only upscale images below one tile
            scale = max(sh / h, sw / w)
            if self.resize == "tiles":
                scale = max(scale, 1.0)
            images = self._resize(images, (max(sh, round(h * scale)), max(sw, round(w * scale))))
            (h, w), rows, cols = images.shape[-2:], 1, 1
            if self.resize == "tiles":
                rows, cols = h // sh, w // sw
            top, left = (h - rows * sh) // 2, (w - cols * sw) // 2
            views = images[..., top : top + rows * sh, left : left + cols * sw]
            views = (
                views.unflatten(2, (rows, sh))
                .unflatten(4, (cols, sw))
                .permute(0, 2, 4, 1, 3, 5)
                .reshape(-1, 3, sh, sw)
            )
        return ((views - self.mean) / self.std).to(self.net_dtype)

    # ---- features -------------------------------------------------------------------------
    def _features(self, views: Tensor) -> tuple[list[Tensor], Tensor | None]:
        """Patch tokens (B, L, C) of each chosen block and, if alpha > 0, the embedding."""
        if self.alpha == 1.0:
            return [], self.net(views)
        out = self.net.forward_intermediates(
            views,
            indices=list(self.layers),
            output_fmt="NLC",
            intermediates_only=self.alpha == 0.0,
            stop_early=self.alpha == 0.0,
        )
        return out["image_intermediates"], out.get("image_features")

    def similarities(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer token similarities (N, n_layers) and global similarity (N,).

        A term that alpha switches off is NaN and costs nothing to compute.
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise ValueError(
                f"expected two (N, 3, H, W) tensors of one shape, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        return self._score(x, y)

    def _similarities(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        vx, vy = self._views(x), self._views(y)
        reference_only = torch.is_grad_enabled() and y.requires_grad and not x.requires_grad
        if reference_only and not self.one_pass:
            with torch.no_grad():
                (tx, gx) = self._features(vx)
            (ty, gy) = self._features(vy)
        else:  # one pass over [x; y]
            tokens, emb = self._features(torch.cat([vx, vy]))
            tx, ty = [t[: len(vx)] for t in tokens], [t[len(vx) :] for t in tokens]
            gx, gy = (emb[: len(vx)], emb[len(vx) :]) if emb is not None else (None, None)
            if reference_only:  # the reference is a constant, as in the two-pass path
                tx, gx = [t.detach() for t in tx], gx.detach() if gx is not None else None
        return self._cosines(tx, ty, gx, gy, n)

    def _cosines(self, tx: list, ty: list, gx, gy, n: int) -> tuple[Tensor, Tensor]:
        """(N, n_layers) token and (N,) global similarities from both sides' features."""
        views = len(ty[0]) if ty else len(gy)
        per_view = views // n
        nan = torch.full((views,), math.nan, device=(ty[0] if ty else gy).device)
        layer_sims = (
            torch.stack([cosine(a, b).mean(dim=1) for a, b in zip(tx, ty, strict=True)], dim=1)
            if tx
            else nan[:, None].expand(-1, len(self.layers))
        )
        global_sim = cosine(gx, gy) if gx is not None else nan
        if per_view > 1:  # tiles: average each image's tiles
            layer_sims = layer_sims.reshape(n, per_view, -1).mean(dim=1)
            global_sim = global_sim.reshape(n, per_view).mean(dim=1)
        return layer_sims, global_sim

    # ---- a reference's features once, many distorted images against them ---------------
    @torch.no_grad()
    def reference_features(self, x: Tensor) -> list[dict[str, object]]:
        """For each image of `x` (N, 3, H, W): the tower outputs every score against it
        compares with (patch tokens of the chosen blocks, the embedding), so that scoring
        many distorted versions runs the tower once on the reference; `score_features`
        with them equals `forward(x, y)` within float rounding. lic eval keeps them in
        OUT/references."""
        views = self._views(x)
        tokens, embedding = self._features(views)
        per_view = len(views) // x.shape[0]
        return [
            {
                "tokens": [t[i * per_view : (i + 1) * per_view] for t in tokens],
                "embedding": None
                if embedding is None
                else embedding[i * per_view : (i + 1) * per_view],
            }
            for i in range(x.shape[0])
        ]

    @torch.no_grad()
    def score_features(self, features: Sequence[dict], y: Tensor) -> Tensor:
        """`forward(x, y)` from `reference_features(x)` (one entry per image of `y`)."""
        if len(features) != y.shape[0]:
            raise ValueError(f"{len(features)} reference features for {y.shape[0]} images")
        ty, gy = self._features(self._views(y))
        for f in features:
            got = [tuple(t.shape) for t in f["tokens"]]
            if got != [(len(t) // y.shape[0], *t.shape[1:]) for t in ty]:
                raise ValueError(
                    f"reference features of another view layout {got} (another image size "
                    "under resize='tiles', or another tower or layers)"
                )
        tx = [torch.cat([f["tokens"][k] for f in features]).to(t) for k, t in enumerate(ty)]
        gx = None if gy is None else torch.cat([f["embedding"] for f in features]).to(gy)
        return self._combine(*self._cosines(tx, ty, gx, gy, y.shape[0]))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self._combine(*self.similarities(x, y))

    def _combine(self, layer_sims: Tensor, global_sim: Tensor) -> Tensor:
        if self.alpha == 1.0:
            return global_sim
        layer_term = layer_sims @ self.layer_weights.to(layer_sims.dtype)
        if self.alpha == 0.0:
            return layer_term
        return (1.0 - self.alpha) * layer_term + self.alpha * global_sim


def clip_global(**kwargs) -> MLCLIPSim:
    """Cosine of global CLIP embeddings only: ML-CLIPSim with alpha = 1."""
    if "alpha" in kwargs:
        raise ValueError("clip_global fixes alpha = 1; use 'mlclipsim' to choose alpha")
    return MLCLIPSim(alpha=1.0, **kwargs)
