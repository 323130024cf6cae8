"""The import engine shared by the UK Biobank and the generic importers.

An importer lists its subjects (`SubjectFiles`: the files of each modality, or why one is
missing) and their table rows; `run_import` turns each subject into model input in a work
folder, then assembles the cohort. The work folder makes long imports resumable:

    <out>.work/settings.json          the preprocessing settings (a re-run must use the same)
    <out>.work/subjects/<id>.npz      one subject's arrays, written atomically
    <out>.work/subjects/<id>.json     its state: imported, or dropped with the reason
    <out>.work/import_report.{json,txt}   (with keep_work)
    <out>.work/files_made.txt          every file above, listed before it is made

A re-run skips every subject with a state file (dropped ones too, unless `retry_dropped`),
so an interrupted import continues where it stopped. `restart`, and a successful import
(unless `keep_work`), delete the files the list names and nothing else. Every subject that is not imported is
listed in the report with one of `DROP_REASONS` and the detail (file, field); the report is
also copied into the finished cohort folder.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ctrip.data import plausibility
from ctrip.data.cohort import (
    CohortError,
    CohortWriter,
    check_free_space,
    check_replaceable,
    inconsistent_cp_rows,
    write_errors,
)
from ctrip.data.schema import ARRAY_MODALITIES, CP_NAMES, LEADS
from ctrip.io.ecg import prepare_ecg, read_ecg
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.images import read_cine, read_localizer
from ctrip.io.preprocess import DEFAULT_CROP_MM, HeartBox, cine_input, localizer_input

DROP_REASONS: tuple[str, ...] = (
    "missing modality",  # no file for a requested modality
    "unreadable file",  # a file that cannot be read as its format
    "wrong geometry",  # readable, but too few slices, missing leads, too short, ...
    "missing targets",  # one of the 18 CPs is missing
    "missing field",  # a required table field (sex) is missing or invalid
    "not in table",  # data files for a subject the table does not list
    "impossible value",  # a table value outside its possible range (ctrip.data.plausibility)
)
REPORT = "import_report"
LEDGER = "files_made.txt"  # in the work folder: every file the import made there, one a line


class SubjectDropped(Exception):
    """A subject that cannot be imported; `reason` is one of `DROP_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in DROP_REASONS, reason
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def id_problem(subject_id: str) -> str | None:
    """Why `subject_id` cannot name files (a path separator, `..`, a control character), or None.

    Ids become file names in the work folder and folder names under the input root, so an id
    such as `../../x` or `/tmp/x` would read or write outside them.
    """
    if not subject_id or not subject_id.strip():
        return "the id is empty"
    if subject_id in (".", ".."):
        return f"the id {subject_id!r} names a folder"
    for char in ("/", "\\"):
        if char in subject_id:
            return f"the id {subject_id!r} holds a path separator {char!r}"
    if any(unicodedata.category(c).startswith("C") for c in subject_id):
        return f"the id {subject_id!r} holds a control character"
    if len(subject_id.encode()) > 200:
        return "the id is longer than 200 bytes"
    return None


def case_collision(ids: list[str]) -> tuple[int, int] | None:
    """Positions of the first two ids that differ only in case (S1, s1), or None: their work
    files and subject folders would be one file on a case-insensitive file system (macOS,
    Windows)."""
    seen: dict[str, int] = {}
    for position, subject_id in enumerate(ids):
        folded = subject_id.casefold()
        if folded in seen and ids[seen[folded]] != subject_id:
            return seen[folded], position
        seen.setdefault(folded, position)
    return None


def inside(folder: Path, *parts: str, resolve: bool = True) -> Path:
    """`folder/parts...`, after checking it stays inside `folder` (resolving links if `resolve`)."""
    path = folder.joinpath(*parts)
    if resolve:
        ok = path.resolve().is_relative_to(folder.resolve())
    else:
        ok = Path(os.path.normpath(path)).is_relative_to(os.path.normpath(folder))
    if not ok:
        raise CohortError(f"{'/'.join(parts)!r} leads outside {folder}; refusing to use it")
    return path


@dataclass(frozen=True)
class ImportSettings:
    """What every imported subject must hold and how its files become arrays."""

    modalities: tuple[str, ...] = ("localizer", "ecg")
    image_size: int = 224
    ecg_sampling_rate_hz: float = 500.0
    ecg_seconds: float = 10.0
    crop_mm: float = DEFAULT_CROP_MM
    lv_label: int = 1

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in ARRAY_MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities {unknown or '[]'}: choose from {list(ARRAY_MODALITIES)}")
        checks = (
            ("image_size", self.image_size, 8, 4096),
            ("ecg_sampling_rate_hz", self.ecg_sampling_rate_hz, 50.0, 20000.0),
            ("ecg_seconds", self.ecg_seconds, 1.0, 600.0),
            ("crop_mm", self.crop_mm, 10.0, 2000.0),
        )
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} {value!r} is not a number")
            if not low <= value <= high:  # also refuses NaN
                raise ValueError(f"{name} {value!r} is outside {low:g}-{high:g}")

    def shape(self, modality: str) -> tuple[int, ...]:
        if modality == "ecg":
            return (len(LEADS), round(self.ecg_sampling_rate_hz * self.ecg_seconds))
        return (3, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "modalities": list(self.modalities)}


@dataclass
class SubjectFiles:
    """One subject's input files by modality; `missing[m]` says why modality m has no file."""

    id: str
    files: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    boxes: dict[str, HeartBox] = field(default_factory=dict)
    cmr_frames: tuple[int, int] | None = None

    def add_annotations(
        self,
        boxes: dict[str, HeartBox] | None,
        cmr_frames: dict[str, tuple[int, int]] | None,
    ) -> None:
        """Attach the user's localizer heart box and cine ED/ES indices, where given."""
        if boxes and self.id in boxes:
            self.boxes["localizer"] = boxes[self.id]
        if cmr_frames and self.id in cmr_frames:
            self.cmr_frames = cmr_frames[self.id]


def prepare_subject(subject: SubjectFiles, settings: ImportSettings) -> dict[str, np.ndarray]:
    """The model inputs of one subject, or `SubjectDropped` with the reason."""
    for modality in settings.modalities:
        if modality not in subject.files:
            detail = subject.missing.get(modality, "no file")
            raise SubjectDropped("missing modality", f"{modality}: {detail}")
    arrays = {}
    try:
        if "localizer" in settings.modalities:
            stack = read_localizer(subject.files["localizer"])
            mask = subject.masks.get("localizer")
            arrays["localizer"] = localizer_input(
                stack,
                settings.image_size,
                mask=read_localizer(mask).pixels if mask else None,
                box=subject.boxes.get("localizer"),
                crop_mm=settings.crop_mm,
            )
        if "cmr" in settings.modalities:
            cine = read_cine(subject.files["cmr"])
            mask = subject.masks.get("cmr")
            mask_pixels = read_cine(mask).pixels if mask else None
            if mask_pixels is not None and mask_pixels.shape[0] == 1:
                mask_pixels = mask_pixels[0]  # a mask of the mid slice only: (T, H, W)
            arrays["cmr"] = cine_input(
                cine,
                settings.image_size,
                mask=mask_pixels,
                frames=subject.cmr_frames,
                box=subject.boxes.get("cmr"),
                crop_mm=settings.crop_mm,
                lv_label=settings.lv_label,
            )
        if "ecg" in settings.modalities:
            record = read_ecg(subject.files["ecg"])
            arrays["ecg"] = prepare_ecg(record, settings.ecg_sampling_rate_hz, settings.ecg_seconds)
    except UnreadableFileError as err:
        raise SubjectDropped("unreadable file", str(err)) from err
    except GeometryError as err:
        raise SubjectDropped("wrong geometry", str(err)) from err
    except (SubjectDropped, KeyboardInterrupt):
        raise
    except Exception as err:  # any reader failure drops this subject, never the batch
        # modalities are prepared in ARRAY_MODALITIES order: the failed one has no array yet
        failed = [m for m in ARRAY_MODALITIES if m in settings.modalities and m not in arrays]
        file = subject.files[failed[0]]
        raise SubjectDropped(
            "unreadable file", f"{file}: {type(err).__name__}: {' '.join(str(err).split())}"
        ) from err
    for modality, array in arrays.items():
        if array.shape != settings.shape(modality) or not np.isfinite(array).all():
            raise SubjectDropped(
                "wrong geometry",
                f"{subject.files[modality]}: prepared {modality} is {array.shape} or not finite",
            )
    if "ecg" in arrays and np.abs(arrays["ecg"]).max() > plausibility.ECG_MV_MAX:
        raise SubjectDropped(
            "unreadable file",
            f"{subject.files['ecg']}: amplitude {np.abs(arrays['ecg']).max():.0f} mV, above "
            f"{plausibility.ECG_MV_MAX:g} mV: microvolts labelled as mV, or a saturated recording",
        )
    return arrays


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        write(handle)
    os.replace(partial, path)


def _about_the_data(category: type[Warning]) -> bool:
    """A warning class of this project's (a centred crop, an unknown spacing), not a library's."""
    return category.__module__.split(".")[0] == "ctrip"


def process_subject(subject: SubjectFiles, settings: ImportSettings, state_dir: Path) -> dict:
    """Prepare one subject into `state_dir` (arrays, then state) and return its state."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arrays = prepare_subject(subject, settings)
            _write_atomically(
                inside(state_dir, f"{subject.id}.npz"), lambda h: np.savez(h, **arrays)
            )
            state = {"id": subject.id, "status": "imported"}
        except SubjectDropped as drop:
            state = {
                "id": subject.id,
                "status": "dropped",
                "reason": drop.reason,
                "detail": drop.detail,
            }
    # Only the project's own warnings are about this subject's data; a library's deprecation
    # notice (wfdb, pandas) is not, and goes to the usual warning filters instead.
    state["warnings"] = [str(w.message) for w in caught if _about_the_data(w.category)]
    for w in caught:
        if not _about_the_data(w.category):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _write_atomically(
        inside(state_dir, f"{subject.id}.json"), lambda h: h.write(json.dumps(state).encode())
    )
    return state


def load_prepared(state_dir: Path, subject_id: str, settings: ImportSettings) -> dict:
    """A subject's prepared arrays from the work folder; `SubjectDropped` if the file is bad."""
    file = inside(state_dir, f"{subject_id}.npz")
    try:
        with np.load(file, allow_pickle=False) as stored:
            arrays = {m: np.asarray(stored[m]) for m in settings.modalities}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise SubjectDropped(
            "unreadable file", f"{file}: damaged work file ({type(err).__name__}: {err})"
        ) from err
    for modality, array in arrays.items():
        if array.shape != settings.shape(modality) or not np.isfinite(array).all():
            raise SubjectDropped(
                "unreadable file", f"{file}: damaged work file ({modality} is {array.shape})"
            )
    return arrays


@dataclass
class ImportReport:
    """Who was imported, who was dropped and why, and per-subject warnings (default crops)."""

    imported: list[str]
    dropped: list[dict[str, str]]
    warnings: dict[str, list[str]]
    cohort: str | None = None
    kept: list[str] = field(default_factory=list)  # files in the work folder it did not make

    def counts(self) -> dict[str, int]:
        return dict(Counter(d["reason"] for d in self.dropped))

    def summary(self) -> str:
        lines = [f"imported {len(self.imported)} subject(s); dropped {len(self.dropped)}"]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.counts().items())]
        if self.warnings:
            lines.append(
                f"  {len(self.warnings)} imported subject(s) with warnings (e.g. centred crops)"
            )
        return "\n".join(lines)

    def text(self) -> str:
        lines = [self.summary(), ""]
        if self.cohort:
            lines.insert(0, f"cohort: {self.cohort}")
        if self.dropped:
            lines.append("dropped subjects (id, reason, detail):")
            lines += [f"  {d['id']}\t{d['reason']}\t{d['detail']}" for d in self.dropped]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  {sid}\t{msg}" for sid, msgs in self.warnings.items() for msg in msgs]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path) -> Path:
        """Write import_report.json and import_report.txt into `folder`; returns the .txt."""
        folder = Path(folder)
        (folder / f"{REPORT}.json").write_text(json.dumps(asdict(self), indent=1))
        (folder / f"{REPORT}.txt").write_text(self.text())
        return folder / f"{REPORT}.txt"


def tabular_variants(numerical: list[str], categorical: dict[str, list[str]]) -> dict[str, Any]:
    """Variant T (the given features) and the deliberate leak Tp (T plus the 18 CPs)."""
    return {
        "T": {"numerical": list(numerical), "categorical": categorical},
        "Tp": {"numerical": [*numerical, *CP_NAMES], "categorical": categorical, "leaking": True},
    }


def _check_settings(work: Path, settings: ImportSettings) -> None:
    """The work folder's settings must be these; a new folder records them."""
    saved = work / "settings.json"
    current = settings.to_dict()
    if saved.exists():
        previous = json.loads(saved.read_text())
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise ValueError(
                f"{work}: this work folder was made with other settings ({', '.join(changed)}); "
                "pass --restart to start afresh, or choose another --work folder"
            )
    else:
        _record_made(work, ["settings.json"])
        saved.write_text(json.dumps(current, indent=1))


def _record_made(work: Path, names: list[str]) -> None:
    """Add `names` (relative to `work`) to the work folder's list of the files the import made,
    before it makes them: only those are ever deleted (`remove_work_files`)."""
    with open(work / LEDGER, "a", encoding="utf-8") as handle:
        handle.writelines(f"{name}\n" for name in names)


def _subject_files(subject_id: str) -> list[str]:
    """The work files of one subject, as `process_subject` writes them (atomically)."""
    names = [f"{subject_id}.npz", f"{subject_id}.json"]
    return [f"subjects/{n}{end}" for n in names for end in ("", ".partial")]


def remove_work_files(work: Path) -> list[str]:
    """Delete the files the import made in `work` (those its list names), then the folders
    left empty. Anything else stays where it is, e.g. a user's notes in a folder given as
    `--work`; returns those names. A work folder from before the list was kept is deleted
    only if it holds nothing but import files."""
    if not work.exists():
        return []
    ledger = work / LEDGER
    if not ledger.is_file():
        _check_work_folder(work)
        shutil.rmtree(work)
        return []
    for name in dict.fromkeys(ledger.read_text(encoding="utf-8").splitlines()):
        path = Path(name)
        if not name or path.is_absolute() or ".." in path.parts:
            continue
        if (work / path).is_symlink() or (work / path).is_file():
            (work / path).unlink()
    ledger.unlink()
    for folder in (work / "subjects", work):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if not work.exists():
        return []
    return sorted(str(p.relative_to(work)) for p in work.rglob("*") if not p.is_dir())


def run_import(
    out_dir: str | Path,
    table: pd.DataFrame,
    subjects: list[SubjectFiles],
    settings: ImportSettings,
    *,
    source: str,
    provenance: dict[str, Any],
    variants: dict[str, Any],
    tabular_field_ids: dict[str, int] | None = None,
    early_drops: list[dict[str, str]] | None = None,
    work_dir: str | Path | None = None,
    workers: int = 1,
    retry_dropped: bool = False,
    restart: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    split_seed: int = 0,
    keep_work: bool = False,
) -> ImportReport:
    """Prepare every subject (resumably, in a work folder), write the cohort and the report.

    `table` holds one row per subject of `subjects` (id, sex, age, height, weight, ..., CPs);
    `early_drops` are subjects the importer already rejected ({id, reason, detail}). After a
    successful import the work files are deleted unless `keep_work`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    check_replaceable(out_dir)  # before any work: --overwrite replaces only a cohort
    for subject in subjects:
        if problem := id_problem(subject.id):
            raise CohortError(f"{problem}; ids name files, so they must be plain names",
                              subject=repr(subject.id), field="id")  # fmt: skip
    if pair := case_collision([s.id for s in subjects]):
        first, second = (subjects[i].id for i in pair)
        raise CohortError(f"the ids {first!r} and {second!r} differ only in case; their work "
                          "files would be one file on a case-insensitive file system: rename one",
                          field="id")  # fmt: skip
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    if restart:
        with write_errors(work):
            remove_work_files(work)
    state_dir = work / "subjects"
    with write_errors(work):
        state_dir.mkdir(parents=True, exist_ok=True)
        _check_settings(work, settings)
    table, early_drops, subjects = _drop_impossible(table, list(early_drops or []), subjects)

    states: dict[str, dict] = {}
    pending = []
    for subject in subjects:
        state = _read_state(inside(state_dir, f"{subject.id}.json"))
        if state is not None and (state["status"] == "imported" or not retry_dropped):
            states[subject.id] = state
            continue
        pending.append(subject)
    per_subject = sum(4 * int(np.prod(settings.shape(m))) for m in settings.modalities)
    check_free_space(state_dir, 2 * per_subject * len(pending))  # work files, then the cohort
    with write_errors(work):
        _record_made(work, [name for s in pending for name in _subject_files(s.id)])
    bar = tqdm(
        total=len(subjects), initial=len(subjects) - len(pending), desc="import", unit="subject",
        disable=not progress,
    )  # fmt: skip
    try:
        with write_errors(state_dir):
            if workers <= 1:
                for subject in pending:
                    states[subject.id] = process_subject(subject, settings, state_dir)
                    bar.update()
            else:
                with ProcessPoolExecutor(workers) as pool:
                    futures = {
                        pool.submit(process_subject, s, settings, state_dir): s.id for s in pending
                    }
                    for future in as_completed(futures):
                        try:
                            states[futures[future]] = future.result()
                        except BrokenProcessPool:
                            raise CohortError(_worker_died(futures, states, work)) from None
                        bar.update()
    finally:
        bar.close()
    for subject in subjects:  # a damaged work file is prepared again, or the subject dropped
        if states[subject.id]["status"] != "imported":
            continue
        try:
            load_prepared(state_dir, subject.id, settings)
        except SubjectDropped:
            with write_errors(state_dir):
                states[subject.id] = process_subject(subject, settings, state_dir)
            if states[subject.id]["status"] == "imported":
                try:
                    load_prepared(state_dir, subject.id, settings)
                except SubjectDropped as drop:
                    states[subject.id].update(
                        status="dropped", reason=drop.reason, detail=drop.detail
                    )

    imported = [s.id for s in subjects if states[s.id]["status"] == "imported"]
    dropped = list(early_drops or []) + [
        {"id": s.id, "reason": states[s.id]["reason"], "detail": states[s.id]["detail"]}
        for s in subjects
        if states[s.id]["status"] == "dropped"
    ]
    report = ImportReport(
        imported=imported,
        dropped=dropped,
        warnings={s: states[s]["warnings"] for s in imported if states[s]["warnings"]},
    )
    if not imported:
        _record_made(work, [f"{REPORT}.json", f"{REPORT}.txt"])
        report_file = report.write(work)
        counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.counts().items()))
        raise CohortError(
            f"no subject could be imported (dropped {len(dropped)}; {counts}); see {report_file}"
        )

    writer = CohortWriter(out_dir, len(imported), overwrite=overwrite)
    targets = {m: writer.array(m, settings.shape(m)) for m in settings.modalities}
    for row, subject_id in enumerate(tqdm(imported, desc="assemble", disable=not progress)):
        arrays = load_prepared(state_dir, subject_id, settings)
        for modality, target in targets.items():
            target[row] = arrays[modality]
    rows = table.assign(id=table["id"].astype(str)).set_index("id").loc[imported].reset_index()
    provenance = {
        **provenance,
        "preprocessing": settings.to_dict(),
        "imported": len(imported),
        "dropped": report.counts(),
        "subjects_with_warnings": len(report.warnings),  # e.g. a centred crop: no mask or box
        "split_seed": split_seed,
    }
    writer.finish(
        rows,
        source=source,
        provenance=provenance,
        tabular_variants=variants,
        ecg_sampling_rate_hz=settings.ecg_sampling_rate_hz if "ecg" in targets else None,
        tabular_field_ids=tabular_field_ids,
        split_seed=split_seed,
    )
    report.cohort = str(out_dir)
    with write_errors(out_dir):
        report.write(out_dir)
    with write_errors(work):
        if keep_work:
            _record_made(work, [f"{REPORT}.json", f"{REPORT}.txt"])
            report.write(work)
        else:  # the cohort holds it all now: the work files would double the disk used
            report.kept = remove_work_files(work)
    return report


def _worker_died(futures: dict, states: dict[str, dict], work: Path) -> str:
    """One line for a worker process that died (killed, out of memory): which subjects were in
    progress, and that a re-run resumes from what is prepared."""
    unfinished = [sid for future, sid in futures.items() if sid not in states]
    shown = ", ".join(unfinished[:3]) + (" ..." if len(unfinished) > 3 else "")
    return (
        f"a worker process died (killed, or out of memory) while preparing subjects, one of "
        f"{shown}; the {len(states)} subject(s) prepared so far are kept in {work}: run the "
        "same command again to resume"
    )


def _read_state(state_file: Path) -> dict | None:
    """A subject's saved state, or None when there is none or it is damaged (prepare again)."""
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(state, dict) and state.get("status") in ("imported", "dropped")
    return state if ok else None


def _check_work_folder(work: Path) -> None:
    """A work folder without the list of what the import made is deleted whole only if it holds
    nothing but import files (its top-level names, and work files in `subjects/`)."""
    entries = {e.name for e in work.iterdir()} if work.is_dir() else {"(a file)"}
    ours = {"settings.json", "subjects", f"{REPORT}.json", f"{REPORT}.txt"}
    if (work / "subjects").is_dir():
        entries |= {
            f"subjects/{e.name}"
            for e in (work / "subjects").iterdir()
            if not (e.is_file() and e.name.endswith((".npz", ".json", ".partial")))
        }
    if entries - ours:
        raise CohortError(
            f"is not an import work folder (it holds {sorted(entries - ours)[:3]}); refusing "
            "to delete it for --restart",
            file=work,
        )


def _drop_impossible(
    table: pd.DataFrame, drops: list[dict[str, str]], subjects: list[SubjectFiles]
) -> tuple[pd.DataFrame, list[dict[str, str]], list[SubjectFiles]]:
    """Drop the subjects whose table row holds a physically impossible value (LVEF 250 %) or
    CPs that contradict each other (LVESV above LVEDV, LVEF not 100 LVSV / LVEDV)."""
    bad: dict[int, str] = {}
    for column in table.columns:
        spec = plausibility.TABLE_RANGES.get(column)
        if spec is None:
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        low, high = spec.possible
        for row in np.flatnonzero((values < low) | (values > high)):
            bad.setdefault(
                int(row),
                f"{column} = {values[row]:g} {spec.unit} is outside the possible range "
                f"{low:g}-{high:g} {spec.unit}",
            )
    reasons = dict.fromkeys(bad, "impossible value")
    for row, detail in inconsistent_cp_rows(table).items():
        if row not in bad:
            bad[row], reasons[row] = detail, "inconsistent phenotypes"
    if not bad:
        return table, drops, subjects
    ids = table["id"].astype(str).to_numpy()
    drops += [{"id": ids[r], "reason": reasons[r], "detail": d} for r, d in bad.items()]
    gone = {ids[r] for r in bad}
    keep = ~np.isin(ids, list(gone))
    return (
        table[keep].reset_index(drop=True),
        drops,
        [s for s in subjects if s.id not in gone],
    )


def find_input(
    folder: Path, stem: str, suffixes: tuple[str, ...], folders: bool = True
) -> Path | None:
    """`folder/stem` as a folder (if `folders`) or `folder/stem<suffix>` for the first suffix found."""
    if folders and (folder / stem).is_dir():
        return folder / stem
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_table_csv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """`pandas.read_csv`, with any failure (missing, not UTF-8, malformed) one error naming the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError as err:
        raise CohortError("no such file", file=path) from err
    except UnicodeDecodeError as err:
        raise CohortError(
            f"not UTF-8 text ({err.reason} at byte {err.start}); save the table as UTF-8 CSV",
            file=path,
        ) from err
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CohortError(
            f"not a readable CSV table ({' '.join(str(err).split())})", file=path
        ) from err


def read_boxes(path: str | Path) -> dict[str, HeartBox]:
    """Heart boxes by subject from a CSV with columns id, r0, c0, r1, c1 and optionally slice."""
    frame = read_table_csv(path, dtype={"id": str})
    missing = [c for c in ("id", "r0", "c0", "r1", "c1") if c not in frame.columns]
    if missing:
        raise CohortError(f"heart-box table lacks columns {missing}", file=path)
    boxes = {}
    for row in frame.itertuples(index=False):
        slice_index = getattr(row, "slice", None)
        text = ",".join(str(int(v)) for v in (row.r0, row.c0, row.r1, row.c1))
        if slice_index is not None and pd.notna(slice_index):
            text += f",{int(slice_index)}"
        try:
            boxes[str(row.id)] = HeartBox.parse(text)
        except ValueError as err:
            raise CohortError(str(err), file=path, subject=str(row.id)) from err
    return boxes


def read_cmr_frames(path: str | Path) -> dict[str, tuple[int, int]]:
    """End-diastole and end-systole frame indices by subject from a CSV: id, ed, es."""
    frame = read_table_csv(path, dtype={"id": str})
    missing = [c for c in ("id", "ed", "es") if c not in frame.columns]
    if missing:
        raise CohortError(f"cine frame table lacks columns {missing}", file=path)
    return {str(r.id): (int(r.ed), int(r.es)) for r in frame.itertuples(index=False)}
