"""The on-disk cohort: a manifest, a subjects table and one memory-mapped array per modality.

A cohort folder holds
- `manifest.yaml`: source, recipe (simulated) or provenance (imported), subject count, and for
  every file its shape, dtype and sha256;
- `subjects.parquet`: one row per subject (id, split, tabular features, the 18 CPs);
- `localizer.npy` (N, 3, H, W), `cmr.npy` (N, 3, H, W), `ecg.npy` (N, 12, T) in millivolts,
  row-aligned with the table and opened with `np.load(mmap_mode="r")`, never read whole;
- optionally `localizer_heart.npy` (N, 3, H, W) bool: the heart's mask on the localizer's
  pixels (a simulated cohort has it; an imported one has no masks).

The table is Parquet rather than CSV: it keeps column types (a subject id such as "0001" stays
a string, categories stay categories, float64 round-trips exactly), needs no parsing rules for
missing values, and loads in milliseconds; `pandas.read_parquet` opens it in any notebook.

`Cohort.open` makes the cheap checks every time (manifest fields, every file present as a
regular file inside the cohort folder, shapes, dtypes and row counts against the manifest, the
table's sha256 and its contents); `Cohort.validate` (or `open(..., full=True)`) also reads the
arrays: sha256 of every file, NaN/inf, image and ECG scale, the physiological plausibility
of the table (`ctrip.data.plausibility`), the relations between each chamber's CPs (ESV <= EDV,
SV = EDV - ESV, EF = 100 SV / EDV) and every numeric feature's finiteness. Writers, importers
and `ctrip cohort validate` run the full check. Every problem is a `CohortError` that names the
file, the subject and the field; the cheap check stops at the first, the full one lists them
all in one `CohortProblems` (at most `MAX_LISTED`, then a count). Plausible-but-rare values and
constant, incomplete or extreme columns become `Cohort.warnings`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ctrip.data import plausibility
from ctrip.data.manifests import leak_reason
from ctrip.data.schema import (
    ARRAY_CHANNELS,
    ARRAY_MODALITIES,
    ARRAY_NDIM,
    CP_NAMES,
    IMAGE_MODALITIES,
    LEADS,
    MASKS,
    SEXES,
    SPLITS,
)
from ctrip.data.splits import assign_splits

FORMAT_VERSION = 1
MANIFEST = "manifest.yaml"
TABLE = "subjects.parquet"
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "split", "sex", "age", "height", "weight", *CP_NAMES)
_SCAN_CHUNK = 128  # subjects per block when scanning an array for NaN/inf
_FREE_SPACE_MARGIN = 64 << 20  # bytes kept free beyond the arrays (table, manifest, extras)
# Names the writer puts in a cohort folder: a folder holding anything else is not replaced.
# What `ctrip cohort import` writes beside the manifest (`ctrip.io.importer.REPORT`).
IMPORT_REPORTS = ("import_report.json", "import_report.txt")
_WRITER_SUFFIXES = (".npy", ".parquet", ".yaml", ".json", ".txt")


# Values that agree to within this relative tolerance are one value (float rounding apart).
CONSTANT_TOLERANCE = 1e-9


def constant_value(values: np.ndarray) -> float | None:
    """The value all finite `values` share to within float rounding; None when they vary or
    none is finite. A column like that carries no information and has no range to plot."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    return low if high - low <= CONSTANT_TOLERANCE * max(1.0, abs(high)) else None


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


MAX_LISTED = 50  # problems listed in one report; the rest are counted


