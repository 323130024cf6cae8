"""Agreement between predicted and reference CPs: Bland-Altman, Pearson r, bootstrap CIs.

Sign convention everywhere: difference = prediction - reference, so a positive mean
difference (MD) means the method overestimates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from ctrip.data.schema import CP_NAMES, CP_UNITS

Z95 = 1.959963984540054


def _pair(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = (
        np.asarray(pred, dtype=np.float64).ravel(),
        np.asarray(ref, dtype=np.float64).ravel(),
    )
    if pred.shape != ref.shape:
        raise ValueError(f"prediction and reference differ in length: {pred.size} vs {ref.size}")
    if not (np.isfinite(pred).all() and np.isfinite(ref).all()):
        raise ValueError("prediction or reference holds NaN or inf")
    return pred, ref


def bland_altman(pred: Any, ref: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Bland-Altman agreement of `pred` with `ref`.

    difference = prediction - reference. md: mean difference; sd: its standard deviation
    (ddof 1); loa_low / loa_high: md -+ 1.96 sd. Confidence intervals (Bland & Altman 1999):
    md_ci = md +- t(n-1) sd / sqrt(n); loa_*_ci = loa +- t(n-1) sd sqrt(1/n + 1.96^2 / (2 (n-1))).
    """
    pred, ref = _pair(pred, ref)
    n = pred.size
    if n < 2:
        raise ValueError(f"Bland-Altman needs at least 2 subjects, got {n}")
    d = pred - ref
    md, sd = float(d.mean()), float(d.std(ddof=1))
    t = float(st.t.ppf(0.5 + confidence / 2, n - 1))
    se_md = sd / np.sqrt(n)
    se_loa = sd * np.sqrt(1 / n + Z95**2 / (2 * (n - 1)))
    lo, hi = md - Z95 * sd, md + Z95 * sd
    return {
        "md": md,
        "sd": sd,
        "loa_low": lo,
        "loa_high": hi,
        "md_ci": (md - t * se_md, md + t * se_md),
        "loa_low_ci": (lo - t * se_loa, lo + t * se_loa),
        "loa_high_ci": (hi - t * se_loa, hi + t * se_loa),
        "n": n,
    }


def pearson(pred: Any, ref: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Pearson r with its confidence interval from Fisher's z (tanh(atanh r +- z / sqrt(n-3)))."""
    pred, ref = _pair(pred, ref)
    n = pred.size
    if n < 3 or pred.std() == 0 or ref.std() == 0:
        return {
            "r": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "p": float("nan"),
            "n": n,
        }
    with warnings.catch_warnings():
        # numerically constant input (e.g. a model that predicts the mean): r is undefined
        warnings.simplefilter("error", st.ConstantInputWarning)
        try:
            r, p = st.pearsonr(pred, ref)
        except st.ConstantInputWarning:
            return {"r": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                    "p": float("nan"), "n": n}  # fmt: skip
    r = float(np.clip(r, -1.0, 1.0))
    if n > 3:
        z, half = (
            np.arctanh(np.clip(r, -0.9999999, 0.9999999)),
            st.norm.ppf(0.5 + confidence / 2) / np.sqrt(n - 3),
        )
        lo, hi = float(np.tanh(z - half)), float(np.tanh(z + half))
    else:
        lo = hi = float("nan")
    return {"r": r, "ci_low": lo, "ci_high": hi, "p": float(p), "n": n}


def _r(pred: np.ndarray, ref: np.ndarray) -> float:
    if pred.std() == 0 or ref.std() == 0:
        return float("nan")
    return float(np.corrcoef(pred, ref)[0, 1])


STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "md": lambda p, r: float((p - r).mean()),
    "abs_md": lambda p, r: float(abs((p - r).mean())),
    "sd": lambda p, r: float((p - r).std(ddof=1)),
    "loa_low": lambda p, r: float((p - r).mean() - Z95 * (p - r).std(ddof=1)),
    "loa_high": lambda p, r: float((p - r).mean() + Z95 * (p - r).std(ddof=1)),
    "loa_width": lambda p, r: float(2 * Z95 * (p - r).std(ddof=1)),
    "mae": lambda p, r: float(np.abs(p - r).mean()),
    "rmse": lambda p, r: float(np.sqrt(((p - r) ** 2).mean())),
    "r": _r,
}


