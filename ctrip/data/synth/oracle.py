"""Oracle ceilings: the best r any model of a modality can reach on the simulated cohort.

A modality's data are made from a few generating quantities plus noise that is independent of
the subject. The ceiling of a modality for a CP is the Pearson r that a flexible regressor
reaches from *every* generating quantity that reaches that modality's input (a superset of what
the data show: a model of the data cannot know more), fitted on a large reference sample of
simulated subjects disjoint from the cohort and evaluated on the cohort's test subjects. The
regressor is, per CP, the better on held-out reference subjects of a degree-2 polynomial
ridge and a two-layer perceptron (`neural`; without it, the ridge alone: a looser estimate that
a trained network can beat, as a CNN on 16,000 simulated ECGs did for LV mass). The reference
sample and the perceptron are sized for cohorts of a few thousand subjects (`N_REFERENCE`,
`HIDDEN`): a model trained on far more subjects than the cohort holds needs a larger reference
and perceptron for its bound, as `benchmarks/bench_ecg_lvm.py` uses.

What reaches each input (`modality_features`):
- localizer: every latent its renderer records (phase, chamber volumes and geometry, slice
  positions, body outline, blur, noise) and the population quantities it reads (heart
  orientation and position, LV shape, body shape, BMI);
- cmr: every latent of the cine renderer (areas, wall thickness, long axis, position, noise)
  and the LV shape it reads;
- ecg: `ecg_model.SIGNAL_COLUMNS` (timing and every wave's amplitude on every lead, the only
  subject quantities the signal is rendered from) and the noise levels;
- tabular: the complete covariates (before missingness) and everything of the ECG, since the
  record holds ECG-measured intervals and the ECG rate.
A trained method whose r exceeds its modality's ceiling beyond its CI contradicts this bound;
`above_ceiling` flags it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from ctrip.data.schema import CP_NAMES
from ctrip.data.synth.ecg_model import NOISE_COLUMNS, SIGNAL_COLUMNS

# Population quantities the localizer renderer reads besides the CPs: heart orientation,
# position and shape, body shape and (for the body outline and fat) BMI.
LOCALIZER_POPULATION = (
    "lat_heart_azimuth", "lat_heart_elevation", "lat_heart_dx", "lat_heart_dy", "lat_lv_aspect",
    "lat_body_shape", "tab_bmi",
)  # fmt: skip
ECG_FEATURES = (*SIGNAL_COLUMNS, *NOISE_COLUMNS)
# What reaches each modality's input, as latent column names or prefixes (ending in "_").
ORACLE_FEATURES: dict[str, tuple[str, ...]] = {
    "localizer": ("loc_", *LOCALIZER_POPULATION),
    "cmr": ("cmr_", "lat_lv_aspect"),
    "ecg": ECG_FEATURES,
    "tabular": ("tab_", *ECG_FEATURES),
}
# Reference subjects (at most) and the perceptron's hidden widths. Measured with
# `benchmarks/bench_oracle_ceiling.py` on a 3,400-subject default cohort: a 64-64 perceptron
# fitted once gives the ECG ceilings of a refitted 256-256 one within 0.01 at a fraction of the
# cost, while fewer reference subjects lower them (12,000: by ~0.04), so the reference stays.
N_REFERENCE = 20000
HIDDEN = (64, 64)


def reference_size(n_cohort: int) -> int:
    """Reference subjects for a cohort of `n_cohort`: ten times it, 2,000 to `N_REFERENCE`."""
    return int(min(N_REFERENCE, max(2000, 10 * n_cohort)))


def _matches(column: str, key: str) -> bool:
    return column == key or (key.endswith("_") and column.startswith(key))


def oracle_columns(columns, modality: str) -> list[str]:
    """The latent columns (of `columns`) that reach `modality`'s input."""
    keys = ORACLE_FEATURES[modality]
    return [c for c in columns if any(_matches(c, k) for k in keys)]


