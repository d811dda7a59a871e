"""One name per objective, for run folders and curves alike."""

from __future__ import annotations

import pytest

from lic.metrics.objective import objective_name
from lic.training.cli import run_name


def test_objective_names_keep_the_weights_of_a_mix():
    assert objective_name("lpips") == objective_name({"lpips": 1.0}) == "lpips"
    assert objective_name({"mse": 1.0, "mlclipsim": 1000.0}) == "mse1+mlclipsim1000"
    assert objective_name({"mse": 1.0, "mlclipsim": 500.0}) != objective_name(
        {"mse": 1.0, "mlclipsim": 1000.0}
    )
    assert objective_name({"mse": 2.0}) == "mse2"  # = mse at twice the lambda: not "mse"
    assert run_name("mbt2018-mean", {"mse": 1, "lpips": 0.5}, 0.013) == (
        "mbt2018-mean_mse1+lpips0.5_lambda0.013"
    )
    with pytest.raises(ValueError, match="non-negative"):
        objective_name({"mse": -1.0})


def test_a_checkpoint_s_curve_carries_the_same_name(tmp_path):
    from conftest import write_codec_checkpoint

    from lic.evaluation.coders import build_coders

    mix = {"mse": 1.0, "mlclipsim": 1000.0}
    ckpt = write_codec_checkpoint(tmp_path / "a.ckpt", distortion=mix)
    coder = build_coders([str(ckpt)], [], {}, False, "cpu", {})[-1]
    assert coder.objective == "mse1+mlclipsim1000"


def test_checkpoint_labels_say_what_the_file_does_not_record():
    from lic.codecs.checkpoint import CheckpointInfo

    mix = CheckpointInfo("mbt2018-mean", {}, 0.013, {"mse": 1.0, "lpips": 0.5})
    assert mix.label() == "mbt2018-mean (mse1+lpips0.5, lambda 0.013)"
    official = CheckpointInfo("mlicpp", {})
    assert official.label() == "mlicpp (objective and lambda not recorded in the file)"
