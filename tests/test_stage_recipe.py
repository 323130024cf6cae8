"""Optimization recipe of the stages: learning-rate groups."""

from __future__ import annotations

from ctrip.losses import LocalizerCentricInfoNCE
from ctrip.models import Encoder, ImageTokenizer, TabularTokenizer
from ctrip.stages.config import make_config
from ctrip.stages.modules import Stage2Module


def _module(lr_encoder):
    stage = {**make_config("smoke")["stage2"], "lr": 1e-3, "lr_encoder": lr_encoder}
    encoders = {
        "localizer": Encoder(ImageTokenizer((16, 16), 8, 16, stem="hmlp"), 1, 2),
        "tabular": Encoder(TabularTokenizer(3, [2], 16), 1, 2),
    }
    return Stage2Module(encoders, LocalizerCentricInfoNCE(("tabular",)), stage)


def test_stage2_trains_encoders_at_their_own_learning_rate():
    module = _module(1e-4)
    lr_of = {id(p): g["lr"] for g in module.optimizer_groups() for p in g["params"]}
    assert len(lr_of) == sum(1 for p in module.parameters() if p.requires_grad)
    assert {lr_of[id(p)] for p in module.encoders.parameters()} == {1e-4}
    assert {lr_of[id(p)] for p in module.projections.parameters()} == {1e-3}
    assert {lr_of[id(p)] for p in module.criterion.parameters()} == {1e-3}
    same = _module(None)
    assert {g["lr"] for g in same.optimizer_groups()} == {1e-3}
