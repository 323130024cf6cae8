"""UK Biobank import: a showcase CSV plus bulk files, through `data_manifests/ukbiobank.yaml`.

Inputs
- a showcase CSV (one row per participant, column `eid`; columns named "<field>-<instance>.<array>"
  as ukbconv writes them, "f.<field>.<instance>.<array>" as its R output does, or
  "p<field>_i<instance>[_a<array>]" as the Research Analysis Platform does);
- a bulk folder holding files named "<eid>_<field>_<instance>_<array>" as ukbfetch writes them:
  `.xml` for the ECG (20205), `.zip` (or the unpacked folder) for scout (20207) and short-axis
  cine (20209) DICOM. Sub-folders are searched too.

The field map says which field feeds which column: the 18 CPs (24100-24117, the targets),
the tabular features by field id (categorical codes mapped to levels; a code mapped to null,
such as -3 "prefer not to answer", becomes missing), and the bulk fields. Fields in its
`leaking_fields` list are never tabular inputs; variant Tp adds the CPs on purpose.
A participant without sex or without one of the 18 CPs is dropped with that reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrip import __version__
from ctrip.data.cohort import CohortError
from ctrip.data.manifests import leaking_fields, ukbiobank_manifest
from ctrip.data.schema import CP_NAMES
from ctrip.io.importer import (
    ImportReport,
    ImportSettings,
    SubjectFiles,
    find_input,
    id_problem,
    read_table_csv,
    run_import,
    tabular_variants,
)

_COLUMN_PATTERNS = (
    re.compile(r"^(\d+)-(\d+)\.(\d+)$"),  # ukbconv csv: 24100-2.0
    re.compile(r"^f\.(\d+)\.(\d+)\.(\d+)$"),  # ukbconv r: f.24100.2.0
    re.compile(r"^p(\d+)(?:_i(\d+))?(?:_a(\d+))?$"),  # RAP: p24100_i2, p31, p6150_i2_a0
)
_EID_COLUMNS = ("eid", "f.eid", "participant.eid", "Participant ID")
_BULK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)(\.[A-Za-z]+)?$")


def parse_column(name: str) -> tuple[int, int | None, int] | None:
    """(field, instance or None, array) of a showcase column name, or None."""
    for pattern in _COLUMN_PATTERNS:
        match = pattern.match(name)
        if match:
            field, instance, array = match.groups()
            return int(field), None if instance is None else int(instance), int(array or 0)
    return None


class Showcase:
    """The columns of a showcase CSV, looked up by field and instance."""

    def __init__(self, path: str | Path, fields: set[int]) -> None:
        self.path = Path(path)
        header = read_table_csv(self.path, nrows=0).columns
        eid = [c for c in header if c in _EID_COLUMNS]
        if not eid:
            raise CohortError(
                f"no participant id column (one of {list(_EID_COLUMNS)})", file=self.path
            )
        self.columns: dict[tuple[int, int | None], list[tuple[int, str]]] = {}
        for name in header:
            parsed = parse_column(name)
            if parsed and parsed[0] in fields:
                self.columns.setdefault(parsed[:2], []).append((parsed[2], name))
        wanted = [eid[0], *(n for cols in self.columns.values() for _, n in cols)]
        self.frame = read_table_csv(
            self.path, usecols=wanted, dtype={eid[0]: str}, low_memory=False
        )
        self.ids = self.frame[eid[0]].astype(str).str.strip()
        for row, eid_value in enumerate(self.ids):
            if problem := id_problem(eid_value):
                raise CohortError(
                    f"line {row + 2}: {problem}; participant ids name bulk and work files",
                    file=self.path,
                    field=eid[0],
                )
        if self.ids.duplicated().any():
            raise CohortError(
                "duplicate participant id",
                file=self.path,
                subject=self.ids[self.ids.duplicated()].iloc[0],
            )

    def arrays(self, field: int, instance: int) -> pd.DataFrame | None:
        """All array columns of `field` at `instance` (or its instance-less column), or None."""
        found = self.columns.get((field, instance)) or self.columns.get((field, None))
        if not found:
            return None
        return self.frame[[name for _, name in sorted(found)]]

    def column_name(self, field: int, instance: int) -> str:
        found = self.columns.get((field, instance)) or self.columns.get((field, None))
        return sorted(found)[0][1] if found else f"{field}-{instance}.0"


def _code_key(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _categorical(values: pd.DataFrame, spec: dict[str, Any]) -> tuple[pd.Series, int]:
    """Levels for one categorical field, and the number of codes not in its map (-> missing)."""
    codes = {_code_key(k): v for k, v in spec["codes"].items()}
    if "any_of" in spec:
        present = values.notna().any(axis=1)
        hit = (values == spec["any_of"]).any(axis=1)
        null_codes = [k for k, v in codes.items() if v is None and k not in ("true", "false")]
        refused = values.map(_code_key).isin(null_codes).any(axis=1) & ~hit
        raw = pd.Series(np.where(hit, True, False), index=values.index, dtype=object)
        raw[~present | refused] = None
    else:
        raw = values.iloc[:, 0]
    keys = raw.map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else _code_key(v)
    )
    mapped = keys.map(lambda k: codes.get(k) if k is not None else None)
    unknown = int((keys.notna() & ~keys.isin(list(codes))).sum())
    return mapped.astype("string"), unknown


def read_showcase(path: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Table rows (id, tabular features, CPs), early drops, field ids and notes from a showcase CSV."""
    manifest = manifest or ukbiobank_manifest()
    instance = int(manifest.get("instance", 2))
    numerical = manifest["tabular"].get("numerical", {})
    categorical = manifest["tabular"].get("categorical", {})
    cps = manifest["cardiac_phenotypes"]
    leaking = leaking_fields()
    for name, spec in {**numerical, **categorical}.items():
        if int(spec["field"]) in leaking:
            raise CohortError(
                f"the field map makes leaking field {spec['field']} a tabular input",
                file="data_manifests/ukbiobank.yaml",
                field=name,
            )
    fields = {int(s["field"]) for s in (*numerical.values(), *categorical.values(), *cps.values())}
    showcase = Showcase(path, fields)
    table = pd.DataFrame({"id": showcase.ids})
    field_ids: dict[str, int] = {}
    notes: list[str] = []
    features_num, features_cat = [], {}
    for name, spec in numerical.items():
        values = showcase.arrays(int(spec["field"]), int(spec.get("instance", instance)))
        field_ids[name] = int(spec["field"])
        if values is None:
            table[name] = np.nan
            notes.append(f"{name}: field {spec['field']} is not in the showcase CSV (all missing)")
            continue
        table[name] = pd.to_numeric(values.iloc[:, 0], errors="coerce").to_numpy(dtype=float)
        features_num.append(name)
    for name, spec in categorical.items():
        values = showcase.arrays(int(spec["field"]), int(spec.get("instance", instance)))
        field_ids[name] = int(spec["field"])
        levels = list(dict.fromkeys(v for v in spec["codes"].values() if v is not None))
        if values is None:
            table[name] = pd.array([None] * len(table), dtype="string")
            notes.append(f"{name}: field {spec['field']} is not in the showcase CSV (all missing)")
            if name == "sex":
                raise CohortError(
                    "sex (field 31) is not in the showcase CSV", file=path, field="31"
                )
            continue
        table[name], unknown = _categorical(values, spec)
        if unknown:
            notes.append(
                f"{name}: {unknown} value(s) with a code outside the field map, set missing"
            )
        features_cat[name] = levels
    for cp, spec in cps.items():
        values = showcase.arrays(int(spec["field"]), instance)
        if values is None:
            raise CohortError(
                f"the showcase CSV has no column for {cp} (field {spec['field']}, instance {instance})",
                file=path,
                field=str(spec["field"]),
            )
        table[cp] = pd.to_numeric(values.iloc[:, 0], errors="coerce").to_numpy(dtype=float)
        field_ids[cp] = int(spec["field"])
    for required in ("age", "height", "weight"):
        if required not in table:
            table[required] = np.nan
    drops, keep = [], np.ones(len(table), dtype=bool)
    sex_column = showcase.column_name(31, 0)
    for row, subject in enumerate(table.itertuples(index=False)):
        if pd.isna(table["sex"].iloc[row]):
            drops.append(
                {
                    "id": subject.id,
                    "reason": "missing field",
                    "detail": f"sex ({sex_column}) is missing",
                }
            )
            keep[row] = False
            continue
        missing_cps = [cp for cp in CP_NAMES if not np.isfinite(table[cp].iloc[row])]
        if missing_cps:
            where = ", ".join(
                f"{cp} ({showcase.column_name(int(cps[cp]['field']), instance)})"
                for cp in missing_cps
            )
            drops.append(
                {"id": subject.id, "reason": "missing targets", "detail": f"missing {where}"}
            )
            keep[row] = False
    return {
        "ids": table["id"].tolist(),
        "table": table[keep].reset_index(drop=True),
        "drops": drops,
        "field_ids": field_ids,
        "variants": tabular_variants(features_num, features_cat),
        "notes": notes,
    }


