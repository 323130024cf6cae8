"""Inputs that would hang or fill memory, refused by what the file really holds (issue 29,
items 8-13), and `ctrip predict` on the importer's own layouts (issue 28, point 4).

Every refusal is one line naming the file and the field, before the big read or allocation:
archives by their total unpacked size, pixel spacings by plausibility, WFDB headers by what
their signal files can hold, checkpoint specs by their stored weights, FIFOs and devices by
their type."""

from __future__ import annotations

import math
import os
import shutil
import threading
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

import ctrip.io.images as images
from ctrip.cli import main
from ctrip.data.cohort import Cohort
from ctrip.data.schema import CP_NAMES, LEADS
from ctrip.io.ecg import EcgRecord, read_ecg, write_cardiosoft_xml, write_wfdb
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.generic import import_generic
from ctrip.io.images import read_localizer
from ctrip.io.importer import ImportSettings, SubjectDropped, SubjectFiles, prepare_subject
from ctrip.predict import conformal_intervals, find_subjects, prepare_inputs
from tests.factories import train_tiny_localizer_model
from tests.test_hardening_import import _table
from tests.test_io_images import mr_series

SETTINGS = ImportSettings(("localizer",), image_size=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny_localizer_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def fifo(tmp_path: Path):
    """Makes FIFOs. A writer waits on each, so that code which (wrongly) opens one reads an
    empty file instead of hanging; the writers are released at the end."""
    made: list[Path] = []

    def make(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        threading.Thread(target=lambda: open(path, "wb").close(), daemon=True).start()
        return path

    yield make
    for path in made:  # a reader that never blocks lets any waiting writer finish
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def _predict(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    first, *rest = err.strip().splitlines()
    assert all("CTRIP_DEBUG" in line for line in rest), err  # the hint, no more
    for word in words:
        assert word in first, (word, err)


# ---- item 8: an archive's (or a folder's) total unpacked size is capped ------------------------


def test_an_archive_of_many_large_members_is_refused_before_reading(
    tmp_path: Path, monkeypatch
) -> None:
    # the archive: 8 members of 48 MiB (each under the 64 MiB member cap) in 2 MiB
    with zipfile.ZipFile(tmp_path / "localizer.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:  # fmt: skip
        block = b"\0" * (48 << 20)
        for i in range(8):
            archive.writestr(f"IM{i:04d}.dcm", block)
    assert (tmp_path / "localizer.zip").stat().st_size < 2 << 20

    def no_read(*args):
        raise AssertionError("a member was read")

    monkeypatch.setattr(images, "_read_member", no_read)
    with pytest.raises(UnreadableFileError, match=r"localizer.zip: unpacks to 384 MiB .*refused"):
        read_localizer(tmp_path / "localizer.zip")


def test_a_dicom_folder_is_capped_by_its_total_size(tmp_path: Path, monkeypatch) -> None:
    series = mr_series(tmp_path / "series", n=5)
    monkeypatch.setattr(images, "MAX_EXAM_BYTES", 3 * (series / "IM0000").stat().st_size)
    with pytest.raises(UnreadableFileError, match=r"series: holds .* MiB of files.*limit"):
        read_localizer(series)


# ---- item 9: implausible pixel spacing is refused before the crop is allocated -----------------


def _dicom_with_spacing(folder: Path, spacing: list[str]) -> Path:
    mr_series(folder, n=5)
    for file in folder.glob("IM*"):
        ds = pydicom.dcmread(file)
        ds.PixelSpacing = spacing
        ds.save_as(file)
    return folder


def _nifti_with_spacing(path: Path, spacing: float) -> Path:
    pixels = np.random.default_rng(0).uniform(0, 100, (40, 40, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(pixels, np.diag([spacing, spacing, 5.0, 1.0])), path)
    return path


DICOM_SPACINGS = {"tiny": ["0.01", "0.01"], "zero": ["0", "0"], "negative": ["-0.5", "0.5"],
                  "nan": ["nan", "nan"], "huge": ["1e6", "1e6"]}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DICOM_SPACINGS))
def test_implausible_dicom_spacing_is_refused_in_import(tmp_path: Path, case: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the values it is asked to store
        folder = _dicom_with_spacing(tmp_path / "localizer", DICOM_SPACINGS[case])
    with pytest.raises(GeometryError, match=r"localizer/IM0000: PixelSpacing of .* mm is not"):
        read_localizer(folder)
    with pytest.raises(SubjectDropped) as dropped:
        prepare_subject(SubjectFiles("S1", {"localizer": folder}), SETTINGS)
    assert dropped.value.reason == "wrong geometry" and "PixelSpacing" in dropped.value.detail


@pytest.mark.parametrize("spacing", [0.01, 50.0])
def test_implausible_nifti_spacing_is_refused(tmp_path: Path, spacing: float) -> None:
    path = _nifti_with_spacing(tmp_path / "localizer.nii.gz", spacing)
    with pytest.raises(GeometryError, match=r"localizer.nii.gz: pixdim .* is not a plausible"):
        read_localizer(path)


def test_predict_refuses_implausible_spacing(trained, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    nifti = _nifti_with_spacing(tmp_path / "thin.nii.gz", 0.01)
    code, _, err = _predict(capsys, "--checkpoint", str(checkpoint), "--localizer", str(nifti))
    _one_line_error(code, err, "thin.nii.gz", "pixdim", "0.01")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = _dicom_with_spacing(tmp_path / "dicom", ["0.01", "0.01"])
    code, _, err = _predict(capsys, "--checkpoint", str(checkpoint), "--localizer", str(folder))
    _one_line_error(code, err, "IM0000", "PixelSpacing", "0.01")


def test_a_crop_wider_than_any_image_is_refused(tmp_path: Path) -> None:
    from ctrip.io.preprocess import localizer_input

    stack = read_localizer(_nifti_with_spacing(tmp_path / "fine.nii.gz", 0.2))
    with pytest.raises(GeometryError, match=r"fine.nii.gz: a 2000 mm crop .* 10000 pixels"):
        localizer_input(stack, 16, crop_mm=2000.0)


# ---- item 10: WFDB records: regular files, and a length the signal file can hold ----------------


def _wfdb(folder: Path) -> Path:
    signal = np.random.default_rng(1).normal(0, 0.3, (12, 1000))
    return write_wfdb(folder / "ecg.hea", EcgRecord(signal=signal, fs=100.0, leads=list(LEADS)))


def _claim_samples(header: Path, samples: int) -> None:
    lines = header.read_text().splitlines()
    first = lines[0].split()
    first[3] = str(samples)  # record name, signals, rate, samples
    header.write_text("\n".join([" ".join(first), *lines[1:]]) + "\n")


def _no_wfdb_read(monkeypatch) -> None:
    import wfdb

    def refuse(*args, **kwargs):
        raise AssertionError("the samples were read")

    monkeypatch.setattr(wfdb, "rdrecord", refuse)


def test_a_wfdb_signal_file_linked_to_a_device_is_refused(tmp_path: Path, monkeypatch) -> None:
    header = _wfdb(tmp_path)
    (tmp_path / "ecg.dat").unlink()
    (tmp_path / "ecg.dat").symlink_to("/dev/zero")
    _claim_samples(header, 200_000)
    _no_wfdb_read(monkeypatch)
    with pytest.raises(UnreadableFileError, match=r"ecg.dat: a device, not a regular file"):
        read_ecg(header)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (100_000, r"ecg.dat: 24000 bytes, but ecg.hea says 100000 samples of 12 signals"),
        (20_000_000, r"ecg.hea: the header says 20000000 samples of 12 signals, above"),
    ],
)
def test_a_wfdb_header_longer_than_its_signal_file_is_refused(
    tmp_path: Path, monkeypatch, samples: int, expected: str
) -> None:
    header = _wfdb(tmp_path)
    assert read_ecg(header).signal.shape == (12, 1000)  # as written, it reads
    _claim_samples(header, samples)
    _no_wfdb_read(monkeypatch)
    with pytest.raises(UnreadableFileError, match=expected):
        read_ecg(header)


def test_ecg_fifos_are_refused(fifo) -> None:
    for name in ("xml/ecg.xml", "hea/ecg.hea", "dcm/ecg.dcm"):
        with pytest.raises(UnreadableFileError, match=r"a FIFO \(named pipe\), not a regular"):
            read_ecg(fifo(name))
    header = _wfdb(fifo("dat/ecg.dat").parent.parent / "dat2")
    (header.parent / "ecg.dat").unlink()
    os.mkfifo(header.parent / "ecg.dat")
    threading.Thread(target=lambda: open(header.parent / "ecg.dat", "wb").close(), daemon=True).start()  # fmt: skip
    try:
        with pytest.raises(UnreadableFileError, match=r"dat2/ecg.dat: a FIFO"):
            read_ecg(header)
    finally:
        os.close(os.open(header.parent / "ecg.dat", os.O_RDONLY | os.O_NONBLOCK))


# ---- item 11: a checkpoint's spec is checked against its weights before building ---------------


def _edited(checkpoint: Path, tmp_path: Path, name: str, edit) -> Path:
    ckpt = torch.load(checkpoint, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


SPEC_EDITS = {
    "dim 16384, depth 64": (
        lambda c: (c["specs"]["localizer"]["tokenizer"].update(dim=16384),
                   c["specs"]["localizer"].update(depth=64)),
        ["field specs.localizer does not match the stored weights", "cls_token is [1, 1, "],
    ),
    "depth 64": (
        lambda c: c["specs"]["localizer"].update(depth=64),
        ["field specs.localizer does not match the stored weights", "64 blocks"],
    ),
    "dim 16": (
        lambda c: c["specs"]["localizer"]["tokenizer"].update(dim=16),
        ["field specs.localizer does not match the stored weights", "the spec makes"],
    ),
    "depth 10^6": (
        lambda c: c["specs"]["localizer"].update(depth=10**6),
        ["field specs.localizer.depth is 1000000"],
    ),
    "heads text": (
        lambda c: c["specs"]["localizer"].update(heads="many"),
        ["field specs.localizer.heads is 'many'"],
    ),
    "head hidden 2^20": (
        lambda c: c["head"]["spec"].update(hidden=[1 << 20, 1 << 20]),
        ["field head.spec.hidden is [1048576, 1048576]"],
    ),
    "head hidden 16": (
        lambda c: c["head"]["spec"].update(hidden=[16, 16]),
        ["field head.spec does not match the stored weights", "1.weight is"],
    ),
    "image 2^16": (
        lambda c: c["specs"]["localizer"]["tokenizer"].update(image_size=[1 << 16, 1 << 16]),
        ["field specs.localizer is not a model spec", "tokens"],
    ),
    "no cls_token": (
        lambda c: c["encoders"]["localizer"].pop("cls_token"),
        ["field specs.localizer does not match the stored weights", "cls_token is missing"],
    ),
    "head in_dim 7": (
        lambda c: c["head"]["spec"].update(in_dim=7),
        ["field head.spec does not match the stored weights", "0.weight is"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SPEC_EDITS))
def test_a_spec_that_does_not_fit_its_weights_is_refused_unbuilt(
    trained,
    tmp_path: Path,
    capsys,
    case: str,
) -> None:
    checkpoint, _ = trained
    edit, words = SPEC_EDITS[case]
    path = _edited(checkpoint, tmp_path, "spec.pt", edit)
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 0.5, dtype=np.float32))
    code, _, err = _predict(capsys, "--checkpoint", str(path), "--localizer",
                            str(tmp_path / "x.npy"), "--preprocessed")  # fmt: skip
    _one_line_error(code, err, str(path), *words)


# ---- item 12: no input path predict opens may be a FIFO or a device ----------------------------


def test_predict_refuses_fifos_and_devices(trained, tmp_path: Path, capsys, fifo) -> None:
    checkpoint, _ = trained
    anatomical = get_testdata_file("MR_small.dcm")
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 0.5, dtype=np.float32))
    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    cases = [
        (["--localizer", str(fifo("localizer.npy"))], "localizer.npy: a FIFO"),
        (["--localizer", str(fifo("series.dcm"))], "series.dcm: a FIFO"),
        (["--localizer", str(fifo("localizer.nii.gz"))], "localizer.nii.gz: a FIFO"),
        (["--localizer", str(fifo("localizer.zip"))], "localizer.zip: a FIFO"),
        (["--localizer", str(tmp_path / "zero.npy")], "zero.npy: a device"),
        (["--localizer", str(fifo("pre.npy")), "--preprocessed"], "pre.npy: a FIFO"),
        (["--localizer", anatomical, "--mask", str(fifo("mask.npy"))], "mask.npy: a FIFO"),
    ]
    for args, expected in cases:
        code, _, err = _predict(capsys, "--checkpoint", str(checkpoint), *args)
        _one_line_error(code, err, expected)
    code, _, err = _predict(capsys, "--checkpoint", str(fifo("model.pt")), "--localizer",
                            str(tmp_path / "x.npy"), "--preprocessed")  # fmt: skip
    _one_line_error(code, err, "model.pt: a FIFO")
    # the training cohort's manifest, which predict reads for the field of view
    manifest = fifo("cohort/manifest.yaml")
    ckpt = torch.load(checkpoint, weights_only=True)
    torch.save({**ckpt, "cohort": str(manifest.parent)}, tmp_path / "m.pt")
    code, _, err = _predict(
        capsys, "--checkpoint", str(tmp_path / "m.pt"), "--localizer", anatomical
    )
    _one_line_error(code, err, "manifest.yaml: a FIFO", "--crop-mm")


# ---- item 13: damaged checkpoints and manifests are one line naming file and field -------------


def test_a_text_file_as_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 0.5, dtype=np.float32))
    for name, text in (("text.pt", "epochs: 10\n"), ("e.pt", "e"), ("binary.pt", "\x80\x02}")):
        (tmp_path / name).write_text(text)
        code, _, err = _predict(capsys, "--checkpoint", str(tmp_path / name), "--localizer",
                                str(tmp_path / "x.npy"), "--preprocessed")  # fmt: skip
        _one_line_error(code, err, f"{tmp_path / name}: not a readable PyTorch checkpoint")


