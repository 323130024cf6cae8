"""Conformal intervals, coverage and screening metrics against hand-computed cases."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from ctrip.analysis.screening import (
    LVMI_ULN,
    SCREENING_FLAGS,
    ConformalIntervals,
    abnormal_counts,
    body_surface_area,
    conformal_quantile,
    coverage,
    coverage_table,
    fit_conformal,
    flag_by_name,
    format_intervals,
    interval_table,
    roc_auc,
    roc_curve,
    screening_labels,
    screening_performance,
    screening_score,
    screening_table,
    sensitivity_specificity,
    wilson_interval,
)
from ctrip.analysis.screening_figures import plot_coverage, plot_roc_curves, plot_roc_panels

matplotlib.use("Agg")


def test_conformal_quantile_by_hand():
    scores = [5, 1, 9, 3, 7, 2, 8, 4, 6]  # n = 9, sorted 1..9
    assert conformal_quantile(scores, 0.9) == 9  # k = ceil(10 * 0.9) = 9
    assert conformal_quantile(scores, 0.8) == 8  # k = ceil(10 * 0.8) = 8
    assert conformal_quantile(scores, 0.75) == 8  # k = ceil(7.5) = 8
    assert conformal_quantile(scores, 0.5) == 5
    assert conformal_quantile([1, 2, 3, 4], 0.9) == math.inf  # k = ceil(4.5) = 5 > n
    with pytest.raises(ValueError):
        conformal_quantile(scores, 1.0)
    with pytest.raises(ValueError):
        conformal_quantile([1.0, np.nan], 0.5)


def calibration_frame() -> pd.DataFrame:
    pred = np.array([50.0, 60, 55, 40, 65, 58, 62, 45, 52])
    residual = np.array([-3.0, 1, 2, -4, 5, 0.5, -1, 6, -2])  # reference - prediction
    val = pd.DataFrame({"id": [f"V{i}" for i in range(9)], "split": "val",
                        "LVEF_pred": pred, "LVEF_ref": pred + residual})  # fmt: skip
    # test rows with huge errors: must not enter the calibration
    test = pd.DataFrame({"id": ["T0", "T1"], "split": "test", "LVEF_pred": [50.0, 50.0],
                         "LVEF_ref": [0.0, 100.0]})  # fmt: skip
    return pd.concat([val, test], ignore_index=True)


def test_fit_conformal_absolute_and_signed_by_hand():
    frame = calibration_frame()
    ci = fit_conformal(frame, level=0.8, cps=["LVEF"])
    # |residuals| sorted 0.5 1 1 2 2 3 4 5 6; k = ceil(10 * 0.8) = 8 -> 5
    assert ci.offsets["LVEF"] == (-5.0, 5.0) and ci.n_calibration == 9
    low, high = ci.interval("LVEF", [50.0, 60.0])
    assert np.allclose(low, [45, 55]) and np.allclose(high, [55, 65])
    signed = fit_conformal(frame, level=0.8, cps=["LVEF"], method="signed")
    # each tail at 0.9: k = 9 -> largest residual 6 above, largest negative -4 below
    assert signed.offsets["LVEF"] == (-4.0, 6.0)
    out = ci.apply(frame)
    assert np.allclose(out["LVEF_high"] - out["LVEF_low"], 10.0)
    with pytest.raises(ValueError, match="LVEDV_pred"):
        fit_conformal(frame, cps=["LVEDV"])


def test_conformal_dict_round_trip():
    ci = fit_conformal(calibration_frame(), level=0.9, cps=["LVEF"])
    d = ci.to_dict()
    json.dumps(d)  # plain types only
    back = ConformalIntervals.from_dict(json.loads(json.dumps(d)))
    assert back == ci
    with pytest.raises(ValueError, match="lacks keys"):
        ConformalIntervals.from_dict({"level": 0.9})


def test_wilson_and_coverage_of_a_known_interval():
    ref = [0.5, 1.0, 1.5, -0.1]  # inside, on the (closed) edge, above, below
    c = coverage([0, 0, 0, 0], [1, 1, 1, 1], ref)
    assert c["covered"] == 2 and c["n"] == 4 and c["coverage"] == 0.5 and c["mean_width"] == 1.0
    # Wilson 2/4 at 95%: centre 0.5, half 1.96 / 1.9604 * sqrt(0.0625 + 3.8416 / 64)
    assert c["ci_low"] == pytest.approx(0.1500, abs=5e-4)
    assert c["ci_high"] == pytest.approx(0.8500, abs=5e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + 1.959963984540054**2))


def test_conformal_coverage_holds_on_exchangeable_data():
    rng = np.random.default_rng(0)
    n = 4000
    ref = rng.normal(60, 6, n)
    pred = ref + rng.normal(1.0, 4.0, n)  # biased, noisy predictor
    frame = pd.DataFrame({"id": np.arange(n), "split": np.where(np.arange(n) < n // 2, "val", "test"),
                          "LVEF_pred": pred, "LVEF_ref": ref})  # fmt: skip
    for method in ("absolute", "signed"):
        ci = fit_conformal(frame, level=0.9, cps=["LVEF"], method=method)
        table = coverage_table(ci, frame, split="test")
        row = table.iloc[0]
        assert row["n"] == n // 2 and abs(row["coverage"] - 0.9) < 0.03
        assert row["ci_low"] < row["coverage"] < row["ci_high"]


def test_bsa_and_indexed_flags():
    assert body_surface_area(180, 80) == pytest.approx(2.0)  # sqrt(180 * 80 / 3600)
    assert body_surface_area(160, 57.6) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        body_surface_area(0, 70)
    lvh = flag_by_name("lv_hypertrophy")
    # man 150 g / 2.0 m2 = 75 g/m2 > 70.64; woman 110 g / 1.6 = 68.75 > 55.72; woman 80 / 1.6 = 50
    score = screening_score(lvh, [150, 110, 80], ["male", "female", "female"], [2.0, 1.6, 1.6])
    assert np.allclose(score, [75 - LVMI_ULN["male"], 68.75 - LVMI_ULN["female"],
                               50 - LVMI_ULN["female"]])  # fmt: skip
    assert LVMI_ULN["male"] == pytest.approx(53 + 1.96 * 9, abs=0.01)
    assert screening_labels(lvh, [150, 110, 80], ["male", "female", "female"],
                            [2.0, 1.6, 1.6]).tolist() == [True, True, False]  # fmt: skip
    ef = flag_by_name("reduced_lvef")
    assert screening_labels(ef, [49.9, 50.0, 35], ["male", "female", "female"]).tolist() == [
        True, False, True]  # fmt: skip
    with pytest.raises(ValueError, match="bsa"):
        screening_score(lvh, [150], ["male"])
    with pytest.raises(ValueError, match="unknown sex"):
        screening_score(ef, [40], ["M"])
    assert {f.name for f in SCREENING_FLAGS} == {"reduced_lvef", "lv_hypertrophy", "rv_dilation"}
    assert all(f.source for f in SCREENING_FLAGS)


def test_auroc_with_ties_and_roc_curve_by_hand():
    labels = [1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.5, 0.5, 0.1, 0.7, 0.3]
    # positives 0.9, 0.5, 0.7 against negatives 0.5, 0.1, 0.3: 3 + (0.5 + 2) + 3 = 8.5 of 9
    assert roc_auc(labels, scores) == pytest.approx(8.5 / 9)
    curve = roc_curve(labels, scores)
    assert np.allclose(curve["fpr"], [0, 0, 0, 1 / 3, 2 / 3, 1])
    assert np.allclose(curve["tpr"], [0, 1 / 3, 2 / 3, 1, 1, 1])
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(8.5 / 9)
    assert roc_auc([0, 1], [1.0, 0.0]) == 0.0 and roc_auc([0, 1], [0.0, 0.0]) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_sensitivity_specificity_by_hand():
    res = sensitivity_specificity([1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0])
    assert res["sensitivity"] == pytest.approx(2 / 3) and res["specificity"] == pytest.approx(3 / 4)
    assert (res["tp"], res["fn"], res["tn"], res["fp"]) == (2, 1, 3, 1)


def test_screening_performance_bootstrap():
    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.2
    scores = labels * 1.5 + rng.normal(0, 1, 400) - 0.75
    a = screening_performance(labels, scores, n_boot=300, seed=3)
    b = screening_performance(labels, scores, n_boot=300, seed=3)
    assert a["auroc_ci_low"] == b["auroc_ci_low"]  # seeded
    for name in ("auroc", "sensitivity", "specificity"):
        assert a[f"{name}_ci_low"] <= a[name] <= a[f"{name}_ci_high"]
    assert a["n_abnormal"] == labels.sum() and a["n_boot_valid"] == 300
    with pytest.raises(ValueError, match="both abnormal and normal"):
        screening_performance(np.zeros(5, bool), np.arange(5.0))


def cohort_frames(n: int = 300, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    sex = np.where(rng.random(n) < 0.5, "male", "female")
    height = np.where(sex == "male", 176, 163) + rng.normal(0, 6, n)
    weight = rng.normal(78, 12, n)
    bsa = body_surface_area(height, weight)
    ref = {"LVEF": rng.normal(58, 7, n), "LVM": bsa * np.where(sex == "male", 55, 44) * rng.lognormal(0, 0.2, n),
           "RVEDV": bsa * np.where(sex == "male", 90, 75) * rng.lognormal(0, 0.15, n)}  # fmt: skip
    pred = pd.DataFrame({"id": [f"S{i}" for i in range(n)], "split": "test"})
    for cp, v in ref.items():
        pred[f"{cp}_ref"] = v
        pred[f"{cp}_pred"] = v + rng.normal(0, noise * v.std(), n)
    subjects = pd.DataFrame({"id": pred["id"], "sex": sex, "height": height, "weight": weight})
    return pred, subjects


def test_screening_table_perfect_and_noisy():
    pred, subjects = cohort_frames()
    perfect = screening_table(pred, subjects, n_boot=50)
    assert list(perfect["flag"]) == ["reduced_lvef", "lv_hypertrophy", "rv_dilation"]
    assert np.allclose(perfect["auroc"], 1.0) and np.allclose(perfect["sensitivity"], 1.0)
    assert np.allclose(perfect["specificity"], 1.0) and (perfect["n_abnormal"] > 0).all()
    noisy = screening_table(cohort_frames(noise=0.8)[0], subjects, n_boot=50)
    assert (noisy["auroc"] < 1.0).all() and (noisy["auroc"] > 0.5).all()
    with pytest.raises(ValueError, match="not in the subjects table"):
        screening_table(pred, subjects.iloc[1:], n_boot=10)
    fig = plot_roc_curves({"perfect": perfect.iloc[1], "noisy": noisy.iloc[1]}, "LV hypertrophy")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 3
    panels = {row["label"]: {"perfect": row} for _, row in perfect.iterrows()}
    assert len(plot_roc_panels(panels).axes) == 3
    flat = screening_table(pred, subjects, n_boot=10, with_curve=False)
    assert "fpr" not in flat and flat["auroc"].tolist() == perfect["auroc"].tolist()


def test_coverage_plot():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"id": np.arange(400), "split": np.repeat(["val", "test"], 200)})
    for cp in ("LVEF", "LVM"):
        frame[f"{cp}_ref"] = rng.normal(0, 1, 400)
        frame[f"{cp}_pred"] = frame[f"{cp}_ref"] + rng.normal(0, 0.5, 400)
    tables = []
    for method in ("absolute", "signed"):
        t = coverage_table(fit_conformal(frame, cps=["LVEF", "LVM"], method=method), frame)
        tables.append(t)
    fig = plot_coverage(pd.concat(tables, ignore_index=True))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["LVEF", "LVM"]


def test_abnormal_counts_by_hand():
    subjects = pd.DataFrame({
        "split": ["train", "train", "test", "test"], "sex": ["male", "female", "female", "male"],
        "height": [180, 160, 160, 180], "weight": [80, 57.6, 57.6, 80],  # BSA 2.0, 1.6, 1.6, 2.0
        "LVEF": [45, 60, 49, 55], "LVM": [150, 80, 110, 100], "RVEDV": [150, 100, 120, 200],
    })  # fmt: skip
    counts = abnormal_counts(subjects, flags=SCREENING_FLAGS[:2]).set_index(["flag", "split"])
    assert counts.loc[("reduced_lvef", "all"), "n_abnormal"] == 2
    assert counts.loc[("reduced_lvef", "test"), "n_abnormal"] == 1
    # LVMI 75 (man, > 70.6), 50, 68.75 (woman, > 55.7), 50
    assert counts.loc[("lv_hypertrophy", "train"), "n_abnormal"] == 1
    assert counts.loc[("lv_hypertrophy", "all"), "prevalence"] == 0.5


def test_interval_table_and_text_for_predict():
    ci = ConformalIntervals(level=0.9, method="absolute", n_calibration=100,
                            offsets={"LVEF": (-5.0, 5.0), "LVM": (-12.0, 12.0)})  # fmt: skip
    cps = np.array([[55.0, 120.0], [40.0, 90.0]])
    table = interval_table(ci, ["a", "b"], cps, ["LVEF", "LVM"])
    assert table[["low", "high"]].to_numpy().tolist() == [[50, 60], [108, 132], [35, 45], [78, 102]]
    text = format_intervals(ci, ["a", "b"], cps, ["LVEF", "LVM"])
    assert "90% conformal" in text and "55.0 [50.0, 60.0]" in text and "90.0 [78.0, 102.0]" in text
    with pytest.raises(ValueError, match="shape"):
        interval_table(ci, ["a"], cps, ["LVEF", "LVM"])
