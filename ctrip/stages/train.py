"""The three stage recipes, nanoGPT-style: plain functions, a resolved config dict, files out.

    run_stage1(cohort, "localizer", config, out)                   -> stage1-localizer.pt
    run_stage2(cohort, [("localizer", "ecg"), ("localizer", "tabular")],
               {"localizer": ..., "ecg": ..., "tabular": ...}, config, out)  -> stage2.pt
    run_stage3(cohort, "localizer", init=stage2_ckpt, config, out)  -> Stage3Result

`cohort` is an opened `Cohort` (open it once per run and pass it to every call) or its folder.
`config` is the run's full configuration (`ctrip.config.run_config`): it is used as
given, never merged again, and stored as is in the checkpoint (`ctrip.stages.checkpoint`).
Loading models back and inference live in `ctrip.stages.inference`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import ctrip
from ctrip.config import stage2_pairs
from ctrip.data.cohort import Cohort
from ctrip.data.dataset import NormalizationStats
from ctrip.data.schema import CP_NAMES, MODALITIES
from ctrip.models import Encoder, RegressionHead
from ctrip.stages.build import check_compatible, new_encoder, new_mae
from ctrip.stages.checkpoint import (
    checkpoint_identity,
    cohort_facts,
    encoder_from,
    read_checkpoint,
    state_of,
    write_checkpoint,
)
from ctrip.stages.inference import CPRegressor, predictions_frame

log = logging.getLogger(__name__)


@dataclass
class Stage3Result:
    """A Stage III run: its checkpoint, and predictions for the validation and test subjects
    (columns id, split, "<CP>_pred" and "<CP>_ref" in CP units)."""

    checkpoint: Path
    predictions: pd.DataFrame
    history: dict[str, list[float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- plumbing


def _open(cohort: Cohort | str | Path) -> Cohort:
    return cohort if isinstance(cohort, Cohort) else Cohort.open(cohort)


def _check_config(config: dict[str, Any], stage: str, modalities: Sequence[str]) -> None:
    """The sections a recipe reads must be in the run's config (nothing is filled in)."""
    missing = [s for s in (stage, "trainer") if s not in config]
    missing += [f"models.{m}" for m in modalities if m not in config.get("models", {})]
    if missing:
        raise ValueError(
            f"{stage}: the config lacks {missing}; pass a full config "
            "(ctrip.config.make_config or run_config)"
        )


def _prepare(config: dict[str, Any], seed: int) -> None:
    import lightning as L

    trainer = config["trainer"]
    if trainer["threads"]:
        torch.set_num_threads(int(trainer["threads"]))
    if trainer["quiet"]:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    L.seed_everything(seed, workers=True, verbose=False)


def _datamodule(cohort: Cohort, modalities: Sequence[str], config: dict[str, Any], stage: str,
                seed: int, tabular_variant: str, fraction: float | None = None) -> Any:  # fmt: skip
    from ctrip.data.datamodule import CohortDataModule

    dm = CohortDataModule(
        cohort, modalities, batch_size=config[stage]["batch_size"], fraction=fraction,
        fraction_seed=seed, tabular_variant=tabular_variant,
        num_workers=config["trainer"]["num_workers"], seed=seed, drop_last=True,
    )  # fmt: skip
    dm.setup()
    return dm


def _sync_batchnorm(trainer: dict[str, Any]) -> bool:
    """Training spreads over several GPUs (devices or nodes): the regression head's BatchNorm
    then takes its statistics over the batches of every process (SyncBatchNorm, GPU-only in
    torch), so that the result is the single-process one. On CPUs each process keeps its own."""
    if trainer["accelerator"] == "cpu" or not torch.cuda.is_available():
        return False
    devices = trainer["devices"]
    many = (isinstance(devices, int) and devices > 1) or (
        isinstance(devices, list) and len(devices) > 1
    )
    return many or devices == -1 or int(trainer["num_nodes"]) > 1


