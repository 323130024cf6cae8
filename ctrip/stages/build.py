"""Model building: the encoders and autoencoders of a run, sized from the cohort they train on
(image side, ECG length and rate, tabular features) and the run's `models.<modality>` config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrip.data.cohort import Cohort
from ctrip.data.dataset import NormalizationStats
from ctrip.data.schema import IMAGE_MODALITIES, MODALITIES
from ctrip.models import Encoder, MaskedAutoencoder, build_tokenizer


def tokenizer_spec(
    modality: str, model: dict[str, Any], cohort: Cohort, stats: NormalizationStats
) -> dict[str, Any]:
    """The tokenizer of `modality` for this cohort's array sizes and tabular features."""
    if modality in IMAGE_MODALITIES:
        _, C, H, W = cohort.array(modality).shape
        mean, std = _input_stats(cohort, modality)
        return {"kind": "image", "image_size": [H, W], "patch_size": model["patch_size"],
                "dim": model["dim"], "in_chans": C, "input_mean": mean, "input_std": std,
                "stem": model.get("stem", "linear")}  # fmt: skip
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
        model["mask_ratio"], model["mlp_ratio"], model.get("decoder_alibi", False),
    )  # fmt: skip


def new_encoder(
    modality: str, config: dict[str, Any], cohort: Cohort, stats: NormalizationStats
) -> Encoder:
    model = config["models"][modality]
    tokenizer = build_tokenizer(tokenizer_spec(modality, model, cohort, stats))
    return Encoder(tokenizer, model["depth"], model["heads"], model["mlp_ratio"], model["pool"])


def check_compatible(encoder: Encoder, fresh: Encoder, modality: str, path: Path) -> None:
    """The checkpoint's tokenizer must read this cohort's inputs (sizes, feature counts)."""
    theirs, ours = encoder.tokenizer.spec(), fresh.tokenizer.spec()
    model_keys = ("dim", "patch_size", "stem", "per_lead", "resample_to", "highpass_hz",
                  "input_mean", "input_std")  # fmt: skip
    keys = [k for k in ours if k not in model_keys]
    diff = {k: (theirs.get(k), ours[k]) for k in keys if theirs.get(k) != ours[k]}
    if diff:
        raise ValueError(
            f"{path}: the {modality} encoder does not fit this cohort (checkpoint vs cohort: {diff})"
        )
