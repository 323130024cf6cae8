"""`ctrip cohort template generic DIR`: a small study in the generic layout that imports cleanly.

Every file kind the generic importer reads appears at least once, written with the same
libraries the readers use (pydicom, nibabel, wfdb) and this package's own ECG writers:

    DIR/subjects.csv        id, sex, age, height, weight, split, two features, the 18 CPs
    DIR/T001/localizer/     a DICOM series (one file per transverse slice)
    DIR/T002/localizer.nii.gz, DIR/T003/localizer.npy, DIR/T004/localizer.zip (DICOM members)
    DIR/T00k/ecg.xml | ecg.hea + ecg.dat | ecg.dcm   CardioSoft XML, WFDB, DICOM waveform
    DIR/T001/localizer_mask.nii.gz   an optional heart mask (the others get a centred crop)

The images are a bright ellipse (the heart) in a darker disc (the thorax); the ECGs a sum of
Gaussian P, QRS and T waves per beat; the phenotypes are drawn near the UK Biobank reference
means, each chamber consistent (SV = EDV - ESV, EF = 100 SV / EDV). Everything comes from
`seed`: the same seed writes the same files.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ctrip.arguments import number_in
from ctrip.data.cohort import with_consistent_chambers
from ctrip.data.schema import CP_NAMES, LEADS
from ctrip.io.ecg import EcgRecord, write_cardiosoft_xml, write_wfdb

SLICES, SIDE, SPACING_MM, THICKNESS_MM = 8, 96, 3.0, 8.0
ECG_HZ, ECG_SECONDS = 500.0, 10.0
LOCALIZER_KINDS = ("dicom", "nifti", "npy", "zip")
ECG_KINDS = ("xml", "wfdb", "dicom")
_SPLITS = ("train", "train", "train", "train", "val", "test")


def example_subjects(ids: list[str], seed: int = 0) -> pd.DataFrame:
    """A subjects table for `ids`: demographics, a split, two tabular features and the 18 CPs,
    physiological and consistent per chamber."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    sex = np.array(["female", "male"])[np.arange(n) % 2]
    male = sex == "male"
    table = pd.DataFrame(
        {
            "id": ids,
            "sex": sex,
            "age": rng.uniform(45, 80, n).round(1),
            "height": np.where(male, 176, 163) + rng.normal(0, 6, n).round(1),
            "weight": np.where(male, 84, 70) + rng.normal(0, 9, n).round(1),
            "split": [_SPLITS[i % len(_SPLITS)] for i in range(n)],
            "sbp": rng.normal(135, 15, n).round(0),
            "smoking": [("never", "previous", "current")[i % 3] for i in range(n)],
        }
    )
    scale = np.where(male, 1.15, 1.0)
    for cp, mean, sd in (("LVEDV", 125, 15), ("RVEDV", 130, 18), ("LAVmax", 68, 12),
                         ("RAVmax", 85, 15)):  # fmt: skip
        table[cp] = (mean * scale + rng.normal(0, sd, n)).round(1)
    for cp, mean, sd in (("LVEF", 60, 5), ("RVEF", 57, 5), ("LAEF", 60, 7), ("RAEF", 46, 8)):
        table[cp] = (mean + rng.normal(0, sd, n)).round(1)
    table["LVM"] = (95 * scale + rng.normal(0, 12, n)).round(1)
    table = with_consistent_chambers(table)
    table["LVCO"] = (table["LVSV"] * rng.uniform(60, 75, n) / 1000).round(2)
    return table[["id", "sex", "age", "height", "weight", "split", "sbp", "smoking", *CP_NAMES]]


def _thorax(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(slices, heart mask): a transverse stack, uint16, with the heart off centre."""
    rows, cols = np.mgrid[:SIDE, :SIDE] - SIDE / 2
    centre = rng.normal([6.0, -8.0], 2.0)
    body = (rows / 40) ** 2 + (cols / 45) ** 2 <= 1
    pixels = np.zeros((SLICES, SIDE, SIDE), np.float64)
    mask = np.zeros((SLICES, SIDE, SIDE), np.uint8)
    for k in range(SLICES):
        size = 14 * np.sin(np.pi * (k + 1) / (SLICES + 1))
        heart = ((rows - centre[0]) / size) ** 2 + ((cols - centre[1]) / (1.2 * size)) ** 2 <= 1
        pixels[k] = 300 * body + 700 * heart + rng.normal(0, 20, (SIDE, SIDE))
        mask[k] = heart
    return np.clip(pixels, 0, 4000).astype(np.uint16), mask


MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
ECG_WAVEFORM = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage


def _dicom_file(sop_class: str, seeds: list[str], modality: str):
    """An empty DICOM file dataset of `sop_class` whose instance UID derives from `seeds`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=seeds)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    return ds


def _dicom_slices(pixels: np.ndarray, subject: str) -> list:
    """One MR image dataset per slice, head to foot, with the geometry the reader needs."""
    from pydicom.uid import generate_uid

    series = generate_uid(entropy_srcs=[subject, "series"])
    slices = []
    for k, image in enumerate(pixels):
        ds = _dicom_file(MR_IMAGE, [subject, str(k)], "MR")
        ds.PatientID, ds.SeriesInstanceUID = subject, series
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [
            -SIDE * SPACING_MM / 2,
            -SIDE * SPACING_MM / 2,
            -THICKNESS_MM * k,
        ]
        ds.PixelSpacing = [SPACING_MM, SPACING_MM]
        ds.SliceThickness = THICKNESS_MM
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = image.tobytes()
        slices.append(ds)
    return slices


