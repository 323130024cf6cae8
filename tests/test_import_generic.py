"""The generic importer on real files (pydicom, nibabel and a real DICOM ECG), the drop report,
resuming an interrupted import, and the `ctrip cohort import generic` command."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

import ctrip.io.importer as importer
from ctrip.cli import main
from ctrip.data.cohort import Cohort, CohortError, with_consistent_chambers
from ctrip.data.schema import CP_NAMES
from ctrip.io.ecg import prepare_ecg, read_dicom_ecg, write_cardiosoft_xml, write_wfdb
from ctrip.io.generic import import_generic
from ctrip.io.images import read_localizer
from ctrip.io.importer import ImportSettings
from ctrip.io.preprocess import CentredCropWarning, localizer_input
from tests.test_io_images import CT_STACK, TRIPLANAR, mr_series

SETTINGS = ImportSettings(
    ("localizer", "ecg"), image_size=16, ecg_sampling_rate_hz=100, ecg_seconds=10
)
ECG_DCM = Path(get_testdata_file("waveform_ecg.dcm"))
NIFTI = Path(data_path)


def subjects_table(ids: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(ids)
    table = pd.DataFrame(
        {
            "id": ids,
            "sex": rng.choice(["F", "M"], n),
            "age": rng.uniform(45, 80, n).round(1),
            "height": rng.normal(170, 8, n).round(1),
            "weight": rng.normal(78, 12, n).round(1),
            "smoking": [("never", "previous", "current")[i % 3] for i in range(n)],
            "24103-2.0": rng.normal(60, 5, n),  # a UK Biobank LVEF column: leaks, never an input
        }
    )
    for j, cp in enumerate(CP_NAMES):
        table[cp] = rng.normal(50 + j, 5, n).round(2)
    table["LVCO"] = rng.normal(5, 1, n).round(2)  # L/min: 50 would be impossible
    return with_consistent_chambers(table)  # ESV, SV from EDV and EF, as measured CPs relate


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine subject folders from real files, four of them importable."""
    root = tmp_path_factory.mktemp("study")
    ecg = read_dicom_ecg(ECG_DCM)
    layout = {
        "S01": {"localizer": ("copytree", CT_STACK), "ecg.dcm": ("copy", ECG_DCM)},
        "S02": {"localizer": ("series", None), "ecg.xml": ("xml", None)},
        "S03": {"localizer.nii": ("copy", NIFTI / "anatomical.nii"), "ecg": ("wfdb", None)},
        "S04": {
            "localizer": ("copytree", TRIPLANAR),
            "ecg.dcm": ("copy", ECG_DCM),
        },  # wrong geometry
        "S05": {"localizer": ("copytree", CT_STACK)},  # no ECG
        "S06": {"localizer.nii.gz": ("garbage", None), "ecg.dcm": ("copy", ECG_DCM)},  # unreadable
        "S07": {"localizer": ("copytree", CT_STACK), "ecg.dcm": ("copy", ECG_DCM)},  # no LVM
        "S08": {"localizer": ("copytree", CT_STACK), "ecg.dcm": ("copy", ECG_DCM)},  # not in table
        "S09": {"localizer.zip": ("zip", None), "ecg.xml": ("xml", None)},
    }
    for subject, entries in layout.items():
        folder = root / subject
        folder.mkdir()
        for name, (how, source) in entries.items():
            target = folder / name
            if how == "copytree":
                shutil.copytree(source, target)
            elif how == "copy":
                shutil.copy(source, target)
            elif how == "series":
                mr_series(target)
            elif how == "xml":
                write_cardiosoft_xml(target, ecg)
            elif how == "wfdb":
                write_wfdb(target, ecg)
            elif how == "garbage":
                target.write_bytes(b"\x00" * 100)
            elif how == "zip":
                series = mr_series(root / "_series_S09")
                with zipfile.ZipFile(target, "w") as archive:
                    for file in series.iterdir():
                        archive.write(file, file.name)
                shutil.rmtree(series)
    table = subjects_table(["S01", "S02", "S03", "S04", "S05", "S06", "S07", "S09"])
    table.loc[table["id"] == "S07", "LVM"] = np.nan
    table.to_csv(root / "subjects.csv", index=False)
    return root


