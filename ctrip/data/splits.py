"""Subject-level splits and nested fine-tuning fractions, stratified by sex and age band.

Both come from one idea: put the subjects in a seeded, stratified order, then cut it. Within
each stratum (sex x 10-year age band) the subjects are shuffled and given evenly spaced ranks
in [0, 1) with a seeded jitter; sorting by rank interleaves the strata, so every prefix of the
order holds each stratum in proportion (to within one subject). A split is a contiguous piece
of the order; a fraction is a prefix of the training split's order, hence the 1% subset lies
inside the 10% subset, which lies inside 100%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctrip.data.schema import SPLITS

AGE_BAND_EDGES: tuple[float, ...] = (55.0, 65.0, 75.0)


def strata(table: pd.DataFrame) -> pd.Series:
    """Stratum label per subject: sex and 10-year age band (<55, 55-64, 65-74, >=75)."""
    sex = table["sex"].astype("string").fillna("unknown")
    age = pd.to_numeric(table["age"], errors="coerce").to_numpy(dtype=float)
    band = np.digitize(age, AGE_BAND_EDGES)
    band_label = np.where(np.isnan(age), "age?", np.char.add("age", band.astype(str)))
    return pd.Series(sex.to_numpy(dtype=str), index=table.index) + "|" + band_label


def stratified_order(table: pd.DataFrame, seed: int) -> np.ndarray:
    """Row positions of `table` in a seeded order whose every prefix is stratified."""
    rng = np.random.default_rng(seed)
    labels = strata(table).to_numpy()
    rank = np.empty(len(table))
    for label in sorted(set(labels)):
        rows = np.flatnonzero(labels == label)
        shuffled = rows[rng.permutation(len(rows))]
        rank[shuffled] = (np.arange(len(rows)) + rng.uniform(size=len(rows))) / len(rows)
    return np.argsort(rank, kind="stable")


def assign_splits(
    table: pd.DataFrame, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> pd.Series:
    """Train/val/test label per subject, demographically balanced, reproducible from `seed`."""
    if len(fractions) != len(SPLITS) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three numbers summing to 1, got {fractions}")
    order = stratified_order(table, seed)
    bounds = np.round(np.cumsum(fractions) * len(table)).astype(int)
    labels = np.empty(len(table), dtype=object)
    start = 0
    for name, stop in zip(SPLITS, bounds):
        labels[order[start:stop]] = name
        start = stop
    return pd.Series(labels, index=table.index, name="split", dtype="string")


def nested_fractions(
    table: pd.DataFrame, fractions: Sequence[float], seed: int
) -> dict[float, np.ndarray]:
    """Row positions (into `table`) of nested, stratified subsets of the training split.

    Each fraction f in (0, 1] keeps round(f * n_train) subjects (at least one); the subset of a
    smaller fraction is contained in that of any larger one, whatever list it is asked with.
    """
    train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
    if len(train_rows) == 0:
        raise ValueError("the cohort has no subject in the training split")
    order = train_rows[stratified_order(table.iloc[train_rows], seed)]
    subsets = {}
    for fraction in fractions:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"a fine-tuning fraction must lie in (0, 1], got {fraction}")
        count = max(1, int(round(float(fraction) * len(order))))
        subsets[float(fraction)] = np.sort(order[:count])
    return subsets
