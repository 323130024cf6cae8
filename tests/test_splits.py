"""Subject-level splits and nested fine-tuning fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctrip.data.splits import assign_splits, nested_fractions, strata
from tests.factories import tiny_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    table = tiny_table(2000, seed=3)
    table["split"] = assign_splits(table, seed=11)
    return table


def test_splits_partition_the_subjects(table: pd.DataFrame) -> None:
    counts = table["split"].value_counts()
    assert counts.sum() == len(table)
    assert (counts["train"], counts["val"], counts["test"]) == (1400, 300, 300)
    # each subject has exactly one split
    assert table.groupby("id")["split"].nunique().max() == 1


def test_splits_are_demographically_balanced(table: pd.DataFrame) -> None:
    share = pd.crosstab(strata(table), table["split"], normalize="index")
    # every sex x age-band stratum is split ~70/15/15 (to within one subject per stratum)
    sizes = strata(table).value_counts()
    tolerance = 1.0 / sizes.min() + 1e-9
    assert np.all(np.abs(share["train"] - 0.70) <= tolerance)
    assert np.all(np.abs(share["test"] - 0.15) <= tolerance)
    for column in ("age", "height"):
        means = table.groupby("split")[column].mean()
        assert means.max() - means.min() < 0.1 * table[column].std()


def test_splits_are_reproducible_from_the_seed(table: pd.DataFrame) -> None:
    again = assign_splits(table.drop(columns="split"), seed=11)
    assert (again == table["split"]).all()
    other = assign_splits(table.drop(columns="split"), seed=12)
    assert (other != table["split"]).any()


def test_split_fractions_are_checked(table: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        assign_splits(table, seed=0, fractions=(0.5, 0.2, 0.2))


def test_fractions_are_nested_and_inside_train(table: pd.DataFrame) -> None:
    subsets = nested_fractions(table, [0.01, 0.1, 0.5, 1.0], seed=5)
    assert [len(subsets[f]) for f in (0.01, 0.1, 0.5, 1.0)] == [14, 140, 700, 1400]
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[0.5]) <= set(subsets[1.0])
    assert (table["split"].to_numpy()[subsets[1.0]] == "train").all()


def test_a_fraction_does_not_depend_on_the_list_it_is_asked_with(table: pd.DataFrame) -> None:
    alone = nested_fractions(table, [0.1], seed=5)[0.1]
    in_list = nested_fractions(table, [0.01, 0.1, 1.0], seed=5)[0.1]
    assert np.array_equal(alone, in_list)
    assert not np.array_equal(alone, nested_fractions(table, [0.1], seed=6)[0.1])


def test_fractions_are_stratified(table: pd.DataFrame) -> None:
    train = table[table["split"] == "train"]
    subset = table.iloc[nested_fractions(table, [0.1], seed=5)[0.1]]
    full_share = strata(train).value_counts(normalize=True)
    sub_counts = strata(subset).value_counts().reindex(full_share.index, fill_value=0)
    # each stratum within one subject of its proportional count
    assert np.all(np.abs(sub_counts - full_share * len(subset)) <= 1.0 + 1e-9)


def test_tiny_fractions_keep_at_least_one_subject(table: pd.DataFrame) -> None:
    assert len(nested_fractions(table, [1e-6], seed=0)[1e-6]) == 1
    with pytest.raises(ValueError):
        nested_fractions(table, [0.0], seed=0)
    with pytest.raises(ValueError):
        nested_fractions(table, [1.5], seed=0)