def index_bulk(folder: str | Path) -> dict[tuple[str, int, int], Path]:
    """Bulk files and unpacked folders named <eid>_<field>_<instance>_<array>, array 0 first."""
    found: dict[tuple[str, int, int], tuple[int, Path]] = {}
    for directory, subdirs, files in os.walk(folder):
        for name in [*subdirs, *files]:
            match = _BULK_NAME.match(name)
            if not match:
                continue
            eid, field, instance, array = match.groups()[:4]
            key = (eid, int(field), int(instance))
            path = Path(directory) / name
            previous = found.get(key)
            # prefer the lowest array index, and a file over an unpacked folder of the same name
            if previous is None or (int(array), path.is_dir()) < (
                previous[0],
                previous[1].is_dir(),
            ):
                found[key] = (int(array), path)
    return {key: path for key, (_, path) in found.items()}


def import_ukbiobank(
    showcase_csv: str | Path,
    bulk_dir: str | Path,
    out_dir: str | Path,
    settings: ImportSettings | None = None,
    *,
    masks_dir: str | Path | None = None,
    boxes: dict | None = None,
    cmr_frames: dict | None = None,
    limit: int | None = None,
    manifest: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> ImportReport:
    """Import a UK Biobank extract as a cohort; `run_kwargs` go to `run_import`."""
    settings = settings or ImportSettings()
    manifest = manifest or ukbiobank_manifest()
    instance = int(manifest.get("instance", 2))
    showcase = read_showcase(showcase_csv, manifest)
    table, drops = showcase["table"], showcase["drops"]
    if limit:  # the first `limit` participants of the showcase, dropped ones included
        chosen = set(showcase["ids"][:limit])
        table = table[table["id"].isin(chosen)].reset_index(drop=True)
        drops = [d for d in drops if d["id"] in chosen]
    bulk = index_bulk(bulk_dir)
    subjects = []
    for subject_id in table["id"]:
        subject = SubjectFiles(id=subject_id)
        for modality in settings.modalities:
            spec = manifest["bulk"][modality]
            path = bulk.get((subject_id, int(spec["field"]), instance))
            if path is None:
                subject.missing[modality] = (
                    f"no bulk file {subject_id}_{spec['field']}_{instance}_* ({spec['format']}) "
                    f"under {bulk_dir}"
                )
            else:
                subject.files[modality] = path
            if masks_dir is not None:
                mask = find_input(
                    Path(masks_dir),
                    f"{subject_id}_{modality}_mask",
                    (".nii.gz", ".nii", ".npy"),
                    folders=False,
                )
                if mask is not None:
                    subject.masks[modality] = mask
        subject.add_annotations(boxes, cmr_frames)
        subjects.append(subject)
    provenance = {
        "importer": "ctrip.io.ukbiobank",
        "ctrip_version": __version__,
        "showcase": str(showcase_csv),
        "bulk": str(bulk_dir),
        "instance": instance,
        "bulk_fields": {m: manifest["bulk"][m]["field"] for m in settings.modalities},
        "notes": showcase["notes"],
    }
    return run_import(
        out_dir,
        table,
        subjects,
        settings,
        source="ukbiobank",
        provenance=provenance,
        variants=showcase["variants"],
        tabular_field_ids=showcase["field_ids"],
        early_drops=drops,
        **run_kwargs,
    )