@pytest.mark.parametrize(
    ("residuals", "expected"),
    [
        ({cp: "abc" for cp in CP_NAMES}, "field calibration.residuals.LVEDV is 'abc'"),
        ({cp: [] for cp in CP_NAMES}, "field calibration.residuals.LVEDV is []"),
        ({cp: [1.0, float("nan")] * 10 for cp in CP_NAMES}, "not a list of finite numbers"),
        ({cp: [1.0, "x"] * 10 for cp in CP_NAMES}, "not a list of finite numbers"),
        ({cp: list(range(10 + (cp == "LVM"))) for cp in CP_NAMES}, "holds 10 to 11 values"),
    ],
)
def test_damaged_calibration_residuals_are_named(residuals: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=f"model.pt: .*{expected}".replace("[", r"\[")):
        conformal_intervals({"calibration": {"residuals": residuals}}, 0.9, "model.pt")


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("- 1\n- 2\n", "a YAML list, not a cohort manifest"),
        ("provenance: [unclosed\n", "not a readable YAML manifest"),
        ("provenance: [1, 2]\n", "field provenance is not a mapping"),
        ("provenance:\n  preprocessing:\n    crop_mm: abc\n", "field provenance.preprocessing.crop_mm is 'abc'"),
        ("recipe:\n  localizer:\n    field_of_view_mm: -5\n", "field recipe.localizer.field_of_view_mm is -5"),
    ],
)  # fmt: skip
def test_a_damaged_training_manifest_is_named(
    trained,
    tmp_path: Path,
    capsys,
    manifest: str,
    expected: str,
) -> None:
    checkpoint, _ = trained
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "manifest.yaml").write_text(manifest)
    path = _edited(
        checkpoint, tmp_path, "m.pt", lambda c: c.update(cohort=str(tmp_path / "cohort"))
    )
    anatomical = str(Path(nib.testing.data_path) / "anatomical.nii")
    code, _, err = _predict(capsys, "--checkpoint", str(path), "--localizer", anatomical)
    _one_line_error(code, err, str(tmp_path / "cohort" / "manifest.yaml"), expected, "--crop-mm")
    assert _predict(capsys, "--checkpoint", str(path), "--localizer", anatomical,
                    "--crop-mm", "140")[0] == 0  # fmt: skip


