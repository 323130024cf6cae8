"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctrip.analysis.metrics import (
    bland_altman,
    bootstrap_ci,
    paired_bootstrap,
    paired_bootstrap_frames,
    pearson,
    per_cp_table,
)
from ctrip.data.schema import CP_NAMES, CP_UNITS


def test_bland_altman_by_hand():
    ref = np.array([10.0, 20.0, 30.0, 40.0])
    pred = ref + np.array([1.0, 2.0, 3.0, 4.0])  # differences = prediction - reference
    ba = bland_altman(pred, ref)
    sd = math.sqrt(5 / 3)  # deviations -1.5, -0.5, 0.5, 1.5 -> 5 / (n - 1)
    assert ba["n"] == 4 and math.isclose(ba["md"], 2.5) and math.isclose(ba["sd"], sd)
    assert math.isclose(ba["loa_low"], 2.5 - 1.959963984540054 * sd)
    assert math.isclose(ba["loa_high"], 2.5 + 1.959963984540054 * sd)
    t3 = 3.182446305284263  # t(0.975, 3)
    assert np.allclose(ba["md_ci"], (2.5 - t3 * sd / 2, 2.5 + t3 * sd / 2))
    se_loa = sd * math.sqrt(1 / 4 + 1.959963984540054**2 / 6)
    assert np.allclose(
        ba["loa_high_ci"], (ba["loa_high"] - t3 * se_loa, ba["loa_high"] + t3 * se_loa)
    )
    assert bland_altman(ref, pred)["md"] == -2.5  # the sign follows prediction - reference
    with pytest.raises(ValueError):
        bland_altman([1.0, np.nan], [1.0, 2.0])


def test_pearson_by_hand():
    res = pearson([1, 2, 3, 4], [1, 3, 2, 4])
    assert math.isclose(res["r"], 0.8)  # sum of products 4 / sqrt(5 * 5)
    z = math.atanh(0.8)
    assert math.isclose(res["ci_low"], math.tanh(z - 1.959963984540054), rel_tol=1e-9)
    assert math.isclose(res["ci_high"], math.tanh(z + 1.959963984540054), rel_tol=1e-9)
    assert math.isnan(pearson([1, 1, 1, 1], [1, 2, 3, 4])["r"])


def frame(ref: np.ndarray, noise: float, seed: int, split: str = "test") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": [f"S{i}" for i in range(len(ref))], "split": split})
    for j, cp in enumerate(CP_NAMES):
        df[f"{cp}_ref"] = ref + j
        df[f"{cp}_pred"] = ref + j + rng.normal(0, noise, len(ref)) + 1.0
    return df


def test_per_cp_table():
    ref = np.linspace(50, 150, 40)
    df = pd.concat([frame(ref, 5.0, 0), frame(ref, 50.0, 1, "val")])
    table = per_cp_table(df)
    assert list(table["cp"]) == CP_NAMES and list(table["unit"]) == [CP_UNITS[c] for c in CP_NAMES]
    assert (table["n"] == 40).all()  # test rows only
    test = df[df["split"] == "test"]
    ba = bland_altman(test["LVM_pred"], test["LVM_ref"])
    row = table.set_index("cp").loc["LVM"]
    assert math.isclose(row["md"], ba["md"]) and math.isclose(row["loa_high"], ba["loa_high"])
    assert math.isclose(row["r"], st.pearsonr(test["LVM_pred"], test["LVM_ref"])[0])
    boot = per_cp_table(df, n_boot=200)
    assert (boot["md_boot_low"] < boot["md"]).all() and (boot["md"] < boot["md_boot_high"]).all()
    with pytest.raises(ValueError, match="lacks"):
        per_cp_table(df.drop(columns=["RAEF_pred"]))


def test_bootstrap_ci():
    ref = np.arange(30.0)
    const = bootstrap_ci(ref + 2.0, ref, "md", n_boot=300, seed=0)
    assert (
        const["estimate"] == 2.0
        and math.isclose(const["ci_low"], 2.0)
        and math.isclose(const["ci_high"], 2.0)
    )
    rng = np.random.default_rng(0)
    pred = ref + rng.normal(0, 3, 30)
    a = bootstrap_ci(pred, ref, "r", n_boot=500, seed=4)
    assert a == bootstrap_ci(pred, ref, "r", n_boot=500, seed=4)  # seeded
    assert a["ci_low"] < a["estimate"] < a["ci_high"] <= 1.0
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_ci(pred, ref, "median")


