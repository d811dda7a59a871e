"""PCMP's names and defaults as plain data (no torch), for the command line and the builders."""

DEFAULT_TARGETS = (26.0, 30.0, 34.0)
"""Target PSNRs in dB."""
FAMILY_NAMES = ("jpeg", "webp", "blur", "noise", "resample", "contrast", "codec")
"""Every distortion family; `codec` is lic checkpoints given with --codec-ckpt."""
DEFAULT_FAMILIES = ("jpeg", "webp", "blur", "noise", "resample")
DEFAULT_VOTERS = ("resnet50", "efficientnet_b0", "vit_b_16", "convnext_tiny")
CONSISTENCY_MODES = ("prob", "top1", "neg_kl")
