"""The cohort format: a valid cohort opens; each kind of broken cohort fails with one clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ctrip.cli import main as cli_main
from ctrip.data.cohort import Cohort, CohortError, CohortWriter, sha256_of, write_cohort
from ctrip.data.manifests import leak_reason, ukbiobank_manifest
from ctrip.data.schema import CP_NAMES, CP_UKB_FIELDS, CP_UNITS
from tests.factories import TABULAR_VARIANTS, make_tiny_cohort, tiny_arrays, tiny_table


def _manifest(path: Path) -> dict:
    return yaml.safe_load((path / "manifest.yaml").read_text())


def _save_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _edit_table(path: Path, edit) -> None:
    """Apply `edit` to the subjects table and re-record its sha256, so only the edit is wrong."""
    table = pd.read_parquet(path / "subjects.parquet")
    table = edit(table)
    table.to_parquet(path / "subjects.parquet", index=False)
    manifest = _manifest(path)
    manifest["table"]["sha256"] = sha256_of(path / "subjects.parquet")
    manifest["n_subjects"] = len(table)
    _save_manifest(path, manifest)


def _edit_array(path: Path, name: str, values: np.ndarray) -> None:
    np.save(path / f"{name}.npy", values)
    manifest = _manifest(path)
    manifest["arrays"][name]["sha256"] = sha256_of(path / f"{name}.npy")
    _save_manifest(path, manifest)


def _error(path: Path) -> CohortError:
    with pytest.raises(CohortError) as caught:
        Cohort.validate(path)
    return caught.value


def test_valid_cohort_opens_memory_mapped(tiny_cohort: Path) -> None:
    cohort = Cohort.open(tiny_cohort)
    assert cohort.n == 40
    assert cohort.modalities == ("localizer", "cmr", "ecg", "tabular")
    assert isinstance(cohort.array("ecg"), np.memmap)
    assert cohort.array("localizer").shape == (40, 3, 16, 16)
    assert set(cohort.table["split"]) == {"train", "val", "test"}
    manifest = _manifest(tiny_cohort)
    assert manifest["ecg"]["leads"][:3] == ["I", "II", "III"]
    for entry in manifest["arrays"].values():
        assert len(entry["sha256"]) == 64
    assert cohort.tabular_spec("Tp").leaking


def test_missing_array_file(tiny_cohort: Path) -> None:
    (tiny_cohort / "ecg.npy").unlink()
    err = _error(tiny_cohort)
    assert "ecg.npy" in str(err) and err.field == "ecg" and "missing" in str(err)


def test_row_count_mismatch(tiny_cohort: Path) -> None:
    _edit_table(tiny_cohort, lambda t: t.iloc[:-1])
    err = _error(tiny_cohort)
    assert "localizer.npy" in str(err) and "40 rows" in str(err) and "39" in str(err)


def test_shape_mismatch_with_manifest(tiny_cohort: Path) -> None:
    _edit_array(tiny_cohort, "cmr", tiny_arrays(40, image=8)["cmr"])
    err = _error(tiny_cohort)
    assert "cmr.npy" in str(err) and "does not match the manifest" in str(err)


def test_wrong_number_of_leads(tiny_cohort: Path) -> None:
    ecg = tiny_arrays(40)["ecg"][:, :8]
    _edit_array(tiny_cohort, "ecg", ecg)
    manifest = _manifest(tiny_cohort)
    manifest["arrays"]["ecg"]["shape"] = list(ecg.shape)
    _save_manifest(tiny_cohort, manifest)
    err = _error(tiny_cohort)
    assert "ecg.npy" in str(err) and "(N, 12, T)" in str(err)


def test_nan_in_a_cardiac_phenotype(tiny_cohort: Path) -> None:
    def poison(table):
        table.loc[7, "RVEF"] = np.nan
        return table

    _edit_table(tiny_cohort, poison)
    err = _error(tiny_cohort)
    assert (err.subject, err.field) == ("S0007", "RVEF")
    assert "subjects.parquet" in str(err)


def test_inf_in_an_array(tiny_cohort: Path) -> None:
    values = tiny_arrays(40)["localizer"]
    values[13, 2, 5, 5] = np.inf
    _edit_array(tiny_cohort, "localizer", values)
    err = _error(tiny_cohort)
    assert (err.subject, err.field) == ("S0013", "localizer")
    assert "NaN or inf" in str(err)


def test_duplicate_id(tiny_cohort: Path) -> None:
    def duplicate(table):
        table.loc[5, "id"] = table.loc[4, "id"]
        table.loc[5, "split"] = table.loc[4, "split"]
        return table

    _edit_table(tiny_cohort, duplicate)
    err = _error(tiny_cohort)
    assert (err.subject, err.field) == ("S0004", "id") and "duplicate" in str(err)


def test_unknown_split(tiny_cohort: Path) -> None:
    def rename(table):
        table.loc[2, "split"] = "holdout"
        return table

    _edit_table(tiny_cohort, rename)
    err = _error(tiny_cohort)
    assert (err.subject, err.field) == ("S0002", "split") and "holdout" in str(err)


def test_subject_in_two_splits(tiny_cohort: Path) -> None:
    def leak(table):
        train = table.index[table["split"] == "train"][0]
        test = table.index[table["split"] == "test"][0]
        table.loc[test, "id"] = table.loc[train, "id"]
        return table

    _edit_table(tiny_cohort, leak)
    err = _error(tiny_cohort)
    assert err.field == "split" and "two splits" in str(err) and err.subject is not None


def test_repeat_visits_of_one_subject_must_share_a_split(tiny_cohort: Path) -> None:
    def visits(table):
        table["subject_id"] = table["id"]
        train = table.index[table["split"] == "train"][0]
        val = table.index[table["split"] == "val"][0]
        table.loc[val, "subject_id"] = table.loc[train, "subject_id"]
        return table

    _edit_table(tiny_cohort, visits)
    assert "two splits" in str(_error(tiny_cohort))


@pytest.mark.parametrize("column", ["LVEF", "24105-2.0", "f.22421.2.0"])
def test_target_leaking_tabular_input(tiny_cohort: Path, column: str) -> None:
    def add(table):
        table[column] = table["LVEF"]
        return table

    _edit_table(tiny_cohort, add)
    manifest = _manifest(tiny_cohort)
    manifest["tabular_variants"]["T"]["numerical"].append(column)
    _save_manifest(tiny_cohort, manifest)
    err = _error(tiny_cohort)
    assert err.field == column and "leaking" in str(err) and "manifest.yaml" in str(err)


def test_leak_through_a_field_id_map(tiny_cohort: Path) -> None:
    def add(table):
        table["cardiac_output"] = table["LVCO"]
        return table

    _edit_table(tiny_cohort, add)
    manifest = _manifest(tiny_cohort)
    manifest["tabular_variants"]["T"]["numerical"].append("cardiac_output")
    manifest["tabular_field_ids"] = {"cardiac_output": 12682}
    _save_manifest(tiny_cohort, manifest)
    err = _error(tiny_cohort)
    assert err.field == "cardiac_output" and "12682" in str(err)


def test_sha256_mismatch(tiny_cohort: Path) -> None:
    values = np.load(tiny_cohort / "ecg.npy")
    values[0, 0, 0] += 1.0
    np.save(tiny_cohort / "ecg.npy", values)
    err = _error(tiny_cohort)
    assert err.field == "sha256" and "ecg.npy" in str(err)
    Cohort.open(tiny_cohort, verify_checksums=False)  # the content itself is valid


def test_category_outside_its_levels(tiny_cohort: Path) -> None:
    def odd(table):
        table["smoking"] = table["smoking"].astype(object)
        table.loc[3, "smoking"] = "sometimes"
        return table

    _edit_table(tiny_cohort, odd)
    err = _error(tiny_cohort)
    assert (err.subject, err.field) == ("S0003", "smoking")


def test_missing_required_column(tiny_cohort: Path) -> None:
    _edit_table(tiny_cohort, lambda t: t.drop(columns=["LAEF"]))
    assert _error(tiny_cohort).field == "LAEF"


def test_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "manifest.yaml" in str(_error(tmp_path / "empty"))


def test_writer_never_leaves_a_partial_cohort_in_place(tmp_path: Path) -> None:
    table = tiny_table(10)
    table.loc[0, "LVM"] = np.nan
    writer = CohortWriter(tmp_path / "c", 10)
    writer.array("localizer", (3, 8, 8))[:] = 0.5
    with pytest.raises(CohortError):
        writer.finish(table, source="test", tabular_variants=TABULAR_VARIANTS)
    assert not (tmp_path / "c").exists() and (tmp_path / "c.partial").exists()


def test_writer_refuses_to_overwrite(tiny_cohort: Path) -> None:
    with pytest.raises(FileExistsError):
        make_tiny_cohort(tiny_cohort)
    make_tiny_cohort(tiny_cohort, overwrite=True)


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    a, b = make_tiny_cohort(tmp_path / "a"), make_tiny_cohort(tmp_path / "b")
    assert _manifest(a)["table"] == _manifest(b)["table"]
    assert _manifest(a)["arrays"] == _manifest(b)["arrays"]


def test_validate_command(tiny_cohort: Path, capsys) -> None:
    assert cli_main(["cohort", "validate", str(tiny_cohort)]) == 0
    assert "valid cohort" in capsys.readouterr().out
    (tiny_cohort / "cmr.npy").unlink()
    assert cli_main(["cohort", "validate", str(tiny_cohort)]) == 2
    assert "cmr.npy" in capsys.readouterr().err


def test_validate_command_as_a_process(tiny_cohort: Path) -> None:
    (tiny_cohort / "cmr.npy").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "ctrip.cli", "cohort", "validate", str(tiny_cohort)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "cmr.npy" in done.stderr
    assert "Traceback" not in done.stderr


def test_ukbiobank_field_map_agrees_with_the_schema() -> None:
    manifest = ukbiobank_manifest()
    cps = manifest["cardiac_phenotypes"]
    assert list(cps) == CP_NAMES
    for name in CP_NAMES:
        assert cps[name]["field"] == CP_UKB_FIELDS[name]
        assert cps[name]["unit"] == CP_UNITS[name]
    assert set(range(24100, 24118)) <= set(manifest["leaking_fields"])
    assert {12682, 12686, 12702} <= set(manifest["leaking_fields"])
    for column in manifest["tabular"]["numerical"]:
        assert leak_reason(column) is None
    assert {b["field"] for b in manifest["bulk"].values()} >= {20205, 20207, 20209}


def test_a_heart_mask_is_optional_and_checked(tmp_path: Path, tiny_cohort: Path) -> None:
    plain = Cohort.open(tiny_cohort)  # an imported cohort: no masks
    assert plain.masks == ()
    with pytest.raises(CohortError, match="no 'localizer_heart' mask"):
        plain.mask("localizer_heart")

    writer = CohortWriter(tmp_path / "masked", 40)
    with pytest.raises(ValueError, match="allocate it first"):
        writer.mask("localizer_heart")
    for name, values in tiny_arrays(40).items():
        writer.array(name, values.shape[1:])[:] = values
    writer.mask("localizer_heart")[:, :, 4:12, 4:12] = True
    path = writer.finish(
        tiny_table(40), source="test", tabular_variants=TABULAR_VARIANTS, ecg_sampling_rate_hz=20.0
    )
    cohort = Cohort.validate(path)
    assert cohort.masks == ("localizer_heart",)
    mask = cohort.mask("localizer_heart")
    assert mask.shape == (40, 3, 16, 16) and mask.dtype == bool and mask.mean() == 0.25
    assert _manifest(path)["masks"]["localizer_heart"]["dtype"] == "bool"

    changed = np.load(path / "localizer_heart.npy")
    changed[0, 0, 0, 0] = True
    np.save(path / "localizer_heart.npy", changed)
    err = _error(path)
    assert err.field == "sha256" and "localizer_heart.npy" in str(err)
    np.save(path / "localizer_heart.npy", changed[:, :, :8])  # not the localizer's shape
    with pytest.raises(CohortError, match="does not match") as caught:
        Cohort.open(path)
    assert caught.value.field == "localizer_heart"
    np.save(path / "localizer_heart.npy", changed.astype(np.float32))
    with pytest.raises(CohortError, match="a mask is bool"):
        Cohort.open(path)

    arrays = {**tiny_arrays(40), "localizer_heart": np.ones((40, 3, 16, 16), dtype=bool)}
    written = write_cohort(
        tmp_path / "in_memory", tiny_table(40), arrays, source="test",
        tabular_variants=TABULAR_VARIANTS, ecg_sampling_rate_hz=20.0,
    )  # fmt: skip
    assert Cohort.validate(written).mask("localizer_heart").all()
