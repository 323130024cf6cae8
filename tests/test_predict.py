"""`ctrip predict` with a tiny Stage III localizer model trained here, on real image files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from ctrip.cli import main
from ctrip.data.cohort import Cohort
from ctrip.data.schema import CP_NAMES, CP_UNITS, LOCALIZER_FOV_MM
from ctrip.predict import find_subjects, training_crop_mm
from tests.factories import train_tiny_localizer_model
from tests.test_io_images import CT_STACK

NIFTI = Path(data_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny_localizer_model(tmp_path_factory.mktemp("predict"))


def predict(*args: str) -> int:
    return main(["predict", *args])


def test_predict_a_nifti_localizer(trained, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    out = tmp_path / "cps.csv"
    assert (
        predict(
            "--checkpoint",
            str(checkpoint),
            "--localizer",
            str(NIFTI / "anatomical.nii"),
            "--out",
            str(out),
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "LVEF" in captured.out and "mL" in captured.out and "centred crop" in captured.err
    table = pd.read_csv(out)
    assert table["phenotype"].tolist() == CP_NAMES and (table["id"] == "anatomical").all()
    assert table["unit"].tolist() == [CP_UNITS[cp] for cp in CP_NAMES]
    assert np.isfinite(table["value"]).all()
    mask = np.zeros((25, 41, 33), dtype=np.uint8)  # the transverse stack of anatomical.nii
    mask[12:14, 10:30, 8:24] = 1
    np.save(tmp_path / "mask.npy", mask)
    for guide in (["--mask", str(tmp_path / "mask.npy")], ["--heart-box", "10,8,30,24,12"]):
        assert (
            predict(
                "--checkpoint",
                str(checkpoint),
                "--localizer",
                str(NIFTI / "anatomical.nii"),
                *guide,
            )
            == 0
        )
        assert "centred crop" not in capsys.readouterr().err


def test_predict_a_batch_folder_as_json(trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    batch = tmp_path / "subjects"
    batch.mkdir()
    shutil.copytree(CT_STACK, batch / "ct")
    shutil.copy(NIFTI / "anatomical.nii", batch / "anat.nii")
    assert [s.id for s in find_subjects(batch)] == ["anat", "ct"]
    assert [(s.id, s.files) for s in find_subjects(batch / "ct")] == [
        ("ct", {"localizer": batch / "ct"})
    ]
    out = tmp_path / "cps.json"
    assert (
        predict("--checkpoint", str(checkpoint), "--localizer", str(batch), "--out", str(out)) == 0
    )
    document = json.loads(out.read_text())
    assert [s["id"] for s in document["subjects"]] == ["anat", "ct"]
    assert document["units"] == CP_UNITS
    values = np.array([[s["cps"][cp] for cp in CP_NAMES] for s in document["subjects"]])
    assert values.shape == (2, 18) and np.isfinite(values).all()


def test_preprocessed_arrays_match_the_model(trained, tmp_path: Path) -> None:
    from ctrip.stages.inference import load_regressor

    checkpoint, cohort = trained
    images = np.array(Cohort.open(cohort).array("localizer")[:3])
    np.save(tmp_path / "three.npy", images)
    out = tmp_path / "cps.csv"
    assert predict("--checkpoint", str(checkpoint), "--localizer", str(tmp_path / "three.npy"),
                   "--preprocessed", "--out", str(out)) == 0  # fmt: skip
    table = pd.read_csv(out)
    expected = load_regressor(checkpoint).predict_cps(torch.from_numpy(images))
    np.testing.assert_allclose(table["value"].to_numpy().reshape(3, 18), expected, rtol=1e-5)
    assert table["id"].unique().tolist() == ["three_0", "three_1", "three_2"]


def test_bad_input_fails_clearly(trained, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    ckpt = torch.load(checkpoint, weights_only=True)
    torch.save({**ckpt, "kind": "stage1"}, tmp_path / "stage1.pt")
    torch.save({**ckpt, "modality": "ecg"}, tmp_path / "ecg.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    np.save(tmp_path / "small.npy", np.zeros((3, 8, 8), dtype=np.float32))
    anatomical = str(NIFTI / "anatomical.nii")
    cases = [
        (["--checkpoint", str(tmp_path / "stage1.pt"), "--localizer", anatomical], "a stage1 checkpoint"),
        (["--checkpoint", str(tmp_path / "ecg.pt"), "--localizer", anatomical], "of the ecg model"),
        (["--checkpoint", str(tmp_path / "notes.pt"), "--localizer", anatomical], "not a readable PyTorch"),
        (["--checkpoint", str(tmp_path / "none.pt"), "--localizer", anatomical], "no such checkpoint"),
        (["--checkpoint", str(checkpoint), "--localizer", get_testdata_file("MR_small.dcm")], "1 transverse slice"),
        (["--checkpoint", str(checkpoint), "--localizer", get_testdata_file("MR_truncated.dcm")], "MR_truncated.dcm"),
        (["--checkpoint", str(checkpoint), "--localizer", str(NIFTI / "functional.nii")], "3D volume"),
        (["--checkpoint", str(checkpoint), "--localizer", str(tmp_path / "small.npy"), "--preprocessed"], r"\[3, 16, 16\]"),
        (["--checkpoint", str(checkpoint), "--localizer", anatomical, "--out", "x.txt"], "must end in .csv or .json"),
    ]  # fmt: skip
    for args, message in cases:
        assert predict(*args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and re.search(message, err), (message, err)


def test_skip_bad_subjects_in_a_batch(trained, tmp_path: Path, capsys) -> None:
    checkpoint, _ = trained
    batch = tmp_path / "subjects"
    batch.mkdir()
    shutil.copy(NIFTI / "anatomical.nii", batch / "good.nii")
    shutil.copy(NIFTI / "functional.nii", batch / "fourd.nii")
    assert predict("--checkpoint", str(checkpoint), "--localizer", str(batch)) == 2  # fails fast
    capsys.readouterr()
    out = tmp_path / "cps.csv"
    code = predict(
        "--checkpoint", str(checkpoint), "--localizer", str(batch), "--skip-bad", "--out", str(out)
    )
    assert code == 2 and "skipped: fourd" in capsys.readouterr().err
    assert pd.read_csv(out)["id"].unique().tolist() == ["good"]


def test_crop_size_follows_the_training_cohort(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("provenance:\n  preprocessing:\n    crop_mm: 150.0\n")
    assert training_crop_mm({"cohort": str(tmp_path)}) == 150.0
    assert training_crop_mm({"cohort": str(tmp_path / "gone")}) == LOCALIZER_FOV_MM
