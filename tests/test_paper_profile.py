"""The paper profile is known to run: every stage built at the paper's sizes (224 px ViT-B
localizer, per-lead 12 x 5000 ECG, 12-layer tabular transformer) on a tiny cohort, two
optimizer steps each on CPU."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ctrip.config import make_config, run_config
from ctrip.data.cohort import Cohort, write_cohort
from ctrip.stages.checkpoint import read_checkpoint
from ctrip.stages.train import run_stage1, run_stage2, run_stage3
from tests.factories import TABULAR_VARIANTS, tiny_arrays, tiny_table

pytestmark = pytest.mark.slow


def test_paper_sizes_take_two_steps_of_every_stage(tmp_path):
    n = 7  # 5 training subjects: two batches of 2
    path = write_cohort(tmp_path / "cohort", tiny_table(n), tiny_arrays(n, image=224, ecg_t=5000),
                        source="test", tabular_variants={"T": TABULAR_VARIANTS["T"]},
                        ecg_sampling_rate_hz=500.0)  # fmt: skip
    cohort = Cohort.open(path)
    n_train = int((cohort.table["split"] == "train").sum())
    batch = n_train // 2  # two steps per epoch (the last, partial batch is dropped)
    small = {"max_epochs": 1, "batch_size": batch, "patience": 1, "warmup_epochs": 0}
    paper = make_config("paper", {
        "stage1": small, "stage2": small, "stage3": small,
        "trainer": {"accelerator": "cpu", "precision": "32-true", "num_workers": 0,
                    "enable_progress_bar": False, "threads": 2},
    })  # fmt: skip
    assert paper["models"]["localizer"]["dim"] == 768 and paper["models"]["ecg"]["per_lead"]
    assert paper["models"]["tabular"]["depth"] == 12

    stage1 = {}
    for modality in ("localizer", "ecg", "tabular"):
        config = run_config(paper, "stage1", [modality])
        stage1[modality] = run_stage1(cohort, modality, config, tmp_path / "s1", seed=0)
        ckpt = read_checkpoint(stage1[modality])
        assert len(ckpt["history"]["train_loss"]) == 1
    spec = read_checkpoint(stage1["localizer"])["specs"]["localizer"]
    assert spec["tokenizer"]["image_size"] == [224, 224] and spec["depth"] == 12
    ecg = read_checkpoint(stage1["ecg"])["specs"]["ecg"]["tokenizer"]
    assert ecg["length"] == 5000 and ecg["resample_to"] is None and ecg["patch_size"] == 100

    pairs = [["localizer", "ecg"], ["localizer", "tabular"]]
    stage2 = run_stage2(cohort, pairs, stage1, run_config(paper, "stage2", ["localizer"], pairs),
                        tmp_path / "s2")  # fmt: skip
    assert read_checkpoint(stage2)["config"]["models"]["localizer"]["dim"] == 768
    result = run_stage3(cohort, "localizer", stage2, run_config(paper, "stage3", ["localizer"]),
                        tmp_path / "s3")  # fmt: skip
    assert isinstance(result.predictions, pd.DataFrame)
    assert torch.isfinite(torch.tensor(result.predictions.filter(like="_pred").to_numpy())).all()
