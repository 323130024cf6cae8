"""ECG readers and writers: CardioSoft XML, WFDB, DICOM waveform; preprocessing to (12, T).

The real recording is pydicom's bundled 12-lead ECG (waveform_ecg.dcm, 10 s at 1000 Hz), a
file this project did not write; it is converted through each writer and read back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from ctrip.data.schema import LEADS
from ctrip.io.ecg import (
    EcgRecord,
    lead_name,
    prepare_ecg,
    read_cardiosoft_xml,
    read_dicom_ecg,
    read_ecg,
    read_wfdb,
    standard_leads,
    write_cardiosoft_xml,
    write_wfdb,
)
from ctrip.io.errors import GeometryError, UnreadableFileError


@pytest.fixture(scope="module")
def real_ecg() -> EcgRecord:
    return read_dicom_ecg(get_testdata_file("waveform_ecg.dcm"))


def test_dicom_waveform_is_a_real_12_lead_record(real_ecg: EcgRecord) -> None:
    assert real_ecg.fs == 1000.0 and real_ecg.signal.shape == (12, 10000)
    assert [lead_name(label) for label in real_ecg.leads] == list(LEADS)
    amplitude = np.ptp(real_ecg.signal, axis=1)
    assert np.all(amplitude > 0.1) and np.all(amplitude < 10)  # mV, not uV
    # Einthoven's law holds on the recorded limb leads (to the device's quantization).
    leads = standard_leads(real_ecg)
    assert np.abs(leads[2] - (leads[1] - leads[0])).max() < 0.05


def test_cardiosoft_xml_round_trip_on_a_real_recording(real_ecg: EcgRecord, tmp_path: Path) -> None:
    path = write_cardiosoft_xml(tmp_path / "1000001_20205_2_0.xml", real_ecg, uv_per_count=5.0)
    back = read_cardiosoft_xml(path)
    assert back.fs == real_ecg.fs and back.leads == real_ecg.leads
    assert np.abs(back.signal - real_ecg.signal).max() <= 0.0025 + 1e-9  # half a 5 uV count
    again = write_cardiosoft_xml(tmp_path / "again.xml", back, uv_per_count=5.0)
    assert again.read_bytes() == path.read_bytes()


def test_cardiosoft_xml_reads_the_device_layout(tmp_path: Path) -> None:
    """Sample rate and resolution come from the file; median beats and whitespace are ignored."""
    counts = np.arange(-6, 6)
    waveforms = "\n".join(
        f'    <WaveformData lead="{lead}">\t{",".join(str(c + i) for c in counts)},\n\t</WaveformData>'
        for i, lead in enumerate(LEADS)
    )
    path = tmp_path / "device.xml"
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<!DOCTYPE CardiologyXML SYSTEM "CardiologyXML.dtd">\n<CardiologyXML>\n'
        '  <RestingECGMeasurements><MedianSamples><SampleRate units="Hz">500</SampleRate>'
        '<Resolution units="uVperLsb">1</Resolution><WaveformData lead="I">1,2</WaveformData>'
        "</MedianSamples></RestingECGMeasurements>\n"
        '  <StripData>\n    <NumberOfLeads>12</NumberOfLeads>\n    <SampleRate units="Hz">250</SampleRate>\n'
        "    <ChannelSampleCountTotal>12</ChannelSampleCountTotal>\n"
        f'    <Resolution units="uVperLsb">2.5</Resolution>\n{waveforms}\n  </StripData>\n</CardiologyXML>\n',
        encoding="latin-1",
    )
    record = read_ecg(path)
    assert record.fs == 250.0 and record.leads == list(LEADS)
    np.testing.assert_allclose(record.signal[3], (counts + 3) * 2.5 / 1000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<CardiologyXML><StripData>", "not a readable"),
        ("<CardiologyXML></CardiologyXML>", "no <StripData>"),
        (
            '<CardiologyXML><StripData><SampleRate>500</SampleRate><Resolution units="uVperLsb">5'
            '</Resolution><WaveformData lead="I">1,2,3</WaveformData><WaveformData lead="II">1,2'
            "</WaveformData></StripData></CardiologyXML>",
            "different lengths",
        ),
        (
            '<CardiologyXML><StripData><SampleRate>500</SampleRate><Resolution units="uVperLsb">5'
            '</Resolution><WaveformData lead="I">1,x,3</WaveformData></StripData></CardiologyXML>',
            "non-number",
        ),
    ],
)
def test_bad_cardiosoft_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(UnreadableFileError, match=message) as err:
        read_cardiosoft_xml(path)
    assert str(path) in str(err.value)


def test_wfdb_round_trip_on_a_real_recording(real_ecg: EcgRecord, tmp_path: Path) -> None:
    header = write_wfdb(tmp_path / "rec" / "ecg", real_ecg)
    assert header.name == "ecg.hea" and (tmp_path / "rec" / "ecg.dat").exists()
    back = read_ecg(header)
    assert back.fs == real_ecg.fs and back.leads == real_ecg.leads
    span = np.ptp(real_ecg.signal, axis=1, keepdims=True)
    assert np.all(np.abs(back.signal - real_ecg.signal) <= span / 2**15)  # 16-bit ADC
    np.testing.assert_allclose(read_wfdb(tmp_path / "rec" / "ecg").signal, back.signal)


def test_wfdb_reader_converts_units_and_rejects_non_voltage(tmp_path: Path) -> None:
    import wfdb

    signal = np.sin(np.linspace(0, 20, 600))[:, None] * np.array([[1000.0, 500.0]])
    wfdb.wrsamp("uv", fs=100, units=["uV", "uV"], sig_name=["I", "II"], p_signal=signal,
                fmt=["16", "16"], write_dir=str(tmp_path))  # fmt: skip
    record = read_wfdb(tmp_path / "uv.hea")
    np.testing.assert_allclose(record.signal[0], signal[:, 0] / 1000, atol=1e-3)
    wfdb.wrsamp("bp", fs=100, units=["mmHg"], sig_name=["ABP"], p_signal=signal[:, :1],
                fmt=["16"], write_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(UnreadableFileError, match="not a voltage"):
        read_wfdb(tmp_path / "bp.hea")
    (tmp_path / "broken.hea").write_text("this is not a header\n")
    with pytest.raises(UnreadableFileError, match="broken"):
        read_ecg(tmp_path / "broken.hea")


def test_prepare_ecg_resamples_cuts_and_removes_drift(real_ecg: EcgRecord) -> None:
    drifting = EcgRecord(
        real_ecg.signal + 2.0 * np.sin(2 * np.pi * 0.1 * np.arange(10000) / 1000),
        real_ecg.fs, real_ecg.leads, "drifting",
    )  # fmt: skip
    ecg = prepare_ecg(drifting, sampling_rate_hz=500, seconds=8)
    assert ecg.shape == (12, 4000) and ecg.dtype == np.float32
    assert np.abs(np.median(ecg, axis=1)).max() < 0.1  # the 2 mV wander is gone
    clean = prepare_ecg(real_ecg, sampling_rate_hz=500, seconds=8)
    assert np.corrcoef(ecg.ravel(), clean.ravel())[0, 1] > 0.99


def test_prepare_ecg_derives_limb_leads_and_rejects_bad_geometry(real_ecg: EcgRecord) -> None:
    keep = [0, 1, *range(6, 12)]  # I, II, V1-V6: what many WFDB databases store
    eight = EcgRecord(
        real_ecg.signal[keep], real_ecg.fs, [real_ecg.leads[i] for i in keep], "eight"
    )
    derived = standard_leads(eight)
    np.testing.assert_allclose(derived[3], -(derived[0] + derived[1]) / 2)
    assert prepare_ecg(eight, 500, 10).shape == (12, 5000)
    with pytest.raises(GeometryError, match=r"lasts 10.00 s; the cohort needs 12 s"):
        prepare_ecg(real_ecg, 500, 12)
    no_v6 = EcgRecord(real_ecg.signal[:11], real_ecg.fs, real_ecg.leads[:11], "no_v6.xml")
    with pytest.raises(GeometryError, match=r"no_v6.xml: leads \['V6'\] are missing"):
        prepare_ecg(no_v6)
    broken = EcgRecord(real_ecg.signal.copy(), real_ecg.fs, real_ecg.leads, "nan.hea")
    broken.signal[4, 10] = np.nan
    with pytest.raises(UnreadableFileError, match="NaN"):
        prepare_ecg(broken)


def test_lead_names() -> None:
    assert lead_name("Lead I (Einthoven)") == "I"
    assert lead_name("AVR") == "aVR" and lead_name("v6") == "V6" and lead_name("MLII") is None