def _fit(module: Any, dm: Any, config: dict[str, Any], stage: str, out_dir: Path) -> Any:
    """Train with early stopping on val_loss; leave the best epoch's weights in `module`."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    from ctrip.stages.modules import BestWeights

    t, s = config["trainer"], config[stage]
    best = BestWeights("val_loss")
    trainer = L.Trainer(
        max_epochs=s["max_epochs"], accelerator=t["accelerator"], devices=t["devices"],
        num_nodes=t["num_nodes"], strategy=t["strategy"], precision=t["precision"],
        callbacks=[best, EarlyStopping("val_loss", patience=s["patience"], mode="min")],
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=t["enable_progress_bar"], num_sanity_val_steps=0,
        log_every_n_steps=t["log_every_n_steps"], deterministic=t["deterministic"],
        default_root_dir=out_dir, sync_batchnorm=_sync_batchnorm(t),
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    if best.state is not None:
        module.load_state_dict(best.state)
    module.cpu().eval()
    return trainer, best


def _save(checkpoint: dict[str, Any], path: Path, trainer: Any) -> Path:
    if trainer.is_global_zero:
        write_checkpoint(path, checkpoint)
    trainer.strategy.barrier("checkpoint saved")  # other ranks may read it next (DDP)
    return path


def _common(kind: str, config: dict[str, Any], seed: int, cohort: Cohort, tabular_variant: str,
            stats: NormalizationStats, best: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": kind,
        "ctrip_version": ctrip.__version__,
        "config": config,
        "seed": int(seed),
        "cohort": cohort_facts(cohort),
        "tabular_variant": tabular_variant,
        "stats": stats.to_dict(),
        "history": best.history,
        "best_epoch": int(best.best_epoch),
        "best_val_loss": float(best.best),
    }


def _init_encoder(checkpoint: str | Path, modality: str, fresh: Encoder) -> Encoder:
    """The `modality` encoder of `checkpoint`, checked to read this cohort's inputs, pooling
    as this run's config says (pooling has no weights)."""
    encoder = encoder_from(read_checkpoint(checkpoint), modality, checkpoint)
    check_compatible(encoder, fresh, modality, Path(checkpoint))
    encoder.pool = fresh.pool
    return encoder


# ---------------------------------------------------------------------------- stages


def run_stage1(
    cohort: Cohort | str | Path,
    modality: str,
    config: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
    tabular_variant: str = "T",
) -> Path:
    """Stage I: pre-train the masked autoencoder of `modality`; returns
    `out_dir/stage1-<modality>.pt`. `tabular_variant` picks the tabular columns (a tabular
    encoder for the L+E+Tp ablation is pre-trained on "Tp")."""
    from ctrip.stages.modules import Stage1Module

    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    _check_config(config, "stage1", [modality])
    cohort, out_dir = _open(cohort), Path(out_dir)
    _prepare(config, seed)
    dm = _datamodule(cohort, (modality,), config, "stage1", seed, tabular_variant)
    mae = new_mae(modality, config, cohort, dm.stats)
    module = Stage1Module(
        mae, modality, config["stage1"], config.get("augment"), config.get("rigid")
    )
    trainer, best = _fit(module, dm, config, "stage1", out_dir)
    ckpt = _common("stage1", config, seed, cohort, tabular_variant, dm.stats, best)
    ckpt.update(
        modality=modality,
        specs={modality: mae.encoder.spec()},
        encoders={modality: state_of(mae.encoder)},
        mae={"spec": mae.spec(), "state_dict": state_of(mae)},
    )
    return _save(ckpt, out_dir / f"stage1-{modality}.pt", trainer)


def run_stage2(
    cohort: Cohort | str | Path,
    pairs: Sequence[Sequence[str]],
    encoders: dict[str, str | Path],
    config: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
    tabular_variant: str = "T",
) -> Path:
    """Stage II: align the Stage I encoders over `pairs` (L+E, L+T, L+E+T, and L+E+Tp with
    tabular_variant="Tp"); returns `out_dir/stage2.pt`.

    `encoders` maps each modality to its Stage I checkpoint; a modality left out starts from
    random weights (logged as a warning). The tabular checkpoint must have been pre-trained on
    the same tabular variant.
    """
    from ctrip.losses import LocalizerCentricInfoNCE
    from ctrip.stages.modules import Stage2Module

    auxiliary, ecg_tabular = stage2_pairs(pairs, config.get("stage2", {}).get("ecg_tabular", False))
    modalities = ["localizer", *auxiliary]
    _check_config(config, "stage2", modalities)
    stage, cohort, out_dir = config["stage2"], _open(cohort), Path(out_dir)
    _prepare(config, seed)
    dm = _datamodule(cohort, modalities, config, "stage2", seed, tabular_variant)
    nets: dict[str, Encoder] = {}
    for m in modalities:
        fresh = new_encoder(m, config, cohort, dm.stats)
        if m not in encoders:
            log.warning("Stage II: no Stage I checkpoint for %s; it starts from random weights", m)
            nets[m] = fresh
            continue
        variant = read_checkpoint(encoders[m])["tabular_variant"]
        if m == "tabular" and variant != tabular_variant:
            raise ValueError(
                f"{encoders[m]}: the tabular encoder was pre-trained on variant {variant!r}, "
                f"Stage II uses {tabular_variant!r}; pre-train it with "
                f"run_stage1(..., tabular_variant={tabular_variant!r})"
            )
        nets[m] = _init_encoder(encoders[m], m, fresh)
    criterion = LocalizerCentricInfoNCE(
        stage["temperatures"], auxiliary, "localizer", ecg_tabular,
        stage["learn_temperature"], tuple(stage["temperature_bounds"]),
    )  # fmt: skip
    module = Stage2Module(nets, criterion, stage, config.get("augment"), config.get("rigid"))
    trainer, best = _fit(module, dm, config, "stage2", out_dir)
    ckpt = _common("stage2", config, seed, cohort, tabular_variant, dm.stats, best)
    ckpt.update(
        pairs=[list(p) for p in criterion.pairs],
        init={m: checkpoint_identity(p) for m, p in encoders.items()},
        specs={m: enc.spec() for m, enc in nets.items()},
        encoders={m: state_of(enc) for m, enc in nets.items()},
        projections={
            m: {
                "spec": {"in_dim": h.in_dim, "out_dim": h.out_dim, "hidden_dim": h.hidden_dim},
                "state_dict": state_of(h),
            }
            for m, h in module.projections.items()
        },  # fmt: skip
        temperatures={
            p: float(criterion.temperature(p).detach()) for p in criterion.log_temperature
        },
    )
    return _save(ckpt, out_dir / "stage2.pt", trainer)


