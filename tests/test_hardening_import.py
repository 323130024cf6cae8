"""Hostile and broken inputs to `ctrip cohort import` (issue 12): subject ids that are paths,
archives that unpack to gigabytes, ECGs with impossible sampling rates, empty and corrupted
files. A bad subject is dropped with the file and the reason; it never sinks the batch."""

from __future__ import annotations

import warnings
import zipfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nibabel.testing import data_path

import ctrip.data.cohort as cohort_module
import ctrip.io.images as images
from ctrip.cli import main as cli_main
from ctrip.data.cohort import Cohort, CohortError, with_consistent_chambers
from ctrip.data.plausibility import CP_RANGES
from ctrip.data.schema import CP_NAMES, LEADS
from ctrip.io.ecg import EcgRecord, prepare_ecg, write_cardiosoft_xml
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.generic import import_generic
from ctrip.io.images import read_localizer
from ctrip.io.importer import ImportSettings, SubjectDropped, SubjectFiles, load_prepared
from ctrip.io.importer import run_import as engine_run_import
from ctrip.io.ukbiobank import Showcase

SETTINGS = ImportSettings(
    ("localizer", "ecg"), image_size=16, ecg_sampling_rate_hz=100, ecg_seconds=10
)
GOOD = ["G1", "G2", "G3"]
# subject -> (what is wrong, expected drop reason, words the detail must hold)
BAD = {
    "RATE0": ("ecg", 0.0, "unreadable file", ["ecg.xml", "sampling rate"]),
    "RATENAN": ("ecg", float("nan"), "unreadable file", ["ecg.xml", "sampling rate"]),
    "RATENEG": ("ecg", -5.0, "unreadable file", ["ecg.xml", "sampling rate"]),
    "RATEINF": ("ecg", float("inf"), "unreadable file", ["ecg.xml", "sampling rate"]),
    "RATEHUGE": ("ecg", 1e9, "unreadable file", ["ecg.xml", "sampling rate"]),
    "MICROVOLT": ("ecg", "uV", "unreadable file", ["ecg.xml", "microvolts"]),
    "EMPTYNPY": ("localizer", b"", "unreadable file", ["localizer.npy", "empty"]),
    "TINY": ("localizer", np.ones((5, 2, 2)), "wrong geometry", ["localizer.npy", "pixels"]),
    "NANPIX": ("localizer", "nan", "wrong geometry", ["localizer.npy", "NaN"]),
    "TEXTNPY": ("localizer", np.full((5, 32, 32), "ab"), "unreadable file", ["localizer.npy"]),
    "BOMB": ("localizer", "bomb", "unreadable file", ["localizer.zip", "zip bomb"]),
}


