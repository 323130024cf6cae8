"""The on-disk cohort: a manifest, a subjects table and one memory-mapped array per modality.

A cohort folder holds
- `manifest.yaml`: source, recipe (simulated) or provenance (imported), subject count, and for
  every file its shape, dtype and sha256;
- `subjects.parquet`: one row per subject (id, split, tabular features, the 18 CPs);
- `localizer.npy` (N, 3, H, W), `cmr.npy` (N, 3, H, W), `ecg.npy` (N, 12, T) in millivolts,
  row-aligned with the table and opened with `np.load(mmap_mode="r")`, never read whole.

The table is Parquet rather than CSV: it keeps column types (a subject id such as "0001" stays
a string, categories stay categories, float64 round-trips exactly), needs no parsing rules for
missing values, and loads in milliseconds; `pandas.read_parquet` opens it in any notebook.

Opening a cohort validates it, and every problem is reported as a `CohortError` that names the
file, the subject and the field.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ctrip.data.manifests import leak_reason
from ctrip.data.schema import (
    ARRAY_CHANNELS,
    ARRAY_MODALITIES,
    ARRAY_NDIM,
    CP_NAMES,
    LEADS,
    SEXES,
    SPLITS,
)
from ctrip.data.splits import assign_splits

FORMAT_VERSION = 1
MANIFEST = "manifest.yaml"
TABLE = "subjects.parquet"
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "split", "sex", "age", "height", "weight", *CP_NAMES)
_SCAN_CHUNK = 128  # subjects per block when scanning an array for NaN/inf


class CohortError(ValueError):
    """A cohort that breaks the data contract; the message names file, subject and field."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        subject: str | None = None,
        field: str | None = None,
    ) -> None:
        self.problem, self.file, self.subject, self.field = problem, file, subject, field
        where = [str(file)] if file is not None else []
        if subject is not None:
            where.append(f"subject {subject}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__(": ".join([*where, problem]))


@dataclass(frozen=True)
class TabularSpec:
    """Which table columns a tabular variant feeds the model, and whether it leaks on purpose."""

    numerical: list[str]
    categorical: dict[str, list[str]]
    leaking: bool = False

    @property
    def columns(self) -> list[str]:
        return [*self.numerical, *self.categorical]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """YAML-safe copy of `value` (numpy scalars and tuples become Python numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class CohortWriter:
    """Writes a cohort: fill the arrays (in chunks, through memory maps), then `finish`.

    Everything is written into `<out_dir>.partial` and renamed to `out_dir` only once the cohort
    validates, so an interrupted or invalid write never looks like a cohort.
    """

    def __init__(self, out_dir: str | Path, n_subjects: int, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise FileExistsError(f"{self.out_dir}: already exists (pass overwrite=True)")
        self.partial = self.out_dir.with_name(self.out_dir.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self.n_subjects = int(n_subjects)
        self._arrays: dict[str, np.memmap] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> np.memmap:
        """A writable (n_subjects, *shape) memory map for modality `name`."""
        if name not in ARRAY_MODALITIES:
            raise ValueError(f"unknown array modality {name!r}; expected one of {ARRAY_MODALITIES}")
        full_shape = (self.n_subjects, *(int(s) for s in shape))
        self._arrays[name] = np.lib.format.open_memmap(
            self.partial / f"{name}.npy", mode="w+", dtype=dtype, shape=full_shape
        )
        return self._arrays[name]

    def finish(
        self,
        table: pd.DataFrame,
        *,
        source: str,
        tabular_variants: dict[str, dict[str, Any]],
        recipe: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        ecg_sampling_rate_hz: float | None = None,
        extras: dict[str, pd.DataFrame] | None = None,
        tabular_field_ids: dict[str, int] | None = None,
        split_seed: int | None = None,
    ) -> Path:
        """Write table, extras and manifest, validate, and move the cohort into place."""
        if len(table) != self.n_subjects:
            raise CohortError(
                f"the table has {len(table)} rows but the writer was opened for "
                f"{self.n_subjects} subjects",
                file=TABLE,
            )
        table = table.reset_index(drop=True).copy()
        table["id"] = table["id"].astype(str)
        if "split" not in table:
            seed = (
                split_seed
                if split_seed is not None
                else (recipe or provenance or {}).get("split_seed", 0)
            )
            table["split"] = assign_splits(table, seed=int(seed))
        table = table[["id", "split", *[c for c in table.columns if c not in ("id", "split")]]]
        table.to_parquet(self.partial / TABLE, index=False)

        arrays = {}
        for name, memmap in self._arrays.items():
            memmap.flush()
            arrays[name] = {
                "file": f"{name}.npy",
                "shape": list(memmap.shape),
                "dtype": str(memmap.dtype),
            }
        self._arrays.clear()
        for entry in arrays.values():
            entry["sha256"] = sha256_of(self.partial / entry["file"])
        extra_entries = {}
        for name, frame in (extras or {}).items():
            frame.reset_index(drop=True).to_parquet(self.partial / f"{name}.parquet", index=False)
            extra_entries[name] = {
                "file": f"{name}.parquet",
                "sha256": sha256_of(self.partial / f"{name}.parquet"),
            }
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "source": source,
            "n_subjects": self.n_subjects,
            "table": {
                "file": TABLE,
                "format": "parquet",
                "sha256": sha256_of(self.partial / TABLE),
            },
            "arrays": arrays,
            "tabular_variants": tabular_variants,
        }
        if recipe is not None:
            manifest["recipe"] = recipe
        if provenance is not None:
            manifest["provenance"] = provenance
        if "ecg" in arrays:
            if ecg_sampling_rate_hz is None:
                raise ValueError("an ECG array needs ecg_sampling_rate_hz")
            manifest["ecg"] = {
                "sampling_rate_hz": float(ecg_sampling_rate_hz),
                "leads": list(LEADS),
                "units": "mV",
            }
        if tabular_field_ids:
            manifest["tabular_field_ids"] = tabular_field_ids
        if extra_entries:
            manifest["extras"] = extra_entries
        (self.partial / MANIFEST).write_text(yaml.safe_dump(_plain(manifest), sort_keys=False))
        Cohort.open(self.partial)  # raises CohortError and leaves .partial for inspection
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        self.partial.rename(self.out_dir)
        return self.out_dir


def write_cohort(
    out_dir: str | Path,
    table: pd.DataFrame,
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
    **finish_kwargs: Any,
) -> Path:
    """Write in-memory arrays and a table as a cohort (see `CohortWriter.finish` for keywords)."""
    writer = CohortWriter(out_dir, len(table), overwrite=overwrite)
    for name, values in arrays.items():
        values = np.asarray(values)
        writer.array(name, values.shape[1:], str(values.dtype))[:] = values
    return writer.finish(table, **finish_kwargs)


@dataclass
class Cohort:
    """An opened, validated cohort. Arrays are read-only memory maps."""

    path: Path
    manifest: dict[str, Any]
    table: pd.DataFrame
    _arrays: dict[str, np.memmap] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | Path, verify_checksums: bool = True) -> Cohort:
        """Open and validate the cohort at `path`; raise `CohortError` on the first problem."""
        path = Path(path)
        manifest = _read_manifest(path)
        table_file = path / manifest["table"]["file"]
        if not table_file.exists():
            raise CohortError("the subjects table is missing", file=table_file)
        if verify_checksums:
            _check_sha(table_file, manifest["table"].get("sha256"))
        table = pd.read_parquet(table_file)
        cohort = cls(path=path, manifest=manifest, table=table)
        _validate_table(table, manifest, table_file)
        for name, entry in manifest.get("arrays", {}).items():
            cohort._arrays[name] = _open_array(path, name, entry, table, verify_checksums)
        for name, entry in manifest.get("extras", {}).items():
            extra_file = path / entry["file"]
            if not extra_file.exists():
                raise CohortError(f"the extra table {name!r} is missing", file=extra_file)
            if verify_checksums:
                _check_sha(extra_file, entry.get("sha256"))
        for variant in manifest.get("tabular_variants", {}):
            cohort.tabular_spec(variant)
        return cohort

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        return self.table["id"].tolist()

    @property
    def modalities(self) -> tuple[str, ...]:
        tabular = ("tabular",) if self.manifest.get("tabular_variants") else ()
        return (*[m for m in ARRAY_MODALITIES if m in self._arrays], *tabular)

    @property
    def ecg_sampling_rate_hz(self) -> float | None:
        return self.manifest.get("ecg", {}).get("sampling_rate_hz")

    def array(self, name: str) -> np.memmap:
        if name not in self._arrays:
            raise CohortError(
                f"this cohort has no {name!r} array (it has {sorted(self._arrays)})",
                file=self.path / MANIFEST,
            )
        return self._arrays[name]

    def array_path(self, name: str) -> Path:
        self.array(name)
        return self.path / self.manifest["arrays"][name]["file"]

    def extra(self, name: str) -> pd.DataFrame:
        entries = self.manifest.get("extras", {})
        if name not in entries:
            raise CohortError(f"this cohort has no extra table {name!r}", file=self.path / MANIFEST)
        return pd.read_parquet(self.path / entries[name]["file"])

    def tabular_spec(self, variant: str = "T") -> TabularSpec:
        """The columns of tabular variant `variant`, checked against the table and for leaks."""
        manifest_file = self.path / MANIFEST
        variants = self.manifest.get("tabular_variants", {})
        if variant not in variants:
            raise CohortError(
                f"unknown tabular variant {variant!r} (the manifest lists {sorted(variants)})",
                file=manifest_file,
            )
        entry = variants[variant]
        spec = TabularSpec(
            numerical=list(entry.get("numerical", [])),
            categorical={
                k: [str(v) for v in levels] for k, levels in entry.get("categorical", {}).items()
            },
            leaking=bool(entry.get("leaking", False)),
        )
        field_ids = self.manifest.get("tabular_field_ids")
        for column in spec.columns:
            if column not in self.table.columns:
                raise CohortError(
                    f"tabular variant {variant!r} uses a column the table does not have",
                    file=self.path / self.manifest["table"]["file"],
                    field=column,
                )
            reason = leak_reason(column, field_ids)
            if reason and not spec.leaking:
                raise CohortError(
                    f"target-leaking tabular input in variant {variant!r}: {reason}; remove it, "
                    "or mark the variant `leaking: true` for a deliberate ablation",
                    file=manifest_file,
                    field=column,
                )
        for column in spec.numerical:
            if not pd.api.types.is_numeric_dtype(self.table[column]):
                raise CohortError(
                    "a numerical tabular feature holds non-numbers",
                    file=self.path / self.manifest["table"]["file"],
                    field=column,
                )
        for column, levels in spec.categorical.items():
            values = self.table[column]
            unknown = values.notna() & ~values.astype("string").isin(levels)
            if unknown.any():
                row = int(np.flatnonzero(unknown.to_numpy())[0])
                raise CohortError(
                    f"value {values.iloc[row]!r} is not one of the levels {levels}",
                    file=self.path / self.manifest["table"]["file"],
                    subject=str(self.table["id"].iloc[row]),
                    field=column,
                )
        return spec


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_file = path / MANIFEST
    if not path.is_dir():
        raise CohortError("not a cohort folder", file=path)
    if not manifest_file.exists():
        raise CohortError("the manifest is missing", file=manifest_file)
    try:
        manifest = yaml.safe_load(manifest_file.read_text())
    except yaml.YAMLError as err:
        raise CohortError(f"not valid YAML ({err})", file=manifest_file) from err
    if not isinstance(manifest, dict):
        raise CohortError("the manifest is not a mapping", file=manifest_file)
    for key in ("format_version", "source", "n_subjects", "table"):
        if key not in manifest:
            raise CohortError("a required manifest key is missing", file=manifest_file, field=key)
    if manifest["format_version"] != FORMAT_VERSION:
        raise CohortError(
            f"format_version {manifest['format_version']} is not supported (expected {FORMAT_VERSION})",
            file=manifest_file,
            field="format_version",
        )
    return manifest


def _check_sha(file: Path, expected: str | None) -> None:
    if expected is None:
        raise CohortError("the manifest records no sha256 for this file", file=file, field="sha256")
    actual = sha256_of(file)
    if actual != expected:
        raise CohortError(
            f"sha256 {actual} does not match the manifest's {expected}: the file changed "
            "after the cohort was written",
            file=file,
            field="sha256",
        )


def _validate_table(table: pd.DataFrame, manifest: dict[str, Any], table_file: Path) -> None:
    for column in REQUIRED_COLUMNS:
        if column not in table.columns:
            raise CohortError("a required column is missing", file=table_file, field=column)
    if len(table) != manifest["n_subjects"]:
        raise CohortError(
            f"{len(table)} rows, but the manifest says n_subjects = {manifest['n_subjects']}",
            file=table_file,
        )
    ids = table["id"].astype("string")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise CohortError(f"row {row} has no subject id", file=table_file, field="id")
    splits = table["split"].astype("string")
    bad_split = ~splits.isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise CohortError(
            f"unknown split {splits.iloc[row]!r} (expected one of {list(SPLITS)})",
            file=table_file,
            subject=str(ids.iloc[row]),
            field="split",
        )
    # A subject may appear in several rows only through `subject_id` (repeat visits), and then
    # all its rows must share one split; a repeated row id is always an error.
    subject = table["subject_id"].astype("string") if "subject_id" in table.columns else ids
    split_count = splits.groupby(subject.to_numpy()).nunique()
    if (split_count > 1).any():
        who = str(split_count[split_count > 1].index[0])
        found = sorted(set(splits[subject.to_numpy() == who]))
        raise CohortError(
            f"the subject is in two splits ({', '.join(found)}): its data would leak between them",
            file=table_file,
            subject=who,
            field="split",
        )
    duplicated = ids.duplicated()
    if duplicated.any():
        who = str(ids[duplicated].iloc[0])
        raise CohortError("duplicate subject id", file=table_file, subject=who, field="id")
    bad_sex = ~table["sex"].astype("string").isin(SEXES)
    if bad_sex.any():
        row = int(np.flatnonzero(bad_sex.to_numpy())[0])
        raise CohortError(
            f"sex {table['sex'].iloc[row]!r} is not one of {list(SEXES)}",
            file=table_file,
            subject=str(ids.iloc[row]),
            field="sex",
        )
    for cp in CP_NAMES:
        values = pd.to_numeric(table[cp], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CohortError(
                f"the cardiac phenotype is {table[cp].iloc[row]!r}, not a finite number",
                file=table_file,
                subject=str(ids.iloc[row]),
                field=cp,
            )


def _open_array(
    path: Path, name: str, entry: dict[str, Any], table: pd.DataFrame, verify_checksums: bool
) -> np.memmap:
    manifest_file = path / MANIFEST
    if name not in ARRAY_MODALITIES:
        raise CohortError(f"unknown array modality {name!r}", file=manifest_file, field=name)
    array_file = path / entry["file"]
    if not array_file.exists():
        raise CohortError(f"the {name} array file is missing", file=array_file, field=name)
    if verify_checksums:
        _check_sha(array_file, entry.get("sha256"))
    try:
        values = np.load(array_file, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise CohortError(
            f"not a readable .npy array ({err})", file=array_file, field=name
        ) from err
    if list(values.shape) != list(entry["shape"]):
        raise CohortError(
            f"shape {list(values.shape)} does not match the manifest's {list(entry['shape'])}",
            file=array_file,
            field=name,
        )
    if str(values.dtype) != entry["dtype"]:
        raise CohortError(
            f"dtype {values.dtype} does not match the manifest's {entry['dtype']}",
            file=array_file,
            field=name,
        )
    if values.shape[0] != len(table):
        raise CohortError(
            f"{values.shape[0]} rows, but the subjects table has {len(table)}",
            file=array_file,
            field=name,
        )
    if values.ndim != ARRAY_NDIM[name] or values.shape[1] != ARRAY_CHANNELS[name]:
        expected = "(N, 3, H, W)" if ARRAY_NDIM[name] == 4 else "(N, 12, T)"
        raise CohortError(
            f"shape {list(values.shape)} is not {expected}", file=array_file, field=name
        )
    for start in range(0, values.shape[0], _SCAN_CHUNK):
        block = np.asarray(values[start : start + _SCAN_CHUNK])
        finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise CohortError(
                "the array holds NaN or inf",
                file=array_file,
                subject=str(table["id"].iloc[row]),
                field=name,
            )
    return values
