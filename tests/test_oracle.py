"""Oracle ceilings are computed from a superset of what reaches each modality's input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctrip.data.schema import CP_NAMES
from ctrip.data.synth import SynthSizes, sample_population
from ctrip.data.synth.cine import render_cine
from ctrip.data.synth.ecg_model import (
    NOISE_COLUMNS,
    SIGNAL_COLUMNS,
    ecg_draws,
    ecg_latents,
    render_ecg,
    simulate_ecg,
)
from ctrip.data.synth.generate import NUMERICAL, generate_subjects, reference_subjects
from ctrip.data.synth.localizer import render_localizers
from ctrip.data.synth.oracle import above_ceiling, ceiling_from_features, oracle_columns

SMOKE = SynthSizes.for_profile("smoke")
RENDERERS = {
    "localizer": lambda pop: render_localizers(pop, 2, SMOKE.image_size),
    "cmr": lambda pop: render_cine(pop, 2, SMOKE.cmr_size),
    "ecg": lambda pop: simulate_ecg(pop, 2, SMOKE.ecg_sampling_rate_hz, SMOKE.ecg_seconds),
}


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return sample_population(2, range(6))


def reaching_columns(render, population: pd.DataFrame) -> set[str]:
    """Population columns whose change changes the rendered data (the data's inputs)."""
    base = render(population)[0]
    reach = set()
    for column in population.columns:
        if column == "lat_index" or population[column].dtype.kind not in "fb":
            continue
        moved = population.copy()
        values = moved[column].to_numpy()
        moved[column] = ~values if values.dtype == bool else values * 1.07 + 0.01
        if not np.array_equal(render(moved)[0], base):
            reach.add(column)
    return reach


@pytest.mark.parametrize("modality", ["localizer", "cmr", "ecg"])
def test_ceiling_inputs_cover_what_reaches_the_data(population, modality):
    render = RENDERERS[modality]
    latents = render(population)[1]
    features = set(oracle_columns(latents.columns, modality))
    reach = reaching_columns(render, population)
    # The ECG is rendered from its signal parameters alone (next test): whatever reaches it acts
    # through them. An image renderer reads non-target quantities directly: each must be a
    # feature (covariates appear in the latents as "tab_<name>").
    direct = set() if modality == "ecg" else {c for c in reach if c not in CP_NAMES}
    named = {c if c.startswith("lat_") else f"tab_{c}" for c in direct}
    assert set(oracle_columns(named, modality)) == named, named
    for column in reach - direct:  # the rest acts through recorded features
        moved = population.copy()
        values = moved[column].to_numpy()
        moved[column] = ~values if values.dtype == bool else values * 1.07 + 0.01
        before, after = latents[sorted(features)], render(moved)[1][sorted(features)]
        assert not np.allclose(before.to_numpy(float), after.to_numpy(float)), column


def test_ecg_is_rendered_from_its_ceiling_inputs_alone(population):
    """The ECG signal is a function of SIGNAL_COLUMNS and subject-independent noise only."""
    fs, T = SMOKE.ecg_sampling_rate_hz, SMOKE.ecg_samples
    ecg, latents = simulate_ecg(population, 2, fs, SMOKE.ecg_seconds)
    draws = ecg_draws(2, population["lat_index"].to_numpy(), T)
    assert np.array_equal(render_ecg(latents[list(SIGNAL_COLUMNS)], draws, fs, T), ecg)
    assert set(SIGNAL_COLUMNS) | set(NOISE_COLUMNS) <= set(oracle_columns(latents.columns, "ecg"))
    cheap = ecg_latents(population, 2, fs)
    pd.testing.assert_frame_equal(cheap, latents)


def test_tabular_ceiling_includes_everything_behind_the_record():
    """The record holds covariates and ECG-measured intervals: both feed the tabular ceiling."""
    _, _, latents = generate_subjects(1, range(4), SMOKE)
    tabular = set(oracle_columns(latents.columns, "tabular"))
    assert set(oracle_columns(latents.columns, "ecg")) <= tabular
    covariates = {f"tab_{c}" for c in NUMERICAL if f"tab_{c}" in latents}
    assert covariates <= tabular and "tab_sex" in tabular
    assert not tabular & set(CP_NAMES)


def test_reference_subjects_match_the_cohort_latents():
    """The ceiling's reference sample is made exactly like the cohort's latents."""
    _, _, latents = generate_subjects(1, range(3, 6), SMOKE)
    reference = reference_subjects(1, range(3, 6), SMOKE)
    for modality in ("localizer", "cmr", "ecg", "tabular"):
        columns = oracle_columns(latents.columns, modality)
        columns = [c for c in columns if not c.startswith("lat_")]
        pd.testing.assert_frame_equal(
            reference[columns].reset_index(drop=True), latents[columns], check_dtype=False
        )


def test_above_ceiling_flags_only_rows_whose_ci_is_above():
    results = pd.DataFrame({
        "method": ["E_sup", "E_sup", "T_sup"], "cp": ["LVM", "LVEF", "LVM"],
        "r": [0.9, 0.5, 0.6], "r_ci_low": [0.85, 0.3, 0.5], "r_ci_high": [0.95, 0.6, 0.7],
    })  # fmt: skip
    ceiling = pd.DataFrame({
        "method": ["E_sup", "E_sup", "T_sup"], "cp": ["LVM", "LVEF", "LVM"],
        "pearson_r": [0.8, 0.4, 0.7],
    })  # fmt: skip
    flagged = above_ceiling(results, ceiling)
    assert flagged["above_ceiling"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="r_ci_low"):
        above_ceiling(results.drop(columns="r_ci_low"), ceiling)


def test_ceiling_regressor_recovers_smooth_and_ratio_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    x[:, 2] = np.exp(0.3 * x[:, 2])  # a positive gain
    y = np.stack([x[:, 0] * x[:, 1], x[:, 0] / x[:, 2]], axis=1)
    pred = ceiling_from_features(x[:480], y[:480], x[480:], seed=0)
    assert pred.shape == (120, 2)
    assert np.corrcoef(pred[:, 0], y[480:, 0])[0, 1] > 0.99
    ridge_only = ceiling_from_features(x[:480], y[:480], x[480:], seed=0, neural=False)
    r = [np.corrcoef(p[:, 1], y[480:, 1])[0, 1] for p in (pred, ridge_only)]
    assert r[0] >= r[1] - 0.01  # the perceptron is kept only where it predicts better


def test_polynomial_ridge_matches_a_plain_ridge_on_the_standardized_polynomial():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from ctrip.data.synth.oracle import polynomial_ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5))
    y = np.stack([x[:, 0] * x[:, 1], x[:, 2] + rng.normal(size=3000)], axis=1)
    # chunks of 700 rows: the Gram matrix is summed over uneven pieces
    held, out = polynomial_ridge(
        x[:2000], y[:2000], x[2000:2500], y[2000:2500], x[2500:], np.array([10.0]), chunk=700
    )
    plain = make_pipeline(
        StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(), Ridge(10.0)
    ).fit(x[:2000], y[:2000])
    np.testing.assert_allclose(out, plain.predict(x[2500:]), atol=1e-10)
    np.testing.assert_allclose(held, plain.predict(x[2000:2500]), atol=1e-10)
    # per target, the penalty with the lower held-out error: none for the exact product
    _, chosen = polynomial_ridge(
        x[:2000], y[:2000], x[2000:2500], y[2000:2500], x[2500:], np.array([1e-6, 1e4])
    )
    assert np.corrcoef(chosen[:, 0], y[2500:, 0])[0, 1] > 0.999


def test_shared_dimensions_of_the_aligned_pairs():
    from ctrip.data.synth.oracle import shared_dimensions

    class Latents:  # the one thing shared_dimensions reads of a cohort
        def __init__(self, table: pd.DataFrame) -> None:
            self.table = table

        def extra(self, name: str) -> pd.DataFrame:
            assert name == "latents"
            return self.table

    cohort = Latents(reference_subjects(3, range(400), SMOKE))
    shared = shared_dimensions(cohort, [("localizer", "ecg"), ("localizer", "tabular")])
    assert shared[["a", "b"]].values.tolist() == [["localizer", "ecg"], ["localizer", "tabular"]]
    assert (shared["n"] == 400).all()
    assert shared["participation_ratio"].between(1.0, 20.0).all()
    # BMI reaches both the localizer (the body outline) and the record: one shared quantity
    # is known exactly to both sides (the whitening ridge shrinks its correlation a little)
    assert shared.loc[1, "rho_1"] == pytest.approx(1.0, abs=2e-3)  # up to the ridge
    assert shared[["rho_1", "rho_2", "rho_3"]].stack().between(0.0, 1.0).all()
