"""Importing a researcher's own files: the work folder is cleaned after success and only of what
the import made, a dead worker is one line, ids that differ only in case are refused, library
warnings are not subject warnings, and the sizes can come from a profile (`--help` says how)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import ctrip.io.importer as importer
from ctrip.cli import main
from ctrip.data.cohort import Cohort, CohortError
from ctrip.io.ecg import write_cardiosoft_xml
from ctrip.io.generic import import_generic
from ctrip.io.preprocess import CentredCropWarning
from tests.test_hardening_import import SETTINGS, _ecg, _localizer, _table

IDS = [f"G{i}" for i in range(1, 7)]


def _study(root: Path, ids: list[str] = IDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, subject in enumerate(ids):
        (root / subject).mkdir()
        np.save(root / subject / "localizer.npy", _localizer(i))
        write_cardiosoft_xml(root / subject / "ecg.xml", _ecg())
    _table(ids).to_csv(root / "subjects.csv", index=False)
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _study(tmp_path_factory.mktemp("own") / "study")


def _import(root: Path, out: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_generic(root, out, SETTINGS, progress=False, **kwargs)


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_successful_import_deletes_its_work_files_unless_kept(study: Path, tmp_path: Path):
    report = _import(study, tmp_path / "c")
    assert report.imported == IDS and not (tmp_path / "c.work").exists()
    assert (tmp_path / "c" / "import_report.txt").is_file()
    _import(study, tmp_path / "k", keep_work=True)
    kept = tmp_path / "k.work"
    assert (kept / importer.LEDGER).is_file() and (kept / "import_report.txt").is_file()
    assert sorted(p.stem for p in (kept / "subjects").glob("*.npz")) == IDS


def test_restart_and_clean_up_delete_only_what_the_import_made(study: Path, tmp_path: Path):
    work = tmp_path / "mine"
    (work / "subjects").mkdir(parents=True)
    (work / "subjects" / "patient_notes.docx").write_bytes(b"notes")
    (work / "README").write_text("mine")
    _import(study, tmp_path / "c", work_dir=work, keep_work=True)
    assert (work / "subjects" / "G1.npz").is_file()
    report = _import(study, tmp_path / "c", work_dir=work, restart=True, overwrite=True)
    assert report.imported == IDS
    assert (work / "subjects" / "patient_notes.docx").read_bytes() == b"notes"
    assert (work / "README").read_text() == "mine"
    assert sorted(report.kept) == ["README", "subjects/patient_notes.docx"]
    assert not list((work / "subjects").glob("G*")) and not (work / "settings.json").exists()


def test_restart_refuses_an_old_work_folder_with_foreign_files_in_subjects(
    study: Path, tmp_path: Path
):
    work = tmp_path / "old"
    (work / "subjects").mkdir(parents=True)
    (work / "settings.json").write_text("{}")
    (work / "subjects" / "patient_notes.docx").write_bytes(b"notes")  # no list of what it made
    with pytest.raises(CohortError, match="not an import work folder"):
        _import(study, tmp_path / "c", work_dir=work, restart=True)
    assert (work / "subjects" / "patient_notes.docx").read_bytes() == b"notes"


def test_only_the_projects_own_warnings_are_listed_for_a_subject(
    study: Path, tmp_path: Path, monkeypatch
):
    original = importer.prepare_subject

    def noisy(subject, settings):
        warnings.warn("wfdb: DataFrame.append is deprecated", FutureWarning, stacklevel=1)
        warnings.warn(
            "pandas: is_categorical_dtype is deprecated", DeprecationWarning, stacklevel=1
        )
        warnings.warn(
            f"{subject.id}: no heart mask; a centred crop", CentredCropWarning, stacklevel=1
        )
        return original(subject, settings)

    monkeypatch.setattr(importer, "prepare_subject", noisy)
    report = _import(study, tmp_path / "c")
    said = [message for messages in report.warnings.values() for message in messages]
    assert said and all("deprecated" not in m for m in said)
    assert any("G1: no heart mask" in m for m in report.warnings["G1"])
    assert "deprecated" not in (tmp_path / "c" / "import_report.txt").read_text()


def _dies_on_g3(subject, settings, state_dir):
    if subject.id == "G3":
        os._exit(9)  # as a worker killed by the OOM killer or `kill -9`
    return importer.process_subject.__wrapped__(subject, settings, state_dir)


def test_a_worker_that_dies_is_one_line_and_a_rerun_resumes(
    study: Path, tmp_path: Path, monkeypatch, capsys
):
    _dies_on_g3.__wrapped__ = importer.process_subject  # type: ignore[attr-defined]
    monkeypatch.setattr(importer, "process_subject", _dies_on_g3)
    args = ["cohort", "import", "generic", "--root", str(study), "--out", str(tmp_path / "c"),
            "--image-size", "16", "--ecg-rate", "100", "--workers", "2", "--no-progress"]  # fmt: skip
    code, _, err = _cli(args, capsys)
    assert code != 0 and "Traceback" not in err and "BrokenProcessPool" not in err
    line = err.splitlines()[0]
    assert line.startswith("error: a worker process died") and "run the same command again" in line
    assert not (tmp_path / "c").exists()
    monkeypatch.undo()
    code, out, _ = _cli(args, capsys)
    assert code == 0 and "imported 6 subject(s)" in out


@pytest.mark.parametrize(("first", "second"), [("S1", "s1"), ("Abc", "aBC"), ("Straße", "STRASSE")])
def test_ids_that_differ_only_in_case_are_refused_naming_both_rows(
    tmp_path: Path, first: str, second: str, capsys
):
    root = _study(tmp_path / "study", ["G1", first, "G2", second])
    code, _, err = _cli(["cohort", "import", "generic", "--root", str(root), "--out",
                         str(tmp_path / "c"), "--no-progress"], capsys)  # fmt: skip
    err = err.splitlines()[0]
    assert code == 2 and err.startswith("error: ") and "field id" in err
    assert f"{first!r} (line 3)" in err and f"{second!r} (line 5)" in err and "case" in err
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.work").exists()


@pytest.mark.parametrize(
    ("flags", "size", "rate"),
    [
        (["--profile", "smoke"], 32, 100.0),
        (["--profile", "default"], 64, 250.0),
        (["--profile", "smoke", "--image-size", "16"], 16, 100.0),
        (["--profile", "default", "--ecg-rate", "100"], 64, 100.0),
        ([], 224, 500.0),
    ],
)
def test_the_import_takes_its_sizes_from_a_profile(study, tmp_path, flags, size, rate, capsys):
    out = tmp_path / "c"
    code, _, err = _cli(["cohort", "import", "generic", "--root", str(study), "--out", str(out),
                         "--no-progress", *flags], capsys)  # fmt: skip
    assert code == 0, err
    cohort = Cohort.open(out)
    assert cohort.array("localizer").shape[-1] == size and cohort.ecg_sampling_rate_hz == rate


def test_import_help_shows_the_layout_the_columns_and_the_profiles(capsys):
    with pytest.raises(SystemExit):
        main(["cohort", "import", "generic", "--help"])
    text = capsys.readouterr().out
    for words in ("subjects.csv", "<id>/localizer/", "ecg.hea + ecg.dat", "required: id, sex",
                  "LVEDV LVESV", "optional: split", "--profile", "smoke 32 px / 100 Hz",
                  "--keep-work", "ctrip cohort template generic DIR"):  # fmt: skip
        assert words in text, words


def test_a_subject_whose_phenotypes_contradict_each_other_is_dropped_not_the_import(
    tmp_path: Path,
):
    root = _study(tmp_path / "study")
    table = _table(IDS)
    table.loc[2, "LVESV"] = table.loc[2, "LVEDV"] + 5.0  # G3: ESV above EDV
    table.loc[4, "RVEF"] = table.loc[4, "RVEF"] + 10.0  # G5: EF not SV / EDV
    table.to_csv(root / "subjects.csv", index=False)
    report = _import(root, tmp_path / "cohort")
    dropped = {d["id"]: d for d in report.dropped}
    assert set(dropped) == {"G3", "G5"}
    assert dropped["G3"]["reason"] == "inconsistent phenotypes"
    assert dropped["G3"]["detail"].startswith("LVESV: ")
    assert dropped["G5"]["detail"].startswith("RVEF: ")
    assert len(Cohort.open(tmp_path / "cohort").table) == len(IDS) - 2
