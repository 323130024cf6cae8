"""LightningModules of the three stages.

Stage I   `Stage1Module`: masked data modelling of one modality (localizer, ecg, tabular, cmr).
Stage II  `Stage2Module`: localizer-centric contrastive alignment of pre-trained encoders.
Stage III `Stage3Module`: regression of the 18 z-scored CPs from one encoder (full or frozen).

All use AdamW with a per-step linear warm-up then cosine decay, and log "train_loss" and
"val_loss" per epoch (early stopping watches "val_loss"). The device, precision and
distribution strategy are Trainer arguments, so the modules hold none of it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ctrip.data.schema import IMAGE_MODALITIES
from ctrip.losses import LocalizerCentricInfoNCE
from ctrip.models import Encoder, MaskedAutoencoder, ProjectionHead, RegressionHead
from ctrip.stages.augment import augment_images, rotate_and_translate, shift_ecgs
from ctrip.stages.inputs import modality_input


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to `min_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or any(
        k in name for k in ("cls_token", "mask_token", "missing_token", "feature_embed", "pos")
    )


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: decay on weights, none on biases, norms,
    tokens, position and temperature parameters."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not _no_decay(n, p)]
    rest = [p for n, p in named if _no_decay(n, p)]
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": rest, "lr": lr, "weight_decay": 0.0},
    ]


def adamw(groups: list[dict[str, Any]], **options: Any) -> torch.optim.AdamW:
    """AdamW over `groups`, with the fused kernel (one pass over every parameter instead of a
    loop over tensors) where the parameters allow it: on one CPU thread a default Stage III
    update takes 0.3 instead of 1.3 ms (`benchmarks/bench_train.py`), the same update."""
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.AdamW(groups, fused=fused or None, **options)


class TrainStage(L.LightningModule):
    """Optimizer, schedule, augmentation and logging shared by the stages."""

    def __init__(
        self,
        stage: dict[str, Any],
        augment: dict[str, Any] | None,
        rigid: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.augment, self.rigid = augment or {}, rigid or {}

    def maybe_augment(self, x: Any, modality: str) -> Any:
        """A training batch of `modality` through every augmentation its stage turns on."""
        if not self.training:
            return x
        if self.stage.get("augment") and modality == "localizer":
            x = augment_images(x, **self.augment)
        if self.stage.get("augment_rigid") and modality in IMAGE_MODALITIES:
            x = rotate_and_translate(x, **self.rigid)
        if self.stage.get("augment_ecg") and modality == "ecg":
            x = shift_ecgs(x)
        return x

    def optimizer_groups(self) -> list[dict[str, Any]]:
        return param_groups(self, self.stage["lr"], self.stage["weight_decay"])

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = adamw(self.optimizer_groups(), betas=(0.9, 0.95))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        warmup = int(round(total * self.stage["warmup_epochs"] / epochs))
        floor = self.stage["min_lr_ratio"]
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, floor)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def log_loss(self, name: str, value: torch.Tensor, batch_size: int) -> None:
        self.log(name, value, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)


class Stage1Module(TrainStage):
    """Masked data modelling: the MAE's reconstruction loss on one modality."""

    def __init__(
        self,
        mae: MaskedAutoencoder,
        modality: str,
        stage: dict[str, Any],
        augment: dict[str, Any] | None = None,
        rigid: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(stage, augment, rigid)
        self.mae = mae
        self.modality = modality

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = self.maybe_augment(modality_input(batch, self.modality), self.modality)
        loss, _, _ = self.mae(x)
        self.log_loss("train_loss", loss, len(batch["targets"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # The same masks every epoch, so that the validation loss is comparable across epochs.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss, _, _ = self.mae(modality_input(batch, self.modality), generator=generator)
        self.log_loss("val_loss", loss, len(batch["targets"]))
        return loss


class Stage2Module(TrainStage):
    """Localizer-centric contrastive alignment: encoders -> CLS -> projection -> InfoNCE."""

    def __init__(
        self,
        encoders: dict[str, Encoder],
        criterion: LocalizerCentricInfoNCE,
        stage: dict[str, Any],
        augment: dict[str, Any] | None = None,
        rigid: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(stage, augment, rigid)
        self.encoders = nn.ModuleDict(encoders)
        self.projections = nn.ModuleDict(
            {
                m: ProjectionHead(enc.dim, stage["projection_dim"], stage["projection_hidden"])
                for m, enc in encoders.items()
            }
        )
        self.criterion = criterion

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Projections and temperatures at `lr`; the pre-trained encoders at `lr_encoder`
        (default: `lr`), so that alignment need not overwrite what Stage I learned."""
        lr, decay = self.stage["lr"], self.stage["weight_decay"]
        lr_encoder = self.stage.get("lr_encoder") or lr
        groups = param_groups(self.projections, lr, decay) + param_groups(self.criterion, lr, 0.0)
        groups += param_groups(self.encoders, lr_encoder, decay)
        return [g for g in groups if g["params"]]

    def embed(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {
            m: self.projections[m](
                self.encoders[m].features(self.maybe_augment(modality_input(batch, m), m))
            )
            for m in self.encoders
        }

    def _step(self, batch: dict[str, Any], prefix: str) -> torch.Tensor:
        loss, parts = self.criterion(self.embed(batch))
        n = len(batch["targets"])
        self.log_loss(f"{prefix}_loss", loss, n)
        for pair, value in parts.items():
            self.log_loss(f"{prefix}_loss_{pair}", value, n)
        if prefix == "train":
            for pair in parts:
                self.log_loss(f"temperature_{pair}", self.criterion.temperature(pair).detach(), n)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")


class Stage3Module(TrainStage):
    """CP regression: encoder CLS -> MLP head -> 18 z-scored CPs, MSE loss.

    `frozen`: the encoder gets no gradient and stays in eval mode (a probe). Otherwise the
    encoder trains at its own learning rate `encoder_lr` (0.1x the head's by default).
    """

    def __init__(
        self,
        encoder: Encoder,
        head: RegressionHead,
        modality: str,
        stage: dict[str, Any],
        encoder_lr: float,
        frozen: bool = False,
        augment: dict[str, Any] | None = None,
        rigid: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(stage, augment, rigid)
        self.encoder, self.head, self.modality = encoder, head, modality
        self.encoder_lr, self.frozen = encoder_lr, frozen
        if frozen:
            self.encoder.requires_grad_(False)

    def forward(self, x: Any) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                features = self.encoder.features(x)
            return self.head(features)
        return self.head(self.encoder.features(x))

    def on_train_epoch_start(self) -> None:
        if self.frozen:
            self.encoder.eval()

    def optimizer_groups(self) -> list[dict[str, Any]]:
        decay = self.stage["weight_decay"]
        groups = param_groups(self.head, self.stage["lr_head"], decay)
        if not self.frozen:
            groups += param_groups(self.encoder, self.encoder_lr, decay)
        return [g for g in groups if g["params"]]

    def _step(self, batch: dict[str, Any], prefix: str) -> torch.Tensor:
        x = self.maybe_augment(modality_input(batch, self.modality), self.modality)
        loss = F.mse_loss(self(x), batch["targets"])
        self.log_loss(f"{prefix}_loss", loss, len(batch["targets"]))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")


class BestWeights(L.Callback):
    """Keeps (in memory) the weights of the epoch with the lowest validation loss, and the
    per-epoch history of every logged epoch metric."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.history: dict[str, list[float]] = {"epoch": []}

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in module.state_dict().items()}
            )

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.history["epoch"].append(trainer.current_epoch)
        for key, value in trainer.callback_metrics.items():
            self.history.setdefault(key, []).append(float(value))
