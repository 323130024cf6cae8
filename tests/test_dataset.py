"""The PyTorch Dataset and LightningDataModule over a cohort."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ctrip.data.cohort import Cohort
from ctrip.data.dataset import CohortDataset, NormalizationStats
from ctrip.data.schema import CP_NAMES


def test_items_have_the_contracted_shapes_and_dtypes(tiny_cohort: Path) -> None:
    ds = CohortDataset(tiny_cohort, modalities=("localizer", "cmr", "ecg", "tabular"), split="val")
    item = ds[0]
    assert item["localizer"].shape == (3, 16, 16) and item["localizer"].dtype == torch.float32
    assert item["cmr"].shape == (3, 16, 16)
    assert item["ecg"].shape == (12, 200) and item["ecg"].dtype == torch.float32
    assert item["tab_num"].shape == (5,) and item["tab_num"].dtype == torch.float32
    assert item["tab_num_missing"].dtype == torch.bool
    assert item["tab_cat"].shape == (2,) and item["tab_cat"].dtype == torch.int64
    assert item["targets"].shape == (18,) and item["targets_raw"].shape == (18,)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["ecg"].shape == (4, 12, 200) and len(batch["id"]) == 4


def test_items_match_the_files(tiny_cohort: Path) -> None:
    cohort = Cohort.open(tiny_cohort)
    ds = CohortDataset(cohort, modalities=("ecg",), split="test")
    item = ds[3]
    row = item["index"]
    assert cohort.table["id"].iloc[row] == item["id"]
    np.testing.assert_array_equal(item["ecg"].numpy(), np.load(tiny_cohort / "ecg.npy")[row])
    np.testing.assert_allclose(
        item["targets_raw"].numpy(), cohort.table[CP_NAMES].iloc[row].to_numpy(np.float32)
    )


def test_arrays_stay_memory_mapped_and_pickle_small(tiny_cohort: Path) -> None:
    ds = CohortDataset(tiny_cohort, modalities=("localizer", "ecg"), split="train")
    ds[0]
    assert isinstance(ds._arrays["ecg"], np.memmap)
    assert not hasattr(ds, "ecg")  # nothing loaded whole
    # a pickled dataset (as sent to DataLoader workers) carries paths, not array data
    assert len(pickle.dumps(ds)) < np.load(tiny_cohort / "ecg.npy").nbytes


def test_stats_come_from_the_training_split_only(tiny_cohort: Path) -> None:
    cohort = Cohort.open(tiny_cohort)
    stats = NormalizationStats.fit(cohort)
    train = cohort.table[cohort.table["split"] == "train"]
    np.testing.assert_allclose(stats.target_mean, train[CP_NAMES].mean().to_numpy())
    np.testing.assert_allclose(stats.tab_mean[0], train["age"].mean())
    # changing validation and test subjects leaves the statistics unchanged
    cohort.table.loc[cohort.table["split"] != "train", CP_NAMES] = 1e6
    assert NormalizationStats.fit(cohort).target_mean == stats.target_mean


def test_training_targets_are_z_scored_and_round_trip(tiny_cohort: Path) -> None:
    ds = CohortDataset(tiny_cohort, modalities=("tabular",), split="train")
    z = ds.targets
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.stats.denormalize_targets(z), ds.targets_raw, rtol=1e-5)


def test_missing_tabular_values_are_masked(tiny_cohort: Path) -> None:
    ds = CohortDataset(tiny_cohort, modalities=("tabular",), split="train")
    num, num_missing, cat, cat_missing = ds.tabular
    assert num_missing.any() and (num[num_missing] == 0).all()
    assert cat_missing.any() and (cat[cat_missing] == 0).all()
    table = Cohort.open(tiny_cohort).table.iloc[ds.rows]
    assert np.array_equal(num_missing[:, 4], table["heart_rate"].isna().to_numpy())


def test_stats_round_trip_through_json(tiny_cohort: Path, tmp_path: Path) -> None:
    stats = NormalizationStats.fit(Cohort.open(tiny_cohort), "Tp")
    stats.to_json(tmp_path / "stats.json")
    assert NormalizationStats.from_json(tmp_path / "stats.json") == stats
    assert "LVEF" in stats.numerical and stats.cardinalities == [2, 3]


def test_fraction_selects_the_nested_subset(tiny_cohort: Path) -> None:
    full = CohortDataset(tiny_cohort, modalities=("cmr",), split="train")
    half = CohortDataset(tiny_cohort, modalities=("cmr",), split="train", fraction=0.5)
    assert len(half) == round(0.5 * len(full))
    assert set(half.ids) <= set(full.ids)
    with pytest.raises(ValueError, match="training split"):
        CohortDataset(tiny_cohort, modalities=("cmr",), split="val", fraction=0.5)


def test_bad_requests_are_named(tiny_cohort: Path) -> None:
    with pytest.raises(ValueError, match="unknown modalities"):
        CohortDataset(tiny_cohort, modalities=("mri",))
    with pytest.raises(ValueError, match="unknown split"):
        CohortDataset(tiny_cohort, split="dev")


def test_datamodule_loaders(tiny_cohort: Path) -> None:
    from ctrip.data.datamodule import CohortDataModule

    dm = CohortDataModule(
        tiny_cohort, modalities=("localizer", "tabular"), batch_size=8, fraction=0.5
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["localizer"].shape == (8, 3, 16, 16)
    assert (
        sum(len(b["id"]) for b in dm.val_dataloader())
        == (pd.read_parquet(tiny_cohort / "subjects.parquet")["split"] == "val").sum()
    )
    ids_a = [i for b in dm.train_dataloader() for i in b["id"]]
    dm2 = CohortDataModule(
        tiny_cohort, modalities=("localizer", "tabular"), batch_size=8, fraction=0.5
    )
    dm2.setup()
    assert ids_a == [i for b in dm2.train_dataloader() for i in b["id"]]  # seeded shuffling
    assert dm.stats is not None and len(dm.stats.target_mean) == 18
