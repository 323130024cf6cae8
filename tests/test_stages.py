"""Training stages end to end on a tiny random cohort: overfitting, seeds, checkpoints,
frozen vs full fine-tuning, temperatures, predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrip.config import DEFAULT_CONFIG, make_config, merge_config, run_config, set_key
from ctrip.data.cohort import Cohort
from ctrip.data.schema import CP_NAMES
from ctrip.stages.augment import augment_images, rotate_and_translate, sampling_grid, shift_ecgs
from ctrip.stages.checkpoint import load_encoder, load_mae
from ctrip.stages.checkpoint import read_checkpoint as load_checkpoint
from ctrip.stages.inference import embed, load_regressor
from ctrip.stages.modules import warmup_cosine
from ctrip.stages.train import run_stage1, run_stage2, run_stage3
from tests.factories import make_tiny_cohort

torch.set_num_threads(1)  # tiny models: one thread is as fast, and robust on a busy machine

CONFIG = make_config(
    "smoke",
    {
        "models": {"localizer": {"patch_size": 4}, "cmr": {"patch_size": 4}},
        "stage1": {"max_epochs": 20, "lr": 3e-3, "patience": 100, "warmup_epochs": 1},
        "stage2": {
            "max_epochs": 30,
            "batch_size": 16,
            "lr": 3e-3,
            "patience": 100,
            "augment": False,
            "augment_rigid": False,  # these are overfit checks: nothing to keep them from it
        },
        "stage3": {
            "max_epochs": 20,
            "patience": 100,
            "lr_encoder_scratch": 1e-3,
            "augment_rigid": False,
        },
        "trainer": {"accelerator": "cpu", "threads": 1},
    },
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    # 46 subjects: about 32 in the training split
    return make_tiny_cohort(tmp_path_factory.mktemp("stages") / "cohort", n=46)


@pytest.fixture(scope="module")
def stage1(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    return {m: run_stage1(cohort, m, CONFIG, out, seed=0) for m in ("localizer", "ecg", "tabular")}


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def falls(history: dict) -> bool:
    losses = history["train_loss"]
    return min(losses[-3:]) < 0.8 * losses[0]


def test_config_merge_is_strict():
    cfg = set_key(DEFAULT_CONFIG, "stage1.lr", 0.5)
    assert cfg["stage1"]["lr"] == 0.5 and DEFAULT_CONFIG["stage1"]["lr"] != 0.5
    with pytest.raises(KeyError, match="lrr"):
        merge_config(DEFAULT_CONFIG, {"stage1": {"lrr": 1}})
    assert make_config("paper")["models"]["localizer"]["dim"] == 768


def test_warmup_cosine():
    assert warmup_cosine(0, 10, 110, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)


def test_augment_images():
    x = torch.rand(4, 3, 16, 16)
    same = augment_images(x, (1.0, 1.0), (1.0, 1.0), 0.0, (1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    a = augment_images(x, generator=torch.Generator().manual_seed(0))
    b = augment_images(x, generator=torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x, atol=1e-2)


def _disk(size: int, cx: float, cy: float, radius: float) -> torch.Tensor:
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    return (((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2) <= radius**2).float()


def test_rotate_and_translate_moves_but_keeps_sizes():
    size = 32
    images = torch.stack([_disk(size, 14 + k, 16, 5 + k) for k in range(4)])[:, None]
    x = images.expand(4, 3, size, size).clone()  # three slices alike
    assert torch.allclose(rotate_and_translate(x, 0.0, 0.0), x, atol=1e-5)
    # a shift of at most 2 / 32 of the side moves each image by at most 2 pixels (here along x)
    generator = torch.Generator().manual_seed(0)
    moved = rotate_and_translate(x, 0.0, 2 / size, generator=generator)
    areas, moved_areas = x.sum(dim=(2, 3)), moved.sum(dim=(2, 3))
    assert torch.allclose(moved_areas, areas, rtol=0.02)  # the disk stays whole and its size
    centre = (moved[:, 0] * torch.arange(size)).sum(dim=(1, 2)) / moved[:, 0].sum(dim=(1, 2))
    shifts = centre - (x[:, 0] * torch.arange(size)).sum(dim=(1, 2)) / areas[:, 0]
    assert shifts.abs().max() <= 2.0 + 1e-3 and len(set(shifts.round(decimals=3).tolist())) > 1
    turned = rotate_and_translate(x, 30.0, 0.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(turned.sum(dim=(2, 3)), areas, rtol=0.05)  # no zoom
    assert torch.equal(turned[:, 0], turned[:, 2])  # every slice of an image alike
    again = rotate_and_translate(x, 30.0, 0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(turned, again)


def test_sampling_grid_is_affine_grid():
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(2))
    expected = torch.nn.functional.affine_grid(theta, [5, 1, 7, 9], align_corners=False)
    assert torch.allclose(sampling_grid(theta, 7, 9), expected, atol=1e-6)


def test_rigid_augmentation_applies_to_training_image_batches_only():
    from ctrip.stages.modules import TrainStage

    torch.manual_seed(0)
    image, ecg = torch.rand(2, 3, 8, 8), torch.randn(2, 12, 50)
    stage = {"augment": False, "augment_rigid": True, "augment_ecg": False}
    module = TrainStage(stage, None, DEFAULT_CONFIG["rigid"]).train()
    for modality in ("localizer", "cmr"):
        assert not torch.equal(module.maybe_augment(image, modality), image)
    assert torch.equal(module.maybe_augment(ecg, "ecg"), ecg)
    module.eval()
    assert torch.equal(module.maybe_augment(image, "localizer"), image)
    config = set_key(DEFAULT_CONFIG, "stage3.augment_rigid", True)
    assert run_config(config, "stage3", ["localizer"])["rigid"] == DEFAULT_CONFIG["rigid"]
    assert "rigid" not in run_config(config, "stage3", ["ecg"])  # its key ignores the setting
    assert "rigid" not in run_config(DEFAULT_CONFIG, "stage3", ["localizer"])


def test_shift_ecgs_rotates_each_record_with_all_leads_together():
    x = torch.arange(3 * 2 * 10, dtype=torch.float32).reshape(3, 2, 10)
    shifted = shift_ecgs(x, generator=torch.Generator().manual_seed(1))
    offsets = []
    for record, original in zip(shifted, x):
        offset = int((record[0, 0] - original[0, 0]).item())
        assert torch.equal(record, torch.roll(original, -offset, dims=-1))  # every lead alike
        offsets.append(offset)
    assert len(set(offsets)) > 1  # each record its own offset
    again = shift_ecgs(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(shifted, again)


def test_the_ecg_shift_applies_to_training_ecg_batches_only():
    from ctrip.stages.modules import TrainStage

    torch.manual_seed(0)
    x, image = torch.randn(8, 12, 50), torch.rand(2, 3, 8, 8)
    module = TrainStage({"augment": False, "augment_ecg": True}, None)
    module.train()
    assert not torch.equal(module.maybe_augment(x, "ecg"), x)
    assert torch.equal(module.maybe_augment(image, "localizer"), image)
    module.eval()  # validation and inference see the record as it is
    assert torch.equal(module.maybe_augment(x, "ecg"), x)
    off = TrainStage({"augment": False, "augment_ecg": False}, None).train()
    assert torch.equal(off.maybe_augment(x, "ecg"), x)


@pytest.mark.parametrize("modality", ["localizer", "ecg", "tabular"])
def test_stage1_overfits_and_checkpoint_round_trips(stage1, modality):
    ckpt = torch.load(stage1[modality], weights_only=True)
    assert ckpt["kind"] == "stage1" and ckpt["modality"] == modality
    assert falls(ckpt["history"]), ckpt["history"]["train_loss"]
    tokenizer = ckpt["specs"][modality]["tokenizer"]
    if modality != "tabular":  # inputs standardized with training-split statistics
        assert tokenizer["input_std"] > 0 and tokenizer["input_std"] != 1.0
    mae = load_mae(stage1[modality])
    assert state_equal(
        mae.encoder.state_dict(), load_encoder(stage1[modality], modality).state_dict()
    )


def test_stage1_cmr_and_same_seed_same_weights(cohort, tmp_path):
    cfg = merge_config(CONFIG, {"stage1": {"max_epochs": 2}})
    a = load_checkpoint(run_stage1(cohort, "cmr", cfg, tmp_path / "a", seed=3))
    b = load_checkpoint(run_stage1(cohort, "cmr", cfg, tmp_path / "b", seed=3))
    c = load_checkpoint(run_stage1(cohort, "cmr", cfg, tmp_path / "c", seed=4))
    assert state_equal(a["mae"]["state_dict"], b["mae"]["state_dict"])
    assert not state_equal(a["mae"]["state_dict"], c["mae"]["state_dict"])


def test_stage2_aligns_and_temperatures_learn(cohort, stage1, tmp_path):
    path = run_stage2(
        cohort, [("localizer", "ecg"), ("tabular", "localizer")], stage1, CONFIG, tmp_path
    )
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["kind"] == "stage2" and ckpt["pairs"] == [
        ["localizer", "ecg"],
        ["localizer", "tabular"],
    ]
    assert falls(ckpt["history"]), ckpt["history"]["train_loss"]
    assert abs(ckpt["temperatures"]["localizer-ecg"] - 0.1) > 1e-4
    assert abs(ckpt["temperatures"]["localizer-tabular"] - 0.25) > 1e-4
    # the encoders moved away from their Stage I weights
    assert not state_equal(
        ckpt["encoders"]["localizer"], load_checkpoint(stage1["localizer"])["encoders"]["localizer"]
    )
    ids, z = embed(path, Cohort.open(cohort), "ecg", split="val", projected=True)
    assert z.shape == (len(ids), 256)
    ids, f = embed(path, Cohort.open(cohort), "localizer", split="test")
    assert f.shape == (len(ids), CONFIG["models"]["localizer"]["dim"])


def test_stage2_rejects_bad_inputs(cohort, stage1, tmp_path):
    with pytest.raises(ValueError, match="localizer-anchored"):
        run_stage2(cohort, [("ecg", "cmr")], stage1, CONFIG, tmp_path)
    with pytest.raises(ValueError, match="variant"):
        run_stage2(
            cohort, [("localizer", "tabular")], stage1, CONFIG, tmp_path, tabular_variant="Tp"
        )


def test_stage3_frozen_keeps_and_full_changes_encoder(cohort, stage1, tmp_path):
    before = load_checkpoint(stage1["localizer"])["encoders"]["localizer"]
    frozen = run_stage3(
        cohort, "localizer", stage1["localizer"], CONFIG, tmp_path / "f", frozen=True
    )
    full = run_stage3(cohort, "localizer", stage1["localizer"], CONFIG, tmp_path / "u")
    assert state_equal(load_checkpoint(frozen.checkpoint)["encoders"]["localizer"], before)
    assert not state_equal(load_checkpoint(full.checkpoint)["encoders"]["localizer"], before)
    assert falls(frozen.history) and falls(full.history)


def test_stage3_scratch_predictions_and_regressor(cohort, tmp_path):
    result = run_stage3(cohort, "tabular", None, CONFIG, tmp_path, seed=1)
    assert falls(result.history), result.history["train_loss"]
    preds = result.predictions
    assert set(preds["split"]) == {"val", "test"}
    assert list(preds.columns[:2]) == ["id", "split"] and all(
        f"{cp}_pred" in preds for cp in CP_NAMES
    )
    assert not (tmp_path / "predictions.parquet").exists()  # one file per sweep, by the notebook
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt["kind"] == "stage3" and ckpt["init"] is None and ckpt["frozen"] is False
    model = load_regressor(result.checkpoint)
    assert model.input_shape == {"tab_num": 5, "tab_cat": 2}
    from ctrip.data.dataset import CohortDataset, NormalizationStats

    stats = NormalizationStats.from_dict(ckpt["stats"])
    ds = CohortDataset(cohort, ("tabular",), "test", stats=stats)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    from ctrip.stages.inputs import modality_input

    cps = model.predict_cps(modality_input(batch, "tabular"))
    test = preds[preds["split"] == "test"]
    assert np.allclose(
        cps, test[[f"{cp}_pred" for cp in CP_NAMES]].to_numpy(), rtol=1e-5, atol=1e-4
    )


def test_stage3_fraction_and_init_checks(cohort, stage1, tmp_path):
    cfg = merge_config(CONFIG, {"stage3": {"max_epochs": 1}})
    half = run_stage3(cohort, "ecg", stage1["ecg"], cfg, tmp_path / "h", fraction=0.5)
    assert load_checkpoint(half.checkpoint)["n_train"] < 32 * 0.75
    with pytest.raises(ValueError, match="no localizer encoder"):
        run_stage3(cohort, "localizer", stage1["ecg"], cfg, tmp_path / "x")
