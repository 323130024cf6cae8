"""Whole simulated subjects (table row, arrays, latents) and the cohort writer loop.

Each subject's randomness comes from its own streams, seeded by (seed, subject index, stream),
so a subject is the same whatever chunk or worker generates it: parallel equals serial, byte
for byte.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ctrip.data.cohort import CohortWriter
from ctrip.data.ecg import INTERVAL_COLUMNS, measure_intervals_batch
from ctrip.data.schema import CP_NAMES
from ctrip.data.synth.cine import cine_latents, render_cine
from ctrip.data.synth.ecg_model import ecg_latents, simulate_ecg
from ctrip.data.synth.localizer import localizer_latents, render_localizers_and_masks
from ctrip.data.synth.population import MISSING, sample_population, subject_rng
from ctrip.data.synth.sizes import SynthSizes

# 2: LV-mass QRS force; 3: ECG nuisance, own lead matrix per subject; 4: heart-centred localizer
# crop, slice-shift sign fixed; 5: the heart's mask on the localizer's pixels (same images)
GENERATOR_VERSION = 5
BLOCK = 32  # subjects rendered at a time inside a chunk
NUMERICAL = [
    "age", "height", "weight", "bmi", "bsa", "sbp", "dbp", "heart_rate", "basal_metabolic_rate",
    *INTERVAL_COLUMNS,
]  # fmt: skip
CATEGORICAL = {
    "sex": ["female", "male"],
    "smoking": ["never", "previous", "current"],
    "diabetes": ["no", "yes"],
    "hypertension": ["no", "yes"],
    "activity": ["low", "moderate", "high"],
}
# Share of missing values per field (ASSUMED(missing-rates), of the order seen in UK Biobank imaging-visit
# extracts: questionnaire items rarely missing, the activity questionnaire often incomplete).
MISSING_RATE = {
    ("sbp", "dbp"): 0.02, ("heart_rate",): 0.02, ("basal_metabolic_rate",): 0.03,
    ("smoking",): 0.01, ("diabetes",): 0.01, ("hypertension",): 0.01, ("activity",): 0.12,
    INTERVAL_COLUMNS: 0.01,  # ECG intervals not exported (the device adds its own NaNs)
}  # fmt: skip


def tabular_variants() -> dict:
    """Manifest entry: T (no CP, no target-leaking field) and Tp (T plus the 18 CPs, leaking)."""
    return {
        "T": {"numerical": list(NUMERICAL), "categorical": CATEGORICAL},
        "Tp": {"numerical": [*NUMERICAL, *CP_NAMES], "categorical": CATEGORICAL, "leaking": True},
    }


def subject_ids(indices: np.ndarray) -> list[str]:
    return [f"SYN{int(i):07d}" for i in indices]


def modality_renderers(seed: int, sizes: SynthSizes) -> dict:
    """{modality: render(population rows) -> ({array name: array}, latents)} of one cohort
    recipe; the localizer's renderer also gives the heart's mask ("localizer_heart")."""

    def localizer(part: pd.DataFrame) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
        images, masks, latents = render_localizers_and_masks(
            part, seed, sizes.image_size, sizes.localizer_field, sizes.localizer_fov_mm
        )
        return {"localizer": images, "localizer_heart": masks}, latents

    return {
        "localizer": localizer,
        "cmr": lambda part: _named("cmr", render_cine(part, seed, sizes.cmr_size)),
        "ecg": lambda part: _named(
            "ecg", simulate_ecg(part, seed, sizes.ecg_sampling_rate_hz, sizes.ecg_seconds)
        ),
    }


def _named(name: str, rendered: tuple) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    array, latents = rendered
    return {name: array}, latents


def generate_subjects(
    seed: int,
    indices: np.ndarray | range,
    sizes: SynthSizes,
    modalities: tuple[str, ...] = ("localizer", "cmr", "ecg"),
) -> tuple[pd.DataFrame, dict[str, np.ndarray], pd.DataFrame]:
    """Table rows, arrays and latents of the subjects `indices` (vectorized over them).

    The arrays are the modalities' and, with the localizer, the heart's masks on its pixels
    ("localizer_heart", bool). Without "ecg" in `modalities` the ECG-measured table columns
    are NaN.
    """
    indices = np.asarray(indices, dtype=np.int64)
    pop = sample_population(seed, indices)
    arrays: dict[str, np.ndarray] = {}
    latent_parts = [pop.filter(like="lat_").reset_index(drop=True)]
    for name, render in modality_renderers(seed, sizes).items():
        if name in modalities:
            # Blocks of BLOCK subjects keep the per-pixel and per-sample work in the CPU cache;
            # each subject's values do not depend on its block (chunked equals serial).
            parts = [render(pop.iloc[a : a + BLOCK]) for a in range(0, len(pop), BLOCK)]
            for key in parts[0][0]:
                arrays[key] = np.concatenate([rendered[key] for rendered, _ in parts])
            latent_parts.append(pd.concat([lat for _, lat in parts], ignore_index=True))
    if "ecg" in modalities:
        intervals = measure_intervals_batch(arrays["ecg"], sizes.ecg_sampling_rate_hz)
    else:
        intervals = pd.DataFrame(np.nan, index=range(len(pop)), columns=list(INTERVAL_COLUMNS))

    table = pop[
        ["sex", *[c for c in NUMERICAL if c in pop], *[c for c in CATEGORICAL if c != "sex"]]
    ]
    table = pd.concat([table.reset_index(drop=True), intervals], axis=1)
    covariates = table.drop(columns=list(INTERVAL_COLUMNS)).add_prefix("tab_")
    latents = pd.concat([covariates, *latent_parts], axis=1)

    draws = [subject_rng(seed, i, MISSING).random(len(MISSING_RATE)) for i in indices]
    missing = np.array(draws).reshape(len(indices), len(MISSING_RATE))
    table = table.astype({c: object for c in CATEGORICAL if c != "sex"})
    for k, (columns, rate) in enumerate(MISSING_RATE.items()):
        table.loc[missing[:, k] < rate, list(columns)] = np.nan
    for c in CATEGORICAL:
        if c != "sex":
            table[c] = table[c].where(table[c].notna(), None)
    ids = subject_ids(indices)
    table.insert(0, "id", ids)
    for cp in CP_NAMES:
        table[cp] = pop[cp].to_numpy()
    latents.insert(0, "id", ids)
    return table, arrays, latents


def reference_subjects(
    seed: int, indices: np.ndarray | range, sizes: dict | SynthSizes
) -> pd.DataFrame:
    """Population, CPs and the latents of every modality of subjects `indices`, block by block,
    without the images and the ECG signal (for oracle ceilings): the same latents as
    `generate_subjects` gives, at a third of its cost (`benchmarks/bench_synth.py`)."""
    sizes = sizes if isinstance(sizes, SynthSizes) else SynthSizes(**sizes)
    indices = np.asarray(indices, dtype=np.int64)
    parts = []
    for a in range(0, len(indices), BLOCK):
        pop = sample_population(seed, indices[a : a + BLOCK])
        table = pop[[c for c in pop.columns if not c.startswith("lat_")]].drop(columns=CP_NAMES)
        parts.append(pd.concat([
            table.add_prefix("tab_"), pop.reset_index(drop=True),
            localizer_latents(
                pop, seed, sizes.image_size, sizes.localizer_field, sizes.localizer_fov_mm
            ),
            cine_latents(pop, seed),
            ecg_latents(pop, seed, sizes.ecg_sampling_rate_hz),
        ], axis=1))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _chunk(args: tuple) -> tuple[int, pd.DataFrame, dict[str, np.ndarray], pd.DataFrame]:
    seed, start, stop, sizes, modalities = args
    return (start, *generate_subjects(seed, range(start, stop), sizes, modalities))


def synthesize_cohort(
    out_dir: str | Path,
    n_subjects: int,
    seed: int,
    sizes: SynthSizes | None = None,
    workers: int = 1,
    progress: bool = True,
    chunk_size: int = 128,
    overwrite: bool = False,
) -> Path:
    """Simulate `n_subjects` and write them as a validated cohort at `out_dir`."""
    if n_subjects < 3:
        raise ValueError(f"a cohort needs at least 3 subjects (one per split), got {n_subjects}")
    sizes = sizes or SynthSizes.for_profile("default")
    modalities = ("localizer", "cmr", "ecg")
    writer = CohortWriter(out_dir, n_subjects, overwrite=overwrite)
    targets = {
        "localizer": writer.array("localizer", (3, sizes.image_size, sizes.image_size)),
        "cmr": writer.array("cmr", (3, sizes.cmr_size, sizes.cmr_size)),
        "ecg": writer.array("ecg", (12, sizes.ecg_samples)),
        "localizer_heart": writer.mask("localizer_heart"),
    }
    jobs = [
        (seed, start, min(start + chunk_size, n_subjects), sizes, modalities)
        for start in range(0, n_subjects, chunk_size)
    ]
    tables, latents = {}, {}
    bar = tqdm(total=n_subjects, desc="simulating subjects", unit="subj", disable=not progress)

    def collect(result):
        start, table, arrays, lat = result
        for name, values in arrays.items():
            targets[name][start : start + len(table)] = values
        tables[start], latents[start] = table, lat
        bar.update(len(table))

    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_chunk, jobs):
                collect(result)
    else:
        for job in jobs:
            collect(_chunk(job))
    bar.close()
    table = pd.concat([tables[k] for k in sorted(tables)], ignore_index=True)
    latent_table = pd.concat([latents[k] for k in sorted(latents)], ignore_index=True)
    recipe = {
        "generator": "ctrip.data.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "split_seed": int(seed),
        "n_subjects": int(n_subjects),
        "sizes": sizes.to_dict(),
        "localizer": {
            "field": sizes.localizer_field,
            "field_of_view_mm": sizes.localizer_mm_per_pixel * sizes.image_size,
            "mm_per_pixel": sizes.localizer_mm_per_pixel,
        },
    }
    return writer.finish(
        table,
        source="synthetic",
        recipe=recipe,
        tabular_variants=tabular_variants(),
        ecg_sampling_rate_hz=sizes.ecg_sampling_rate_hz,
        extras={"latents": latent_table},
        split_seed=int(seed),
    )