def test_import_real_files_and_report_every_drop(real_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    report = import_generic(real_root, out, SETTINGS, progress=False)
    cohort = Cohort.open(out)
    assert cohort.ids == ["S01", "S02", "S03", "S09"] == report.imported
    assert cohort.array("localizer").shape == (4, 3, 16, 16)
    assert cohort.array("ecg").shape == (4, 12, 1000) and cohort.ecg_sampling_rate_hz == 100
    reasons = {d["id"]: d["reason"] for d in report.dropped}
    assert reasons == {
        "S04": "wrong geometry", "S05": "missing modality", "S06": "unreadable file",
        "S07": "missing targets", "S08": "not in table",
    }  # fmt: skip
    details = {d["id"]: d["detail"] for d in report.dropped}
    assert "S04/localizer" in details["S04"] and "ecg" in details["S05"] and "LVM" in details["S07"]
    text = (out / "import_report.txt").read_text()
    assert all(f"{sid}\t" in text for sid in reasons)
    assert json.loads((out / "import_report.json").read_text())["imported"] == report.imported
    assert set(report.warnings) == set(report.imported)  # every localizer crop was centred

    # the arrays are the readers' output, through the documented preprocessing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CentredCropWarning)
        expected = localizer_input(read_localizer(CT_STACK), 16)
    np.testing.assert_allclose(cohort.array("localizer")[0], expected)
    np.testing.assert_allclose(
        cohort.array("ecg")[0], prepare_ecg(read_dicom_ecg(ECG_DCM), 100, 10)
    )
    # the same ECG through DICOM, CardioSoft XML and WFDB files gives the same input
    np.testing.assert_allclose(cohort.array("ecg")[1], cohort.array("ecg")[0], atol=5e-3)
    np.testing.assert_allclose(cohort.array("ecg")[2], cohort.array("ecg")[0], atol=5e-3)
    np.testing.assert_array_equal(cohort.array("localizer")[3], cohort.array("localizer")[1])  # zip

    spec = cohort.tabular_spec("T")
    assert spec.numerical == ["age", "height", "weight"]
    assert spec.categorical == {
        "sex": ["female", "male"],
        "smoking": ["current", "never", "previous"],
    }
    assert (
        cohort.tabular_spec("Tp").leaking
        and "24103-2.0" in cohort.manifest["provenance"]["excluded_leaking_columns"]
    )
    assert cohort.manifest["provenance"]["dropped"]["wrong geometry"] == 1


def test_resume_after_an_interrupted_import(real_root: Path, tmp_path: Path, monkeypatch) -> None:
    original = importer.prepare_subject
    calls: list[str] = []

    def interrupted(subject, settings):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(subject.id)
        return original(subject, settings)

    monkeypatch.setattr(importer, "prepare_subject", interrupted)
    out = tmp_path / "cohort"
    with pytest.raises(KeyboardInterrupt):
        import_generic(real_root, out, SETTINGS, progress=False)
    assert not out.exists()
    done = sorted(p.stem for p in (tmp_path / "cohort.work" / "subjects").glob("*.json"))
    assert done == ["S01", "S02", "S03"]

    def counted(subject, settings):
        calls.append(subject.id)
        return original(subject, settings)

    monkeypatch.setattr(importer, "prepare_subject", counted)
    calls.clear()
    report = import_generic(real_root, out, SETTINGS, progress=False, keep_work=True)
    assert calls == ["S04", "S05", "S06", "S09"]  # the first three were not redone
    fresh = import_generic(real_root, tmp_path / "fresh", SETTINGS, progress=False)
    assert report.imported == fresh.imported and report.dropped == fresh.dropped
    for modality in ("localizer", "ecg"):
        np.testing.assert_array_equal(
            Cohort.open(out).array(modality), Cohort.open(tmp_path / "fresh").array(modality)
        )

    # dropped subjects stay dropped on a re-run, unless asked to retry
    calls.clear()
    import_generic(real_root, out, SETTINGS, progress=False, overwrite=True, keep_work=True)
    assert calls == []
    import_generic(
        real_root, out, SETTINGS, progress=False, overwrite=True, retry_dropped=True, keep_work=True
    )
    assert calls == ["S04", "S05", "S06"]
    with pytest.raises(ValueError, match="other settings .*image_size"):
        other = ImportSettings(("localizer", "ecg"), image_size=24, ecg_sampling_rate_hz=100)
        import_generic(real_root, out, other, progress=False, overwrite=True)
    with pytest.raises(FileExistsError, match="already exists"):
        import_generic(real_root, out, SETTINGS, progress=False)


def test_cine_and_parallel_workers(tmp_path: Path) -> None:
    root = tmp_path / "study"
    ids = ["A", "B", "C"]
    for subject in ids:
        (root / subject).mkdir(parents=True)
        shutil.copy(NIFTI / "functional.nii", root / subject / "cmr.nii")
    subjects_table(ids).to_csv(root / "subjects.csv", index=False)
    # C has an LV mask of its mid slice instead of frame indices: ED at 3, ES at 12
    heights = [14 - abs(t - 3) if t <= 12 else 5 + t - 12 for t in range(20)]
    mask = np.zeros((20, 21, 17), dtype=np.uint8)
    for t, height in enumerate(heights):
        mask[t, 3 : 3 + height, 4:12] = 1
    np.save(root / "C" / "cmr_mask.npy", mask)
    frames = tmp_path / "frames.csv"
    pd.DataFrame({"id": ["A", "B"], "ed": [0, 1], "es": [7, 8]}).to_csv(frames, index=False)
    settings = ImportSettings(("cmr",), image_size=12)
    from ctrip.io.importer import read_cmr_frames

    report = import_generic(
        root,
        tmp_path / "cine",
        settings,
        cmr_frames=read_cmr_frames(frames),
        workers=2,
        progress=False,
    )
    cohort = Cohort.open(tmp_path / "cine")
    assert cohort.array("cmr").shape == (3, 3, 12, 12) and "ecg" not in cohort.modalities
    assert report.warnings == {}  # frames from indices (A, B) or from the mask (C)
    from ctrip.io.images import read_cine
    from ctrip.io.preprocess import cine_input

    expected = cine_input(read_cine(root / "C" / "cmr.nii"), 12, frames=(3, 12), mask=mask)
    np.testing.assert_allclose(cohort.array("cmr")[2], expected)
    assert not np.allclose(cohort.array("cmr")[0], cohort.array("cmr")[1])


def test_bad_tables_and_empty_imports_are_clear(tmp_path: Path) -> None:
    root = tmp_path / "study"
    (root / "A").mkdir(parents=True)
    subjects_table(["A"]).drop(columns=["weight"]).to_csv(root / "subjects.csv", index=False)
    with pytest.raises(
        CohortError, match="subjects.csv: field weight: a required column is missing"
    ):
        import_generic(root, tmp_path / "out", SETTINGS, progress=False)
    subjects_table(["A"]).to_csv(root / "subjects.csv", index=False)
    with pytest.raises(CohortError, match="no subject could be imported.*missing modality: 1"):
        import_generic(root, tmp_path / "out", SETTINGS, progress=False)
    assert "A\tmissing modality" in (tmp_path / "out.work" / "import_report.txt").read_text()


def test_command_line(real_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["cohort", "import", "generic", "--root", str(real_root), "--out", str(out),
            "--image-size", "16", "--ecg-rate", "100", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "imported 4 subject(s); dropped 5" in printed and "wrong geometry: 1" in printed
    assert Cohort.open(out).n == 4
    assert main(args) == 2  # the cohort exists
    assert "already exists" in capsys.readouterr().err
