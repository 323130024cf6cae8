"""An ablation against the run it varies: paired differences of test r and MD, and their reading.

An ablation (`ctrip run --ablation NAME`) trains again only the runs its change reaches, on the
same cohort, splits, fractions and seeds as its base. The Stage III predictions of a method in
the two results folders are therefore paired: the same test subjects and seeds. Each difference
(ablation - base) of a seed-mean metric gets a bootstrap CI that resamples test subjects, one
resample shared by both runs and every seed (`ctrip.analysis.report.paired_differences`). A
difference whose CI contains 0 is reported as no difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ctrip.analysis.report import paired_differences, pearson_vs_fraction, per_seed_metrics

# The metrics compared: Pearson r of prediction and reference, and the Bland-Altman mean
# difference (prediction - reference, in the CP's units).
METRICS = ("r", "md")


def ablation_differences(
    base: Mapping[str, pd.DataFrame],
    ablation: Mapping[str, pd.DataFrame],
    cps: Sequence[str],
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method (in both), metric, fraction and CP: the seed-mean test metric of the base and
    of the ablation, their difference (ablation - base) and its paired bootstrap CI."""
    missing = sorted(set(ablation) - set(base))
    if missing:
        raise KeyError(f"the base has no predictions of {missing}")
    frames = []
    for method, predictions in ablation.items():
        pair = {"ablation": predictions, "base": base[method]}
        for metric in METRICS:
            d = paired_differences(pair, "base", cps, n_bootstrap=n_bootstrap, seed=seed,
                                   metric=metric)  # fmt: skip
            if d.empty:
                raise ValueError(f"method {method}: the base and the ablation share no test "
                                 "subjects, fractions and seeds")  # fmt: skip
            d = d.rename(columns={metric: "ablation", f"{metric}_baseline": "base"})
            frames.append(d.drop(columns=["baseline"]).assign(method=method, metric=metric))
    out = pd.concat(frames, ignore_index=True)
    columns = ["method", "metric", "fraction", "cp", "base", "ablation", "difference", "ci_low",
               "ci_high", "n_test", "n_seeds", "n_bootstrap"]  # fmt: skip
    return out[columns]


def fraction_curves(
    base: Mapping[str, pd.DataFrame],
    ablation: Mapping[str, pd.DataFrame],
    labels: Mapping[str, str],
    name: str,
    cps: Sequence[str],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Both runs' test r against the data fraction (`pearson_vs_fraction`), each method once as
    "<method> (base)" and once as "<method> (<name>)", with the labels of those rows."""
    rows, row_labels = {}, {}
    for method in ablation:
        for which, predictions in (("base", base[method]), (name, ablation[method])):
            rows[f"{method} ({which})"] = predictions
            row_labels[f"{method} ({which})"] = f"{labels.get(method, method)} ({which})"
    curves = pearson_vs_fraction(per_seed_metrics(rows, cps, fraction=None))
    return curves, row_labels


def is_difference(row: pd.Series) -> bool:
    """Whether a difference's CI excludes 0 (a CI that contains 0 is no difference)."""
    return bool(row["ci_low"] > 0 or row["ci_high"] < 0)


def _number(x: float, metric: str) -> str:
    return f"{x:+.3f}" if metric == "r" else f"{x:+.3g}"


def ablation_reading(
    differences: pd.DataFrame, labels: Mapping[str, str], name: str, fraction: float
) -> list[str]:
    """One sentence per method at `fraction`, stated from the numbers: the (method, metric, CP)
    whose CI excludes 0, and how many do not."""
    part = differences[np.isclose(differences["fraction"], fraction)]
    sentences = []
    for method, rows in part.groupby("method", sort=False):
        found = [
            f"{row['cp']} {'r' if row['metric'] == 'r' else 'MD'} "
            f"{_number(row['difference'], row['metric'])} "
            f"(95% CI {_number(row['ci_low'], row['metric'])} to "
            f"{_number(row['ci_high'], row['metric'])})"
            for _, row in rows.iterrows()
            if is_difference(row)
        ]
        label = labels.get(method, method)
        n_none = len(rows) - len(found)
        head = f"{label} at {fraction:.0%} of the training data, {name} minus base: "
        if not found:
            sentences.append(
                head + f"no difference in test r or MD on any of the {len(rows)} comparisons "
                "(every 95% CI contains 0)."
            )
        else:
            sentences.append(
                head + "; ".join(found) + f"; no difference in the other {n_none} "
                "(their 95% CI contains 0)."
            )
    return sentences


def ablation_summary(differences: Mapping[str, pd.DataFrame], fraction: float) -> pd.DataFrame:
    """One row per ablation: how many (method, metric, CP) comparisons at `fraction` it made,
    and how many of them show a difference up or down (CI excluding 0)."""
    rows = []
    for name, d in differences.items():
        part = d[np.isclose(d["fraction"], fraction)]
        up = int((part["ci_low"] > 0).sum())
        down = int((part["ci_high"] < 0).sum())
        rows.append({"ablation": name, "methods": ", ".join(dict.fromkeys(part["method"])),
                     "comparisons": len(part), "higher": up, "lower": down,
                     "no_difference": len(part) - up - down})  # fmt: skip
    return pd.DataFrame(rows)
