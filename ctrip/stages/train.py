"""Run the three stages on a cohort, nanoGPT-style: plain functions, a config dict, files out.

    run_stage1(cohort, "localizer", config, out)                   -> stage1-localizer.pt
    run_stage2(cohort, [("localizer", "ecg"), ("localizer", "tabular")],
               {"localizer": ..., "ecg": ..., "tabular": ...}, config, out)  -> stage2.pt
    run_stage3(cohort, "localizer", init=stage2_ckpt, config, out)  -> Stage3Result
    embed(checkpoint, cohort, "localizer")                           -> (ids, features)
    load_encoder(checkpoint, "localizer"), load_regressor(stage3_ckpt)

Every checkpoint is a plain dict that loads with `torch.load(path, weights_only=True)`:
kind ("stage1", "stage2", "stage3"), ctrip_version, config, seed, cohort, tabular_variant,
stats (NormalizationStats as a dict), specs ({modality: encoder spec}), encoders
({modality: state dict}), history (per-epoch losses), best_epoch, and per kind: stage1 "mae"
(spec + state dict of the whole autoencoder), stage2 "pairs", "projections", "temperatures",
stage3 "modality", "head", "frozen", "fraction", "init".
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

import ctrip
from ctrip.data.cohort import Cohort
from ctrip.data.dataset import CohortDataset, NormalizationStats
from ctrip.data.schema import CP_NAMES, IMAGE_MODALITIES, MODALITIES
from ctrip.models import (
    Encoder,
    MaskedAutoencoder,
    ProjectionHead,
    RegressionHead,
    build_encoder,
    build_mae,
    build_tokenizer,
)
from ctrip.stages.config import DEFAULT_CONFIG, merge_config
from ctrip.stages.inputs import modality_input

log = logging.getLogger(__name__)


@dataclass
class Stage3Result:
    """A Stage III run: its checkpoint, and predictions for the validation and test subjects
    (columns id, split, "<CP>_pred" and "<CP>_ref" in CP units)."""

    checkpoint: Path
    predictions: pd.DataFrame
    history: dict[str, list[float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- model specs


def tokenizer_spec(
    modality: str, model: dict[str, Any], cohort: Cohort, stats: NormalizationStats
) -> dict[str, Any]:
    """The tokenizer of `modality` for this cohort's array sizes and tabular features."""
    if modality in IMAGE_MODALITIES:
        _, C, H, W = cohort.array(modality).shape
        mean, std = _input_stats(cohort, modality)
        return {"kind": "image", "image_size": [H, W], "patch_size": model["patch_size"],
                "dim": model["dim"], "in_chans": C, "input_mean": mean, "input_std": std}  # fmt: skip
    if modality == "ecg":
        _, leads, T = cohort.array("ecg").shape
        fs = cohort.ecg_sampling_rate_hz
        if not fs:
            raise ValueError(f"{cohort.path}: the manifest gives no ECG sampling rate")
        rate = fs if model["rate_hz"] is None else min(float(model["rate_hz"]), fs)
        samples = int(round(T * rate / fs))
        patch = int(round(model["patch_seconds"] * rate))
        if patch < 1 or samples % patch:
            raise ValueError(
                f"{cohort.path}: an ECG of {samples} samples at {rate:g} Hz does not split into "
                f"patches of {model['patch_seconds']} s ({patch} samples); change "
                "models.ecg.rate_hz or models.ecg.patch_seconds"
            )
        spec = {"kind": "ecg", "length": T, "patch_size": patch, "dim": model["dim"],
                "leads": leads, "per_lead": model["per_lead"],
                "resample_to": samples if samples != T else None, "sampling_rate_hz": fs,
                "highpass_hz": model["highpass_hz"]}  # fmt: skip
        mean, std = _input_stats(cohort, modality, build_tokenizer(spec))
        return {**spec, "input_mean": mean, "input_std": std}
    if modality == "tabular":
        return {"kind": "tabular", "n_numerical": len(stats.numerical),
                "cardinalities": stats.cardinalities, "dim": model["dim"]}  # fmt: skip
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def _input_stats(cohort: Cohort, modality: str, tokenizer: nn.Module | None = None,
                 max_subjects: int = 256) -> tuple[float, float]:  # fmt: skip
    """Mean and SD of a modality's model input (ECG: after the tokenizer's high-pass and
    resampling) over the first `max_subjects` training subjects: the input standardization."""
    rows = np.flatnonzero(cohort.table["split"].to_numpy() == "train")[:max_subjects]
    x = torch.from_numpy(np.asarray(cohort.array(modality)[np.sort(rows)], dtype=np.float32))
    if tokenizer is not None:
        x = tokenizer.prepare(x)  # unit standardization: the tokenizer's defaults
    mean, std = float(x.double().mean()), float(x.double().std())
    return (0.0 if modality == "ecg" else mean), (std if std > 0 else 1.0)