def _nifti(volume: np.ndarray, path: Path) -> None:
    """A (slices, rows, cols) stack as NIfTI in the DICOM slices' orientation: x = columns,
    y = rows, z = slices, the affine's x and y negated (NIfTI is RAS, DICOM LPS)."""
    import nibabel as nib

    affine = np.diag([-SPACING_MM, -SPACING_MM, THICKNESS_MM, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine), path)


def example_ecg(rng: np.random.Generator) -> EcgRecord:
    """Twelve leads in mV: Gaussian P, QRS and T waves at a heart rate near 65 per minute."""
    t = np.arange(int(ECG_HZ * ECG_SECONDS)) / ECG_HZ
    rr = 60.0 / rng.uniform(58, 72)
    phase = (t % rr)[None, :]
    gains = rng.uniform(0.4, 1.4, (len(LEADS), 1)) * np.where(np.arange(12) == 3, -1, 1)[:, None]
    waves = (0.15 * np.exp(-(((phase - 0.10) / 0.025) ** 2))
             + 1.2 * np.exp(-(((phase - 0.25) / 0.010) ** 2))
             + 0.30 * np.exp(-(((phase - 0.50) / 0.045) ** 2)))  # fmt: skip
    signal = gains * waves + rng.normal(0, 0.01, (len(LEADS), t.size))
    return EcgRecord(signal=signal, fs=ECG_HZ, leads=list(LEADS))


def write_dicom_ecg(path: Path, record: EcgRecord) -> Path:
    """`record` as a DICOM 12-lead ECG waveform (one multiplex group, 16-bit counts of 1 uV)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _dicom_file(ECG_WAVEFORM, [path.parent.name, "ecg"], "ECG")
    counts = np.rint(np.asarray(record.signal) * 1000.0).astype(np.int16)  # 1 uV per count
    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = counts.shape
    group.SamplingFrequency = record.fs
    group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
    channels = []
    for lead in record.leads:
        channel = Dataset()
        source = Dataset()
        source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = lead, "MDC", lead
        channel.ChannelSourceSequence = Sequence([source])
        units = Dataset()
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
        channel.ChannelSensitivityUnitsSequence = Sequence([units])
        channel.ChannelSensitivity, channel.ChannelSensitivityCorrectionFactor = 1.0, 1.0
        channel.ChannelBaseline, channel.ChannelSampleSkew = 0.0, 0.0
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformData = np.ascontiguousarray(counts.T).tobytes()
    ds.WaveformSequence = Sequence([group])
    ds.save_as(path, enforce_file_format=True)
    return path


def write_generic_template(folder: str | Path, n_subjects: int = 12, seed: int = 0) -> Path:
    """Write the example study (see the module docstring) into `folder`, which must not exist
    or be empty; returns the subjects table's path."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder}: exists and is not an empty folder; choose a new one")
    if n_subjects < len(_SPLITS):
        raise ValueError(f"n_subjects {n_subjects}: at least {len(_SPLITS)} (every split)")
    rng = np.random.default_rng(seed)
    ids = [f"T{i + 1:03d}" for i in range(n_subjects)]
    for i, subject in enumerate(ids):
        home = folder / subject
        home.mkdir(parents=True)
        pixels, mask = _thorax(rng)
        kind = LOCALIZER_KINDS[i % len(LOCALIZER_KINDS)]
        if kind == "dicom":
            (home / "localizer").mkdir()
            for k, ds in enumerate(_dicom_slices(pixels, subject)):
                ds.save_as(home / "localizer" / f"IM{k:04d}.dcm", enforce_file_format=True)
        elif kind == "zip":
            with zipfile.ZipFile(home / "localizer.zip", "w") as archive:
                for k, ds in enumerate(_dicom_slices(pixels, subject)):
                    scratch = home / f".IM{k:04d}"
                    ds.save_as(scratch, enforce_file_format=True)
                    archive.write(scratch, f"localizer/IM{k:04d}.dcm")
                    scratch.unlink()
        elif kind == "nifti":
            _nifti(pixels, home / "localizer.nii.gz")
        else:
            np.save(home / "localizer.npy", pixels)
        if i == 0:  # one optional heart mask, on the DICOM series' pixels
            _nifti(mask, home / "localizer_mask.nii.gz")
        record = example_ecg(rng)
        ecg_kind = ECG_KINDS[i % len(ECG_KINDS)]
        if ecg_kind == "xml":
            write_cardiosoft_xml(home / "ecg.xml", record)
        elif ecg_kind == "wfdb":
            write_wfdb(home / "ecg.hea", record)
        else:
            write_dicom_ecg(home / "ecg.dcm", record)
    table = example_subjects(ids, seed)
    table.to_csv(folder / "subjects.csv", index=False)
    return folder / "subjects.csv"


def configure(parser: argparse.ArgumentParser) -> None:
    layouts = parser.add_subparsers(dest="layout", required=True, metavar="{generic}")
    generic = layouts.add_parser(
        "generic",
        help="the layout of `ctrip cohort import generic`",
        description="Write a small example study in the generic layout (every file kind the "
        "importer reads, and a subjects CSV) that `ctrip cohort import generic` imports cleanly.",
    )
    generic.add_argument("folder", help="folder to create (must not exist, or be empty)")
    generic.add_argument(
        "--subjects", type=number_in(len(_SPLITS), 1000, integer=True), default=12,
        help=f"number of subjects ({len(_SPLITS)}-1000, default 12)",
    )  # fmt: skip
    generic.add_argument(
        "--seed", type=number_in(0, 2**32 - 1, integer=True), default=0,
        help="random seed (same seed, same files)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        table = write_generic_template(args.folder, args.subjects, args.seed)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote an example study of {args.subjects} subjects to {table.parent} (table {table})")
    print(f"import it with: ctrip cohort import generic --root {table.parent} "
          "--out cohorts/example --profile smoke")  # fmt: skip
    return 0