class CohortProblems(CohortError):
    """Several problems found in one pass: every one listed (up to `MAX_LISTED`, then a count),
    so that one run of `ctrip cohort validate` shows all that needs fixing."""

    def __init__(self, problems: list[CohortError]) -> None:
        first = problems[0]
        self.problems = problems
        self.problem, self.file, self.subject, self.field = (
            first.problem, first.file, first.subject, first.field
        )  # fmt: skip
        listed = [str(p) for p in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            listed.append(f"... and {len(problems) - MAX_LISTED} more problem(s)")
        ValueError.__init__(self, f"{len(problems)} problems:\n  " + "\n  ".join(listed))


def raise_problems(problems: list[CohortError]) -> None:
    """Raise the one problem found, or all of them as `CohortProblems`; nothing when none."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise CohortProblems(problems)


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
        if int(n_subjects) < 1:
            raise CohortError(f"a cohort needs subjects, got {n_subjects}", file=self.out_dir)
        check_replaceable(self.out_dir)
        self.partial = self.out_dir.with_name(self.out_dir.name + ".partial")
        if self.partial.exists():
            check_replaceable(self.partial)
            shutil.rmtree(self.partial)
        with write_errors(self.partial):
            self.partial.mkdir(parents=True)
        self.n_subjects = int(n_subjects)
        self._arrays: dict[str, np.memmap] = {}
        self._masks: dict[str, np.memmap] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> np.memmap:
        """A writable (n_subjects, *shape) memory map for modality `name`.

        Its disk blocks are allocated now, so a full disk is an error here rather than a
        SIGBUS while the map is filled.
        """
        if name not in ARRAY_MODALITIES:
            raise ValueError(f"unknown array modality {name!r}; expected one of {ARRAY_MODALITIES}")
        full_shape = (self.n_subjects, *(int(s) for s in shape))
        file = self.partial / f"{name}.npy"
        # Arrays allocated before this one already hold their blocks (see `_allocate`).
        nbytes = int(np.prod(full_shape)) * np.dtype(dtype).itemsize
        check_free_space(self.partial, nbytes + _FREE_SPACE_MARGIN)
        with write_errors(file):
            self._arrays[name] = np.lib.format.open_memmap(
                file, mode="w+", dtype=dtype, shape=full_shape
            )
            _allocate(file)
        return self._arrays[name]

    def mask(self, name: str) -> np.memmap:
        """A writable bool memory map for mask `name` (see `schema.MASKS`), shaped as the image
        array it lies on, which must be allocated first."""
        if name not in MASKS:
            raise ValueError(f"unknown mask {name!r}; expected one of {sorted(MASKS)}")
        image = self._arrays.get(MASKS[name])
        if image is None:
            raise ValueError(f"mask {name!r} lies on the {MASKS[name]} array: allocate it first")
        file = self.partial / f"{name}.npy"
        check_free_space(self.partial, int(np.prod(image.shape)) + _FREE_SPACE_MARGIN)
        with write_errors(file):
            self._masks[name] = np.lib.format.open_memmap(
                file, mode="w+", dtype=bool, shape=image.shape
            )
            _allocate(file)
        return self._masks[name]

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
        with write_errors(self.partial):
            return self._finish(
                table,
                source=source,
                tabular_variants=tabular_variants,
                recipe=recipe,
                provenance=provenance,
                ecg_sampling_rate_hz=ecg_sampling_rate_hz,
                extras=extras,
                tabular_field_ids=tabular_field_ids,
                split_seed=split_seed,
            )

    def _finish(
        self,
        table: pd.DataFrame,
        *,
        source: str,
        tabular_variants: dict[str, dict[str, Any]],
        recipe: dict[str, Any] | None,
        provenance: dict[str, Any] | None,
        ecg_sampling_rate_hz: float | None,
        extras: dict[str, pd.DataFrame] | None,
        tabular_field_ids: dict[str, int] | None,
        split_seed: int | None,
    ) -> Path:
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
        masks = {}
        for name, memmap in self._masks.items():
            memmap.flush()
            masks[name] = {"file": f"{name}.npy", "shape": list(memmap.shape), "dtype": "bool"}
        self._masks.clear()
        for entry in [*arrays.values(), *masks.values()]:
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
        if masks:
            manifest["masks"] = masks
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
        # The sha256 were computed from these very files a moment ago; everything else is
        # checked in full. Raises CohortError and leaves .partial for inspection.
        cohort = Cohort.open(self.partial, full=True, verify_checksums=False)
        for said in cohort.warnings:  # one warning, one line, each naming the cohort
            warnings.warn(f"{self.out_dir}: {said}", PlausibilityWarning, stacklevel=3)
        if self.out_dir.exists():
            check_replaceable(self.out_dir)
            shutil.rmtree(self.out_dir)
        self.partial.rename(self.out_dir)
        return self.out_dir


def _allocate(file: Path) -> None:
    """Reserve the disk blocks of `file` (a sparse memory-mapped array) where the system can."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: the free-space check must do
        return
    with open(file, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


class PlausibilityWarning(UserWarning):
    """A value that is possible but outside the plausible range (see `ctrip.data.plausibility`)."""


@contextmanager
def plausibility_warnings_printed(renamed: tuple[Path, Path] | None = None) -> Iterator[None]:
    """For commands: print plausibility warnings as `warning: ...` lines on stderr, not as Python
    warnings with a source line; every other warning passes through unchanged. `renamed`:
    (folder written, folder it is published as), so the warnings name where the cohort will be."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PlausibilityWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, PlausibilityWarning):
            said = str(warning.message)
            if renamed is not None:
                said = said.replace(str(renamed[0]), str(renamed[1]))
            print(f"warning: {said}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def check_replaceable(path: Path) -> None:
    """Refuse to delete `path` unless it is missing, empty, or a cohort this writer made.

    `--overwrite` must never delete a folder that happens to sit where the cohort should go.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise CohortError(
            "exists and is not a folder; refusing to replace it (choose another output path)",
            file=path,
        )
    entries = list(path.iterdir())
    if not entries:
        return
    foreign = [e.name for e in entries if not (e.is_file() and e.name.endswith(_WRITER_SUFFIXES))]
    named = _files_named_by_manifest(path / MANIFEST)
    if named is not None:  # a cohort: only what its manifest names (and the manifest) belongs
        own = named | {MANIFEST, *IMPORT_REPORTS}
        foreign = [e.name for e in entries if e.name not in own or not e.is_file()]
    elif not path.name.endswith(".partial"):  # neither a cohort nor the writer's scratch space
        foreign = foreign or [MANIFEST if (path / MANIFEST).exists() else "no manifest.yaml"]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3])
        raise CohortError(
            f"is not a cohort folder ({shown}); refusing to delete it: choose another output "
            "path, or remove the folder yourself",
            file=path,
        )


