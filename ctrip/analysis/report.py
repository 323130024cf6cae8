"""Tables of the results chapter, computed from the Stage III predictions of every method.

A Stage III run stores `predictions.parquet`: one row per (fraction, seed, subject) with `split`
and, per CP, `<CP>_pred` and `<CP>_ref` in CP units. Bland-Altman differences are prediction
minus reference, so a positive MD means the method over-estimates. A seed's metrics come with
CIs over test subjects; Table 2 averages each number over the seeds and reports the
spread of the MD across seeds beside it. The CIs of MD and LoA are t-based (Bland and Altman
1999), that of r from Fisher's z; `n_bootstrap` adds bootstrap CIs of MD and r.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ctrip.analysis.metrics import Z95
from ctrip.data.schema import CP_NAMES

PREDICTIONS_FILE = "predictions.parquet"


def load_predictions(run_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """A method's Stage III predictions: those of its run folder, or those of its runs' folders
    one after another (a split sweep: one run per fraction and seed, listed in sweep order),
    the same table as one run of the whole sweep stores."""
    folders = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    frames = []
    for folder in folders:
        path = Path(folder) / PREDICTIONS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no Stage III predictions (did the run finish?)")
        frames.append(pd.read_parquet(path))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def per_seed_metrics(
    predictions: Mapping[str, pd.DataFrame],
    cps: Sequence[str] = CP_NAMES,
    fraction: float | None = 1.0,
    split: str = "test",
    n_bootstrap: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Long table: method, fraction, seed, cp and `ctrip.analysis.metrics.per_cp_table`'s columns (MD,
    LoA and their t-based CIs, r with its Fisher CI; with n_bootstrap, bootstrap CIs too)."""
    from ctrip.analysis.metrics import per_cp_table

    frames = []
    for method, df in predictions.items():
        df = df[df["split"] == split]
        if fraction is not None:
            df = df[np.isclose(df["fraction"], fraction)]
        if df.empty:
            raise ValueError(f"method {method}: no {split} predictions at fraction {fraction}")
        for (frac, run_seed), group in df.groupby(["fraction", "seed"], sort=True):
            table = per_cp_table(group, split=None, n_boot=n_bootstrap, seed=seed)
            table = table[table["cp"].isin(cps)]
            frames.append(table.assign(method=method, fraction=frac, seed=run_seed))
    out = pd.concat(frames, ignore_index=True)
    return out[
        [
            "method",
            "fraction",
            "seed",
            *[c for c in out.columns if c not in ("method", "fraction", "seed")],
        ]
    ]


def summarize_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every metric per (method, fraction, cp), plus the seed SD of MD and r."""
    keys = ["method", "fraction", "cp", "unit"]
    numeric = [c for c in per_seed.columns if c not in keys and c != "seed"]
    grouped = per_seed.groupby(keys, sort=False)
    out = grouped[numeric].mean()
    out["md_seed_sd"] = grouped["md"].std(ddof=1).fillna(0.0)
    out["r_seed_sd"] = grouped["r"].std(ddof=1).fillna(0.0)
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def table2(summary: pd.DataFrame, labels: Mapping[str, str], cps: Sequence[str]) -> pd.DataFrame:
    """One row per method (in `labels` order), columns `<CP>_<metric>` for the Table 2 CPs."""
    rows = []
    for method, label in labels.items():
        row: dict[str, object] = {"method": method, "label": label}
        part = summary[(summary["method"] == method) & summary["cp"].isin(cps)].set_index("cp")
        missing = [cp for cp in cps if cp not in part.index]
        if missing:
            raise ValueError(f"method {method}: no metrics for {missing}")
        row["n_test"] = int(part["n"].iloc[0])
        row["n_seeds"] = int(part["n_seeds"].iloc[0])
        for cp in cps:
            for metric in ("md", "md_ci_low", "md_ci_high", "loa_low", "loa_low_ci_low", "loa_low_ci_high",
                           "loa_high", "loa_high_ci_low", "loa_high_ci_high", "md_seed_sd", "r",
                           "r_ci_low", "r_ci_high", "r_seed_sd"):  # fmt: skip
                row[f"{cp}_{metric}"] = float(part.loc[cp, metric])
        rows.append(row)
    return pd.DataFrame(rows)


def pearson_vs_fraction(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Pearson r per method, CP and fraction: mean over seeds, seed SD, and the mean CI."""
    grouped = per_seed.groupby(["method", "cp", "fraction"], sort=False)
    out = grouped[["r", "r_ci_low", "r_ci_high"]].mean()
    out["r_seed_sd"] = grouped["r"].std(ddof=1).fillna(0.0)
    return out.reset_index()


