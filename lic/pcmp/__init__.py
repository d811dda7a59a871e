"""PCMP: PSNR-matched consistency pairs for machine-preference quality assessment."""

from lic.pcmp.build import build, merge
from lic.pcmp.distortions import DEFAULT_FAMILIES, FAMILIES, match_psnr, psnr
from lic.pcmp.voters import DEFAULT_VOTERS, VoterPanel, consistency, soft_label

__all__ = [
    "DEFAULT_FAMILIES",
    "DEFAULT_VOTERS",
    "FAMILIES",
    "VoterPanel",
    "build",
    "consistency",
    "match_psnr",
    "merge",
    "psnr",
    "soft_label",
]
