"""A training objective as data: which metrics, with which weights, and its one name.

Plain Python (no torch): run folders, curves and checkpoint labels name objectives alike.
"""

from __future__ import annotations

from collections.abc import Mapping


def distortion_weights(distortion: str | Mapping[str, float]) -> dict[str, float]:
    """`mse` -> {mse: 1.0}; a mapping of metric names to non-negative weights as it is."""
    weights = {distortion: 1.0} if isinstance(distortion, str) else dict(distortion)
    if not weights or any(w < 0 for w in weights.values()):
        raise ValueError(f"distortion weights must be non-negative, got {weights}")
    return weights


def objective_name(distortion: str | Mapping[str, float]) -> str:
    """'mse', 'lpips', or 'mse1+mlclipsim1000' for a weighted mix: the name of a run folder
    and of a curve, so objectives that differ only in their weights never share either."""
    weights = distortion_weights(distortion)
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(weights))
    return "+".join(f"{name}{weight:g}" for name, weight in weights.items())