def run_stage3(
    cohort: Cohort | str | Path,
    modality: str,
    init: str | Path | None,
    config: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
    fraction: float | None = None,
    frozen: bool = False,
    tabular_variant: str = "T",
) -> Stage3Result:
    """Stage III: regress the 18 z-scored CPs from the `modality` encoder.

    init: a Stage I or II (or III) checkpoint holding a `modality` encoder, or None for a
    randomly initialized encoder (the supervised baselines). fraction: the nested fraction of
    the training split to fine-tune on (None: all). frozen: train the head only.
    Writes `out_dir/stage3-<modality>.pt`; the result holds the val + test predictions (the
    Stage III notebook writes those of its whole sweep to one `predictions.parquet`).
    """
    from ctrip.stages.modules import Stage3Module

    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    _check_config(config, "stage3", [modality])
    stage, cohort, out_dir = config["stage3"], _open(cohort), Path(out_dir)
    _prepare(config, seed)
    dm = _datamodule(cohort, (modality,), config, "stage3", seed, tabular_variant, fraction)
    if len(dm.datasets["train"]) < 2:
        raise ValueError(
            f"{cohort.path}: fraction {fraction} of the training split leaves "
            f"{len(dm.datasets['train'])} subject(s); the regression head needs at least 2"
        )
    fresh = new_encoder(modality, config, cohort, dm.stats)
    if init is None:
        encoder, encoder_lr = fresh, stage["lr_encoder_scratch"]
    else:
        encoder, encoder_lr = _init_encoder(init, modality, fresh), stage["lr_encoder"]
    head = RegressionHead(encoder.dim, len(CP_NAMES), stage["hidden"], stage["dropout"])
    module = Stage3Module(
        encoder,
        head,
        modality,
        stage,
        encoder_lr,
        frozen,
        config.get("augment"),
        config.get("rigid"),
    )
    fit_config = config
    if init is None and stage.get("max_epochs_scratch"):
        fit_config = {**config, "stage3": {**stage, "max_epochs": stage["max_epochs_scratch"]}}
    trainer, best = _fit(module, dm, fit_config, "stage3", out_dir)
    model = CPRegressor(module.encoder, module.head, modality, dm.stats)
    ckpt = _common("stage3", config, seed, cohort, tabular_variant, dm.stats, best)
    ckpt.update(
        modality=modality,
        specs={modality: encoder.spec()},
        encoders={modality: state_of(encoder)},
        head={
            "spec": {
                "in_dim": encoder.dim,
                "out_dim": len(CP_NAMES),
                "hidden": list(stage["hidden"]),
                "dropout": stage["dropout"],
            },
            "state_dict": state_of(head),
        },  # fmt: skip
        frozen=bool(frozen),
        fraction=None if fraction is None else float(fraction),
        init=None if init is None else checkpoint_identity(init),
        n_train=len(dm.datasets["train"]),
    )
    predictions = predictions_frame(model, cohort, tabular_variant=tabular_variant)
    ckpt["calibration"] = calibration_residuals(predictions)
    path = _save(ckpt, out_dir / f"stage3-{modality}.pt", trainer)
    return Stage3Result(path, predictions, best.history)


def calibration_residuals(predictions: pd.DataFrame, split: str = "val") -> dict[str, Any]:
    """The validation residuals (prediction - reference) per CP, stored with a Stage III model so
    that `ctrip predict` can give split-conformal intervals at any level
    (`ctrip.analysis.screening.fit_conformal`); the validation split never trained the model."""
    part = predictions[predictions["split"] == split]
    return {
        "split": split,
        "residuals": {
            cp: (part[f"{cp}_pred"] - part[f"{cp}_ref"]).astype(float).tolist() for cp in CP_NAMES
        },  # fmt: skip
    }