def _table(ids: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(ids)
    table = pd.DataFrame(
        {
            "id": ids,
            "sex": rng.choice(["female", "male"], n),
            "age": rng.uniform(45, 80, n).round(1),
            "height": rng.normal(170, 8, n).round(1),
            "weight": rng.normal(78, 12, n).round(1),
        }
    )
    for cp in CP_NAMES:
        low, high = CP_RANGES[cp].plausible
        table[cp] = rng.uniform(low + 0.3 * (high - low), high - 0.3 * (high - low), n)
    return with_consistent_chambers(table)  # ESV, SV from EDV and EF, as measured CPs relate


def _ecg(fs: float = 100.0) -> EcgRecord:
    signal = np.random.default_rng(1).normal(0, 0.3, (12, 1000))
    return EcgRecord(signal=signal, fs=fs, leads=list(LEADS))


def _localizer(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (5, 32, 32)).astype(np.float32)


def _bomb(path: Path) -> None:
    """A zip of a few kB whose one member unpacks to 3 MiB (the test lowers the limit to 1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM0001.dcm", b"\0" * (3 << 20))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    for i, subject in enumerate([*GOOD, *BAD]):
        folder = root / subject
        folder.mkdir()
        np.save(folder / "localizer.npy", _localizer(i))
        write_cardiosoft_xml(folder / "ecg.xml", _ecg())
        if subject not in BAD:
            continue
        modality, value = BAD[subject][:2]
        if isinstance(value, str) and value == "uV":
            record = _ecg()
            record.signal = record.signal * 1000.0  # microvolt numbers in a mV record
            write_cardiosoft_xml(folder / "ecg.xml", record)
        elif modality == "ecg":
            write_cardiosoft_xml(folder / "ecg.xml", _ecg(value))
        elif isinstance(value, bytes):
            (folder / "localizer.npy").write_bytes(value)
        elif isinstance(value, np.ndarray):
            np.save(folder / "localizer.npy", value)
        elif value == "nan":
            pixels = _localizer(i)
            pixels[2, 16, 16] = np.nan
            np.save(folder / "localizer.npy", pixels)
        elif value == "bomb":
            (folder / "localizer.npy").unlink()
            _bomb(folder / "localizer.zip")
    _table([*GOOD, *BAD]).to_csv(root / "subjects.csv", index=False)
    return root


def _import(root: Path, out: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_generic(root, out, SETTINGS, progress=False, **kwargs)


# ---- item 5 (and 4 in an import): one bad file drops one subject ----------------------------------


def test_bad_files_are_dropped_with_file_and_reason(
    root: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(images, "MAX_MEMBER_BYTES", 1 << 20)
    report = _import(root, tmp_path / "c")
    assert report.imported == GOOD
    dropped = {d["id"]: d for d in report.dropped}
    assert set(dropped) == set(BAD)
    for subject, (_, _, reason, words) in BAD.items():
        assert dropped[subject]["reason"] == reason, (subject, dropped[subject])
        for word in words:
            assert word in dropped[subject]["detail"], (subject, dropped[subject]["detail"])
        assert "Traceback" not in dropped[subject]["detail"]
    assert Cohort.validate(tmp_path / "c", min_per_split=0).n == len(GOOD)


def test_a_corrupted_work_file_is_prepared_again(root: Path, tmp_path: Path) -> None:
    _import(root, tmp_path / "c", keep_work=True)
    work_file = tmp_path / "c.work" / "subjects" / "G2.npz"
    work_file.write_bytes(b"PK\x03\x04 not a zip any more")
    with pytest.raises(SubjectDropped, match="G2.npz: damaged work file"):
        load_prepared(work_file.parent, "G2", SETTINGS)
    report = _import(root, tmp_path / "c", overwrite=True, keep_work=True)
    assert report.imported == GOOD
    reference = np.asarray(Cohort.open(tmp_path / "c").array("localizer")[1])
    assert np.isfinite(reference).all() and load_prepared(work_file.parent, "G2", SETTINGS)


def test_a_damaged_state_file_is_prepared_again(root: Path, tmp_path: Path) -> None:
    _import(root, tmp_path / "c", keep_work=True)
    (tmp_path / "c.work" / "subjects" / "G1.json").write_text("{not json")
    assert _import(root, tmp_path / "c", overwrite=True).imported == GOOD


@pytest.mark.parametrize("rate", [0.0, float("nan"), -5.0, float("inf"), 1e9, 1.0])
def test_prepare_ecg_refuses_impossible_rates(rate: float) -> None:
    record = _ecg(rate)
    record.source = "subject7/ecg.xml"
    with pytest.raises(UnreadableFileError, match="subject7/ecg.xml: sampling rate"):
        prepare_ecg(record, 100.0, 10.0)


def test_an_impossible_table_value_drops_the_subject(root: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    for subject in GOOD:
        (study / subject).symlink_to(root / subject)
    table = _table(GOOD)
    table.loc[1, "LVEF"] = 250.0
    table.to_csv(study / "subjects.csv", index=False)
    report = _import(study, tmp_path / "c")
    assert report.imported == ["G1", "G3"]
    assert report.dropped[0]["reason"] == "impossible value"
    assert "LVEF = 250 %" in report.dropped[0]["detail"]


# ---- item 1: subject ids are not paths ------------------------------------------------------------

BAD_IDS = ["../../../ESCAPED", "/tmp/elsewhere", "..", "a\\b", "bell\x07", "tab\tid"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_ids_that_are_paths_are_refused(tmp_path: Path, bad_id: str, capsys) -> None:
    study = tmp_path / "deep" / "er" / "study"
    study.mkdir(parents=True)
    _table(["G1", bad_id]).to_csv(study / "subjects.csv", index=False)
    argv = ["cohort", "import", "generic", "--root", str(study), "--out", str(study / "out"),
            "--image-size", "16", "--ecg-rate", "100", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "subjects.csv" in err and "line 3" in err
    assert "field id" in err and "Traceback" not in err
    assert not (tmp_path / "ESCAPED").exists() and not (tmp_path / "deep" / "ESCAPED").exists()
    assert not (study / "out.work").exists()


def test_the_engine_and_the_ukbiobank_reader_refuse_path_ids(tmp_path: Path) -> None:
    subject = SubjectFiles(id="../../outside")
    with pytest.raises(CohortError, match="path separator"):
        engine_run_import(
            tmp_path / "c", _table([subject.id]), [subject], SETTINGS, source="t",
            provenance={}, variants={}, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "outside.json").exists()
    showcase = tmp_path / "ukb.csv"
    showcase.write_text("eid,31-0.0\n1001,0\n../../x,1\n")
    with pytest.raises(CohortError, match="line 3") as caught:
        Showcase(showcase, {31})
    assert caught.value.field == "eid"


# ---- item 4: archive and volume limits -------------------------------------------------------------


def test_archive_member_size_and_count_are_capped(tmp_path: Path, monkeypatch) -> None:
    _bomb(tmp_path / "bomb.zip")
    monkeypatch.setattr(images, "MAX_MEMBER_BYTES", 1 << 20)
    with pytest.raises(UnreadableFileError, match="bomb.zip:IM0001.dcm: unpacks to more than 1"):
        read_localizer(tmp_path / "bomb.zip")
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(4):
            archive.writestr(f"IM{i}.dcm", b"x")
    monkeypatch.setattr(images, "MAX_ARCHIVE_MEMBERS", 3)
    with pytest.raises(UnreadableFileError, match="many.zip: 4 files in the archive"):
        read_localizer(tmp_path / "many.zip")


def test_volume_size_is_capped(tmp_path: Path, monkeypatch) -> None:
    np.save(tmp_path / "big.npy", np.zeros((5, 64, 64), dtype=np.float32))
    monkeypatch.setattr(images, "MAX_VOLUME_BYTES", 10_000)
    for path in (tmp_path / "big.npy", Path(data_path) / "anatomical.nii"):
        with pytest.raises(UnreadableFileError, match="limit; refused"):
            read_localizer(path)


def test_small_and_nan_images_are_named(tmp_path: Path) -> None:
    from ctrip.io.preprocess import localizer_input

    stack = read_localizer(_save(tmp_path / "tiny.npy", np.ones((3, 1, 1))))
    with pytest.raises(GeometryError, match="tiny.npy: images of"):
        localizer_input(stack, 16)
    pixels = _localizer()
    pixels[1, 3, 3] = np.nan
    with pytest.raises(GeometryError, match="nan.npy: the image holds NaN"):
        localizer_input(read_localizer(_save(tmp_path / "nan.npy", pixels)), 16)


def _save(path: Path, values: np.ndarray) -> Path:
    np.save(path, values)
    return path


# ---- items 3 and 12 for the importer ----------------------------------------------------------------


def test_import_overwrite_and_restart_delete_only_their_own(root: Path, tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("text")
    with pytest.raises(CohortError, match="not a cohort folder"):
        _import(root, thesis, overwrite=True)
    with pytest.raises(CohortError, match="not an import work folder"):
        _import(root, tmp_path / "c", work_dir=thesis, restart=True)
    assert (thesis / "chapter1.tex").read_text() == "text"


def test_import_checks_free_space_first(root: Path, tmp_path: Path, monkeypatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cohort_module.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 100))
    with pytest.raises(CohortError, match="not enough free disk space"):
        _import(root, tmp_path / "c")
    assert not list((tmp_path / "c.work" / "subjects").iterdir())


# ---- item 7 for tables: undecodable or malformed CSVs name the file ---------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"id,sex\n\xff\xfe,F\n", "not UTF-8"),
        (b"", "not a readable CSV"),
        (b'id,sex\n"S01,F\n', "not a readable CSV"),
    ],
)
def test_unreadable_tables_name_the_file(
    tmp_path: Path, content: bytes, expected: str, capsys
) -> None:
    (tmp_path / "subjects.csv").write_bytes(content)
    argv = ["cohort", "import", "generic", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
            "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith(f"error: {tmp_path / 'subjects.csv'}: ") and expected in line
    (tmp_path / "ukb.csv").write_bytes(content)
    with pytest.raises(CohortError, match="ukb.csv"):
        Showcase(tmp_path / "ukb.csv", {31})


def test_ctrip_debug_shows_the_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    argv = [sys.executable, "-m", "ctrip.cli", "cohort", "validate", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env)
    loud = subprocess.run(argv, capture_output=True, text=True, env={**env, "CTRIP_DEBUG": "1"})
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert "manifest.yaml" in quiet.stderr.splitlines()[0]
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_an_unexpected_reader_error_names_the_file(root: Path, monkeypatch) -> None:
    import ctrip.io.importer as importer

    def broken(path):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(importer, "read_ecg", broken)
    subject = SubjectFiles(
        id="G1", files={"localizer": root / "G1" / "localizer.npy", "ecg": root / "G1" / "ecg.xml"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SubjectDropped) as caught:
            importer.prepare_subject(subject, SETTINGS)
    assert caught.value.reason == "unreadable file"
    assert caught.value.detail == f"{root / 'G1' / 'ecg.xml'}: ZeroDivisionError: division by zero"


def test_oversized_dicom_and_ecg_files_are_refused(tmp_path: Path, monkeypatch) -> None:
    import ctrip.io.ecg as ecg_module
    from ctrip.io.ecg import read_ecg

    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "IM1.dcm").write_bytes(b"\0" * 5000)
    monkeypatch.setattr(images, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(UnreadableFileError, match="IM1.dcm: .* refused"):
        read_localizer(tmp_path / "series")
    with pytest.raises(UnreadableFileError, match="IM1.dcm: .* refused"):
        read_localizer(tmp_path / "series" / "IM1.dcm")
    write_cardiosoft_xml(tmp_path / "ecg.xml", _ecg())
    monkeypatch.setattr(ecg_module, "MAX_ECG_FILE_BYTES", 1000)
    with pytest.raises(UnreadableFileError, match="ecg.xml: .* refused"):
        read_ecg(tmp_path / "ecg.xml")