def _files_named_by_manifest(manifest: Path) -> set[str] | None:
    """The files a manifest of this project's format names (its `file` entries), or None when
    `manifest` is missing, unreadable or of another format (a Kubernetes `manifest.yaml`...)."""
    try:
        loaded = yaml.safe_load(manifest.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not (
        isinstance(loaded, dict)
        and loaded.get("format_version") == FORMAT_VERSION
        and isinstance(loaded.get("table"), dict)
        and {"source", "n_subjects"} <= set(loaded)
    ):
        return None
    named: set[str] = set()
    todo: list[Any] = [loaded]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            if isinstance(value.get("file"), str):
                named.add(value["file"])
            todo += list(value.values())
        elif isinstance(value, list):
            todo += value
    return named


def check_free_space(folder: Path, needed: int) -> None:
    """Raise `CohortError` when the file system of `folder` has less than `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CohortError(
            f"not enough free disk space: the cohort needs about {needed / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB are free",
            file=folder,
        )


class write_errors:  # noqa: N801 (used as a `with` statement, like contextlib helpers)
    """Turn an operating-system error while writing under `where` into one `CohortError`."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            reason = (
                "the disk is full"
                if error.errno in (errno.ENOSPC, errno.EDQUOT)
                else "writing failed"
            )
            raise CohortError(
                f"{reason} ({error.strerror or error}); nothing was written in place of the cohort",
                file=error.filename or self.where,
            ) from error
        return False


def write_cohort(
    out_dir: str | Path,
    table: pd.DataFrame,
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
    **finish_kwargs: Any,
) -> Path:
    """Write in-memory arrays (modalities and masks, e.g. `generate_subjects`' arrays) and a
    table as a cohort (see `CohortWriter.finish` for keywords)."""
    writer = CohortWriter(out_dir, len(table), overwrite=overwrite)
    for name, values in arrays.items():
        if name not in MASKS:
            values = np.asarray(values)
            writer.array(name, values.shape[1:], str(values.dtype))[:] = values
    for name in MASKS:
        if name in arrays:
            writer.mask(name)[:] = arrays[name]
    return writer.finish(table, **finish_kwargs)


