"""Resting 12-lead ECG files: GE CardioSoft XML (UK Biobank field 20205), WFDB, DICOM waveform.

Every reader returns an `EcgRecord` in millivolts with the leads named as in the file;
`prepare_ecg` turns any record into the cohort's (12, T) array: leads in `LEADS` order (limb
leads derived from I and II when a file stores only those), resampled to the cohort's rate, cut
to its duration, and baseline drift removed as in the paper.

A CardioSoft XML file keeps the 10 s rhythm strips in `<StripData>`: `<SampleRate units="Hz">`,
`<Resolution units="uVperLsb">` and one `<WaveformData lead="...">` per lead holding
comma-separated integer counts; a count times the resolution is microvolts. `<MedianSamples>`
(one averaged beat) is ignored. `write_cardiosoft_xml` writes the same layout, so files
converted from other formats read back through the same reader.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ctrip.data.schema import LEADS
from ctrip.io.errors import GeometryError, UnreadableFileError, check_regular_file

ECG_SUFFIXES: tuple[str, ...] = (".xml", ".hea", ".dcm")
ECG_RATE_RANGE_HZ = (50.0, 20_000.0)
# A resting 12-lead ECG is recorded at 250-1000 Hz.
MAX_ECG_FILE_BYTES = 64 << 20  # a 10 s 12-lead XML is ~0.5 MB; refuse what would fill memory
# Bits per sample of the uncompressed WFDB signal formats (WFDB "header" specification); the
# FLAC formats 508, 516 and 524 have no fixed size.
WFDB_FORMAT_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
                    "212": 12, "310": 10, "311": 10}  # fmt: skip
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
_LEAD_BY_KEY = {lead.lower(): lead for lead in LEADS}


@dataclass
class EcgRecord:
    """A multi-lead ECG: `signal` (n_leads, T) in mV at `fs` Hz, `leads` named as in the file."""

    signal: np.ndarray
    fs: float
    leads: list[str]
    source: str = ""

    @property
    def seconds(self) -> float:
        return self.signal.shape[1] / self.fs


def lead_name(label: str) -> str | None:
    """The `LEADS` name of a file's lead label ("Lead I (Einthoven)", "AVR", "v1"), or None."""
    key = re.sub(r"\(.*?\)", "", label).strip().lower()
    key = re.sub(r"^lead\s*", "", key).strip()
    return _LEAD_BY_KEY.get(key)


def read_cardiosoft_xml(path: str | Path) -> EcgRecord:
    """Read the rhythm strips of a GE CardioSoft XML resting ECG (UK Biobank field 20205)."""
    path = _check_ecg_file(Path(path))
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise UnreadableFileError(f"{path}: not a readable CardioSoft XML file ({err})") from err
    strip = root.find(".//StripData")
    if strip is None:
        raise UnreadableFileError(f"{path}: no <StripData> element (the rhythm strips)")
    try:
        fs = float(strip.findtext("SampleRate", ""))
        resolution = strip.find("Resolution")
        uv_per_count = float(resolution.text)  # type: ignore[union-attr, arg-type]
    except (TypeError, ValueError, AttributeError) as err:
        raise UnreadableFileError(
            f"{path}: <StripData> lacks a numeric <SampleRate> or <Resolution>"
        ) from err
    units = (resolution.get("units") or "uVperLsb").lower()
    if units != "uvperlsb":
        raise UnreadableFileError(f"{path}: Resolution units {units!r}, expected uVperLsb")
    leads, strips = [], []
    for waveform in strip.findall("WaveformData"):
        text = (waveform.text or "").replace(",", " ")
        try:
            strips.append(np.array(text.split(), dtype=np.float64))
        except ValueError as err:
            raise UnreadableFileError(
                f"{path}: lead {waveform.get('lead')!r} holds a non-number ({err})"
            ) from err
        leads.append(waveform.get("lead", f"channel{len(leads)}"))
    if not strips:
        raise UnreadableFileError(f"{path}: <StripData> holds no <WaveformData>")
    lengths = {len(s) for s in strips}
    if len(lengths) != 1:
        raise UnreadableFileError(f"{path}: leads of different lengths {sorted(lengths)}")
    expected = strip.findtext("ChannelSampleCountTotal")
    if expected is not None and expected.strip().isdigit() and int(expected) != len(strips[0]):
        raise UnreadableFileError(
            f"{path}: {len(strips[0])} samples per lead, but ChannelSampleCountTotal says {expected}"
        )
    signal = np.stack(strips) * uv_per_count / 1000.0
    return EcgRecord(signal=signal, fs=fs, leads=leads, source=str(path))


