"""PCMP: PSNR-matched consistency pairs for machine-preference quality assessment.

Names and defaults load instantly (`lic.pcmp.defaults`); the builders import torch on first
use (PEP 562).
"""

from __future__ import annotations

import importlib

from lic.pcmp.defaults import DEFAULT_FAMILIES, DEFAULT_TARGETS, DEFAULT_VOTERS, FAMILY_NAMES

_LAZY = {
    "build": "lic.pcmp.builder",
    "merge": "lic.pcmp.builder",
    "FAMILIES": "lic.pcmp.distortions",
    "match_psnr": "lic.pcmp.distortions",
    "psnr": "lic.pcmp.distortions",
    "VoterPanel": "lic.pcmp.voters",
    "consistency": "lic.pcmp.voters",
    "soft_label": "lic.pcmp.voters",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lic.pcmp' has no attribute '{name}'")


__all__ = [
    "DEFAULT_FAMILIES",
    "DEFAULT_TARGETS",
    "DEFAULT_VOTERS",
    "FAMILIES",
    "FAMILY_NAMES",
    "VoterPanel",
    "build",
    "consistency",
    "match_psnr",
    "merge",
    "psnr",
    "soft_label",
]