@dataclass
class Cohort:
    """An opened, validated cohort. Arrays are read-only memory maps."""

    path: Path
    manifest: dict[str, Any]
    table: pd.DataFrame
    _arrays: dict[str, np.memmap] = field(default_factory=dict, repr=False)
    _masks: dict[str, np.memmap] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        path: str | Path,
        verify_checksums: bool | None = None,
        full: bool = False,
        min_per_split: int = 0,
    ) -> Cohort:
        """Open the cohort at `path`; raise `CohortError` on the first problem.

        The default is the cheap check (see the module docstring). `full=True` also reads every
        array (NaN/inf, scale) and checks plausibility; `verify_checksums` recomputes the
        sha256 of every file (default: with `full`; the table's is always checked). With
        `full`, a split with fewer than `min_per_split` subjects is an error (an empty split is
        otherwise a warning: an external cohort may hold test subjects only).
        """
        path = Path(path)
        check_table_sha = verify_checksums is not False  # the table is read whole anyway
        verify_checksums = full if verify_checksums is None else verify_checksums
        manifest = _read_manifest(path)
        table_file = _member_file(path, manifest["table"], "table", "the subjects table")
        if check_table_sha:
            _check_sha(table_file, manifest["table"].get("sha256"))
        try:
            table = pd.read_parquet(table_file)
        except Exception as err:  # pyarrow raises its own kinds for a damaged file
            raise CohortError(f"not a readable Parquet table ({err})", file=table_file) from err
        cohort = cls(path=path, manifest=manifest, table=table)
        # The cheap check stops at the first problem; the full one lists them all.
        problems = _table_problems(table, manifest, table_file)
        if not full:
            raise_problems(problems[:1])

        def check(step: Any, *args: Any) -> Any:
            try:
                return step(*args)
            except CohortError as err:
                if not full:
                    raise
                problems.append(err)
                return None

        for name, entry in manifest.get("arrays", {}).items():
            if (values := check(_open_array, path, name, entry, table)) is not None:
                cohort._arrays[name] = values
        for name, entry in manifest.get("masks", {}).items():
            if (values := check(_open_mask, path, name, entry, cohort._arrays)) is not None:
                cohort._masks[name] = values
        for name, entry in manifest.get("extras", {}).items():
            extra_file = check(
                _member_file, path, entry, f"extras.{name}", f"the extra table {name!r}"
            )
            if verify_checksums and extra_file is not None:
                check(_check_sha, extra_file, entry.get("sha256"))
        for variant in manifest.get("tabular_variants", {}):
            check(cohort.tabular_spec, variant)
        if full:
            problems += cohort._content_problems(verify_checksums, min_per_split)
        raise_problems(problems)
        return cohort

    @classmethod
    def validate(
        cls,
        path: str | Path,
        verify_checksums: bool = True,
        min_per_split: int = plausibility.MIN_PER_SPLIT,
    ) -> Cohort:
        """Open with the full check: sha256, NaN/inf, array scale, table plausibility, and at
        least `min_per_split` subjects in each of train, val and test."""
        return cls.open(
            path, verify_checksums=verify_checksums, full=True, min_per_split=min_per_split
        )

    def _content_problems(self, verify_checksums: bool, min_per_split: int) -> list[CohortError]:
        """Every problem of the full check (splits, plausibility, relations between the CPs,
        numeric features, arrays, checksums); warnings go to `self.warnings`."""
        problems: list[CohortError] = []
        table_file = self.path / self.manifest["table"]["file"]
        counts = (
            self.table["split"].astype("string").value_counts()
            if "split" in self.table
            else pd.Series(dtype=int)
        )
        for split in SPLITS:
            count = int(counts.get(split, 0))
            if count < min_per_split:
                problems.append(
                    CohortError(
                        f"the {split} split has {count} subjects; at least {min_per_split} needed "
                        "(train to train, val to stop early, test to evaluate)",
                        file=table_file,
                        field="split",
                    )
                )
            elif count == 0:
                self.warnings.append(
                    f"{table_file.name}: field split: the {split} split is empty; this cohort "
                    f"cannot be used where {split} subjects are needed"
                )
            elif count < plausibility.FEW_PER_SPLIT:
                self.warnings.append(
                    f"{table_file.name}: field split: only {count} {split} subject(s); metrics on "
                    "so few are noisy"
                )
        ids = self.table["id"].astype(str)
        for column in self.table.columns:
            impossible, implausible = plausibility.check_column(column, self.table[column])
            if impossible is not None:
                problems.append(
                    CohortError(
                        impossible.message
                        + (f" ({impossible.count} subjects)" if impossible.count > 1 else ""),
                        file=table_file,
                        subject=ids.iloc[impossible.row],
                        field=column,
                    )
                )
            if implausible is not None:
                self.warnings.append(
                    f"{table_file.name}: field {column}: {implausible.count} subject(s) implausible, "
                    f"e.g. subject {ids.iloc[implausible.row]}: {implausible.message}"
                )
        problems += cp_relation_problems(self.table, table_file)
        found, warned = feature_problems(self.table, table_file)
        problems += found
        self.warnings += warned
        if "ecg" in self._arrays:
            _, warning = plausibility.check_ecg_rate(self.ecg_sampling_rate_hz)
            if warning:
                self.warnings.append(f"{MANIFEST}: field ecg.sampling_rate_hz: {warning}")
        for name, values in self._arrays.items():
            entry = self.manifest["arrays"][name]
            array_file = self.path / entry["file"]
            try:
                if verify_checksums:
                    _check_sha(array_file, entry.get("sha256"))
                self.warnings += _scan_array(array_file, name, values, self.table)
            except CohortError as err:
                problems.append(err)
        if verify_checksums:
            for entry in self.manifest.get("masks", {}).values():
                try:
                    _check_sha(self.path / entry["file"], entry.get("sha256"))
                except CohortError as err:
                    problems.append(err)
        return problems

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

    @property
    def masks(self) -> tuple[str, ...]:
        """The masks this cohort holds (see `schema.MASKS`); an imported cohort has none."""
        return tuple(self._masks)

    def mask(self, name: str) -> np.memmap:
        """Mask `name`, bool, shaped as the image array it lies on (read-only memory map)."""
        if name not in self._masks:
            raise CohortError(
                f"this cohort has no {name!r} mask (it has {sorted(self._masks) or 'none'}; "
                "only a simulated cohort knows where the heart is)",
                file=self.path / MANIFEST,
            )
        return self._masks[name]

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
        numerical, categorical = entry.get("numerical", []), entry.get("categorical", {})
        if not isinstance(numerical, list) or not all(isinstance(c, str) for c in numerical):
            raise CohortError(
                "is not a list of column names",
                file=manifest_file,
                field=f"tabular_variants.{variant}.numerical",
            )
        if not isinstance(categorical, dict) or not all(
            isinstance(levels, list) for levels in categorical.values()
        ):
            raise CohortError(
                "is not a mapping of column names to lists of levels",
                file=manifest_file,
                field=f"tabular_variants.{variant}.categorical",
            )
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
    if not manifest_file.is_file():
        raise CohortError("the manifest is missing", file=manifest_file)
    try:
        manifest = yaml.safe_load(manifest_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CohortError(
            f"not UTF-8 text ({err.reason} at byte {err.start})", file=manifest_file
        ) from err
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
    n_subjects = manifest["n_subjects"]
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int) or n_subjects < 1:
        raise CohortError(
            f"n_subjects {n_subjects!r} is not a positive whole number (an empty cohort?)",
            file=manifest_file,
            field="n_subjects",
        )
    _expect_entry(manifest["table"], manifest_file, "table")
    for section in ("arrays", "masks", "extras", "tabular_variants"):
        if not isinstance(manifest.get(section, {}), dict):
            raise CohortError("is not a mapping", file=manifest_file, field=section)
    for name, entry in manifest.get("arrays", {}).items():
        _expect_entry(entry, manifest_file, f"arrays.{name}")
        shape, dtype = entry.get("shape"), entry.get("dtype")
        if not (
            isinstance(shape, list)
            and shape
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        ):
            raise CohortError(
                f"shape {shape!r} is not a list of sizes",
                file=manifest_file,
                field=f"arrays.{name}.shape",
            )
        if not isinstance(dtype, str):
            raise CohortError(
                f"dtype {dtype!r} is not a dtype name",
                file=manifest_file,
                field=f"arrays.{name}.dtype",
            )
    for name, entry in manifest.get("masks", {}).items():
        _expect_entry(entry, manifest_file, f"masks.{name}")
    for name, entry in manifest.get("extras", {}).items():
        _expect_entry(entry, manifest_file, f"extras.{name}")
    for name, entry in manifest.get("tabular_variants", {}).items():
        if not isinstance(entry, dict):
            raise CohortError(
                "is not a mapping", file=manifest_file, field=f"tabular_variants.{name}"
            )
    if "arrays" in manifest and "ecg" in manifest["arrays"]:
        ecg = manifest.get("ecg")
        if not isinstance(ecg, dict):
            raise CohortError(
                "an ECG array needs an `ecg` entry (sampling_rate_hz, units)",
                file=manifest_file,
                field="ecg",
            )
        error, _ = plausibility.check_ecg_rate(ecg.get("sampling_rate_hz"))
        if error:
            raise CohortError(error, file=manifest_file, field="ecg.sampling_rate_hz")
        if ecg.get("units", "mV") != "mV":
            raise CohortError(
                f"units {ecg.get('units')!r}: the cohort format stores ECGs in mV",
                file=manifest_file,
                field="ecg.units",
            )
    return manifest