def oracle_for_methods(
    oracle: pd.DataFrame, modalities: Mapping[str, str], cps: Sequence[str]
) -> pd.DataFrame:
    """The oracle ceiling of each method's inference modality: method, cp, pearson_r, md, LoA."""
    rows = []
    for method, modality in modalities.items():
        part = oracle[(oracle["modality"] == modality) & oracle["cp"].isin(cps)]
        for _, row in part.iterrows():
            rows.append({"method": method, "modality": modality, "cp": row["cp"], "pearson_r": row["pearson_r"],
                         "md": row["md"], "loa_low": row["loa_low"], "loa_high": row["loa_high"]})  # fmt: skip
    return pd.DataFrame(rows)


def _rowwise_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (n_boot, n) arrays."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (x * y).sum(axis=1) / denom, np.nan)


def _rowwise_loa_width(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Width of the 95% limits of agreement (2 x 1.96 SD of x - y, ddof 1) of each row pair."""
    return 2 * Z95 * (x - y).std(axis=1, ddof=1)


# A paired metric of predictions and references: its value on one (n,) pair and on each row of
# (n_boot, n) resamples. "r": Pearson r (higher is better); "loa_width": the width of the
# Bland-Altman limits of agreement, in the CP's units (lower is better); "md": the Bland-Altman
# mean difference (prediction - reference), in the CP's units (closer to 0 is better).
PAIRED_METRICS = {
    "r": (lambda x, y: float(np.corrcoef(x, y)[0, 1]), _rowwise_r),
    "loa_width": (lambda x, y: float(_rowwise_loa_width(x[None], y[None])[0]), _rowwise_loa_width),
    "md": (lambda x, y: float((x - y).mean()), lambda x, y: (x - y).mean(axis=1)),
}


def paired_differences(
    predictions: Mapping[str, pd.DataFrame],
    baseline: str,
    cps: Sequence[str],
    split: str = "test",
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    metric: str = "r",
) -> pd.DataFrame:
    """Difference in `metric` (method - `baseline`; Pearson r by default, see `PAIRED_METRICS`)
    per method, CP and fraction, with a paired bootstrap CI over subjects: each resample of
    subjects is shared by both methods and by every seed, and the difference is that of the
    seed-mean metric, as Table 2 and Fig. 3 average seeds. The columns `<metric>` and
    `<metric>_baseline` hold the two seed means. A difference whose CI contains 0 is no evidence
    of a difference."""
    if metric not in PAIRED_METRICS:
        raise ValueError(
            f"unknown paired metric {metric!r}; expected one of {sorted(PAIRED_METRICS)}"
        )
    point, rowwise = PAIRED_METRICS[metric]
    if baseline not in predictions:
        raise KeyError(f"baseline {baseline!r} has no predictions; have {sorted(predictions)}")
    rng_seed = np.random.SeedSequence(seed)
    base = predictions[baseline]
    base = base[base["split"] == split]
    rows = []
    for method, frame in predictions.items():
        if method == baseline:
            continue
        frame = frame[frame["split"] == split]
        for fraction in sorted(set(frame["fraction"]) & set(base["fraction"])):
            a = frame[np.isclose(frame["fraction"], fraction)]
            b = base[np.isclose(base["fraction"], fraction)]
            seeds = sorted(set(a["seed"]) & set(b["seed"]))
            ids = sorted(set(a["id"]) & set(b["id"]))
            if not seeds or len(ids) < 3:
                continue
            rng = np.random.default_rng(rng_seed.spawn(1)[0])
            resample = rng.integers(0, len(ids), size=(n_bootstrap, len(ids)))
            for cp in cps:
                value_a, value_b, boot = [], [], np.zeros(n_bootstrap)
                for s in seeds:
                    pa = a[a["seed"] == s].set_index("id").loc[ids]
                    pb = b[b["seed"] == s].set_index("id").loc[ids]
                    ref = pa[f"{cp}_ref"].to_numpy(float)
                    xa, xb = pa[f"{cp}_pred"].to_numpy(float), pb[f"{cp}_pred"].to_numpy(float)
                    value_a.append(point(xa, ref))
                    value_b.append(point(xb, ref))
                    boot += rowwise(xa[resample], ref[resample]) - rowwise(
                        xb[resample], ref[resample]
                    )
                boot /= len(seeds)
                alpha = (1 - confidence) / 2
                low, high = np.nanquantile(boot, [alpha, 1 - alpha])
                rows.append({"method": method, "baseline": baseline, "fraction": float(fraction),
                             "cp": cp, metric: float(np.mean(value_a)),
                             f"{metric}_baseline": float(np.mean(value_b)),
                             "difference": float(np.mean(value_a) - np.mean(value_b)),
                             "ci_low": float(low), "ci_high": float(high),
                             "n_test": len(ids), "n_seeds": len(seeds),
                             "n_bootstrap": n_bootstrap})  # fmt: skip
    return pd.DataFrame(rows)


def yardstick_differences(
    predictions: Mapping[str, pd.DataFrame],
    modalities: Mapping[str, str],
    references: Mapping[str, pd.DataFrame],
    cps: Sequence[str],
    split: str = "test",
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each method against the reference baseline of its input modality (`references` maps
    "ref_<modality>", e.g. "ref_localizer", to that baseline's predictions): `paired_differences`
    per modality, so the baseline column names the reference each row is measured from. Methods
    whose modality has no reference are left out."""
    unknown = sorted(set(predictions) - set(modalities))
    if unknown:
        raise KeyError(f"no input modality given for method(s) {unknown}")
    frames = []
    for modality in dict.fromkeys(modalities[m] for m in predictions):
        reference = f"ref_{modality}"
        if reference not in references:
            continue
        group = {m: f for m, f in predictions.items() if modalities[m] == modality}
        frames.append(paired_differences({**group, reference: references[reference]}, reference,
                                         cps, split, n_bootstrap, seed))  # fmt: skip
    columns = ["method", "baseline", "fraction", "cp", "r", "r_baseline", "difference"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def standard_cnn_differences(
    predictions: Mapping[str, pd.DataFrame],
    modalities: Mapping[str, str],
    references: Mapping[str, pd.DataFrame],
    standard: pd.DataFrame | None,
    cps: Sequence[str],
    split: str = "test",
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Table 3d: every localizer method and the cheap localizer CNN ("ref_localizer" of
    `references`, where present) against the standard small CNN's predictions `standard`
    (baseline "standard_localizer"), by `paired_differences`: at the fractions and seeds the
    standard CNN was trained for. Without `standard`, an empty table with the same columns."""
    columns = ["method", "baseline", "fraction", "cp", "r", "r_baseline", "difference",
               "ci_low", "ci_high"]  # fmt: skip
    if standard is None:
        return pd.DataFrame(columns=columns)
    rows = {m: f for m, f in predictions.items() if modalities[m] == "localizer"}
    if "ref_localizer" in references:
        rows["ref_localizer"] = references["ref_localizer"]
    return paired_differences({**rows, "standard_localizer": standard}, "standard_localizer", cps,
                              split, n_bootstrap, seed)  # fmt: skip


# ------------------------------------------------------------------ formatting for the book
# The notebooks render their tables and readings with these and glue them (myst-nb `glue`);
# the chapters paste them by key.


def cohort_markdown(manifest: Mapping, splits: pd.Series) -> str:
    """What the data card says of the cohort a book ran on: its size per split, its modalities,
    and where it came from (simulated, with the simulator's seed, or imported, with the source
    its manifest records), so no page calls an imported cohort simulated."""
    counts = splits.value_counts()
    per_split = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "val", "test"))
    modalities = [
        *(manifest.get("arrays") or {}),
        *(["tabular"] if manifest.get("tabular_variants") else []),
    ]
    source = manifest.get("source") or "not recorded"
    if source == "synthetic":
        recipe = manifest.get("recipe") or {}
        origin = f"simulated by `ctrip.data.synth` (seed {recipe.get('seed', 'not recorded')})"
    else:
        origin = f"imported (source recorded in its manifest: {source})"
    return (f"This book's cohort: {int(counts.sum())} subjects ({per_split}), modalities "
            f"{', '.join(modalities)}; {origin}.\n")  # fmt: skip