def test_paired_bootstrap():
    ref = np.linspace(40, 160, 60)
    good, bad = frame(ref, 2.0, 0), frame(ref, 20.0, 1)
    res = paired_bootstrap(good["LVM_pred"], bad["LVM_pred"], ref + 5, "mae", n_boot=500)
    assert res["difference"] < 0 and res["ci_high"] < 0 and res["p"] < 0.01
    assert math.isclose(res["difference"], res["a"] - res["b"])
    same = paired_bootstrap(good["LVM_pred"], good["LVM_pred"], ref + 5, "mae", n_boot=100)
    assert same["difference"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    shuffled = bad.sample(frac=1, random_state=0)  # matched by id, not by row order
    res2 = paired_bootstrap_frames(good, shuffled, "LVM", "mae", n_boot=500)
    assert math.isclose(res2["difference"], res["difference"])
    with pytest.raises(ValueError, match="different subjects"):
        paired_bootstrap_frames(good, bad.iloc[1:], "LVM")


def test_paired_differences_over_seeds_and_fractions():
    """Seed-mean r difference with a paired subject bootstrap: a better method's CI excludes 0,
    a method against itself gives exactly 0."""
    from ctrip.analysis.report import paired_differences

    rng = np.random.default_rng(0)
    n = 300
    ref = rng.normal(60, 10, n)
    frames = {"good": [], "poor": []}
    for seed in (0, 1):
        for fraction in (0.1, 1.0):
            for name, noise in (("good", 4.0), ("poor", 12.0)):
                pred = ref + rng.normal(0, noise, n)
                frames[name].append(pd.DataFrame({"id": [f"s{i}" for i in range(n)], "split": "test",
                    "LVM_pred": pred, "LVM_ref": ref, "fraction": fraction, "seed": seed}))  # fmt: skip
    predictions = {k: pd.concat(v, ignore_index=True) for k, v in frames.items()}
    out = paired_differences(predictions, "poor", ["LVM"], n_bootstrap=500)
    assert set(out["fraction"]) == {0.1, 1.0} and (out["n_seeds"] == 2).all()
    assert (out["difference"] > 0).all() and (out["ci_low"] > 0).all()
    assert (out["ci_low"] <= out["difference"]).all() and (
        out["difference"] <= out["ci_high"]
    ).all()
    same = paired_differences({"a": predictions["poor"], "b": predictions["poor"]}, "b", ["LVM"],
                              n_bootstrap=200)  # fmt: skip
    assert np.allclose(same[["difference", "ci_low", "ci_high"]].to_numpy(), 0.0)


def test_paired_loa_width_differences_by_hand():
    """The LoA width is 2 x 1.96 SD of prediction - reference: a constant predictor's is that of
    the references; a closer predictor's CI lies wholly below it; a wrong metric name raises."""
    from ctrip.analysis.metrics import Z95
    from ctrip.analysis.report import paired_differences

    rng = np.random.default_rng(3)
    n = 400
    ref = rng.normal(55, 8, n)
    ids = [f"s{i}" for i in range(n)]

    def frame(pred: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"id": ids, "split": "test", "fraction": 1.0, "seed": 0,
                             "LVEF_pred": pred, "LVEF_ref": ref})  # fmt: skip

    close = ref + rng.normal(0, 3, n)
    predictions = {"model": frame(close), "mean": frame(np.full(n, 55.0))}
    out = paired_differences(predictions, "mean", ["LVEF"], n_bootstrap=400, metric="loa_width")
    d = out.iloc[0]
    assert math.isclose(d["loa_width_baseline"], 2 * Z95 * ref.std(ddof=1))
    assert math.isclose(d["loa_width"], 2 * Z95 * (close - ref).std(ddof=1))
    assert math.isclose(d["difference"], d["loa_width"] - d["loa_width_baseline"])
    assert d["ci_low"] <= d["difference"] <= d["ci_high"] < 0  # narrower than no model
    assert "r" not in out.columns
    with pytest.raises(ValueError, match="unknown paired metric 'rmse'"):
        paired_differences(predictions, "mean", ["LVEF"], metric="rmse")


