"""Optimization recipe of the stages: learning-rate groups."""

from __future__ import annotations

from ctrip.config import make_config
from ctrip.losses import LocalizerCentricInfoNCE
from ctrip.models import Encoder, ImageTokenizer, TabularTokenizer
from ctrip.stages.modules import Stage2Module


def _module(lr_encoder):
    stage = {**make_config("smoke")["stage2"], "lr": 1e-3, "lr_encoder": lr_encoder}
    encoders = {
        "localizer": Encoder(ImageTokenizer((16, 16), 8, 16, stem="hmlp"), 1, 2),
        "tabular": Encoder(TabularTokenizer(3, [2], 16), 1, 2),
    }
    return Stage2Module(
        encoders, LocalizerCentricInfoNCE({"localizer-tabular": 0.25}, ("tabular",)), stage
    )


def test_stage2_trains_encoders_at_their_own_learning_rate():
    module = _module(1e-4)
    lr_of = {id(p): g["lr"] for g in module.optimizer_groups() for p in g["params"]}
    assert len(lr_of) == sum(1 for p in module.parameters() if p.requires_grad)
    assert {lr_of[id(p)] for p in module.encoders.parameters()} == {1e-4}
    assert {lr_of[id(p)] for p in module.projections.parameters()} == {1e-3}
    assert {lr_of[id(p)] for p in module.criterion.parameters()} == {1e-3}
    same = _module(None)
    assert {g["lr"] for g in same.optimizer_groups()} == {1e-3}


def test_adamw_is_fused_on_the_cpu_and_updates_as_the_loop_does():
    import torch

    from ctrip.stages.modules import adamw, param_groups

    module = _module(1e-4)
    twin = _module(1e-4)
    twin.load_state_dict(module.state_dict())
    fused = adamw(module.optimizer_groups(), betas=(0.9, 0.95))
    loop = torch.optim.AdamW(twin.optimizer_groups(), betas=(0.9, 0.95))
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    for step in range(3):
        for p, q in zip(module.parameters(), twin.parameters()):
            grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(step))
            p.grad, q.grad = grad.clone(), grad.clone()
        fused.step()
        loop.step()
    moved = [(p - q).abs().max() for p, q in zip(module.parameters(), twin.parameters())]
    assert max(moved) < 1e-6
    assert any(g["weight_decay"] > 0 for g in param_groups(module, 1e-3, 0.05))
    assert adamw([{"params": []}, *param_groups(module, 1e-3, 0.05)]).defaults["fused"] is True
