"""A checkpoint holds no path of the machine it was written on: the same training on the same
cohort in two places writes the same bytes (so that two executors' results folders are
byte-identical), and `ctrip predict` still crops to the training cohort's field of view."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ctrip.config import make_config
from ctrip.data.cohort import sha256_of
from ctrip.io.preprocess import localizer_field_of_view_mm
from ctrip.predict import training_crop_mm
from ctrip.stages.checkpoint import read_checkpoint
from ctrip.stages.train import run_stage1, run_stage3
from tests.factories import make_tiny_cohort

torch.set_num_threads(1)

CONFIG = make_config(
    "smoke",
    {
        "models": {"localizer": {"patch_size": 4}},
        "stage1": {"max_epochs": 1},
        "stage3": {"max_epochs": 1},
        "trainer": {"accelerator": "cpu", "threads": 1},
    },
)


def train_both_stages(cohort: Path, out: Path) -> tuple[Path, Path]:
    stage1 = run_stage1(cohort, "localizer", CONFIG, out / "stage1", seed=0)
    stage3 = run_stage3(cohort, "localizer", stage1, CONFIG, out / "stage3", seed=0)
    return stage1, stage3.checkpoint


def test_the_same_training_in_two_places_writes_the_same_checkpoint_bytes(tmp_path):
    here = make_tiny_cohort(tmp_path / "here" / "cohort", n=40)
    there = tmp_path / "elsewhere" / "deeper" / "cohort"
    shutil.copytree(here, there)
    first = train_both_stages(here, tmp_path / "results_a")
    second = train_both_stages(there, tmp_path / "b" / "results")
    for a, b in zip(first, second, strict=True):
        assert sha256_of(a) == sha256_of(b), f"{a.name} differs between the two places"
    stage3 = read_checkpoint(first[1])
    assert str(tmp_path) not in repr({k: v for k, v in stage3.items() if k != "encoders"})
    assert stage3["init"] == {"file": first[0].name, "sha256": sha256_of(first[0])}
    manifest = yaml.safe_load((here / "manifest.yaml").read_text())
    assert stage3["cohort"] == {"localizer_fov_mm": localizer_field_of_view_mm(manifest)}


def test_predict_crops_to_the_field_of_view_the_checkpoint_records():
    assert training_crop_mm({"cohort": {"localizer_fov_mm": 150.0}}) == 150.0
    with pytest.raises(ValueError) as bad:
        training_crop_mm({"cohort": {"localizer_fov_mm": 5000}}, "m.pt")
    message = str(bad.value)
    assert message.startswith("m.pt: field cohort.localizer_fov_mm is 5000") and "\n" not in message
    assert "--crop-mm" in message
