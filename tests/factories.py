"""Tiny, valid cohorts written with the project's own writer, for tests of every area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctrip.data.cohort import with_consistent_chambers, write_cohort
from ctrip.data.plausibility import CP_RANGES
from ctrip.data.schema import CP_NAMES

TABULAR_VARIANTS = {
    "T": {
        "numerical": ["age", "height", "weight", "bmi", "heart_rate"],
        "categorical": {"sex": ["female", "male"], "smoking": ["never", "previous", "current"]},
    },
    "Tp": {
        "numerical": ["age", "height", "weight", "bmi", "heart_rate", *CP_NAMES],
        "categorical": {"sex": ["female", "male"], "smoking": ["never", "previous", "current"]},
        "leaking": True,
    },
}


def tiny_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A random subjects table with every required column (not physiological: shapes only)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "id": [f"S{i:04d}" for i in range(n)],
            "sex": rng.choice(["female", "male"], n),
            "age": rng.uniform(45, 82, n).round(1),
            "height": rng.normal(168, 9, n),
            "weight": rng.normal(78, 14, n),
            "heart_rate": rng.normal(70, 10, n),
            "smoking": pd.array(rng.choice(["never", "previous", "current"], n), dtype="string"),
        }
    )
    table["bmi"] = table["weight"] / (table["height"] / 100) ** 2
    table.loc[rng.uniform(size=n) < 0.1, "heart_rate"] = np.nan
    table.loc[rng.uniform(size=n) < 0.1, "smoking"] = pd.NA
    for j, cp in enumerate(CP_NAMES):
        table[cp] = np.clip(rng.normal(50 + 5 * j, 10, n), *CP_RANGES[cp].plausible)
    # Percentages and cardiac output within their plausible ranges (ctrip.data.plausibility).
    for cp in ("LVEF", "RVEF", "LAEF", "RAEF"):
        table[cp] = rng.uniform(35, 75, n)
    table["LVCO"] = rng.uniform(3, 8, n)
    return with_consistent_chambers(table)


def tiny_arrays(n: int, seed: int = 0, image: int = 16, ecg_t: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "localizer": rng.uniform(size=(n, 3, image, image)).astype(np.float32),
        "cmr": rng.uniform(size=(n, 3, image, image)).astype(np.float32),
        "ecg": rng.normal(size=(n, 12, ecg_t)).astype(np.float32),
    }


def make_tiny_cohort(path: Path, n: int = 40, seed: int = 0, **kwargs) -> Path:
    return write_cohort(
        path,
        tiny_table(n, seed),
        tiny_arrays(n, seed),
        source="test",
        recipe={"generator": "tests/conftest.py", "seed": seed, "split_seed": seed},
        tabular_variants=TABULAR_VARIANTS,
        ecg_sampling_rate_hz=20.0,
        **kwargs,
    )


def train_tiny_localizer_model(root: Path) -> tuple[Path, Path]:
    """A Stage III localizer checkpoint trained for one epoch on a tiny cohort (seconds), and
    that cohort: (checkpoint, cohort folder), both under `root`."""
    from ctrip.config import make_config
    from ctrip.stages.train import run_stage3

    cohort = make_tiny_cohort(root / "cohort", n=24)
    config = make_config(
        "smoke",
        {"models": {"localizer": {"patch_size": 8}}, "stage3": {"max_epochs": 1, "batch_size": 8},
         "trainer": {"enable_progress_bar": False, "accelerator": "cpu"}},
    )  # fmt: skip
    return run_stage3(cohort, "localizer", None, config, root / "run").checkpoint, cohort
