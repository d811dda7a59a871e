"""PCMP: PSNR-matched consistency pairs for machine-preference quality assessment.

Names and defaults load instantly (`lic.pcmp.defaults`); the builders import torch on first
use (PEP 562).
"""

from __future__ import annotations

from lic.lazy import lazy_exports
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

__getattr__ = lazy_exports(__name__, _LAZY)


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
