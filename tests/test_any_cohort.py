"""Any cohort through the pipeline: a cohort imported from real files (the readers' own test
data: a DICOM CT stack, a NIfTI volume, a DICOM ECG) runs the smoke profile end to end with
`ctrip run --cohort`, leaving out what it lacks (CMR, the Tp variant, the simulator-only
sections), and its Stage III checkpoint then predicts from one raw localizer file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ctrip.cli import main
from ctrip.data.cohort import Cohort
from ctrip.pipeline.outputs import load_outputs
from tests.test_import_generic import ECG_DCM, NIFTI, subjects_table
from tests.test_io_images import CT_STACK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    ids = [f"P{i:02d}" for i in range(30)]
    for i, subject in enumerate(ids):
        folder = root / subject
        folder.mkdir()
        if i % 2:
            shutil.copytree(CT_STACK, folder / "localizer")
        else:
            shutil.copy(NIFTI / "anatomical.nii", folder / "localizer.nii")
        shutil.copy(ECG_DCM, folder / "ecg.dcm")
    subjects_table(ids).to_csv(root / "subjects.csv", index=False)
    out = tmp_path_factory.mktemp("imported") / "cohort"
    args = ["cohort", "import", "generic", "--root", str(root), "--out", str(out),
            "--image-size", "16", "--ecg-rate", "100", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return out


def test_an_imported_cohort_runs_the_smoke_profile_and_predicts(imported, tmp_path, capsys):
    cohort = Cohort.open(imported)
    assert "cmr" not in cohort.modalities and cohort.manifest["source"] != "synthetic"
    results = tmp_path / "results"
    args = ["run", "--profile", "smoke", "--cohort", str(imported), "--results", str(results),
            "--no-progress", "--set", "sweep.fractions=[1.0]", "--set", "table2.fraction=1.0"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    table = pd.read_csv(results / "table2.csv")
    assert "CMR_sup" not in set(table["method"])  # no CMR in this cohort
    has_tp = "Tp" in cohort.manifest["tabular_variants"]
    assert ("L+E+Tp" in set(table["method"])) == has_tp
    assert {"L_sup", "E_sup", "T_sup", "L+E+T"} <= set(table["method"])
    assert pd.read_csv(results / "oracle.csv").empty  # ceilings need the simulator
    assert not (results / "runs" / "data_card" / "reference_means.csv").exists()

    checkpoint = load_outputs(results / "runs" / "stage3_L_E_T")["checkpoint"]
    out = tmp_path / "cps.csv"
    code = main(["predict", "--checkpoint", str(checkpoint), "--localizer",
                 str(NIFTI / "anatomical.nii"), "--out", str(out)])  # fmt: skip
    assert code == 0
    cps = pd.read_csv(out)
    assert len(cps) == 18 and cps["value"].notna().all()
