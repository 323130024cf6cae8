"""Reference baselines: each can fit a tiny cohort, the mean is the mean, a seed fixes a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctrip.baselines import (
    ECGCNN,
    STANDARD_IMAGE_CNN,
    ImageCNN,
    baseline_inputs,
    fit_mean,
    fit_network,
    fit_ridge,
    run_baseline,
)
from ctrip.data.cohort import Cohort
from ctrip.data.schema import CP_NAMES
from tests.factories import make_tiny_cohort


def learnable(shape: tuple[int, ...], n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and 2 z-scored targets that depend on them (channel means)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    x += rng.normal(size=(n, shape[0]) + (1,) * (len(shape) - 1)).astype(np.float32)
    means = x.reshape(n, shape[0], -1).mean(axis=-1)
    y = np.stack([means[:, 0], means[:, 1] - means[:, 2]], axis=1)
    return x, ((y - y.mean(0)) / y.std(0)).astype(np.float32)


def train_r(pred: np.ndarray, y: np.ndarray) -> float:
    return min(np.corrcoef(pred[:, j], y[:, j])[0, 1] for j in range(y.shape[1]))


@pytest.mark.parametrize(
    "model, shape",
    [(lambda: ImageCNN(3, 2, widths=(8, 16, 16, 16)), (3, 16, 16)),
     (lambda: ECGCNN(12, 2, widths=(8, 16, 16, 16)), (12, 256))],
)  # fmt: skip
def test_networks_overfit_a_tiny_cohort(model, shape):
    torch.set_num_threads(1)
    x, y = learnable(shape)
    result = fit_network(model(), x, y, x, y, x, epochs=40, seed=0, batch_size=8, lr=1e-2)
    assert train_r(result.test, y) > 0.9
    assert result.chosen["best_epoch"] > 0 and len(result.history) == 40


def test_ecg_cnn_is_the_one_dimensional_network():
    """The 1 x k 2-D layers compute what Conv1d / BatchNorm1d / MaxPool1d with the same weights do."""
    torch.manual_seed(0)
    model = ECGCNN(12, 3, widths=(8, 16, 16, 16))
    reference = model.as_conv1d()
    assert any(isinstance(layer, nn.Conv1d) for layer in reference)
    x = torch.randn(4, 12, 300)
    for training in (True, False):
        model.train(training), reference.train(training)
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_ridge_overfits_and_chooses_alpha_on_validation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 50))
    y = np.stack([x[:, 0] + 0.5 * x[:, 1], x[:, 2]], axis=1)
    result = fit_ridge(x, y, x, y, x)
    assert train_r(result.test, y) > 0.95
    assert result.chosen["alpha"] <= 1e-2  # validating on the training set: least shrinkage
    noise = fit_ridge(x, y, rng.normal(size=(30, 50)), rng.normal(size=(30, 2)), x)
    assert noise.chosen["alpha"] > result.chosen["alpha"]


def test_mean_predictor_returns_the_training_mean():
    y = np.array([[1.0, 2.0], [3.0, 6.0]])
    result = fit_mean(y, n_val=3, n_test=4)
    assert result.val.shape == (3, 2) and result.test.shape == (4, 2)
    assert np.allclose(result.test, [2.0, 4.0]) and np.allclose(result.val, [2.0, 4.0])


def test_seed_fixes_the_run():
    torch.set_num_threads(1)
    x, y = learnable((12, 128), n=16)

    def run(seed):
        return fit_network(ECGCNN(12, 2, widths=(8, 8, 8, 8)), x, y, x, y, x, 3, seed, 8).test

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_standard_image_cnn_has_two_convolutions_per_block():
    """Two 3x3 convolutions (each with batch norm and ReLU) per block, widths 32-64-128, a
    max-pool per block; the book's cheap CNN has one per block."""
    standard = ImageCNN(3, len(CP_NAMES), **STANDARD_IMAGE_CNN)
    convs = [m for m in standard.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in standard.features) == 6
    assert sum(isinstance(m, nn.MaxPool2d) for m in standard.features) == 3
    assert standard(torch.randn(2, 3, 64, 64)).shape == (2, len(CP_NAMES))
    cheap = [m for m in ImageCNN(3).features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in cheap] == [16, 32, 64, 64]
    with pytest.raises(ValueError, match="convs_per_block"):
        ImageCNN(3, convs_per_block=0)