def new_mae(
    modality: str, config: dict[str, Any], cohort: Cohort, stats: NormalizationStats
) -> MaskedAutoencoder:
    model = config["models"][modality]
    encoder = Encoder(
        build_tokenizer(tokenizer_spec(modality, model, cohort, stats)),
        model["depth"], model["heads"], model["mlp_ratio"], model["pool"],
    )  # fmt: skip
    return MaskedAutoencoder(
        encoder, model["decoder_dim"], model["decoder_depth"], model["decoder_heads"],
        model["mask_ratio"], model["mlp_ratio"],
    )  # fmt: skip


def new_encoder(
    modality: str, config: dict[str, Any], cohort: Cohort, stats: NormalizationStats
) -> Encoder:
    model = config["models"][modality]
    tokenizer = build_tokenizer(tokenizer_spec(modality, model, cohort, stats))
    return Encoder(tokenizer, model["depth"], model["heads"], model["mlp_ratio"], model["pool"])


# ---------------------------------------------------------------------------- plumbing


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """`config` merged over DEFAULT_CONFIG (so a partial config is enough)."""
    return merge_config(DEFAULT_CONFIG, config)


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


def _datamodule(cohort_path: Path, modalities: Sequence[str], config: dict[str, Any], stage: dict[str, Any],
                seed: int, tabular_variant: str, fraction: float | None = None) -> Any:  # fmt: skip
    from ctrip.data.dataset import CohortDataModule

    dm = CohortDataModule(
        cohort_path, modalities, batch_size=stage["batch_size"], fraction=fraction,
        fraction_seed=seed, tabular_variant=tabular_variant,
        num_workers=config["trainer"]["num_workers"], seed=seed, drop_last=True,
    )  # fmt: skip
    dm.setup()
    return dm


def _fit(module: Any, dm: Any, config: dict[str, Any], stage: dict[str, Any], out_dir: Path) -> Any:
    """Train with early stopping on val_loss; leave the best epoch's weights in `module`."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    from ctrip.stages.modules import BestWeights

    t = config["trainer"]
    best = BestWeights("val_loss")
    trainer = L.Trainer(
        max_epochs=stage["max_epochs"], accelerator=t["accelerator"], devices=t["devices"],
        num_nodes=t["num_nodes"], strategy=t["strategy"], precision=t["precision"],
        callbacks=[best, EarlyStopping("val_loss", patience=stage["patience"], mode="min")],
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=t["enable_progress_bar"], num_sanity_val_steps=0,
        log_every_n_steps=t["log_every_n_steps"], deterministic=t["deterministic"],
        default_root_dir=out_dir,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    if best.state is not None:
        module.load_state_dict(best.state)
    module.cpu().eval()
    return trainer, best


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _save(checkpoint: dict[str, Any], path: Path, trainer: Any) -> Path:
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, path)
    trainer.strategy.barrier("checkpoint saved")  # other ranks may read it next (DDP)
    return path


def _common(kind: str, config: dict[str, Any], seed: int, cohort_path: Path, tabular_variant: str,
            stats: NormalizationStats, best: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": kind,
        "ctrip_version": ctrip.__version__,
        "config": config,
        "seed": int(seed),
        "cohort": str(cohort_path),
        "tabular_variant": tabular_variant,
        "stats": stats.to_dict(),
        "history": best.history,
        "best_epoch": int(best.best_epoch),
        "best_val_loss": float(best.best),
    }


def load_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """A checkpoint dict (loaded with weights_only=True), checked to be one of ours."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("kind") not in ("stage1", "stage2", "stage3"):
        raise ValueError(f"{path}: not a C-TRIP stage checkpoint")
    return ckpt


def _encoder_from(ckpt: dict[str, Any], modality: str, path: Path) -> Encoder:
    if modality not in ckpt["specs"]:
        raise ValueError(
            f"{path}: this {ckpt['kind']} checkpoint has no {modality} encoder "
            f"(it has {sorted(ckpt['specs'])})"
        )
    encoder = build_encoder(ckpt["specs"][modality])
    encoder.load_state_dict(ckpt["encoders"][modality])
    return encoder


