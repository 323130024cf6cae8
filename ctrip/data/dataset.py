"""PyTorch access to a cohort: any set of modalities, any split, any fine-tuning fraction.

Arrays stay memory-mapped: each item reads one subject's rows from disk. Tabular features and
targets are normalized with statistics of the training split only (`NormalizationStats`),
which are saved with every run so that a prediction can be turned back into millilitres.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ctrip.data.cohort import Cohort
from ctrip.data.schema import ARRAY_MODALITIES, CP_NAMES, MODALITIES, SPLITS
from ctrip.data.splits import nested_fractions


@dataclass
class NormalizationStats:
    """Means and SDs from the training split, for tabular numerical features and the 18 CPs."""

    tabular_variant: str
    numerical: list[str]
    categorical: dict[str, list[str]]
    tab_mean: list[float]
    tab_std: list[float]
    target_mean: list[float]
    target_std: list[float]
    targets: list[str]

    @classmethod
    def fit(cls, cohort: Cohort, tabular_variant: str = "T") -> NormalizationStats:
        train = cohort.table[cohort.table["split"] == "train"]
        if len(train) == 0:
            raise ValueError(f"{cohort.path}: no subject in the training split")
        has_tabular = tabular_variant in cohort.manifest.get("tabular_variants", {})
        spec = cohort.tabular_spec(tabular_variant) if has_tabular else None
        numerical = spec.numerical if spec else []
        tab = train[numerical].to_numpy(dtype=np.float64)
        targets = train[CP_NAMES].to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            tab_mean = np.nan_to_num(np.nanmean(tab, axis=0)) if numerical else np.zeros(0)
            tab_std = np.nanstd(tab, axis=0) if numerical else np.zeros(0)
        return cls(
            tabular_variant=tabular_variant,
            numerical=list(numerical),
            categorical=dict(spec.categorical) if spec else {},
            tab_mean=tab_mean.tolist(),
            tab_std=_safe_std(tab_std).tolist(),
            target_mean=targets.mean(axis=0).tolist(),
            target_std=_safe_std(targets.std(axis=0)).tolist(),
            targets=list(CP_NAMES),
        )

    @property
    def cardinalities(self) -> list[int]:
        return [len(levels) for levels in self.categorical.values()]

    def normalize_targets(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.target_mean)) / np.asarray(self.target_std)

    def denormalize_targets(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Z-scored predictions back to CP units."""
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
        return z * np.asarray(self.target_std) + np.asarray(self.target_mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NormalizationStats:
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> NormalizationStats:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _safe_std(std: np.ndarray) -> np.ndarray:
    """Standard deviations with zeros and NaNs (constant or empty columns) replaced by 1."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(np.isfinite(std) & (std > 0), std, 1.0)


def encode_tabular(
    table_rows: Any, stats: NormalizationStats
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Numerical features z-scored (missing -> 0) with their missing mask, categorical codes
    (missing -> 0) with theirs. `table_rows` is a DataFrame holding the variant's columns."""
    num = table_rows[stats.numerical].to_numpy(dtype=np.float64) if stats.numerical else None
    n = len(table_rows)
    if num is None:
        num = np.zeros((n, 0))
    num_missing = ~np.isfinite(num)
    num_z = (num - np.asarray(stats.tab_mean)) / np.asarray(stats.tab_std) if num.size else num
    num_z = np.where(num_missing, 0.0, num_z).astype(np.float32)
    cat = np.zeros((n, len(stats.categorical)), dtype=np.int64)
    cat_missing = np.zeros((n, len(stats.categorical)), dtype=bool)
    for j, (column, levels) in enumerate(stats.categorical.items()):
        values = table_rows[column].astype("string")
        cat_missing[:, j] = values.isna().to_numpy()
        lookup = {level: k for k, level in enumerate(levels)}
        cat[:, j] = [0 if missing else lookup[v] for v, missing in zip(values, cat_missing[:, j])]
    return num_z, num_missing, cat, cat_missing


class CohortDataset(Dataset):
    """One item per subject of `split` (optionally a nested fraction of the training split).

    Items are dicts: "index", "id", one float32 tensor per requested array modality
    ("localizer"/"cmr" (3, H, W), "ecg" (12, T) in mV), the tabular tensors "tab_num",
    "tab_num_missing", "tab_cat", "tab_cat_missing" when "tabular" is requested, and always
    "targets" (18 z-scored CPs) and "targets_raw" (CP units).
    """

    def __init__(
        self,
        cohort: Cohort | str | Path,
        modalities: Sequence[str] = ("localizer",),
        split: str = "train",
        fraction: float | None = None,
        fraction_seed: int = 0,
        stats: NormalizationStats | None = None,
        tabular_variant: str = "T",
    ) -> None:
        cohort = cohort if isinstance(cohort, Cohort) else Cohort.open(cohort)
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; expected some of {MODALITIES}")
        absent = [m for m in modalities if m not in cohort.modalities]
        if absent:
            raise ValueError(
                f"{cohort.path}: the cohort has no {absent} (it has {cohort.modalities})"
            )
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if fraction is not None and split != "train":
            raise ValueError("fine-tuning fractions are subsets of the training split only")
        self.modalities = tuple(modalities)
        self.split = split
        self.stats = stats or NormalizationStats.fit(cohort, tabular_variant)
        table = cohort.table
        if fraction is None or float(fraction) == 1.0:
            rows = np.flatnonzero(table["split"].to_numpy() == split)
        else:
            rows = nested_fractions(table, [fraction], fraction_seed)[float(fraction)]
        self.rows = rows
        self.ids = table["id"].iloc[rows].astype(str).tolist()
        selected = table.iloc[rows]
        raw = selected[CP_NAMES].to_numpy(dtype=np.float64)
        self.targets_raw = raw.astype(np.float32)
        self.targets = self.stats.normalize_targets(raw).astype(np.float32)
        if "tabular" in self.modalities:
            self.tabular = encode_tabular(selected, self.stats)
        self._array_paths = {
            m: cohort.array_path(m) for m in self.modalities if m in ARRAY_MODALITIES
        }
        self._arrays: dict[str, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _array(self, name: str) -> np.memmap:
        # Opened lazily in each worker process: a pickled memmap would copy the whole array.
        if name not in self._arrays:
            self._arrays[name] = np.load(self._array_paths[name], mmap_mode="r")
        return self._arrays[name]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        item: dict[str, Any] = {"index": row, "id": self.ids[i]}
        for name in self._array_paths:
            item[name] = torch.from_numpy(np.array(self._array(name)[row], dtype=np.float32))
        if "tabular" in self.modalities:
            num, num_missing, cat, cat_missing = self.tabular
            item["tab_num"] = torch.from_numpy(num[i])
            item["tab_num_missing"] = torch.from_numpy(num_missing[i])
            item["tab_cat"] = torch.from_numpy(cat[i])
            item["tab_cat_missing"] = torch.from_numpy(cat_missing[i])
        item["targets"] = torch.from_numpy(self.targets[i])
        item["targets_raw"] = torch.from_numpy(self.targets_raw[i])
        return item
