"""The LightningDataModule over a cohort: train/val/test loaders for any set of modalities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ctrip.data.cohort import Cohort
from ctrip.data.dataset import CohortDataset, NormalizationStats


class CohortDataModule(L.LightningDataModule):
    """Loaders for `modalities` of `cohort` (an opened `Cohort`, or its folder).

    The training loader takes the nested `fraction` of the training split (all of it when
    None); validation and test loaders always take their whole split. Normalization statistics
    are fitted on the whole training split (not the fraction), so every fraction shares them.
    """

    def __init__(
        self,
        cohort: Cohort | str | Path,
        modalities: Sequence[str],
        batch_size: int = 64,
        fraction: float | None = None,
        fraction_seed: int = 0,
        tabular_variant: str = "T",
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.cohort = cohort if isinstance(cohort, Cohort) else Cohort.open(cohort)
        self.modalities = tuple(modalities)
        self.batch_size = batch_size
        self.fraction = fraction
        self.fraction_seed = fraction_seed
        self.tabular_variant = tabular_variant
        self.num_workers = num_workers
        self.seed = seed
        self.drop_last = drop_last
        self.stats: NormalizationStats | None = None
        self.datasets: dict[str, CohortDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        cohort = self.cohort
        self.stats = NormalizationStats.fit(cohort, self.tabular_variant)
        common = dict(
            modalities=self.modalities, stats=self.stats, tabular_variant=self.tabular_variant
        )
        self.datasets = {
            "train": CohortDataset(
                cohort,
                split="train",
                fraction=self.fraction,
                fraction_seed=self.fraction_seed,
                **common,
            ),
            "val": CohortDataset(cohort, split="val", **common),
            "test": CohortDataset(cohort, split="test", **common),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=min(self.batch_size, len(dataset)),
            shuffle=shuffle,
            drop_last=shuffle and self.drop_last and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