def _expect_entry(entry: Any, manifest_file: Path, where: str) -> None:
    """A manifest file entry is a mapping with a `file` name."""
    if not isinstance(entry, dict):
        raise CohortError(
            f"is {entry!r}, not a mapping with a `file`", file=manifest_file, field=where
        )
    if not isinstance(entry.get("file"), str) or not entry["file"]:
        raise CohortError(
            f"file {entry.get('file')!r} is not a file name",
            file=manifest_file,
            field=f"{where}.file",
        )


def _member_file(path: Path, entry: dict[str, Any], where: str, what: str) -> Path:
    """The file an entry names: a regular file inside the cohort folder, or `CohortError`.

    Absolute names, `..`, links leading out of the folder and devices (`/dev/zero`) are
    refused: a manifest cannot make the reader open files elsewhere.
    """
    manifest_file = path / MANIFEST
    name = entry["file"]
    file = path / name
    root = path.resolve()
    if Path(name).is_absolute() or not file.resolve().is_relative_to(root):
        raise CohortError(
            f"file {name!r} lies outside the cohort folder; a manifest may only name files in it",
            file=manifest_file,
            field=f"{where}.file",
        )
    if not file.exists():
        raise CohortError(f"{what} is missing", file=file, field=where.removeprefix("arrays."))
    if not stat.S_ISREG(file.stat().st_mode):
        raise CohortError(
            f"{what} is not a regular file", file=file, field=where.removeprefix("arrays.")
        )
    return file


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


