"""Stage evidence: loss curves, reconstructions that show exactly the hidden patches, and
predicted-vs-reference plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from ctrip.analysis.training import (
    _masked_patches,
    plot_history,
    plot_predicted_vs_reference,
    reconstruction_figure,
    tabular_reconstruction,
    tabular_reconstruction_figure,
    tabular_reconstruction_summary,
)
from ctrip.data.dataset import NormalizationStats
from ctrip.models import Encoder, MaskedAutoencoder
from ctrip.models.tokenizers import ECGTokenizer, ImageTokenizer, TabularTokenizer


def test_hidden_map_covers_exactly_the_masked_patches():
    tok = ImageTokenizer((16, 16), 4, 32)
    mask = torch.zeros(1, 16)
    mask[0, [0, 5]] = 1
    hidden = _masked_patches(tok, mask)
    assert hidden.shape == (1, 3, 16, 16)
    assert hidden[0, :, :4, :4].eq(1).all() and hidden[0, :, 4:8, 4:8].eq(1).all()
    assert hidden.sum() == 2 * 16 * 3


def test_reconstruction_figures_for_images_and_signals():
    torch.manual_seed(0)
    image = MaskedAutoencoder(Encoder(ImageTokenizer((16, 16), 4, 32), 1, 2), 16, 1, 2).eval()
    fig = reconstruction_figure(image, torch.rand(2, 3, 16, 16))
    assert len(fig.axes) == 6
    ecg = MaskedAutoencoder(Encoder(ECGTokenizer(200, 10, 32, per_lead=True), 1, 2), 16, 1, 2)
    fig = reconstruction_figure(ecg.eval(), torch.randn(2, 12, 200))
    assert len(fig.axes) == 2


def test_history_and_scatter_figures():
    fig = plot_history({"epoch": [0, 1, 2], "train_loss": [3, 2, 1], "val_loss": [3, 2.5, 2]})
    assert {line.get_label() for line in fig.axes[0].lines} == {"train_loss", "val_loss"}
    rng = np.random.default_rng(0)
    ref = rng.normal(100, 10, 50)
    frame = pd.DataFrame({"split": "test", "LVM_ref": ref, "LVM_pred": ref + rng.normal(0, 5, 50)})
    fig = plot_predicted_vs_reference(frame, ["LVM"])
    assert "r = 0.8" in fig.axes[0].get_title() or "r = 0.9" in fig.axes[0].get_title()


def _tabular_batch():
    stats = NormalizationStats(
        tabular_variant="T", numerical=["age", "bmi"], categorical={"sex": ["female", "male"]},
        tab_mean=[60.0, 27.0], tab_std=[10.0, 4.0], target_mean=[], target_std=[], targets=[],
    )  # fmt: skip
    x = {
        "tab_num": torch.tensor([[0.5, -1.0], [1.0, 0.0], [-2.0, 0.25]]),
        "tab_num_missing": torch.tensor([[False, False], [False, True], [False, False]]),
        "tab_cat": torch.tensor([[1], [0], [0]]),
        "tab_cat_missing": torch.tensor([[False], [False], [True]]),
    }
    return stats, x


def test_tabular_reconstruction_lists_observed_entries_in_their_units():
    torch.manual_seed(0)
    stats, x = _tabular_batch()
    mae = MaskedAutoencoder(Encoder(TabularTokenizer(2, [2], 16), 1, 2), 8, 1, 2).eval()
    entries = tabular_reconstruction(mae, x, stats, seed=3)
    assert len(entries) == 9 - 2  # two missing values have nothing to compare
    age = entries[entries["feature"] == "age"].set_index("subject")
    assert age["true"].tolist() == [65.0, 70.0, 40.0]  # z * SD + mean
    np.testing.assert_allclose(age["reconstructed"].astype(float), age["reconstructed_z"] * 10 + 60)
    sex = entries[entries["feature"] == "sex"].set_index("subject")
    assert sex["true"].tolist() == ["male", "female"]
    assert set(sex["reconstructed"]) <= {"female", "male"}
    _, _, mask = mae(x, generator=torch.Generator().manual_seed(3))  # the same tokens hidden
    tokens = {"age": 0, "bmi": 1, "sex": 2}
    for _, e in entries.iterrows():
        assert e["hidden"] == bool(mask[e["subject"], tokens[e["feature"]]])
    assert entries["hidden"].any() and not entries["hidden"].all()


def test_tabular_summary_and_figure_from_hand_made_entries():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, 40)
    rows = [{"subject": i, "feature": "age", "kind": "numerical", "hidden": True,
             "true": 60 + 10 * t, "reconstructed": 60 + 10 * t, "true_z": t, "reconstructed_z": t}
            for i, t in enumerate(true)]  # fmt: skip
    rows += [{"subject": i, "feature": "age", "kind": "numerical", "hidden": False, "true": 0.0,
              "reconstructed": 99.0, "true_z": 0.0, "reconstructed_z": 9.9} for i in range(5)]  # fmt: skip
    levels = ["male"] * 3 + ["female"]
    rows += [{"subject": i, "feature": "sex", "kind": "categorical", "hidden": True, "true": level,
              "reconstructed": "female", "true_z": np.nan, "reconstructed_z": np.nan}
             for i, level in enumerate(levels)]  # fmt: skip
    entries = pd.DataFrame(rows)
    summary = tabular_reconstruction_summary(entries).set_index("feature")
    assert summary.loc["age", "n_hidden"] == 40  # visible entries do not count
    assert summary.loc["age", "r"] == 1.0 and summary.loc["age", "rmse_sd"] == 0.0
    assert summary.loc["sex", "accuracy"] == 0.25 and summary.loc["sex", "majority_share"] == 0.75
    fig = tabular_reconstruction_figure(entries, columns=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert "age, r = 1.00" in titles and "categorical: accuracy" in titles


def test_fraction_curves_keep_grey_for_the_references_and_skip_a_reference_without_r():
    import matplotlib.colors as mcolors
    import pandas as pd

    from ctrip.analysis.figures import plot_fraction_curves

    rows = []
    for method, r in (("L_sup", 0.5), ("L+E+T", 0.6), ("ref_localizer", 0.7), ("mean", np.nan)):
        for fraction in (0.1, 1.0):
            rows.append({"method": method, "cp": "LVM", "fraction": fraction, "r": r,
                         "r_seed_sd": 0.01})  # fmt: skip
    labels = {"L_sup": "L_sup", "L+E+T": "C-TRIP"}
    refs = {"ref_localizer": "2-D CNN", "mean": "training mean"}
    fig = plot_fraction_curves(pd.DataFrame(rows), labels, ["LVM"], refs)
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "2-D CNN (reference)" in names and "training mean (reference)" not in names
    for line in fig.axes[0].get_lines():
        rgb = mcolors.to_rgb(line.get_color())
        grey = max(rgb) - min(rgb) < 1e-6
        assert grey == (line.get_linestyle() == "--"), line.get_label()


class _FixedReconstruction(torch.nn.Module):
    """Stands in for an MAE: hides every other token and predicts either the exact patches or
    the standardized mean (zeros)."""

    def __init__(self, tokenizer, exact: bool) -> None:
        super().__init__()
        self.encoder = torch.nn.Module()
        self.encoder.tokenizer, self.exact = tokenizer, exact

    def forward(self, x, generator=None):
        tokenizer = self.encoder.tokenizer
        patches = tokenizer.patchify(x)
        mask = torch.zeros(patches.shape[:2])
        mask[:, ::2] = 1
        pred = patches if self.exact else torch.zeros_like(patches)
        return tokenizer.reconstruction_loss(pred, x, mask), pred, mask


def test_reconstruction_skill_is_zero_for_the_mean_and_one_for_the_signal():
    from ctrip.analysis.training import describe_reconstruction_skill, reconstruction_skill

    tokenizer = ECGTokenizer(200, 10, 32, per_lead=False, input_mean=0.5, input_std=2.0)
    x = torch.randn(5, 12, 200) * 2.0 + 0.5
    mean = reconstruction_skill(_FixedReconstruction(tokenizer, False), x, batch_size=2)
    assert mean["skill"] == 0.0 and mean["loss"] == mean["mean_loss"] > 0 and mean["n"] == 5
    assert "hardly better than the mean" in describe_reconstruction_skill(mean, "ecg")
    exact = reconstruction_skill(_FixedReconstruction(tokenizer, True), x)
    assert exact["skill"] == 1.0 and exact["loss"] == 0.0
    text = describe_reconstruction_skill(exact, "ecg")
    assert "skill 1.00" in text and "hardly" not in text
    real = MaskedAutoencoder(Encoder(ECGTokenizer(200, 10, 32), 1, 2), 16, 1, 2)
    assert np.isfinite(reconstruction_skill(real, x)["skill"])


def test_mean_patch_by_position_is_the_mean_over_every_batch():
    from ctrip.analysis.training import mean_patch_by_position

    tokenizer = ImageTokenizer((16, 16), 4, 8, in_chans=3)
    x = torch.rand(7, 3, 16, 16)
    # batches of unequal size weigh every subject alike
    mean = mean_patch_by_position(tokenizer, (x[:2], x[2:]))
    assert mean.shape == (1, 16, 48)
    torch.testing.assert_close(mean, tokenizer.patchify(x).mean(dim=0, keepdim=True))
    same = mean_patch_by_position(tokenizer, [x[:1].expand(4, -1, -1, -1)])
    torch.testing.assert_close(same, tokenizer.patchify(x[:1]))
    with pytest.raises(ValueError, match="empty"):
        mean_patch_by_position(tokenizer, [])


def test_reconstruction_skill_over_the_mean_patch_at_each_position():
    from ctrip.analysis.training import (
        describe_reconstruction_skill,
        mean_patch_by_position,
        reconstruction_skill,
    )

    tokenizer = ImageTokenizer((16, 16), 4, 8, in_chans=3)
    # an image whose every pixel is its position's average plus a little subject noise
    anatomy = torch.rand(1, 3, 16, 16) * 4
    x = anatomy + 0.1 * torch.randn(6, 3, 16, 16)
    position = mean_patch_by_position(tokenizer, [anatomy + 0.1 * torch.randn(50, 3, 16, 16)])
    zeros = reconstruction_skill(_FixedReconstruction(tokenizer, False), x, position_mean=position)
    # the average anatomy explains nearly all of the signal; predicting 0 does far worse
    assert zeros["position_mean_loss"] < 0.1 * zeros["mean_loss"]
    assert zeros["position_skill"] < -5
    assert "does worse than this average localizer" in describe_reconstruction_skill(
        zeros, "localizer"
    )
    exact = reconstruction_skill(_FixedReconstruction(tokenizer, True), x, position_mean=position)
    assert exact["position_skill"] == 1.0 and exact["position_mean_loss"] > 0
    text = describe_reconstruction_skill(exact, "localizer")
    # gain over the overall mean = mean_loss; the position mean gets mean_loss - position loss
    share = (exact["mean_loss"] - exact["position_mean_loss"]) / exact["mean_loss"]
    assert f"{100 * share:.0f}% of the autoencoder's gain" in text
    assert f"{100 * (1 - share):.0f}% what it infers from the visible patches" in text
    # without a position mean: as before, and the key is NaN
    plain = reconstruction_skill(_FixedReconstruction(tokenizer, True), x)
    assert np.isnan(plain["position_skill"]) and "position" not in describe_reconstruction_skill(
        plain, "localizer"
    )
    with pytest.raises(ValueError, match="patches of shape"):
        reconstruction_skill(
            _FixedReconstruction(tokenizer, True), x, position_mean=position[:, :, :10]
        )
    # a reference that is exact leaves the skill over it undefined, not an error
    flat = torch.zeros(3, 3, 16, 16)
    undefined = reconstruction_skill(
        _FixedReconstruction(tokenizer, True), flat, position_mean=torch.zeros(1, 16, 48)
    )
    assert np.isnan(undefined["position_skill"]) and np.isnan(undefined["skill"])


def test_stage1_reading_says_what_each_autoencoder_learned():
    from ctrip.analysis.training import describe_stage1_learning

    nothing = {"loss": 1.0, "mean_loss": 1.0, "skill": 0.0, "n": 8,
               "position_mean_loss": 1.0, "position_skill": 0.0}  # fmt: skip
    assert "learned in Stage I: nothing it can use" in describe_stage1_learning("ecg", nothing)
    average = {**nothing, "loss": 0.5, "skill": 0.5, "position_mean_loss": 0.5,
               "position_skill": 0.0}  # fmt: skip
    assert "the average localizer at each position, not" in describe_stage1_learning(
        "localizer", average
    )
    infers = {**nothing, "loss": 0.4, "skill": 0.6, "position_skill": 0.6}
    text = describe_stage1_learning("ecg", infers)
    assert "from the visible ones, with 60% less squared error" in text
    assert "skill 0.60" in text  # followed by describe_reconstruction_skill's numbers
    # tabular: r = 0.5 on 100 hidden entries has a CI above 0, r = 0.1 on 50 does not;
    # 80 of 100 right against a majority of 0.6 is above it, 62 of 100 is not
    summary = pd.DataFrame(
        [{"feature": "bsa", "kind": "numerical", "n_hidden": 100, "r": 0.5},
         {"feature": "age", "kind": "numerical", "n_hidden": 50, "r": 0.1},
         {"feature": "sex", "kind": "categorical", "n_hidden": 100, "accuracy": 0.8,
          "majority_share": 0.6},
         {"feature": "smoking", "kind": "categorical", "n_hidden": 100, "accuracy": 0.62,
          "majority_share": 0.6}]
    )  # fmt: skip
    text = describe_stage1_learning("tabular", tabular_summary=summary)
    assert "hidden entries of 1 of its 2 numerical features" in text and "(bsa r 0.50)" in text
    assert "1 of its 2 categorical features" in text and "(sex 0.80 against 0.60)" in text
    assert "age r" not in text and "smoking" not in text
    with pytest.raises(ValueError, match="tabular_reconstruction_summary"):
        describe_stage1_learning("tabular")
    with pytest.raises(ValueError, match="reconstruction_skill"):
        describe_stage1_learning("ecg")