def test_early_stopping_keeps_the_best_validation_epoch():
    """Validation targets unrelated to the inputs: the validation loss bottoms out early, and
    with patience training stops `patience` epochs after its minimum, keeping that epoch's
    weights (the predictions returned score the minimum's validation loss)."""
    torch.set_num_threads(1)
    x, y = learnable((3, 16, 16), n=32)
    noise = np.random.default_rng(5).normal(size=y.shape).astype(np.float32)
    model = ImageCNN(3, 2, widths=(8, 8))
    result = fit_network(model, x, y, x, noise, x, epochs=30, seed=0, batch_size=8, lr=1e-2,
                         patience=3)  # fmt: skip
    val = [h["val_mse"] for h in result.history]
    best = int(np.argmin(val))
    assert result.chosen["best_epoch"] == best and len(val) == best + 4 < 30
    assert np.isclose(np.mean((result.val - noise) ** 2), min(val), rtol=1e-5)
    again = fit_network(ImageCNN(3, 2, widths=(8, 8)), x, y, x, noise, x, epochs=30, seed=0,
                        batch_size=8, lr=1e-2, patience=3)  # fmt: skip
    assert np.array_equal(again.test, result.test) and again.chosen == result.chosen
    with pytest.raises(ValueError, match="patience"):
        fit_network(model, x, y, x, y, x, patience=0)


def test_bad_inputs_are_named():
    x, y = learnable((12, 64), n=8)
    with pytest.raises(ValueError, match="differ in length"):
        fit_network(ECGCNN(12, 2), x, y[:5], x, y, x)


def test_cohort_baselines_for_every_modality(tmp_path):
    torch.set_num_threads(1)
    cohort = Cohort.open(make_tiny_cohort(tmp_path / "c", n=40))
    data = baseline_inputs(cohort, "ecg")
    assert data["train"][0].shape[1:] == (12, 200) and data["test"][1].shape[1] == len(CP_NAMES)
    n_test = len(data["test"][0])
    for modality, kind in (("localizer", "cnn"), ("ecg", "cnn"), ("tabular", "ridge")):
        result = run_baseline(cohort, modality, kind, seed=0, epochs=1, batch_size=8)
        assert result.test.shape == (n_test, len(CP_NAMES)) and np.isfinite(result.test).all()
    mean = run_baseline(cohort, "tabular", "mean")
    assert np.allclose(mean.test, data["train"][1].mean(axis=0), atol=1e-6)
    half = baseline_inputs(cohort, "tabular", fraction=0.5)
    assert len(half["train"][0]) < len(baseline_inputs(cohort, "tabular")["train"][0])
    with pytest.raises(ValueError, match="no CNN baseline"):
        run_baseline(cohort, "tabular", "cnn")


def test_baseline_predictions_read_like_a_stage3_run(tmp_path):
    """CP units, one row per val/test subject, the mean predictor at the training mean."""
    from ctrip.analysis.metrics import per_cp_table
    from ctrip.baselines import baseline_predictions

    cohort = Cohort.open(make_tiny_cohort(tmp_path / "c", n=40))
    table = cohort.table
    frame = baseline_predictions(cohort, "tabular", "mean")
    assert set(frame["split"]) == {"val", "test"}
    assert len(frame) == int(table["split"].isin(["val", "test"]).sum())
    train_mean = table.loc[table["split"] == "train", "LVM"].mean()
    assert np.allclose(frame["LVM_pred"], train_mean, rtol=1e-4)
    test_ref = table.set_index("id").loc[frame.loc[frame.split == "test", "id"], "LVM"]
    assert np.allclose(frame.loc[frame.split == "test", "LVM_ref"], test_ref.to_numpy())
    ridge = baseline_predictions(cohort, "tabular", "ridge")
    metrics = per_cp_table(ridge, split="test")
    assert set(metrics["cp"]) == set(CP_NAMES) and np.isfinite(metrics["md"]).all()


def test_baseline_data_read_once_cuts_the_same_nested_subjects(tmp_path):
    """A fraction's training rows are the transformer rows' nested subset, whichever way read."""
    from ctrip.baselines import BaselineData
    from ctrip.data.splits import nested_fractions

    cohort = Cohort.open(make_tiny_cohort(tmp_path / "c", n=40))
    data = BaselineData.load(cohort, "localizer")
    keep = nested_fractions(cohort.table, [0.5], 3)[0.5]
    x, y = data.splits(0.5, fraction_seed=3)["train"]
    assert np.array_equal(x, np.asarray(cohort.array("localizer")[keep], np.float32))
    assert len(y) == len(keep)
    with pytest.raises(ValueError, match="not 'ecg'"):
        run_baseline(data, "ecg", "cnn")
    with pytest.raises(ValueError, match="no modality 'mri'"):
        BaselineData.load(cohort, "mri")