def _rows_problem(
    bad: np.ndarray, ids: pd.Series, problem: Any, file: Path, field: str
) -> list[CohortError]:
    """One problem for the rows flagged in `bad`: `problem(row)` words it for the first, and
    the count of the others follows."""
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return []
    more = f" (and {rows.size - 1} more subject(s))" if rows.size > 1 else ""
    return [CohortError(problem(int(rows[0])) + more, file=file, subject=str(ids.iloc[rows[0]]),
                        field=field)]  # fmt: skip


def _table_problems(
    table: pd.DataFrame, manifest: dict[str, Any], table_file: Path
) -> list[CohortError]:
    """Every problem of the subjects table's contract (columns, ids, splits, sex, finite CPs)."""
    problems = [
        CohortError("a required column is missing", file=table_file, field=column)
        for column in REQUIRED_COLUMNS
        if column not in table.columns
    ]
    if len(table) != manifest["n_subjects"]:
        problems.append(
            CohortError(
                f"{len(table)} rows, but the manifest says n_subjects = {manifest['n_subjects']}",
                file=table_file,
            )
        )
    if "id" not in table.columns:
        return problems
    ids = table["id"].astype("string")
    for row in np.flatnonzero(ids.isna().to_numpy())[:1]:
        problems.append(CohortError(f"row {row} has no subject id", file=table_file, field="id"))
    if "split" in table.columns:
        splits = table["split"].astype("string")
        problems += _rows_problem(
            (~splits.isin(SPLITS)).to_numpy(),
            ids,
            lambda row: f"unknown split {splits.iloc[row]!r} (expected one of {list(SPLITS)})",
            table_file,
            "split",
        )
        # A subject may appear in several rows only through `subject_id` (repeat visits), and
        # then all its rows must share one split; a repeated row id is always an error.
        subject = table["subject_id"].astype("string") if "subject_id" in table.columns else ids
        split_count = splits.groupby(subject.to_numpy()).nunique()
        for who in split_count[split_count > 1].index[:1]:
            found = sorted(set(splits[subject.to_numpy() == who].dropna()))
            problems.append(
                CohortError(
                    f"the subject is in two splits ({', '.join(found)}): its data would leak "
                    "between them",
                    file=table_file,
                    subject=str(who),
                    field="split",
                )
            )
    problems += _rows_problem(
        ids.duplicated().to_numpy() & ids.notna().to_numpy(),
        ids,
        lambda row: "duplicate subject id",
        table_file,
        "id",
    )
    if "sex" in table.columns:
        problems += _rows_problem(
            (~table["sex"].astype("string").isin(SEXES)).to_numpy(),
            ids,
            lambda row: f"sex {table['sex'].iloc[row]!r} is not one of {list(SEXES)}",
            table_file,
            "sex",
        )
    for cp in CP_NAMES:
        if cp not in table.columns:
            continue
        values = pd.to_numeric(table[cp], errors="coerce").to_numpy(dtype=float)
        problems += _rows_problem(
            ~np.isfinite(values),
            ids,
            lambda row, cp=cp: (
                f"the cardiac phenotype is {table[cp].iloc[row]!r}, not a finite number"
            ),
            table_file,
            cp,
        )
    return problems


# The four chambers: (end-diastolic or maximum volume, end-systolic or minimum volume, stroke
# volume, ejection fraction). SV = EDV - ESV and EF = 100 SV / EDV by definition; a measured
# table rounds them, hence the tolerances.
CHAMBERS: tuple[tuple[str, str, str, str], ...] = (
    ("LVEDV", "LVESV", "LVSV", "LVEF"),
    ("RVEDV", "RVESV", "RVSV", "RVEF"),
    ("LAVmax", "LAVmin", "LASV", "LAEF"),
    ("RAVmax", "RAVmin", "RASV", "RAEF"),
)
SV_TOLERANCE_ML = 1.0  # or SV_TOLERANCE_FRACTION of the larger volume, whichever is more
SV_TOLERANCE_FRACTION = 0.02
EF_TOLERANCE_POINTS = 1.0  # percentage points


