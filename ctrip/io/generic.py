"""Import any cohort laid out in standard formats: one folder per subject plus a CSV table.

    root/
      subjects.csv                 id, sex, age, height, weight, [split], features..., the 18 CPs
      <id>/localizer/              a DICOM series (folder), or localizer.zip / .dcm / .nii(.gz) / .npy
      <id>/cmr/                    a DICOM cine (folder), or cmr.zip / .nii(.gz) (4D: X, Y, Z, T) / .npy
      <id>/ecg.xml | ecg.hea | ecg.dcm   CardioSoft XML, WFDB record (ecg.hea + ecg.dat), DICOM waveform
      <id>/localizer_mask.nii.gz|.npy    optional heart mask (same shape as the localizer)
      <id>/cmr_mask.nii.gz|.npy          optional cine mask (LV blood pool = label 1)

Sex is "female"/"male" (or F/M). Tabular inputs are every other column except the CPs and any
column that would leak them (by name or UK Biobank field id); numeric columns are numerical,
others categorical, unless `categorical` names columns explicitly. A `split` column, when
present, is kept as the subject-level split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrip import __version__
from ctrip.data.cohort import CohortError
from ctrip.data.manifests import leak_reason
from ctrip.data.schema import CP_NAMES
from ctrip.io.ecg import ECG_SUFFIXES
from ctrip.io.images import NIFTI_SUFFIXES
from ctrip.io.importer import (
    ImportReport,
    ImportSettings,
    SubjectFiles,
    case_collision,
    find_input,
    id_problem,
    inside,
    read_table_csv,
    run_import,
    tabular_variants,
)

REQUIRED = ("id", "sex", "age", "height", "weight", *CP_NAMES)
NOT_FEATURES = ("id", "split", "subject_id", *CP_NAMES)
INPUT_SUFFIXES = {
    "localizer": (".zip", ".dcm", *NIFTI_SUFFIXES, ".npy"),
    "cmr": (".zip", *NIFTI_SUFFIXES, ".npy"),
    "ecg": ECG_SUFFIXES,
}
MASK_SUFFIXES = (*NIFTI_SUFFIXES, ".npy")
_SEX = {"female": "female", "f": "female", "male": "male", "m": "male"}


def read_table(path: str | Path, categorical: list[str] | None = None) -> dict[str, Any]:
    """The subjects table, its early drops and tabular variants (T and the leaking Tp)."""
    path = Path(path)
    if not path.exists():
        raise CohortError("the subjects table is missing", file=path)
    table = read_table_csv(path, dtype={"id": str})
    for column in REQUIRED:
        if column not in table.columns:
            raise CohortError("a required column is missing", file=path, field=column)
    missing_id = table["id"].isna().to_numpy()
    table["id"] = table["id"].astype(str).str.strip()
    for row, subject_id in enumerate(table["id"]):
        if missing_id[row] or (problem := id_problem(subject_id)):
            raise CohortError(
                f"line {row + 2}: {'the id is missing' if missing_id[row] else problem}; ids name the subject "
                "folders and work files, so they must be plain names",
                file=path,
                field="id",
            )
    if table["id"].duplicated().any():
        raise CohortError(
            "duplicate subject id",
            file=path,
            subject=table["id"][table["id"].duplicated()].iloc[0],
            field="id",
        )
    if pair := case_collision(table["id"].tolist()):
        (a, b), (line_a, line_b) = (table["id"].iloc[i] for i in pair), (i + 2 for i in pair)
        raise CohortError(
            f"the ids {a!r} (line {line_a}) and {b!r} (line {line_b}) differ only in case; their "
            "folders and work files would be one on a case-insensitive file system: rename one",
            file=path,
            field="id",
        )
    table["sex"] = table["sex"].astype("string").str.strip().str.lower().map(_SEX).astype("string")
    drops, keep = [], np.ones(len(table), dtype=bool)
    for row, subject_id in enumerate(table["id"]):
        if pd.isna(table["sex"].iloc[row]):
            drops.append(
                {
                    "id": subject_id,
                    "reason": "missing field",
                    "detail": f"{path}: sex is missing or not female/male",
                }
            )
            keep[row] = False
            continue
        values = pd.to_numeric(table.loc[row, CP_NAMES], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            missing = [cp for cp, v in zip(CP_NAMES, values) if not np.isfinite(v)]
            drops.append(
                {
                    "id": subject_id,
                    "reason": "missing targets",
                    "detail": f"{path}: missing {missing}",
                }
            )
            keep[row] = False
    categorical = set(categorical or []) | {"sex"}
    numerical, levels, excluded = [], {}, []
    for column in table.columns:
        if column in NOT_FEATURES:
            continue
        if leak_reason(column):
            excluded.append(column)
            continue
        if column in categorical or not pd.api.types.is_numeric_dtype(table[column]):
            as_text = table[column].map(lambda v: None if pd.isna(v) else str(v)).astype("string")
            table[column] = as_text
            levels[column] = (
                ["female", "male"] if column == "sex" else sorted(as_text.dropna().unique())
            )
        else:
            numerical.append(column)
    for column in CP_NAMES:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return {
        "table": table[keep].reset_index(drop=True),
        "drops": drops,
        "variants": tabular_variants(numerical, levels),
        "excluded": excluded,
    }


def import_generic(
    root: str | Path,
    out_dir: str | Path,
    settings: ImportSettings | None = None,
    *,
    table_csv: str | Path | None = None,
    categorical: list[str] | None = None,
    boxes: dict | None = None,
    cmr_frames: dict | None = None,
    source: str | None = None,
    **run_kwargs: Any,
) -> ImportReport:
    """Import the cohort under `root` (layout in the module docstring) into `out_dir`."""
    root = Path(root)
    settings = settings or ImportSettings()
    table_csv = Path(table_csv) if table_csv else root / "subjects.csv"
    parsed = read_table(table_csv, categorical)
    table = parsed["table"]
    listed = set(table["id"]) | {d["id"] for d in parsed["drops"]}
    drops = list(parsed["drops"])
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        not_subject = (
            folder.name.endswith((".work", ".partial")) or (folder / "manifest.yaml").exists()
        )
        if folder.name not in listed and not not_subject:
            drops.append(
                {
                    "id": folder.name,
                    "reason": "not in table",
                    "detail": f"{folder} has no row in {table_csv}",
                }
            )
    subjects = []
    for subject_id in table["id"]:
        folder = inside(root, subject_id, resolve=False)
        subject = SubjectFiles(id=subject_id)
        for modality in settings.modalities:
            path = find_input(folder, modality, INPUT_SUFFIXES[modality], folders=modality != "ecg")
            if path is None:
                subject.missing[modality] = (
                    f"no {modality} ({', '.join(INPUT_SUFFIXES[modality])}) in {folder}"
                )
            else:
                subject.files[modality] = path
            mask = find_input(folder, f"{modality}_mask", MASK_SUFFIXES, folders=False)
            if mask is not None:
                subject.masks[modality] = mask
        subject.add_annotations(boxes, cmr_frames)
        subjects.append(subject)
    provenance = {
        "importer": "ctrip.io.generic",
        "ctrip_version": __version__,
        "root": str(root),
        "table": str(table_csv),
        "excluded_leaking_columns": parsed["excluded"],
    }
    return run_import(
        out_dir,
        table,
        subjects,
        settings,
        source=source or f"imported from {root.name}",
        provenance=provenance,
        variants=parsed["variants"],
        early_drops=drops,
        **run_kwargs,
    )
