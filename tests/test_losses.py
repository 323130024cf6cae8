"""Contrastive losses: info_nce closed form and invariances, the localizer-centric loss."""

from __future__ import annotations

import math

import pytest
import torch

from ctrip.losses import LocalizerCentricInfoNCE, info_nce

# The public code's initial temperatures, as the training configuration passes them.
TEMPERATURES = {"localizer-ecg": 0.1, "localizer-tabular": 0.25, "ecg-tabular": 0.1}


def test_info_nce_identity_2x2():
    a = torch.eye(2)
    assert torch.isclose(info_nce(a, a, 1.0), torch.tensor(math.log(1 + math.exp(-1))))


def test_info_nce_closed_form_2x2():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # second row normalizes to (1, 1)/sqrt(2)
    t, s = 0.5, 1 / math.sqrt(2)
    # cosine matrix S = [[1, s], [0, s]]; logits = S / t
    a_to_b = (-math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(s / t)))
              - math.log(math.exp(s / t) / (math.exp(0) + math.exp(s / t)))) / 2  # fmt: skip
    b_to_a = (-math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0)))
              - math.log(math.exp(s / t) / (math.exp(s / t) + math.exp(s / t)))) / 2  # fmt: skip
    expected = (a_to_b + b_to_a) / 2
    assert torch.isclose(info_nce(a, b, t), torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert torch.isclose(info_nce(b, a, t), info_nce(a, b, t))  # symmetric


def test_info_nce_invariant_to_embedding_scale():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert torch.isclose(info_nce(a, b, 0.1), info_nce(7.5 * a, 0.01 * b, 0.1))
    # matched pairs give a lower loss than shuffled ones
    assert info_nce(a, a + 0.01 * b, 0.1) < info_nce(a, b, 0.1)


def test_localizer_centric_pairs_and_temperatures():
    loss = LocalizerCentricInfoNCE(TEMPERATURES)
    assert loss.pairs == [("localizer", "ecg"), ("localizer", "tabular")]  # no ECG-tabular term
    assert math.isclose(float(loss.temperature("localizer-ecg").detach()), 0.1, rel_tol=1e-6)
    assert math.isclose(float(loss.temperature("localizer-tabular").detach()), 0.25, rel_tol=1e-6)
    g = torch.Generator().manual_seed(1)
    emb = {m: torch.randn(6, 8, generator=g) for m in ("localizer", "ecg", "tabular")}
    total, parts = loss(emb)
    assert set(parts) == {"localizer-ecg", "localizer-tabular"}
    assert torch.isclose(
        total,
        info_nce(emb["localizer"], emb["ecg"], 0.1)
        + info_nce(emb["localizer"], emb["tabular"], 0.25),
    )
    with_et = LocalizerCentricInfoNCE(TEMPERATURES, ecg_tabular=True)
    assert ("ecg", "tabular") in with_et.pairs and len(with_et(emb)[1]) == 3
    only_ecg = LocalizerCentricInfoNCE(TEMPERATURES, auxiliary=("ecg",))
    assert list(only_ecg(emb)[1]) == ["localizer-ecg"]
    with pytest.raises(ValueError):
        LocalizerCentricInfoNCE(TEMPERATURES, auxiliary=("localizer",))
    with pytest.raises(ValueError):
        LocalizerCentricInfoNCE(TEMPERATURES, auxiliary=("ecg",), ecg_tabular=True)
    with pytest.raises(ValueError, match="localizer-tabular"):
        LocalizerCentricInfoNCE({"localizer-ecg": 0.1})  # no initial temperature for a pair


def test_temperatures_learn_and_stay_clamped():
    loss = LocalizerCentricInfoNCE(TEMPERATURES, bounds=(0.05, 0.5))
    g = torch.Generator().manual_seed(2)
    loc = torch.randn(16, 8, generator=g)
    emb = {
        "localizer": loc,
        "ecg": loc + 0.3 * torch.randn(16, 8, generator=g),
        "tabular": torch.randn(16, 8, generator=g),
    }
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    start = {p: float(loss.temperature(p).detach()) for p in loss.log_temperature}
    for _ in range(30):
        opt.zero_grad()
        total, _ = loss(emb)
        total.backward()
        opt.step()
    end = {p: float(loss.temperature(p).detach()) for p in loss.log_temperature}
    assert all(abs(end[p] - start[p]) > 1e-3 for p in start)
    assert all(0.05 <= v <= 0.5 for v in end.values())
    fixed = LocalizerCentricInfoNCE(TEMPERATURES, learnable=False)
    assert not any(p.requires_grad for p in fixed.parameters())
