"""One factory for task models: names, families and weights read in one place."""

from __future__ import annotations

import pytest
import torch

from lic.tasks.models import ModelRef
from lic.weights import WeightsUnavailableError, random_weights


def test_names_and_families():
    assert ModelRef.parse("resnet50", "DEFAULT") == ModelRef("torchvision", "resnet50", "DEFAULT")
    assert ModelRef.parse("timm:convnext_tiny", "none").family == "timm"
    vlm = ModelRef.parse("OpenGVLab/InternVL3-1B-hf", "DEFAULT", default_family="transformers")
    assert vlm.family == "transformers" and vlm.name == "OpenGVLab/InternVL3-1B-hf"
    assert ModelRef.parse("./folder:with:colons", "none").name == "./folder:with:colons"
    assert random_weights("None") and random_weights("none") and not random_weights("DEFAULT")
    assert not random_weights(None)


def test_torchvision_weights_and_transforms():
    ref = ModelRef.parse("resnet18", "IMAGENET1K_V1")
    assert ref.weights_member().name == "IMAGENET1K_V1"
    assert ModelRef.parse("resnet18", "none").weights_member() is None
    assert ModelRef.parse("resnet18", "none").transform().crop_size == [224]  # sizes kept
    assert ModelRef.parse("timm:resnet18", "none").transform() is None
    with pytest.raises(ValueError, match="has no weights 'NOPE'"):
        ModelRef.parse("resnet18", "NOPE").weights_member()


def test_random_models_are_seeded_and_missing_weights_name_the_flag(monkeypatch):
    ref = ModelRef.parse("resnet18", "none")
    a, b = (ref.build(torch.device("cpu"), "the voter", "--voter-weights none") for _ in "ab")
    assert not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    monkeypatch.setenv("LIC_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent/torch-home")
    with pytest.raises(WeightsUnavailableError, match="--voter-weights none"):
        ModelRef.parse("resnet18", "DEFAULT").build(
            torch.device("cpu"), "the voter", "--voter-weights none"
        )


def test_samples_are_typed_and_read_as_tuples(tmp_path):
    from conftest import photo_like, save_rgb

    from lic.tasks import Sample, create_task

    (tmp_path / "n01").mkdir()
    save_rgb(tmp_path / "n01" / "a.png", photo_like(32, 32))
    task = create_task("imagenet", tmp_path, model="resnet18", weights="none")
    sample = task.samples[0]
    assert isinstance(sample, Sample) and sample.annotation == 0
    path, label = sample
    assert path == tmp_path / "n01" / "a.png" and label == 0
    assert task.sample_id(0) == "n01/a.png"  # relative to the data root, however it is spelled


def test_the_task_catalogue_names_each_class_by_its_name():
    """lic.tasks.catalog lists the tasks without importing them; each entry is its class."""
    from lic.tasks import TASKS
    from lic.tasks.catalog import FIDELITY_METRICS, TASK_CLASSES

    assert list(TASKS) == list(TASK_CLASSES)
    assert all(TASKS[name].name == name for name in TASK_CLASSES)
    assert TASKS["fidelity"].metric_choices == FIDELITY_METRICS