def _check_compatible(encoder: Encoder, fresh: Encoder, modality: str, path: Path) -> None:
    """The checkpoint's tokenizer must read this cohort's inputs (sizes, feature counts)."""
    theirs, ours = encoder.tokenizer.spec(), fresh.tokenizer.spec()
    model_keys = ("dim", "patch_size", "per_lead", "resample_to", "highpass_hz",
                  "input_mean", "input_std")  # fmt: skip
    keys = [k for k in ours if k not in model_keys]
    diff = {k: (theirs.get(k), ours[k]) for k in keys if theirs.get(k) != ours[k]}
    if diff:
        raise ValueError(
            f"{path}: the {modality} encoder does not fit this cohort (checkpoint vs cohort: {diff})"
        )


# ---------------------------------------------------------------------------- stages


def run_stage1(
    cohort_path: str | Path,
    modality: str,
    config: dict[str, Any] | None,
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
    config, cohort_path, out_dir = resolve_config(config), Path(cohort_path), Path(out_dir)
    _prepare(config, seed)
    dm = _datamodule(cohort_path, (modality,), config, config["stage1"], seed, tabular_variant)
    cohort = Cohort.open(cohort_path, verify_checksums=False)
    mae = new_mae(modality, config, cohort, dm.stats)
    module = Stage1Module(mae, modality, config["stage1"], config["augment"])
    trainer, best = _fit(module, dm, config, config["stage1"], out_dir)
    ckpt = _common("stage1", config, seed, cohort_path, tabular_variant, dm.stats, best)
    ckpt.update(
        modality=modality,
        specs={modality: mae.encoder.spec()},
        encoders={modality: _state(mae.encoder)},
        mae={"spec": mae.spec(), "state_dict": _state(mae)},
    )
    return _save(ckpt, out_dir / f"stage1-{modality}.pt", trainer)


def _auxiliaries(pairs: Sequence[Sequence[str]], ecg_tabular: bool) -> tuple[list[str], bool]:
    """Auxiliary modalities of localizer-anchored pairs (either order); an ("ecg", "tabular")
    pair turns the ECG-tabular ablation term on."""
    auxiliary: list[str] = []
    for pair in pairs:
        a, b = pair
        if set(pair) == {"ecg", "tabular"}:
            ecg_tabular = True
        elif "localizer" in pair and a != b:
            other = b if a == "localizer" else a
            if other not in MODALITIES:
                raise ValueError(f"unknown modality {other!r} in pair {tuple(pair)}")
            if other not in auxiliary:
                auxiliary.append(other)
        else:
            raise ValueError(
                f"pair {tuple(pair)}: Stage II pairs are localizer-anchored, e.g. "
                "('localizer', 'ecg'); only ('ecg', 'tabular') is allowed besides, as an ablation"
            )
    if not auxiliary:
        raise ValueError("Stage II needs at least one pair with the localizer")
    return auxiliary, ecg_tabular


def run_stage2(
    cohort_path: str | Path,
    pairs: Sequence[Sequence[str]],
    encoders: dict[str, str | Path],
    config: dict[str, Any] | None,
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

    config, cohort_path, out_dir = resolve_config(config), Path(cohort_path), Path(out_dir)
    stage = config["stage2"]
    auxiliary, ecg_tabular = _auxiliaries(pairs, stage["ecg_tabular"])
    modalities = ["localizer", *auxiliary]
    _prepare(config, seed)
    dm = _datamodule(cohort_path, modalities, config, stage, seed, tabular_variant)
    cohort = Cohort.open(cohort_path, verify_checksums=False)
    nets: dict[str, Encoder] = {}
    for m in modalities:
        fresh = new_encoder(m, config, cohort, dm.stats)
        if m not in encoders:
            log.warning("Stage II: no Stage I checkpoint for %s; it starts from random weights", m)
            nets[m] = fresh
            continue
        path = Path(encoders[m])
        ckpt = load_checkpoint(path)
        if m == "tabular" and ckpt["tabular_variant"] != tabular_variant:
            raise ValueError(
                f"{path}: the tabular encoder was pre-trained on variant "
                f"{ckpt['tabular_variant']!r}, Stage II uses {tabular_variant!r}; pre-train it "
                f"with run_stage1(..., tabular_variant={tabular_variant!r})"
            )
        nets[m] = _encoder_from(ckpt, m, path)
        _check_compatible(nets[m], fresh, m, path)
        nets[m].pool = fresh.pool
    criterion = LocalizerCentricInfoNCE(
        auxiliary, "localizer", stage["temperatures"], ecg_tabular,
        stage["learn_temperature"], tuple(stage["temperature_bounds"]),
    )  # fmt: skip
    module = Stage2Module(nets, criterion, stage, config["augment"])
    trainer, best = _fit(module, dm, config, stage, out_dir)
    ckpt = _common("stage2", config, seed, cohort_path, tabular_variant, dm.stats, best)
    ckpt.update(
        pairs=[list(p) for p in criterion.pairs],
        init={m: str(p) for m, p in encoders.items()},
        specs={m: enc.spec() for m, enc in nets.items()},
        encoders={m: _state(enc) for m, enc in nets.items()},
        projections={
            m: {
                "spec": {"in_dim": h.in_dim, "out_dim": h.out_dim, "hidden_dim": h.hidden_dim},
                "state_dict": _state(h),
            }
            for m, h in module.projections.items()
        },  # fmt: skip
        temperatures={
            p: float(criterion.temperature(p).detach()) for p in criterion.log_temperature
        },
    )
    return _save(ckpt, out_dir / "stage2.pt", trainer)


class CPRegressor(nn.Module):
    """A Stage III model ready for inference: encoder + head + the normalization that turns
    its z-scores back into CP units."""

    def __init__(
        self, encoder: Encoder, head: RegressionHead, modality: str, stats: NormalizationStats
    ) -> None:
        super().__init__()
        self.encoder, self.head, self.modality, self.stats = encoder, head, modality, stats
        self.cp_names = list(CP_NAMES)

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, int]:
        """(3, H, W) for images, (leads, T) for ECG, feature counts for tabular."""
        spec = self.encoder.tokenizer.spec()
        if spec["kind"] == "image":
            return (spec["in_chans"], *spec["image_size"])
        if spec["kind"] == "ecg":
            return (spec["leads"], spec["length"])
        return {"tab_num": spec["n_numerical"], "tab_cat": len(spec["cardinalities"])}

    def forward(self, x: Any) -> torch.Tensor:
        """z-scored CPs (B, 18)."""
        return self.head(self.encoder.features(x))

    @torch.no_grad()
    def predict_cps(self, x: Any) -> np.ndarray:
        """CPs in their units (B, 18), in CP_NAMES order."""
        self.eval()
        return self.stats.denormalize_targets(self(x))


def _predict(model: CPRegressor, dataset: CohortDataset, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            out.append(model(modality_input(batch, model.modality)).numpy())
    return model.stats.denormalize_targets(np.concatenate(out)) if out else np.zeros((0, 18))


def predictions_frame(model: CPRegressor, cohort: Cohort, splits: Sequence[str] = ("val", "test"),
                      tabular_variant: str = "T") -> pd.DataFrame:  # fmt: skip
    """id, split, <CP>_pred, <CP>_ref (CP units) for every subject of `splits`."""
    frames = []
    for split in splits:
        ds = CohortDataset(
            cohort, (model.modality,), split, stats=model.stats, tabular_variant=tabular_variant
        )
        pred = _predict(model, ds)
        frame = pd.DataFrame({"id": ds.ids, "split": split})
        for j, cp in enumerate(CP_NAMES):
            frame[f"{cp}_pred"] = pred[:, j]
            frame[f"{cp}_ref"] = ds.targets_raw[:, j].astype(np.float64)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def run_stage3(
    cohort_path: str | Path,
    modality: str,
    init: str | Path | None,
    config: dict[str, Any] | None,
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
    Writes `out_dir/stage3-<modality>.pt` and `out_dir/predictions.parquet` (val + test).
    """
    from ctrip.stages.modules import Stage3Module

    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    config, cohort_path, out_dir = resolve_config(config), Path(cohort_path), Path(out_dir)
    stage = config["stage3"]
    _prepare(config, seed)
    dm = _datamodule(cohort_path, (modality,), config, stage, seed, tabular_variant, fraction)
    if len(dm.datasets["train"]) < 2:
        raise ValueError(
            f"{cohort_path}: fraction {fraction} of the training split leaves "
            f"{len(dm.datasets['train'])} subject(s); the regression head needs at least 2"
        )
    cohort = Cohort.open(cohort_path, verify_checksums=False)
    fresh = new_encoder(modality, config, cohort, dm.stats)
    if init is None:
        encoder, encoder_lr = fresh, stage["lr_encoder_scratch"]
    else:
        ckpt = load_checkpoint(init)
        encoder, encoder_lr = _encoder_from(ckpt, modality, Path(init)), stage["lr_encoder"]
        _check_compatible(encoder, fresh, modality, Path(init))
        encoder.pool = fresh.pool
    head = RegressionHead(encoder.dim, len(CP_NAMES), stage["hidden"], stage["dropout"])
    module = Stage3Module(encoder, head, modality, stage, encoder_lr, frozen, config["augment"])
    trainer, best = _fit(module, dm, config, stage, out_dir)
    model = CPRegressor(module.encoder, module.head, modality, dm.stats)
    ckpt = _common("stage3", config, seed, cohort_path, tabular_variant, dm.stats, best)
    ckpt.update(
        modality=modality,
        specs={modality: encoder.spec()},
        encoders={modality: _state(encoder)},
        head={
            "spec": {
                "in_dim": encoder.dim,
                "out_dim": len(CP_NAMES),
                "hidden": list(stage["hidden"]),
                "dropout": stage["dropout"],
            },
            "state_dict": _state(head),
        },  # fmt: skip
        frozen=bool(frozen),
        fraction=None if fraction is None else float(fraction),
        init=None if init is None else str(init),
        n_train=len(dm.datasets["train"]),
    )
    path = _save(ckpt, out_dir / f"stage3-{modality}.pt", trainer)
    predictions = predictions_frame(model, cohort, tabular_variant=tabular_variant)
    if trainer.is_global_zero:
        predictions.to_parquet(out_dir / "predictions.parquet", index=False)
    return Stage3Result(path, predictions, best.history)


# ---------------------------------------------------------------------------- inference


def load_encoder(checkpoint: str | Path, modality: str) -> Encoder:
    """The `modality` encoder of any stage checkpoint, in eval mode. Its
    `forward(x, return_attention=True)` gives the attention of every block."""
    encoder = _encoder_from(load_checkpoint(checkpoint), modality, Path(checkpoint))
    return encoder.eval()


def load_projection(checkpoint: str | Path, modality: str) -> ProjectionHead:
    """The Stage II projection head of `modality`."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt["kind"] != "stage2" or modality not in ckpt["projections"]:
        raise ValueError(f"{checkpoint}: no Stage II projection for {modality}")
    entry = ckpt["projections"][modality]
    head = ProjectionHead(**entry["spec"])
    head.load_state_dict(entry["state_dict"])
    return head.eval()


def load_regressor(checkpoint: str | Path) -> CPRegressor:
    """The Stage III model of a checkpoint, for `predict_cps` on new subjects."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt["kind"] != "stage3":
        raise ValueError(f"{checkpoint}: a {ckpt['kind']} checkpoint has no regression head")
    modality = ckpt["modality"]
    encoder = _encoder_from(ckpt, modality, Path(checkpoint))
    spec = ckpt["head"]["spec"]
    head = RegressionHead(spec["in_dim"], spec["out_dim"], spec["hidden"], spec["dropout"])
    head.load_state_dict(ckpt["head"]["state_dict"])
    stats = NormalizationStats.from_dict(ckpt["stats"])
    return CPRegressor(encoder, head, modality, stats).eval()


def embed(
    checkpoint: str | Path,
    cohort_path: str | Path,
    modality: str,
    split: str = "test",
    projected: bool = False,
    batch_size: int = 256,
) -> tuple[list[str], np.ndarray]:
    """(subject ids, features (N, D)) of `split`: the encoder's CLS feature, or with
    `projected` (Stage II checkpoints) its projection into the shared space."""
    ckpt = load_checkpoint(checkpoint)
    encoder = _encoder_from(ckpt, modality, Path(checkpoint)).eval()
    projection = load_projection(checkpoint, modality) if projected else nn.Identity()
    stats = NormalizationStats.from_dict(ckpt["stats"])
    cohort = Cohort.open(cohort_path, verify_checksums=False)
    ds = CohortDataset(
        cohort, (modality,), split, stats=stats, tabular_variant=ckpt["tabular_variant"]
    )
    out = []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=batch_size):
            out.append(projection(encoder.features(modality_input(batch, modality))).numpy())
    dim = ckpt["projections"][modality]["spec"]["out_dim"] if projected else encoder.dim
    return ds.ids, np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)


def load_mae(checkpoint: str | Path) -> MaskedAutoencoder:
    """The whole Stage I autoencoder (encoder and decoder), e.g. to show reconstructions."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt["kind"] != "stage1":
        raise ValueError(f"{checkpoint}: a {ckpt['kind']} checkpoint holds no decoder")
    mae = build_mae(ckpt["mae"]["spec"])
    mae.load_state_dict(ckpt["mae"]["state_dict"])
    return mae.eval()
