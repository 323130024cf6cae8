"""Real data: readers and writers of standard medical formats, preprocessing, importers.

- `ctrip.io.ecg`: GE CardioSoft XML (UK Biobank 20205, reader and writer), WFDB (reader and
  writer), DICOM waveform ECG; `prepare_ecg` -> (12, T) mV, baseline drift removed.
- `ctrip.io.images`: localizer slice stacks and cine stacks from DICOM, NIfTI and .npy.
- `ctrip.io.preprocess`: heart crop, intensity normalization, resizing; ED/ES/mid frames.
- `ctrip.io.importer`: the resumable import engine and its report of dropped subjects.
- `ctrip.io.ukbiobank`, `ctrip.io.generic`: the two importers (`ctrip cohort import ...`).
"""

from ctrip.io.ecg import (
    EcgRecord,
    prepare_ecg,
    read_cardiosoft_xml,
    read_dicom_ecg,
    read_ecg,
    read_wfdb,
    write_cardiosoft_xml,
    write_wfdb,
)
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.images import CineStack, SliceStack, read_cine, read_localizer
from ctrip.io.preprocess import CentredCropWarning, HeartBox, cine_input, localizer_input

__all__ = [
    "CentredCropWarning",
    "CineStack",
    "EcgRecord",
    "GeometryError",
    "HeartBox",
    "SliceStack",
    "UnreadableFileError",
    "cine_input",
    "localizer_input",
    "prepare_ecg",
    "read_cardiosoft_xml",
    "read_cine",
    "read_dicom_ecg",
    "read_ecg",
    "read_localizer",
    "read_wfdb",
    "write_cardiosoft_xml",
    "write_wfdb",
]
