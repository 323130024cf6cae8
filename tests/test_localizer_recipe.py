"""The Stage III recipe's learning rates: the scratch encoder rate reaches only encoders that
start from random weights (L_sup and the other supervised rows), so tuning it for them leaves
C-TRIP and the other aligned methods' Stage III as it was."""

from __future__ import annotations

import pytest
import torch

from ctrip.config import SettingsError, load_settings, make_config
from ctrip.stages import train
from tests.factories import make_tiny_cohort

torch.set_num_threads(1)


class Captured(Exception):
    """Raised in place of training, carrying the module about to be trained."""

    def __init__(self, module) -> None:
        super().__init__("captured")
        self.module = module


def _capture(module, *args, **kwargs):
    raise Captured(module)


def _encoder_lrs(cohort, init, config, tmp_path, monkeypatch) -> tuple[set, set]:
    """The learning rates of the encoder's and the head's optimizer groups."""
    monkeypatch.setattr(train, "_fit", _capture)
    with pytest.raises(Captured) as caught:
        train.run_stage3(cohort, "localizer", init, config, tmp_path / "s3", seed=0)
    module = caught.value.module
    encoder = {id(p) for p in module.encoder.parameters()}
    lrs: tuple[set, set] = (set(), set())
    for group in module.optimizer_groups():
        lrs[0 if id(group["params"][0]) in encoder else 1].add(group["lr"])
    return lrs


def test_scratch_rate_reaches_only_scratch_encoders(tmp_path, monkeypatch):
    cohort = make_tiny_cohort(tmp_path / "cohort", n=30)
    config = make_config(
        "smoke",
        {"stage1": {"max_epochs": 1}, "trainer": {"accelerator": "cpu", "threads": 1},
         "stage3": {"lr_head": 1e-3, "lr_encoder": 2e-4, "lr_encoder_scratch": 5e-3}},
    )  # fmt: skip
    stage1 = train.run_stage1(cohort, "localizer", config, tmp_path / "s1", seed=0)
    assert _encoder_lrs(cohort, None, config, tmp_path, monkeypatch) == ({5e-3}, {1e-3})
    assert _encoder_lrs(cohort, stage1, config, tmp_path, monkeypatch) == ({2e-4}, {1e-3})


def test_scratch_encoders_train_their_own_number_of_epochs(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "cohort", n=30)
    config = make_config(
        "smoke",
        {"stage1": {"max_epochs": 1}, "trainer": {"accelerator": "cpu", "threads": 1},
         "stage3": {"max_epochs": 2, "max_epochs_scratch": 3, "patience": 100}},
    )  # fmt: skip
    stage1 = train.run_stage1(cohort, "localizer", config, tmp_path / "s1", seed=0)
    scratch = train.run_stage3(cohort, "localizer", None, config, tmp_path / "a", seed=0)
    pretrained = train.run_stage3(cohort, "localizer", stage1, config, tmp_path / "b", seed=0)
    assert scratch.history["epoch"] == [0, 1, 2] and pretrained.history["epoch"] == [0, 1]
    same = train.run_stage3(cohort, "localizer", None, {**config, "stage3": {
        **config["stage3"], "max_epochs_scratch": None}}, tmp_path / "c", seed=0)  # fmt: skip
    assert same.history["epoch"] == [0, 1]


def test_scratch_epochs_are_checked_like_every_setting():
    assert load_settings("default")["config"]["stage3"]["max_epochs_scratch"] is None  # budget
    assert (
        load_settings("default", ["stage3.max_epochs_scratch=20"])["config"]["stage3"][
            "max_epochs_scratch"
        ]
        == 20
    )
    with pytest.raises(SettingsError, match="max_epochs_scratch"):
        load_settings("smoke", ["config.stage3.max_epochs_scratch=0"])
