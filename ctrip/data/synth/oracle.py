"""Oracle ceilings: how well each CP can be predicted from what each modality was made of.

For each modality the simulator recorded the quantities its data were generated from (latents,
`extras/latents`). A regression fitted on the training split from those latents, and evaluated
on the test split, bounds what any model of that modality can reach on this cohort (up to the
regression's own flexibility: a degree-2 polynomial ridge, enough for the smooth relations of
the simulator). A method near its modality's ceiling has learnt what its input carries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from ctrip.data.schema import CP_NAMES

# What each modality shows, as latent columns (prefix or exact names).
# - localizer: chamber cross-sections on its three slices and the body outline; not the phase.
# - cmr: mid-ventricular areas and wall thickness at ED, ES and mid-systole.
# - ecg: the ECG's generating parameters (heart rate, durations, amplitudes, axis).
# - tabular: the complete covariates of variant T (before missingness, ECG intervals excluded).
ORACLE_FEATURES: dict[str, tuple[str, ...]] = {
    "localizer": ("loc_area_", "loc_body_ax", "loc_body_ay", "loc_fat_mm"),
    "cmr": ("cmr_lv_area_", "cmr_myo_area_", "cmr_rv_area_", "cmr_wall_"),
    "ecg": ("ecg_hr", "ecg_pr", "ecg_p_dur", "ecg_p_amp", "ecg_qrs_dur", "ecg_qrs_amp",
            "ecg_lvm_force", "ecg_axis", "ecg_qt", "ecg_t_amp", "ecg_qrst_angle"),
    "tabular": ("tab_",),
}  # fmt: skip


def oracle_features(latents: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Numeric feature matrix of `modality` from the latents table (categoricals one-hot)."""
    keys = ORACLE_FEATURES[modality]
    columns = [c for c in latents.columns if any(c == k or c.startswith(k) for k in keys)]
    if not columns:
        raise ValueError(f"the latents table holds no {modality} columns ({keys})")
    frame = latents[columns]
    return pd.get_dummies(frame, drop_first=True, dtype=float).astype(float)


def oracle_ceiling(
    cohort, seed: int = 0, modalities: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Per modality and CP: Pearson r, mean difference and 95% limits of agreement on test.

    Difference = prediction - reference (Bland-Altman), LoA = MD +- 1.96 SD (ddof 1).
    `cohort` is an opened `ctrip.data.cohort.Cohort` with the `latents` extra.
    """
    latents = cohort.extra("latents").set_index("id").loc[cohort.table["id"]].reset_index()
    split = cohort.table["split"].astype(str).to_numpy()
    train, test = split == "train", split == "test"
    if train.sum() < 10 or test.sum() < 3:
        raise ValueError("the oracle needs at least 10 training and 3 test subjects")
    targets = cohort.table[CP_NAMES].to_numpy(dtype=float)
    available = [m for m in ORACLE_FEATURES if m == "tabular" or m in cohort.modalities]
    rows = []
    for modality in modalities or available:
        X = oracle_features(latents, modality).to_numpy()
        model = make_pipeline(
            StandardScaler(),
            PolynomialFeatures(2),
            StandardScaler(),
            RidgeCV(alphas=np.logspace(-2, 4, 13)),
        )
        model.fit(X[train], targets[train])
        pred = model.predict(X[test])
        for j, cp in enumerate(CP_NAMES):
            diff = pred[:, j] - targets[test, j]
            md, sd = float(diff.mean()), float(diff.std(ddof=1))
            rows.append({
                "modality": modality, "cp": cp,
                "pearson_r": float(np.corrcoef(pred[:, j], targets[test, j])[0, 1]),
                "md": md, "loa_low": md - 1.96 * sd, "loa_high": md + 1.96 * sd,
            })  # fmt: skip
    return pd.DataFrame(rows)