def write_cardiosoft_xml(path: str | Path, record: EcgRecord, uv_per_count: float = 5.0) -> Path:
    """Write `record` as a CardioSoft XML rhythm strip (integer counts of `uv_per_count` uV)."""
    path = Path(path)
    root = ET.Element("CardiologyXML")
    ET.SubElement(root, "ObservationType").text = "RestECG"
    strip = ET.SubElement(root, "StripData")
    ET.SubElement(strip, "NumberOfLeads").text = str(len(record.leads))
    ET.SubElement(strip, "SampleRate", units="Hz").text = f"{record.fs:g}"
    ET.SubElement(strip, "ChannelSampleCountTotal").text = str(record.signal.shape[1])
    ET.SubElement(strip, "Resolution", units="uVperLsb").text = f"{uv_per_count:g}"
    counts = np.rint(np.asarray(record.signal) * 1000.0 / uv_per_count).astype(np.int64)
    for lead, row in zip(record.leads, counts):
        ET.SubElement(strip, "WaveformData", lead=lead).text = ",".join(map(str, row.tolist()))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def read_wfdb(path: str | Path) -> EcgRecord:
    """Read a WFDB record (`path` names its .hea file, or the record without suffix)."""
    import wfdb

    path = Path(path)
    record_path = path.with_suffix("") if path.suffix == ".hea" else path
    check_wfdb_files(record_path.with_name(record_path.name + ".hea"))
    try:
        record = wfdb.rdrecord(str(record_path))
    except Exception as err:  # wfdb raises many kinds (ValueError, OSError, IndexError ...)
        raise UnreadableFileError(f"{path}: not a readable WFDB record ({err})") from err
    if record.p_signal is None:
        raise UnreadableFileError(f"{path}: the WFDB record holds no signal")
    scale = []
    for name, unit in zip(record.sig_name, record.units):
        factor = _TO_MV.get(str(unit).strip().lower())
        if factor is None:
            raise UnreadableFileError(f"{path}: lead {name!r} has units {unit!r}, not a voltage")
        scale.append(factor)
    signal = record.p_signal.T * np.asarray(scale)[:, None]
    return EcgRecord(
        signal=signal, fs=float(record.fs), leads=list(record.sig_name), source=str(path)
    )


def check_wfdb_files(header: Path) -> None:
    """Refuse, before reading any sample, a WFDB record whose header or signal files are not
    regular files, or whose header claims more samples than its signal files hold (a header
    can say 2x10^7 samples of a `.dat` that is a link to `/dev/zero`)."""
    import wfdb

    _check_ecg_file(header)
    try:
        record = wfdb.rdheader(str(header.with_suffix("")))
    except Exception as err:  # wfdb raises many kinds (ValueError, OSError, IndexError ...)
        raise UnreadableFileError(f"{header}: not a readable WFDB header ({err})") from err
    if isinstance(record, wfdb.MultiRecord):
        raise UnreadableFileError(f"{header}: a multi-segment WFDB record; not supported")
    n_signals = record.n_sig or 0
    frames = record.samps_per_frame or [1] * n_signals
    offsets = record.byte_offset or [None] * n_signals
    length = record.sig_len
    if length is not None and length * sum(frames) * 8 > MAX_ECG_FILE_BYTES:
        raise UnreadableFileError(
            f"{header}: the header says {length} samples of {n_signals} signals, above the "
            f"{MAX_ECG_FILE_BYTES >> 20} MiB a resting ECG can take in memory; refused"
        )
    needed: dict[str, float] = {}
    for name, fmt, per_frame, offset in zip(record.file_name or [], record.fmt or [],
                                            frames, offsets):  # fmt: skip
        if Path(name).name != name:
            raise UnreadableFileError(
                f"{header}: signal file {name!r} lies outside the record's folder; refused"
            )
        bits = WFDB_FORMAT_BITS.get(str(fmt))
        if length is not None and bits is not None:
            needed[name] = needed.get(name, float(offset or 0)) + length * per_frame * bits / 8
        else:
            needed.setdefault(name, 0.0)
    for name, size in needed.items():
        file = _check_ecg_file(header.parent / name)
        if file.stat().st_size < int(size):
            raise UnreadableFileError(
                f"{file}: {file.stat().st_size} bytes, but {header.name} says {length} samples "
                f"of {n_signals} signals ({int(size)} bytes); refused"
            )


def _check_ecg_file(path: Path) -> Path:
    """`path` when it is a regular file of at most `MAX_ECG_FILE_BYTES`."""
    size = check_regular_file(path).stat().st_size
    if size > MAX_ECG_FILE_BYTES:
        raise UnreadableFileError(
            f"{path}: {size >> 20} MiB, far more than a resting ECG "
            f"(limit {MAX_ECG_FILE_BYTES >> 20} MiB); refused"
        )
    return path


def write_wfdb(path: str | Path, record: EcgRecord) -> Path:
    """Write `record` as a WFDB record in mV (16-bit format); returns the .hea path."""
    import wfdb

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(record.leads)
    wfdb.wrsamp(
        path.with_suffix("").name,
        fs=record.fs,
        units=["mV"] * n,
        sig_name=list(record.leads),
        p_signal=np.ascontiguousarray(np.asarray(record.signal, dtype=np.float64).T),
        fmt=["16"] * n,
        write_dir=str(path.parent),
    )
    return path.with_suffix(".hea")


