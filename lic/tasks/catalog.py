"""The tasks by name, as data (no torch): what `lic eval --help` and `lic data` list; each
name's class is imported when a task is built (lic.tasks.TASKS)."""

from __future__ import annotations

TASK_CLASSES = {
    "imagenet": "lic.tasks.classification:ImageNetTask",
    "voc": "lic.tasks.segmentation:VOCSegmentationTask",
    "coco": "lic.tasks.detection:COCODetectionTask",
    "consistency": "lic.tasks.classification:ConsistencyTask",
    "pope": "lic.tasks.vqa:POPETask",
    "seedbench": "lic.tasks.vqa:SEEDBenchTask",
    "fidelity": "lic.tasks.fidelity:FidelityTask",
}
FIDELITY_METRICS = ("psnr", "ms_ssim", "lpips", "mlclipsim")
"""The fidelity task's metric choices (`--metrics`), in report order."""