def oracle_features(latents: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Numeric feature matrix of `modality` from a latents table (categoricals one-hot)."""
    columns = oracle_columns(latents.columns, modality)
    if not columns:
        raise ValueError(
            f"the latents table holds no {modality} columns ({ORACLE_FEATURES[modality]})"
        )
    frame = latents[columns].copy()
    for c in frame.columns:
        if frame[c].dtype == bool:
            frame[c] = frame[c].astype(float)
    return pd.get_dummies(frame, drop_first=True, dtype=float).astype(float)


def ceiling_from_features(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    seed: int = 0,
    neural: bool = True,
    hidden: tuple[int, ...] = HIDDEN,
    refit: bool = False,
) -> np.ndarray:
    """Test predictions of every target column: a degree-2 polynomial ridge and (if `neural`)
    a perceptron (`hidden` layer widths, early stopping) on the standardized inputs; per target
    the one with the lower error on a held-out fifth of the training rows, refitted on all of
    them if `refit` (else the fit on the other four fifths predicts the test rows).

    The perceptron matters where a target hides in ratios of the inputs (an ECG amplitude
    relative to the subject's own gain), which a quadratic cannot express."""
    x_train, x_test = np.asarray(x_train, float), np.asarray(x_test, float)
    y_train = np.asarray(y_train, float)
    if y_train.ndim == 1:
        y_train = y_train[:, None]
    mean, sd = y_train.mean(axis=0), y_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    y = (y_train - mean) / sd
    hold = np.random.default_rng(seed).random(len(x_train)) < 0.2

    def candidates():
        yield make_pipeline(
            StandardScaler(), PolynomialFeatures(2), StandardScaler(),
            RidgeCV(alphas=np.logspace(-2, 4, 13)),
        )  # fmt: skip
        if neural:
            yield make_pipeline(
                StandardScaler(),
                MLPRegressor(
                    hidden_layer_sizes=hidden, early_stopping=True, max_iter=500,
                    n_iter_no_change=20, random_state=seed,
                ),
            )  # fmt: skip

    def target(rows: np.ndarray) -> np.ndarray:  # 1-D for a single target (sklearn's wish)
        return y[rows] if y.shape[1] > 1 else y[rows, 0]

    everything = np.ones(len(y), dtype=bool)
    best_error, out = None, None
    for model in candidates():
        held = model.fit(x_train[~hold], target(~hold)).predict(x_train[hold])
        error = ((held.reshape(hold.sum(), -1) - y[hold]) ** 2).mean(axis=0)
        if refit:
            model.fit(x_train, target(everything))
        pred = model.predict(x_test).reshape(len(x_test), -1)
        if out is None:
            best_error, out = error, pred
        else:
            better = error < best_error
            out[:, better], best_error = pred[:, better], np.minimum(error, best_error)
    return out * sd + mean


def reference_latents(cohort, n_reference: int) -> pd.DataFrame:
    """Latents of `n_reference` simulated subjects beyond the cohort's own (same recipe)."""
    from ctrip.data.synth.generate import reference_subjects

    recipe = cohort.manifest.get("recipe") or {}
    if recipe.get("generator") != "ctrip.data.synth":
        raise ValueError(f"{cohort.path}: not a simulated cohort, it has no oracle ceiling")
    return reference_subjects(
        int(recipe["seed"]), range(cohort.n, cohort.n + n_reference), recipe["sizes"]
    )


def oracle_ceiling(
    cohort,
    seed: int = 0,
    modalities: tuple[str, ...] | None = None,
    n_reference: int | None = None,
    neural: bool = True,
    hidden: tuple[int, ...] = HIDDEN,
    refit: bool = False,
) -> pd.DataFrame:
    """Per modality and CP: the ceiling's Pearson r, mean difference and 95% limits of agreement
    on the cohort's test split.

    Difference = prediction - reference (Bland-Altman), LoA = MD +- 1.96 SD (ddof 1).
    `cohort` is an opened simulated `ctrip.data.cohort.Cohort` with the `latents` extra;
    `n_reference` defaults to `reference_size(cohort.n)`.
    """
    latents = cohort.extra("latents").set_index("id").loc[cohort.table["id"]].reset_index()
    test = cohort.table["split"].astype(str).to_numpy() == "test"
    if test.sum() < 3:
        raise ValueError(f"{cohort.path}: the oracle needs at least 3 test subjects")
    reference = reference_latents(cohort, n_reference or reference_size(cohort.n))
    targets = cohort.table[CP_NAMES].to_numpy(dtype=float)
    available = [m for m in ORACLE_FEATURES if m == "tabular" or m in cohort.modalities]
    rows = []
    for modality in modalities or available:
        x_ref = oracle_features(reference, modality)
        x_test = oracle_features(latents[test], modality).reindex(
            columns=x_ref.columns, fill_value=0.0
        )
        pred = ceiling_from_features(
            x_ref.to_numpy(),
            reference[CP_NAMES].to_numpy(float),
            x_test.to_numpy(),
            seed,
            neural,
            hidden,
            refit,
        )
        for j, cp in enumerate(CP_NAMES):
            diff = pred[:, j] - targets[test, j]
            md, sd = float(diff.mean()), float(diff.std(ddof=1))
            rows.append({
                "modality": modality, "cp": cp,
                "pearson_r": float(np.corrcoef(pred[:, j], targets[test, j])[0, 1]),
                "md": md, "loa_low": md - 1.96 * sd, "loa_high": md + 1.96 * sd,
            })  # fmt: skip
    return pd.DataFrame(rows)


def above_ceiling(results: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """`results` (method, cp, r_ci_low, ...) with the modality ceiling's r beside each row and
    `above_ceiling` True where the whole CI of the method's r lies above it, which a correct
    ceiling makes impossible up to chance: such a row must be printed flagged, never silently.

    `ceiling` is `ctrip.pipeline.report.oracle_for_methods` output (method, cp, pearson_r).
    """
    missing = {"method", "cp", "r_ci_low"} - set(results.columns)
    if missing:
        raise ValueError(f"results lack the columns {sorted(missing)}")
    bound = ceiling[["method", "cp", "pearson_r"]].rename(columns={"pearson_r": "ceiling_r"})
    out = results.merge(bound, on=["method", "cp"], how="left")
    out["above_ceiling"] = out["r_ci_low"] > out["ceiling_r"]
    return out
