"""Which ML-CLIPSim configuration agrees best with a pair set (e.g. PCMP's machine votes)?

Per (tower, resize mode) the tower runs once per image pair, giving the token similarity of
every block and the global similarity; each (layers, alpha) configuration is then arithmetic
on those, so a large grid costs one pass per tower and resize mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lic.data.images import load_image
from lic.iqa.datasets import PairSet
from lic.iqa.stats import two_afc
from lic.metrics import MLCLIPSim
from lic.metrics.mlclipsim import default_layers


@torch.inference_mode()
def _similarities(metric: MLCLIPSim, dataset: PairSet, device) -> tuple[np.ndarray, ...]:
    """(layer sims of A, global sim of A, layer sims of B, global sim of B) per pair."""
    cache, out = {}, [[], [], [], []]
    for ref, a, b, _ in dataset.pairs:
        x = load_image(ref)[None].to(device)
        for k, dist in ((0, a), (2, b)):
            if (ref, dist) not in cache:
                layers, glob = metric.similarities(x, load_image(dist)[None].to(device))
                cache[(ref, dist)] = (layers[0].cpu().numpy(), float(glob[0]))
            out[k].append(cache[(ref, dist)][0])
            out[k + 1].append(cache[(ref, dist)][1])
    return tuple(np.asarray(v) for v in out)


def ablate(
    dataset: PairSet,
    towers: Sequence[tuple[str, str | None]],
    layer_sets: Sequence[Sequence[int] | None],
    alphas: Sequence[float],
    resizes: Sequence[str] = ("squash",),
    device: str = "cpu",
) -> list[dict]:
    """2AFC of every (tower, resize, layers, alpha) with uniform layer weights."""
    rows = []
    p = np.array([pair[3] for pair in dataset.pairs])
    for model, pretrained in towers:
        for resize in resizes:
            metric = MLCLIPSim(
                model, pretrained, layers="all", alpha=0.5, resize=resize, device=device
            )
            depth = len(metric.layers)
            la, ga, lb, gb = _similarities(metric, dataset, device)
            for layers in layer_sets:
                chosen = list(default_layers(depth) if layers is None else layers)
                if any(not 0 <= i < depth for i in chosen):
                    raise ValueError(f"layers {chosen} outside the {depth} blocks of {model}")
                for alpha in alphas:
                    score_a = (1 - alpha) * la[:, chosen].mean(1) + alpha * ga
                    score_b = (1 - alpha) * lb[:, chosen].mean(1) + alpha * gb
                    rows.append(
                        {
                            "tower": model,
                            "pretrained": pretrained,
                            "resize": resize,
                            "layers": ",".join(map(str, chosen)),
                            "alpha": alpha,
                            "2afc": two_afc(score_a, score_b, p),
                            "n": len(p),
                        }
                    )
    return rows