# ---- issue 28, point 4: predict reads the importer's layouts, and says why there is no interval --


def _zip_series(series: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(series.iterdir()):
            out.write(file, file.name)
    return archive


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Subjects in every localizer layout of `ctrip cohort import generic`, with ECGs beside."""
    root = tmp_path / "study"
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 100, (40, 40, 6)).astype(np.float32)
    layouts = {
        "NIIGZ": lambda f: nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 5.0, 1.0])),
                                    f / "localizer.nii.gz"),
        "NII": lambda f: nib.save(nib.Nifti1Image(volume[::-1], np.diag([2.0, 2.0, 5.0, 1.0])),
                                  f / "localizer.nii"),
        "NPY": lambda f: np.save(f / "localizer.npy", rng.uniform(0, 100, (5, 32, 32))),
        "DICOMDIR": lambda f: mr_series(f / "localizer"),
        "ZIP": lambda f: _zip_series(mr_series(f / "tmp"), f / "localizer.zip"),
        "DCM": lambda f: shutil.copy(get_testdata_file("MR_small.dcm"), f / "localizer.dcm"),
    }  # fmt: skip
    signal = rng.normal(0, 0.3, (12, 1000))
    for subject, write in layouts.items():
        folder = root / subject
        folder.mkdir(parents=True)
        write(folder)
        shutil.rmtree(folder / "tmp", ignore_errors=True)
        write_cardiosoft_xml(folder / "ecg.xml", EcgRecord(signal, 100.0, list(LEADS)))
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), root / "NPY" / "ecg.dcm")
    mask = np.zeros((5, 32, 32), dtype=np.uint8)
    mask[1:4, 8:20, 10:22] = 1
    np.save(root / "NPY" / "localizer_mask.npy", mask)
    _table(sorted(layouts)).to_csv(root / "subjects.csv", index=False)
    return root


def test_predict_finds_every_importer_layout(study: Path) -> None:
    subjects = {s.id: s for s in find_subjects(study)}
    assert sorted(subjects) == ["DCM", "DICOMDIR", "NII", "NIIGZ", "NPY", "ZIP"]
    files = {sid: s.files["localizer"].relative_to(study) for sid, s in subjects.items()}
    assert files == {
        "DCM": Path("DCM/localizer.dcm"), "DICOMDIR": Path("DICOMDIR/localizer"),
        "NII": Path("NII/localizer.nii"), "NIIGZ": Path("NIIGZ/localizer.nii.gz"),
        "NPY": Path("NPY/localizer.npy"), "ZIP": Path("ZIP/localizer.zip"),
    }  # fmt: skip
    assert subjects["NPY"].masks == {"localizer": study / "NPY" / "localizer_mask.npy"}
    # one subject's folder (an ECG DICOM beside it is not a localizer series)
    [one] = find_subjects(study / "NPY")
    assert one.id == "NPY" and one.files["localizer"] == study / "NPY" / "localizer.npy"


def test_predict_prepares_a_subject_exactly_as_the_importer(study: Path, tmp_path: Path) -> None:
    """The same folder through `ctrip cohort import generic` and through predict: the same
    model input, bit for bit (the DICOM file of one slice cannot be imported: both say so)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = import_generic(study, tmp_path / "cohort", SETTINGS, progress=False)
        subjects = find_subjects(study)
        with pytest.raises(GeometryError, match="localizer.dcm: 1 transverse slice"):
            prepare_inputs(subjects, (3, 16, 16))
        ids, inputs, problems = prepare_inputs(subjects, (3, 16, 16), skip_bad=True)
    assert [d["id"] for d in report.dropped] == ["DCM"] and problems[0].startswith("DCM: ")
    assert ids == report.imported == ["DICOMDIR", "NII", "NIIGZ", "NPY", "ZIP"]
    cohort = Cohort.open(tmp_path / "cohort")
    order = [list(cohort.table["id"]).index(sid) for sid in ids]
    np.testing.assert_array_equal(inputs, np.asarray(cohort.array("localizer"))[order])


def test_predict_on_a_study_folder(trained, study: Path, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    out = tmp_path / "cps.csv"
    code, _, err = _predict(capsys, "--checkpoint", str(checkpoint), "--localizer", str(study),
                            "--skip-bad", "--out", str(out))  # fmt: skip
    assert code == 2 and "skipped: DCM: " in err  # the one-slice DICOM file
    table = pd.read_csv(out)
    assert sorted(table["id"].unique()) == ["DICOMDIR", "NII", "NIIGZ", "NPY", "ZIP"]
    assert np.isfinite(table["value"]).all()


def _calibration(n: int) -> dict:
    return {"calibration": {"split": "val",
                            "residuals": {cp: [float(i) for i in range(1, n + 1)] for cp in CP_NAMES}}}  # fmt: skip


@pytest.mark.parametrize(
    ("level", "needed"), [(0.5, 1), (0.8, 4), (0.9, 9), (0.95, 19), (0.99, 99)]
)
def test_intervals_from_too_few_calibration_subjects_are_refused_with_the_count(
    level: float, needed: int, capsys
) -> None:
    from ctrip.predict import calibration_size_needed

    assert calibration_size_needed(level) == needed  # n >= ceil(1 / alpha) - 1
    enough = conformal_intervals(_calibration(needed), level, "model.pt")
    assert all(math.isfinite(v) for offsets in enough.offsets.values() for v in offsets)
    if needed > 1:
        assert conformal_intervals(_calibration(needed - 1), level, "model.pt") is None
        err = capsys.readouterr().err
        assert f"needs at least {needed} calibration subjects" in err
        assert f"has {needed - 1}" in err and "model.pt" in err


def test_predict_says_why_it_prints_no_interval(trained, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    path = _edited(checkpoint, tmp_path, "six.pt", lambda c: c.update(_calibration(6)))
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 0.5, dtype=np.float32))
    code, out, err = _predict(capsys, "--checkpoint", str(path), "--localizer",
                              str(tmp_path / "x.npy"), "--preprocessed")  # fmt: skip
    assert code == 0 and "inf" not in out and "LVEF" in out
    assert "no 90% intervals: split conformal needs at least 9 calibration subjects" in err
    assert "has 6" in err and "--level 0.85 at most" in err
