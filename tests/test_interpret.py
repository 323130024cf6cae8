"""The share of attribution on the heart, on hand-made maps and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctrip.analysis.interpret import heart_share, heart_share_table, integrated_gradients


def _mask(n: int, size: int = 8) -> np.ndarray:
    """A heart of 16 of 64 pixels per slice (a quarter), on 3 slices."""
    masks = np.zeros((n, 3, size, size), dtype=bool)
    masks[:, :, 2:6, 2:6] = True
    return masks


def test_heart_share_counts_absolute_attribution_on_the_mask():
    masks = _mask(3)
    maps = np.zeros(masks.shape)
    maps[0][masks[0]] = 1.0  # all on the heart
    maps[1][~masks[1]] = -2.0  # all off it, negative: the magnitude counts
    maps[2][masks[2]], maps[2][~masks[2]] = -1.0, 1.0 / 3.0  # equal mass in and out
    np.testing.assert_allclose(heart_share(maps, masks), [1.0, 0.0, 0.5])
    uniform = np.ones(masks.shape)
    np.testing.assert_allclose(heart_share(uniform, masks), masks.mean(axis=(1, 2, 3)))


def test_heart_share_refuses_what_it_cannot_measure():
    masks = _mask(2)
    with pytest.raises(ValueError, match="differ in shape"):
        heart_share(np.ones((2, 3, 8, 7)), masks)
    with pytest.raises(ValueError, match="bool"):
        heart_share(np.ones(masks.shape), masks.astype(np.float32))
    empty = np.ones(masks.shape)
    empty[1] = 0.0
    with pytest.raises(ValueError, match="subject 1: .*all zero"):
        heart_share(empty, masks)


def test_heart_share_table_reads_focal_and_reference_maps():
    rng = np.random.default_rng(0)
    n = 64
    masks = _mask(n)
    images = np.where(masks, 1.0, 0.5)  # a bright heart: 16 x 1 of 16 + 48 x 0.5 = 0.4
    focal = rng.uniform(0.7, 0.9, n)  # C-TRIP-like: most mass on a quarter of the pixels
    flat = 0.25 + rng.normal(0, 0.02, n)  # as a uniform map
    shares = {"L_sup": flat, "L+E+T": focal}
    table = heart_share_table(shares, masks, "L_sup", images=images, n_boot=500, seed=1)
    t = table.set_index("map")
    assert (
        list(table["kind"])
        == ["method"] * 2 + ["reference"] * 2 + ["difference"] + ["above reference"] * 4
    )
    assert t.loc["uniform", "share"] == pytest.approx(0.25)
    assert t.loc["brightness", "share"] == pytest.approx(0.4)
    assert t.loc["L+E+T", "share"] == pytest.approx(focal.mean())
    assert t.loc["L+E+T", "ci_low"] < focal.mean() < t.loc["L+E+T", "ci_high"]
    assert t.loc["L+E+T - L_sup", "ci_low"] > 0.4  # clearly more on the heart
    low, high = t.loc["L_sup - uniform", ["ci_low", "ci_high"]]
    assert low < 0 < high  # no different from a uniform map
    assert t.loc["L_sup - brightness", "ci_high"] < 0  # less than the image's brightness
    again = heart_share_table(shares, masks, "L_sup", images=images, n_boot=500, seed=1)
    assert again.equals(table)  # seeded
    without = heart_share_table(shares, masks, "L_sup", n_boot=50)
    assert "brightness" not in set(without["map"]) and len(without) == 2 + 1 + 1 + 2
    with pytest.raises(ValueError, match="baseline"):
        heart_share_table({"L+E+T": focal}, masks, "L_sup")
    with pytest.raises(ValueError, match=r"63,\) shares for 64"):
        heart_share_table({"L_sup": flat[:-1]}, masks, "L_sup")


def test_integrated_gradients_of_a_linear_model_is_input_times_weight():
    """For f(x) = sum(w * x) from a black baseline, IG is exactly w * x."""

    class Linear(nn.Module):
        def __init__(self, weight: torch.Tensor) -> None:
            super().__init__()
            self.weight = weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * self.weight).flatten(1).sum(dim=1, keepdim=True)

    weight = torch.zeros(3, 4, 4)
    weight[1, 1:3, 1:3] = 2.0
    images = torch.rand(2, 3, 4, 4)
    ig = integrated_gradients(Linear(weight), images, target=0, n_steps=4, batch=3)
    np.testing.assert_allclose(ig, (images * weight).numpy(), rtol=1e-5, atol=1e-6)
    masks = (weight > 0).expand(2, 3, 4, 4).numpy()
    np.testing.assert_allclose(heart_share(ig, masks), [1.0, 1.0])