def with_consistent_chambers(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` whose smaller volumes and stroke volumes follow from each chamber's
    larger volume and ejection fraction (ESV = EDV (1 - EF/100), SV = EDV - ESV): how an
    example or test table holds CPs that `cp_relation_problems` accepts."""
    table = table.copy()
    for large, small, stroke, fraction in CHAMBERS:
        table[small] = table[large] * (1.0 - table[fraction] / 100.0)
        table[stroke] = table[large] - table[small]
    return table


def _cp_relation_checks(table: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(field, rows breaking it, words(row)) for each relation between a chamber's CPs: the
    smaller volume not above the larger, SV their difference, EF = 100 SV / EDV."""
    for large, small, stroke, fraction in CHAMBERS:
        if not {large, small, stroke, fraction} <= set(table.columns):
            continue
        edv, esv, sv, ef = (pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
                            for c in (large, small, stroke, fraction))  # fmt: skip
        yield (
            small,
            esv > edv,
            lambda r, edv=edv, esv=esv, large=large, small=small: (
                f"{small} {esv[r]:g} mL is above {large} {edv[r]:g} mL"
            ),
        )
        tolerance = np.maximum(SV_TOLERANCE_ML, SV_TOLERANCE_FRACTION * np.abs(edv))
        yield (
            stroke,
            np.abs(sv - (edv - esv)) > tolerance,
            lambda r, edv=edv, esv=esv, sv=sv, large=large, small=small, tol=tolerance: (
                f"{sv[r]:g} mL is not {large} - {small} = {edv[r] - esv[r]:g} mL "
                f"(within {tol[r]:g} mL)"
            ),
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = 100.0 * sv / edv
        yield (
            fraction,
            (edv > 0) & (np.abs(ef - expected) > EF_TOLERANCE_POINTS),
            lambda r, ef=ef, expected=expected, large=large, stroke=stroke: (
                f"{ef[r]:g} % is not 100 {stroke} / {large} = {expected[r]:.4g} % "
                f"(within {EF_TOLERANCE_POINTS:g} points)"
            ),
        )


def cp_relation_problems(table: pd.DataFrame, table_file: Path) -> list[CohortError]:
    """Subjects whose CPs contradict their definitions: a smaller volume above the larger one,
    a stroke volume that is not their difference, an ejection fraction that is not SV / EDV."""
    ids = table["id"].astype(str) if "id" in table else pd.Series(map(str, range(len(table))))
    return [
        problem
        for column, bad, words in _cp_relation_checks(table)
        for problem in _rows_problem(bad, ids, words, table_file, column)
    ]


def inconsistent_cp_rows(table: pd.DataFrame) -> dict[int, str]:
    """{row: the first relation between its CPs that it breaks}: the rows an importer drops
    (one subject's bad row must not refuse a whole extract)."""
    rows: dict[int, str] = {}
    for column, bad, words in _cp_relation_checks(table):
        for row in np.flatnonzero(bad):
            rows.setdefault(int(row), f"{column}: {words(int(row))}")
    return rows


FLOAT32_MAX = float(np.finfo(np.float32).max)
EXTREME_MADS = 50.0  # a value this many median absolute deviations from the median is extreme


def feature_problems(table: pd.DataFrame, table_file: Path) -> tuple[list[CohortError], list[str]]:
    """(problems, warnings) of the numeric columns a model may read: inf, or a magnitude that
    float32 (what training reads) cannot hold, is an error; a column with missing values, one
    with a single value for every subject, and one with extreme values (outside the plausible
    range of `ctrip.data.plausibility` where it has one, else far from the bulk) are warned."""
    problems, warned, gaps = [], [], []
    ids = table["id"].astype(str) if "id" in table else pd.Series(map(str, range(len(table))))
    for column in table.columns:
        if column in ("id", "split") or not pd.api.types.is_numeric_dtype(table[column]):
            continue
        if pd.api.types.is_bool_dtype(table[column]):
            continue
        values = table[column].to_numpy(dtype=float, na_value=np.nan)
        ranged = column in plausibility.TABLE_RANGES  # its possible range refuses these already
        problems += _rows_problem(
            ~ranged & (np.isinf(values) | (np.abs(values) > FLOAT32_MAX)),
            ids,
            lambda r, values=values: (
                f"{values[r]:g} is not a finite number that float32 holds (training reads float32)"
            ),
            table_file,
            column,
        )
        finite = values[np.isfinite(values) & (np.abs(values) <= FLOAT32_MAX)]
        missing = int(np.isnan(values).sum())
        if missing:
            gaps.append(f"{column} ({missing})")
        constant = constant_value(finite) if finite.size > 1 else None
        if constant is not None:
            warned.append(f"{table_file.name}: field {column}: every subject with a value has "
                          f"{constant:g}: a constant column carries no information")  # fmt: skip
        elif column not in plausibility.TABLE_RANGES and finite.size > 1:
            median = float(np.median(finite))
            mad = float(np.median(np.abs(finite - median)))
            far = (
                np.abs(values - median) > EXTREME_MADS * mad
                if mad > 0
                else np.zeros(len(values), bool)
            )
            far &= np.isfinite(values)
            if far.any():
                first = int(np.flatnonzero(far)[0])
                warned.append(f"{table_file.name}: field {column}: {int(far.sum())} subject(s) "
                              f"with extreme values, e.g. subject {ids.iloc[first]}: "
                              f"{values[first]:g}, more than {EXTREME_MADS:g} median absolute "
                              f"deviations from the median {median:g}")  # fmt: skip
    if gaps:
        warned.append(f"{table_file.name}: {len(gaps)} column(s) with missing values (subjects "
                      f"without one, of {len(table)}): {', '.join(gaps)}")  # fmt: skip
    return problems, warned


def _open_array(path: Path, name: str, entry: dict[str, Any], table: pd.DataFrame) -> np.memmap:
    manifest_file = path / MANIFEST
    if name not in ARRAY_MODALITIES:
        raise CohortError(f"unknown array modality {name!r}", file=manifest_file, field=name)
    array_file = _member_file(path, entry, f"arrays.{name}", f"the {name} array file")
    try:
        values = np.load(array_file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
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
    if values.dtype.kind != "f":
        scale = "floating point in [0, 1]" if name in IMAGE_MODALITIES else "floating-point mV"
        raise CohortError(
            f"dtype {values.dtype}: {name} arrays must be {scale}", file=array_file, field=name
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
    return values


def _open_mask(
    path: Path, name: str, entry: dict[str, Any], arrays: dict[str, np.memmap]
) -> np.memmap:
    """A mask's memory map: bool, shaped as its manifest entry and as the image it lies on."""
    manifest_file = path / MANIFEST
    if name not in MASKS:
        raise CohortError(
            f"unknown mask {name!r} (expected one of {sorted(MASKS)})",
            file=manifest_file,
            field=f"masks.{name}",
        )
    mask_file = _member_file(path, entry, f"masks.{name}", f"the {name} mask file")
    try:
        values = np.load(mask_file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CohortError(f"not a readable .npy array ({err})", file=mask_file, field=name) from err
    if values.dtype != np.bool_ or entry.get("dtype") != "bool":
        raise CohortError(
            f"dtype {values.dtype} (manifest {entry.get('dtype')!r}): a mask is bool",
            file=mask_file,
            field=name,
        )
    image = arrays.get(MASKS[name])
    if image is None:
        raise CohortError(
            f"the mask lies on the {MASKS[name]} array, which the cohort does not have",
            file=mask_file,
            field=name,
        )
    if list(values.shape) != list(entry.get("shape", [])) or values.shape != image.shape:
        raise CohortError(
            f"shape {list(values.shape)} does not match the manifest's {entry.get('shape')} "
            f"and the {MASKS[name]} array's {list(image.shape)}",
            file=mask_file,
            field=name,
        )
    return values


def _scan_array(array_file: Path, name: str, values: np.ndarray, table: pd.DataFrame) -> list[str]:
    """Read the array in blocks: NaN/inf and scale are errors; returns warnings."""
    flat_subjects, loudest = [], 0.0
    for start in range(0, values.shape[0], _SCAN_CHUNK):
        block = np.asarray(values[start : start + _SCAN_CHUNK]).reshape(
            min(_SCAN_CHUNK, values.shape[0] - start), -1
        )

        def fail(problem: str, rows: np.ndarray, _start: int = start) -> CohortError:
            row = _start + int(np.flatnonzero(rows)[0])
            return CohortError(
                problem, file=array_file, subject=str(table["id"].iloc[row]), field=name
            )

        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise fail("the array holds NaN or inf", ~finite)
        if block.shape[1] == 0:
            continue
        low, high = block.min(axis=1), block.max(axis=1)
        if name in IMAGE_MODALITIES:
            tol = plausibility.IMAGE_TOLERANCE
            outside = (low < -tol) | (high > 1 + tol)
            if outside.any():
                row = int(np.flatnonzero(outside)[0])
                raise fail(
                    f"values {low[row]:g} to {high[row]:g}: images must be scaled to [0, 1]",
                    outside,
                )
        else:
            peak = np.maximum(np.abs(low), np.abs(high))
            loud = peak > plausibility.ECG_MV_MAX
            if loud.any():
                row = int(np.flatnonzero(loud)[0])
                raise fail(
                    f"amplitude {peak[row]:g} mV is above {plausibility.ECG_MV_MAX:g} mV: are "
                    "the signals in microvolts? The cohort format stores millivolts",
                    loud,
                )
            loudest = max(loudest, float((high - low).max()))
            flat = (high - low) < plausibility.ECG_MV_FLAT
            flat_subjects += [str(table["id"].iloc[start + i]) for i in np.flatnonzero(flat)]
    if name == "ecg" and values.shape[0] and loudest < plausibility.ECG_MV_FLAT:
        raise CohortError(
            f"every ECG is below {plausibility.ECG_MV_FLAT:g} mV peak to peak (the largest "
            f"{loudest:g}): are the signals in volts? The cohort format stores millivolts",
            file=array_file,
            field=name,
        )
    if flat_subjects:
        return [
            f"{array_file.name}: field {name}: {len(flat_subjects)} flat ECG(s) (below "
            f"{plausibility.ECG_MV_FLAT:g} mV peak to peak), e.g. subject {flat_subjects[0]}"
        ]
    return []
