"""Stage evidence: loss curves, reconstructions that show exactly the hidden patches, and
predicted-vs-reference plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import torch

from ctrip.analysis.training import (
    _masked_patches,
    plot_history,
    plot_predicted_vs_reference,
    reconstruction_figure,
)
from ctrip.models import Encoder, MaskedAutoencoder
from ctrip.models.tokenizers import ECGTokenizer, ImageTokenizer


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
