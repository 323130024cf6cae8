"""Hostile and careless cohorts (issue 12): manifests naming files elsewhere, malformed manifests,
--overwrite on a folder that is not a cohort, impossible values, a full disk, bad synth
arguments. Each must end in one clear error naming the file and field, never a traceback."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ctrip.data.cohort as cohort_module
from ctrip.cli import main as cli_main
from ctrip.data.cohort import (
    Cohort,
    CohortError,
    PlausibilityWarning,
    sha256_of,
    with_consistent_chambers,
)
from tests.factories import make_tiny_cohort, tiny_arrays


def _manifest(path: Path) -> dict:
    return yaml.safe_load((path / "manifest.yaml").read_text())


def _save_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _edit_manifest(path: Path, edit) -> None:
    manifest = _manifest(path)
    edit(manifest)
    _save_manifest(path, manifest)


def _edit_table(path: Path, edit) -> None:
    table = edit(pd.read_parquet(path / "subjects.parquet"))
    table.to_parquet(path / "subjects.parquet", index=False)
    _edit_manifest(path, lambda m: m["table"].update(sha256=sha256_of(path / "subjects.parquet")))


def _edit_array(path: Path, name: str, values: np.ndarray) -> None:
    np.save(path / f"{name}.npy", values)

    def record(manifest: dict) -> None:
        manifest["arrays"][name].update(
            sha256=sha256_of(path / f"{name}.npy"),
            dtype=str(values.dtype),
            shape=list(values.shape),
        )

    _edit_manifest(path, record)


def _validate_error(path: Path) -> CohortError:
    with pytest.raises(CohortError) as caught:
        Cohort.validate(path)
    return caught.value


def _cli_error(argv: list[str], capsys) -> str:
    """Run the `ctrip` command; it must fail with exit code 2 and one `error:` line."""
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err.splitlines()[0]


# ---- item 2: a manifest cannot point outside its cohort ----------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../other/localizer.npy", "/dev/zero", "ABSOLUTE", "link_out.npy"],
)
def test_manifest_names_only_files_inside_the_cohort(tiny_cohort: Path, name: str) -> None:
    outside = tiny_cohort.parent / "other"
    outside.mkdir()
    shutil.copy(tiny_cohort / "localizer.npy", outside / "localizer.npy")
    if name == "ABSOLUTE":
        name = str(outside / "localizer.npy")
    if name == "link_out.npy":
        (tiny_cohort / name).symlink_to(outside / "localizer.npy")
    _edit_manifest(tiny_cohort, lambda m: m["arrays"]["localizer"].update(file=name))
    with pytest.raises(CohortError) as caught:
        Cohort.open(tiny_cohort)  # the cheap open refuses it already (and does not hang)
    assert "outside the cohort folder" in str(caught.value)
    assert caught.value.field == "arrays.localizer.file" and "manifest.yaml" in str(caught.value)


def test_a_device_inside_the_folder_is_not_a_regular_file(tiny_cohort: Path) -> None:
    os.mkfifo(tiny_cohort / "pipe.npy")  # reading a FIFO would block forever
    _edit_manifest(tiny_cohort, lambda m: m["arrays"]["ecg"].update(file="pipe.npy"))
    with pytest.raises(CohortError, match="not a regular file"):
        Cohort.open(tiny_cohort)


# ---- item 7: malformed manifests -----------------------------------------------------------------

MALFORMED = {
    "arrays entry without file": (lambda m: m["arrays"]["ecg"].pop("file"), "arrays.ecg.file"),
    "arrays entry is a string": (lambda m: m["arrays"].update(ecg="ecg.npy"), "arrays.ecg"),
    "table is a string": (lambda m: m.update(table="subjects.parquet"), "table"),
    "shape is text": (lambda m: m["arrays"]["cmr"].update(shape="x"), "arrays.cmr.shape"),
    "n_subjects is text": (lambda m: m.update(n_subjects="forty"), "n_subjects"),
    "empty cohort": (lambda m: m.update(n_subjects=0), "n_subjects"),
    "ecg rate is text": (
        lambda m: m["ecg"].update(sampling_rate_hz="fast"),
        "ecg.sampling_rate_hz",
    ),
    "ecg rate negative": (lambda m: m["ecg"].update(sampling_rate_hz=-5), "ecg.sampling_rate_hz"),
    "ecg in volts": (lambda m: m["ecg"].update(units="V"), "ecg.units"),
    "variant is a list": (lambda m: m["tabular_variants"].update(T=[1]), "tabular_variants.T"),
    "numerical not a list": (
        lambda m: m["tabular_variants"]["T"].update(numerical="age"),
        "tabular_variants.T.numerical",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_names_the_field(tiny_cohort: Path, case: str, capsys) -> None:
    edit, field = MALFORMED[case]
    _edit_manifest(tiny_cohort, edit)
    with pytest.raises(CohortError) as caught:
        Cohort.open(tiny_cohort)
    assert caught.value.field == field and "manifest.yaml" in str(caught.value)
    line = _cli_error(["cohort", "validate", str(tiny_cohort)], capsys)
    assert "manifest.yaml" in line


def test_non_utf8_manifest_and_text_array(tiny_cohort: Path, capsys) -> None:
    (tiny_cohort / "manifest.yaml").write_bytes(b"source: \xff\xfe\n")
    assert "manifest.yaml" in _cli_error(["cohort", "validate", str(tiny_cohort)], capsys)
    other = make_tiny_cohort(tiny_cohort.parent / "b")
    _edit_array(other, "localizer", np.full((40, 3, 16, 16), "abcd"))  # a <U4 array
    line = _cli_error(["cohort", "validate", str(other)], capsys)
    assert "localizer.npy" in line and "<U4" in line


# ---- item 11: physiological plausibility, units, splits, array scale ----------------------------

IMPOSSIBLE = {
    "LVEF": 250.0,
    "LVEDV": -5.0,
    "height": 1.75,  # metres
    "age": -40.0,
    "heart_rate": 1.2,  # Hz
}


@pytest.mark.parametrize("field", sorted(IMPOSSIBLE))
def test_impossible_values_are_errors(tiny_cohort: Path, field: str) -> None:
    def poison(table):
        table.loc[5, field] = IMPOSSIBLE[field]
        return table

    _edit_table(tiny_cohort, poison)
    Cohort.open(tiny_cohort)  # the cheap open does not judge values
    err = _validate_error(tiny_cohort)
    assert (err.subject, err.field) == ("S0005", field)
    assert "possible range" in str(err) and "subjects.parquet" in str(err)


def test_implausible_values_are_warnings(tiny_cohort: Path, capsys) -> None:
    def odd(table):
        table.loc[2, "LVEF"] = 92.0
        return with_consistent_chambers(table)  # LVESV and LVSV follow the LVEF

    _edit_table(tiny_cohort, odd)
    cohort = Cohort.validate(tiny_cohort)
    assert any("LVEF" in w and "S0002" in w and "plausible" in w for w in cohort.warnings)
    assert cli_main(["cohort", "validate", str(tiny_cohort)]) == 0
    assert "warning: subjects.parquet: field LVEF" in capsys.readouterr().err


def test_height_in_metres_says_so(tiny_cohort: Path) -> None:
    _edit_table(tiny_cohort, lambda t: t.assign(height=t["height"] / 100))
    assert "metres" in str(_validate_error(tiny_cohort))


def test_every_split_needs_subjects(tiny_cohort: Path, capsys) -> None:
    _edit_table(tiny_cohort, lambda t: t.assign(split=t["split"].replace("val", "train")))
    err = _validate_error(tiny_cohort)
    assert err.field == "split" and "val split has 0" in str(err)
    line = _cli_error(["cohort", "validate", str(tiny_cohort)], capsys)
    assert "val split" in line
    # an external cohort evaluated only: allowed on request, with a warning
    cohort = Cohort.validate(tiny_cohort, min_per_split=0)
    assert any("val split is empty" in w for w in cohort.warnings)


@pytest.mark.parametrize(
    ("name", "scale", "expected"),
    [
        ("ecg", 1e-3, "volts"),
        ("ecg", 1e3, "microvolts"),
        ("localizer", 255.0, "[0, 1]"),
        ("cmr", -1.0, "[0, 1]"),
    ],
)
def test_array_scale(tiny_cohort: Path, name: str, scale: float, expected: str) -> None:
    _edit_array(tiny_cohort, name, tiny_arrays(40)[name] * np.float32(scale))
    err = _validate_error(tiny_cohort)
    assert expected in str(err) and f"{name}.npy" in str(err) and err.field == name


def test_uint8_images_are_refused(tiny_cohort: Path) -> None:
    _edit_array(tiny_cohort, "localizer", (tiny_arrays(40)["localizer"] * 255).astype(np.uint8))
    with pytest.raises(CohortError, match="uint8: localizer arrays must be floating point"):
        Cohort.open(tiny_cohort)


def test_open_is_cheap_and_validate_is_full(tiny_cohort: Path) -> None:
    values = tiny_arrays(40)["ecg"]
    values[3, 0, 0] = np.nan
    np.save(tiny_cohort / "ecg.npy", values)  # same shape, new content: only a scan sees it
    Cohort.open(tiny_cohort)
    err = _validate_error(tiny_cohort)
    assert err.field == "sha256"
    err = pytest.raises(CohortError, Cohort.validate, tiny_cohort, verify_checksums=False).value
    assert (err.subject, err.field) == ("S0003", "ecg") and "NaN" in str(err)


def test_the_writer_warns_about_implausible_values(tmp_path: Path) -> None:
    with pytest.warns(PlausibilityWarning, match="sampling_rate_hz 20"):
        make_tiny_cohort(tmp_path / "c")


# ---- item 3: --overwrite deletes only what it made ----------------------------------------------


def _thesis(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def test_overwrite_refuses_a_folder_that_is_not_a_cohort(tmp_path: Path, capsys) -> None:
    thesis = _thesis(tmp_path / "thesis")
    with pytest.raises(CohortError, match="not a cohort folder"):
        make_tiny_cohort(thesis, overwrite=True)
    line = _cli_error(
        ["cohort", "synth", "--n", "6", "--out", str(thesis), "--overwrite", "--profile",
         "smoke", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert "thesis.tex" in line and "refusing to delete" in line
    assert (thesis / "thesis.tex").read_text() == "years of work"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CohortError, match="not a folder"):
        make_tiny_cohort(tmp_path / "a_file", overwrite=True)
    # a folder named like the writer's scratch space is not deleted either
    _thesis(tmp_path / "c.partial")
    with pytest.raises(CohortError, match="not a cohort folder"):
        make_tiny_cohort(tmp_path / "c")
    assert (tmp_path / "c.partial" / "thesis.tex").exists()


def test_overwrite_replaces_a_cohort_or_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    make_tiny_cohort(tmp_path / "empty", overwrite=True)
    make_tiny_cohort(tmp_path / "empty", overwrite=True, seed=1)
    assert Cohort.open(tmp_path / "empty").n == 40


# ---- item 12: a full disk ------------------------------------------------------------------------


def test_not_enough_space_is_refused_before_writing(tmp_path: Path, monkeypatch, capsys) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cohort_module.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 1000))
    line = _cli_error(
        ["cohort", "synth", "--n", "6", "--out", str(tmp_path / "c"), "--profile", "smoke",
         "--no-progress"],
        capsys,
    )  # fmt: skip
    assert "not enough free disk space" in line
    assert not (tmp_path / "c").exists()


def test_a_write_error_is_one_message_and_no_cohort(tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "c.partial"))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(CohortError, match="the disk is full") as caught:
        make_tiny_cohort(tmp_path / "c")
    assert "c.partial" in str(caught.value)
    assert not (tmp_path / "c").exists()


# ---- item 13: synth arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--ecg-hz", "0"),
        ("--ecg-hz", "nan"),
        ("--ecg-hz", "-5"),
        ("--chunk-size", "0"),
        ("--workers", "0"),
        ("--n", "0"),
        ("--image-size", "2"),
        ("--ecg-seconds", "-1"),
        ("--seed", "-1"),
        ("--n", "many"),
    ],
)
def test_synth_arguments_are_checked(tmp_path: Path, option: str, value: str, capsys) -> None:
    argv = ["cohort", "synth", "--out", str(tmp_path / "c"), "--profile", "smoke"]
    if option != "--n":
        argv += ["--n", "6"]
    with pytest.raises(SystemExit) as done:
        cli_main([*argv, option, value])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert f"argument {option}" in err.splitlines()[-1]
    assert not (tmp_path / "c").exists()


def test_commands_print_plausibility_warnings_as_lines(tmp_path: Path, capsys) -> None:
    argv = ["cohort", "synth", "--n", "6", "--out", str(tmp_path / "c"), "--profile", "smoke",
            "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {tmp_path / 'c'}: ") and "only 1 val subject" in err
    assert "PlausibilityWarning" not in err