def test_yardstick_differences_measure_each_method_from_its_own_modality():
    from ctrip.analysis.report import yardstick_differences

    rng = np.random.default_rng(1)
    n = 200
    ref = rng.normal(100, 20, n)

    def frame(noise: float) -> pd.DataFrame:
        return pd.DataFrame({"id": [f"s{i}" for i in range(n)], "split": "test", "fraction": 1.0,
                             "seed": 0, "LVM_pred": ref + rng.normal(0, noise, n), "LVM_ref": ref})  # fmt: skip

    predictions = {"L_sup": frame(30.0), "C-TRIP": frame(20.0), "E_sup": frame(10.0)}
    modalities = {"L_sup": "localizer", "C-TRIP": "localizer", "E_sup": "ecg"}
    references = {"ref_localizer": frame(5.0), "ref_ecg": frame(40.0)}
    out = yardstick_differences(predictions, modalities, references, ["LVM"], n_bootstrap=300)
    by = out.set_index("method")
    assert (
        by.loc["L_sup", "baseline"] == "ref_localizer" and by.loc["E_sup", "baseline"] == "ref_ecg"
    )
    assert by.loc["L_sup", "ci_high"] < 0 and by.loc["C-TRIP", "ci_high"] < 0  # below the CNN
    assert by.loc["E_sup", "ci_low"] > 0  # above its (noisier) reference
    assert set(out["method"]) == set(predictions)
    no_ecg = yardstick_differences(predictions, modalities, {"ref_localizer": frame(5.0)}, ["LVM"],
                                   n_bootstrap=100)  # fmt: skip
    assert set(no_ecg["method"]) == {"L_sup", "C-TRIP"}
    with pytest.raises(KeyError, match="no input modality"):
        yardstick_differences(predictions, {"L_sup": "localizer"}, references, ["LVM"])


def test_standard_cnn_differences_set_the_localizer_rows_and_the_cheap_cnn_beside_it():
    from ctrip.analysis.report import standard_cnn_differences

    rng = np.random.default_rng(2)
    n = 200
    ref = rng.normal(100, 20, n)

    def frame(noise: float, fractions=(0.1, 1.0), seeds=(0, 1)) -> pd.DataFrame:
        return pd.concat([pd.DataFrame({"id": [f"s{i}" for i in range(n)], "split": "test",
                                        "fraction": f, "seed": s,
                                        "LVM_pred": ref + rng.normal(0, noise, n), "LVM_ref": ref})
                          for f in fractions for s in seeds])  # fmt: skip

    predictions = {"L_sup": frame(30.0), "E_sup": frame(10.0)}
    modalities = {"L_sup": "localizer", "E_sup": "ecg"}
    references = {"ref_localizer": frame(8.0), "ref_ecg": frame(40.0)}
    standard = frame(5.0, fractions=(1.0,), seeds=(0,))  # one seed, the whole training split
    out = standard_cnn_differences(predictions, modalities, references, standard, ["LVM"],
                                   n_bootstrap=300)  # fmt: skip
    assert set(out["method"]) == {"L_sup", "ref_localizer"}  # no ECG row, no ECG reference
    assert set(out["baseline"]) == {"standard_localizer"} and set(out["fraction"]) == {1.0}
    assert (out["n_seeds"] == 1).all()
    by = out.set_index("method")
    assert (
        by.loc["L_sup", "ci_high"] < 0
        and by.loc["L_sup", "difference"] < by.loc["ref_localizer", "difference"]
    )
    empty = standard_cnn_differences(predictions, modalities, references, None, ["LVM"])
    assert empty.empty and {"method", "difference", "ci_low", "ci_high"} <= set(empty.columns)
    no_cheap = standard_cnn_differences(predictions, modalities, {}, standard, ["LVM"],
                                        n_bootstrap=50)  # fmt: skip
    assert set(no_cheap["method"]) == {"L_sup"}