def _statistic(statistic: str | Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    if callable(statistic):
        return statistic
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {sorted(STATISTICS)}")
    return STATISTICS[statistic]


def bootstrap_ci(
    pred: Any,
    ref: Any,
    statistic: str | Callable = "md",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap CI of `statistic(pred, ref)`, resampling subjects with replacement.

    statistic: a name in STATISTICS ("md", "abs_md", "sd", "loa_low", "loa_high",
    "loa_width", "mae", "rmse", "r") or a function of (pred, ref) arrays.
    """
    pred, ref = _pair(pred, ref)
    fn = _statistic(statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, pred.size, size=(n_boot, pred.size))
    values = np.array([fn(pred[i], ref[i]) for i in idx])
    alpha = (1 - confidence) / 2
    lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
    return {"estimate": fn(pred, ref), "ci_low": float(lo), "ci_high": float(hi),
            "n_boot": n_boot, "n": pred.size}  # fmt: skip


def paired_bootstrap(
    pred_a: Any,
    pred_b: Any,
    ref: Any,
    statistic: str | Callable = "mae",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Compare methods A and B on the same subjects: the difference statistic(A) - statistic(B)
    with a percentile CI from resampling subjects (the same resample for both methods), and a
    two-sided bootstrap p-value (twice the smaller tail of the resampled differences at 0)."""
    pred_a, ref_a = _pair(pred_a, ref)
    pred_b, _ = _pair(pred_b, ref)
    fn = _statistic(statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ref_a.size, size=(n_boot, ref_a.size))
    diffs = np.array([fn(pred_a[i], ref_a[i]) - fn(pred_b[i], ref_a[i]) for i in idx])
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    return {
        "a": fn(pred_a, ref_a),
        "b": fn(pred_b, ref_a),
        "difference": fn(pred_a, ref_a) - fn(pred_b, ref_a),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p": float(p),
        "n_boot": n_boot,
        "n": ref_a.size,
    }


def split_rows(predictions: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """The rows of one split (all rows for None, or when there is no split column)."""
    if split is not None and "split" in predictions.columns:
        predictions = predictions[predictions["split"] == split]
    if len(predictions) == 0:
        raise ValueError(f"no predictions for split {split!r}")
    return predictions


def per_cp_table(
    predictions: pd.DataFrame, split: str | None = "test", n_boot: int = 0, seed: int = 0
) -> pd.DataFrame:
    """One row per CP (all 18, CP_NAMES order) from a predictions frame with "<CP>_pred" and
    "<CP>_ref" columns (e.g. `Stage3Result.predictions`): unit, n, Bland-Altman (md, sd, LoA
    and their CIs; difference = prediction - reference), Pearson r with CI, MAE. With
    n_boot > 0, also bootstrap CIs of md and r over subjects."""
    predictions = split_rows(predictions, split)
    missing = [
        f"{cp}_{s}" for cp in CP_NAMES for s in ("pred", "ref") if f"{cp}_{s}" not in predictions
    ]
    if missing:
        raise ValueError(f"the predictions frame lacks columns {missing}")
    rows = []
    for cp in CP_NAMES:
        pred, ref = predictions[f"{cp}_pred"].to_numpy(), predictions[f"{cp}_ref"].to_numpy()
        ba, pr = bland_altman(pred, ref), pearson(pred, ref)
        row = {
            "cp": cp, "unit": CP_UNITS[cp], "n": ba["n"],
            "md": ba["md"], "md_ci_low": ba["md_ci"][0], "md_ci_high": ba["md_ci"][1],
            "sd": ba["sd"], "loa_low": ba["loa_low"], "loa_high": ba["loa_high"],
            "loa_low_ci_low": ba["loa_low_ci"][0], "loa_low_ci_high": ba["loa_low_ci"][1],
            "loa_high_ci_low": ba["loa_high_ci"][0], "loa_high_ci_high": ba["loa_high_ci"][1],
            "r": pr["r"], "r_ci_low": pr["ci_low"], "r_ci_high": pr["ci_high"],
            "mae": STATISTICS["mae"](pred, ref),
        }  # fmt: skip
        if n_boot:
            for name in ("md", "r"):
                boot = bootstrap_ci(pred, ref, name, n_boot, seed)
                row[f"{name}_boot_low"], row[f"{name}_boot_high"] = boot["ci_low"], boot["ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_bootstrap_frames(
    a: pd.DataFrame,
    b: pd.DataFrame,
    cp: str,
    statistic: str | Callable = "mae",
    split: str | None = "test",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """`paired_bootstrap` of two methods' prediction frames for one CP, matched by subject id.
    Both must hold the same subjects with the same reference values."""
    a, b = split_rows(a, split), split_rows(b, split)
    if set(a["id"]) != set(b["id"]):
        raise ValueError(
            f"the two methods were evaluated on different subjects ({len(a)} vs {len(b)} ids, "
            f"{len(set(a['id']) ^ set(b['id']))} not shared)"
        )
    merged = a[["id", f"{cp}_pred", f"{cp}_ref"]].merge(
        b[["id", f"{cp}_pred", f"{cp}_ref"]], on="id", suffixes=("_a", "_b")
    )
    if not np.allclose(merged[f"{cp}_ref_a"], merged[f"{cp}_ref_b"]):
        raise ValueError(f"the two frames disagree on the reference {cp} of some subjects")
    return paired_bootstrap(
        merged[f"{cp}_pred_a"],
        merged[f"{cp}_pred_b"],
        merged[f"{cp}_ref_a"],
        statistic,
        n_boot,
        seed,
    )
