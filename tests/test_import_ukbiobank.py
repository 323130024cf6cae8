"""The UK Biobank importer: a showcase CSV and bulk files laid out as ukbfetch names them
(CardioSoft XML converted from a real DICOM ECG, scout zips of pydicom's real DICOM files)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from ctrip.cli import main
from ctrip.data.cohort import Cohort, CohortError, with_consistent_chambers
from ctrip.data.manifests import ukbiobank_manifest
from ctrip.data.schema import CP_NAMES, CP_UKB_FIELDS
from ctrip.io.ecg import read_dicom_ecg, write_cardiosoft_xml
from ctrip.io.importer import ImportSettings
from ctrip.io.ukbiobank import import_ukbiobank, index_bulk, parse_column, read_showcase
from tests.test_io_images import CT_STACK, TRIPLANAR, mr_series

SETTINGS = ImportSettings(
    ("localizer", "ecg"), image_size=16, ecg_sampling_rate_hz=100, ecg_seconds=10
)
EIDS = [1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 1000007]


def showcase_frame() -> pd.DataFrame:
    n = len(EIDS)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "eid": EIDS,
            "31-0.0": [0, 1, 1, np.nan, 0, 1, 0],
            "21003-2.0": rng.integers(45, 80, n),
            "50-2.0": rng.normal(170, 8, n),
            "21002-2.0": rng.normal(78, 12, n),
            "21001-2.0": rng.normal(27, 4, n),
            "4080-2.0": rng.normal(138, 15, n),
            "102-2.0": rng.normal(70, 10, n),
            "20116-2.0": [0, 1, 2, -3, 0, 7, 1],  # 7 is not a code of the field map
            "2443-2.0": [0, 1, -1, 0, 0, 0, 1],
            "6150-2.0": [-7, 1, 4, np.nan, -3, -7, 2],
            "6150-2.1": [np.nan, 4, np.nan, np.nan, np.nan, np.nan, np.nan],
            "22420-2.0": rng.normal(60, 5, n),  # leaking: present in the extract, never read
        }
    )
    cps = pd.DataFrame({cp: rng.normal(50 + j, 5, n) for j, cp in enumerate(CP_NAMES)})
    cps = with_consistent_chambers(cps)  # ESV, SV from EDV and EF, as measured CPs relate
    for cp in CP_NAMES:
        frame[f"{CP_UKB_FIELDS[cp]}-2.0"] = cps[cp]
    frame[f"{CP_UKB_FIELDS['LVCO']}-2.0"] = rng.normal(5, 1, n)  # L/min: 50 is impossible
    frame.loc[4, "24105-2.0"] = np.nan  # 1000005 has no LVM
    return frame


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ukb")
    showcase_frame().to_csv(root / "ukb12345.csv", index=False)
    bulk = root / "bulk"
    (bulk / "20205").mkdir(parents=True)
    (bulk / "20207").mkdir()
    ecg = read_dicom_ecg(get_testdata_file("waveform_ecg.dcm"))
    for eid in EIDS:
        if eid != 1000003:  # no ECG
            write_cardiosoft_xml(bulk / "20205" / f"{eid}_20205_2_0.xml", ecg)
        scout = {1000002: None, 1000007: TRIPLANAR}.get(eid, CT_STACK)
        if eid == 1000002:  # an unpacked scout folder of a series made from MR_small.dcm
            mr_series(bulk / "20207" / f"{eid}_20207_2_0")
            continue
        with zipfile.ZipFile(bulk / "20207" / f"{eid}_20207_2_0.zip", "w") as archive:
            for file in sorted(scout.iterdir()):
                archive.write(file, file.name)
            archive.writestr("manifest.cvs", "series listing\n")
    (bulk / "20205" / "1000006_20205_2_0.xml").write_text("<CardiologyXML><StripData>")
    return root / "ukb12345.csv", bulk


def test_showcase_column_names() -> None:
    assert parse_column("24100-2.0") == (24100, 2, 0)
    assert parse_column("f.6150.2.3") == (6150, 2, 3)
    assert parse_column("p24100_i2") == (24100, 2, 0)
    assert parse_column("p6150_i2_a1") == (6150, 2, 1)
    assert parse_column("p31") == (31, None, 0)
    assert parse_column("eid") is None and parse_column("sex") is None


def test_showcase_fields_become_table_columns(extract: tuple[Path, Path]) -> None:
    showcase = read_showcase(extract[0])
    table = showcase["table"].set_index("id")
    assert list(table.index) == ["1000001", "1000002", "1000003", "1000006", "1000007"]
    assert table.loc["1000001", "sex"] == "female" and table.loc["1000002", "sex"] == "male"
    assert table["smoking"].tolist()[:3] == ["never", "previous", "current"]
    assert pd.isna(table.loc["1000006", "smoking"])  # code 7 unknown: missing, with a note
    assert pd.isna(table.loc["1000003", "diabetes"])  # -1 "do not know"
    # hypertension: code 4 in any array of field 6150
    assert table["hypertension"].tolist() == ["no", "yes", "yes", "no", "no"]
    assert table["age"].notna().all() and table["dbp"].isna().all()
    drops = {d["id"]: (d["reason"], d["detail"]) for d in showcase["drops"]}
    assert drops["1000004"] == ("missing field", "sex (31-0.0) is missing")
    assert drops["1000005"][0] == "missing targets" and "LVM (24105-2.0)" in drops["1000005"][1]
    assert any("smoking: 1 value" in note for note in showcase["notes"])
    assert any(note.startswith("dbp: field 4079") for note in showcase["notes"])
    assert "dbp" not in showcase["variants"]["T"]["numerical"]
    assert showcase["field_ids"]["LVEF"] == 24103 and showcase["field_ids"]["sex"] == 31


def test_rap_column_names_read_the_same(extract: tuple[Path, Path], tmp_path: Path) -> None:
    frame = pd.read_csv(extract[0])
    renamed = {"eid": "eid"}
    for column in frame.columns[1:]:
        field, instance, array = parse_column(column)
        renamed[column] = f"p{field}" if field == 31 else f"p{field}_i{instance}_a{array}"
    frame.rename(columns=renamed).to_csv(tmp_path / "rap.csv", index=False)
    pd.testing.assert_frame_equal(
        read_showcase(tmp_path / "rap.csv")["table"], read_showcase(extract[0])["table"]
    )


def test_import_ukbiobank_extract(extract: tuple[Path, Path], tmp_path: Path) -> None:
    showcase, bulk = extract
    assert len(index_bulk(bulk)) == 13
    report = import_ukbiobank(showcase, bulk, tmp_path / "ukb", SETTINGS, progress=False)
    cohort = Cohort.open(tmp_path / "ukb")
    assert cohort.ids == ["1000001", "1000002"] and cohort.manifest["source"] == "ukbiobank"
    reasons = {d["id"]: d["reason"] for d in report.dropped}
    assert reasons == {
        "1000003": "missing modality", "1000004": "missing field", "1000005": "missing targets",
        "1000006": "unreadable file", "1000007": "wrong geometry",
    }  # fmt: skip
    detail = {d["id"]: d["detail"] for d in report.dropped}["1000003"]
    assert "1000003_20205_2_*" in detail
    assert cohort.array("localizer").shape == (2, 3, 16, 16) and cohort.array("ecg").shape == (
        2,
        12,
        1000,
    )
    assert cohort.manifest["tabular_field_ids"]["LVM"] == 24105
    assert cohort.manifest["provenance"]["bulk_fields"] == {"localizer": 20207, "ecg": 20205}
    spec = cohort.tabular_spec("T")
    assert spec.categorical["sex"] == ["female", "male"] and "bmi" in spec.numerical
    assert cohort.tabular_spec("Tp").leaking
    np.testing.assert_allclose(cohort.table["LVEF"], read_showcase(showcase)["table"]["LVEF"][:2])


def test_a_field_map_that_leaks_is_refused(extract: tuple[Path, Path]) -> None:
    manifest = {**ukbiobank_manifest()}
    manifest["tabular"] = {
        "numerical": {"lv_mass": {"field": 24105}},
        "categorical": manifest["tabular"]["categorical"],
    }
    with pytest.raises(CohortError, match="field lv_mass: the field map makes leaking field 24105"):
        read_showcase(extract[0], manifest)


def test_command_line_with_limit(extract: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    showcase, bulk = extract
    boxes = tmp_path / "boxes.csv"
    pd.DataFrame(
        {"id": ["1000001"], "r0": [4], "c0": [4], "r1": [12], "c1": [12], "slice": [2]}
    ).to_csv(boxes, index=False)
    code = main(["cohort", "import", "ukbiobank", "--showcase", str(showcase), "--bulk", str(bulk),
                 "--out", str(tmp_path / "ukb"), "--image-size", "16", "--ecg-rate", "100",
                 "--limit", "4", "--localizer-boxes", str(boxes), "--no-progress"])  # fmt: skip
    assert code == 0
    assert "imported 2 subject(s); dropped 2" in capsys.readouterr().out  # 1000003 and 1000004
    report = (tmp_path / "ukb" / "import_report.txt").read_text()
    assert "1000002\t" in report and "1000001\t" not in report.split("warnings:")[1]
    shutil.rmtree(tmp_path / "ukb")