def read_dicom_ecg(path: str | Path) -> EcgRecord:
    """Read a DICOM waveform ECG (12-lead ECG Waveform Storage): its longest multiplex group."""
    import pydicom

    path = _check_ecg_file(Path(path))
    try:
        ds = pydicom.dcmread(path)
        groups = ds.WaveformSequence
    except Exception as err:
        raise UnreadableFileError(f"{path}: not a readable DICOM waveform ECG ({err})") from err
    best = max(
        range(len(groups)),
        key=lambda i: groups[i].NumberOfWaveformSamples / groups[i].SamplingFrequency,
    )
    group = groups[best]
    signal = ds.waveform_array(best).T  # sensitivity and baseline applied
    leads, scale = [], []
    for channel in group.ChannelDefinitionSequence:
        leads.append(str(channel.ChannelSourceSequence[0].CodeMeaning))
        unit = str(channel.ChannelSensitivityUnitsSequence[0].CodeValue)
        if unit.lower() not in _TO_MV:
            raise UnreadableFileError(f"{path}: channel {leads[-1]!r} has units {unit!r}")
        scale.append(_TO_MV[unit.lower()])
    return EcgRecord(
        signal=signal * np.asarray(scale)[:, None],
        fs=float(group.SamplingFrequency),
        leads=leads,
        source=str(path),
    )


def read_ecg(path: str | Path) -> EcgRecord:
    """Read an ECG file by its suffix: .xml (CardioSoft), .hea or record stem (WFDB), .dcm."""
    path = Path(path)
    if not path.exists() and not path.with_suffix(".hea").exists():
        raise UnreadableFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_cardiosoft_xml(path)
    if suffix == ".dcm":
        return read_dicom_ecg(path)
    if suffix in (".hea", ".dat", "") or path.with_suffix(".hea").exists():
        return read_wfdb(path.with_suffix(".hea"))
    raise UnreadableFileError(f"{path}: unknown ECG format (expected one of {ECG_SUFFIXES})")


def check_sampling_rate(fs: object, source: str) -> float:
    """`fs` as Hz, or `UnreadableFileError` naming `source` when it is not a plausible rate."""
    try:
        rate = float(fs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = float("nan")
    low, high = ECG_RATE_RANGE_HZ
    if not low <= rate <= high:  # also NaN
        raise UnreadableFileError(
            f"{source}: sampling rate {fs!r} Hz is not a plausible ECG rate ({low:g}-{high:g} Hz)"
        )
    return rate


def standard_leads(record: EcgRecord) -> np.ndarray:
    """The record's signal as (12, T) in `LEADS` order; III, aVR, aVL, aVF derived from I and II
    (Einthoven and Goldberger) when the file stores only those."""
    by_name: dict[str, np.ndarray] = {}
    for label, row in zip(record.leads, record.signal):
        name = lead_name(label)
        if name is not None:
            by_name.setdefault(name, np.asarray(row, dtype=np.float64))
    if "I" in by_name and "II" in by_name:
        lead_1, lead_2 = by_name["I"], by_name["II"]
        by_name.setdefault("III", lead_2 - lead_1)
        by_name.setdefault("aVR", -(lead_1 + lead_2) / 2)
        by_name.setdefault("aVL", lead_1 - lead_2 / 2)
        by_name.setdefault("aVF", lead_2 - lead_1 / 2)
    missing = [lead for lead in LEADS if lead not in by_name]
    if missing:
        raise GeometryError(
            f"{record.source}: leads {missing} are missing (the file has {record.leads})"
        )
    return np.stack([by_name[lead] for lead in LEADS])


def prepare_ecg(
    record: EcgRecord, sampling_rate_hz: float = 500.0, seconds: float = 10.0
) -> np.ndarray:
    """(12, T) float32 mV at `sampling_rate_hz`, the first `seconds`, baseline drift removed."""
    from scipy.signal import resample_poly

    from ctrip.data.ecg import remove_baseline_drift

    check_sampling_rate(record.fs, record.source)
    signal = standard_leads(record)
    if not np.isfinite(signal).all():
        raise UnreadableFileError(f"{record.source}: the ECG holds NaN or infinite samples")
    if record.fs != sampling_rate_hz:
        ratio = Fraction(sampling_rate_hz / record.fs).limit_denominator(1000)
        if ratio.numerator < 1:
            raise GeometryError(
                f"{record.source}: cannot resample {record.fs:g} Hz to {sampling_rate_hz:g} Hz"
            )
        signal = resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)
    n_samples = round(sampling_rate_hz * seconds)
    if signal.shape[1] < n_samples:
        raise GeometryError(
            f"{record.source}: the ECG lasts {record.seconds:.2f} s; the cohort needs {seconds:g} s"
        )
    signal = remove_baseline_drift(signal[:, :n_samples], sampling_rate_hz)
    return np.asarray(signal, dtype=np.float32)
