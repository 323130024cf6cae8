"""A researcher's own raw files, end to end: the example study of `ctrip cohort template
generic` (DICOM series and zip, NIfTI, .npy; CardioSoft XML, WFDB and DICOM ECGs; a heart
mask; a subjects CSV), edited the way a real extract goes wrong (no CMR, a tiny test split
without a reduced LVEF, a constant LAEF and RAEF, a column with missing values, an extreme
column), imported with a profile's sizes, validated (each odd column warned by name), and run
through the smoke profile to a built book that says what it left out and what it could not
estimate."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctrip.data.cohort import Cohort
from tests.test_own_data_import import _cli

pytestmark = pytest.mark.slow


def _odd_extract(table: pd.DataFrame) -> pd.DataFrame:
    """A tiny test split with no reduced LVEF, atria whose EF is one value (to within rounding,
    as an extract that filled the field recomputes it), a lab value missing for some subjects
    and one far off the rest."""
    n = len(table)
    table["split"] = ["train"] * (n - 9) + ["val"] * 5 + ["test"] * 4
    test = table["split"] == "test"
    table.loc[test, "LVESV"] = table.loc[test, "LVEDV"] * 0.4
    table.loc[test, "LVSV"] = table.loc[test, "LVEDV"] - table.loc[test, "LVESV"]
    table.loc[test, "LVEF"] = 100 * table.loc[test, "LVSV"] / table.loc[test, "LVEDV"]
    for atrium in ("LA", "RA"):
        table[f"{atrium}Vmin"] = 0.6 * table[f"{atrium}Vmax"]
        table[f"{atrium}SV"] = table[f"{atrium}Vmax"] - table[f"{atrium}Vmin"]
        table[f"{atrium}EF"] = 100 * table[f"{atrium}SV"] / table[f"{atrium}Vmax"]
    table["cholesterol"] = np.where(np.arange(n) % 5 == 0, np.nan, 4.0 + np.arange(n) / 20)
    table["troponin"] = 5.0 + np.arange(n) % 4
    table.loc[7, "troponin"] = 1e6
    return table


def test_own_raw_files_import_validate_and_build_a_book(tmp_path: Path, capsys):
    study, cohort_dir = tmp_path / "study", tmp_path / "cohorts" / "mine"
    code, out, _ = _cli(["cohort", "template", "generic", str(study), "--subjects", "36"], capsys)
    assert code == 0 and "import it with" in out
    kinds = {p.name for p in study.glob("T*/*")}
    assert {"localizer", "localizer.nii.gz", "localizer.npy", "localizer.zip", "ecg.xml",
            "ecg.hea", "ecg.dat", "ecg.dcm", "localizer_mask.nii.gz"} <= kinds  # fmt: skip
    table = _odd_extract(pd.read_csv(study / "subjects.csv"))
    assert table["LAEF"].nunique() > 1  # one value to within rounding only
    table.to_csv(study / "subjects.csv", index=False)

    code, out, err = _cli(["cohort", "import", "generic", "--root", str(study), "--out",
                           str(cohort_dir), "--profile", "smoke", "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    assert "imported 36 subject(s); dropped 0" in out
    assert not cohort_dir.with_name("mine.work").exists()  # the work files went after success
    cohort = Cohort.open(cohort_dir)
    assert cohort.modalities == ("localizer", "ecg", "tabular")
    assert cohort.array("localizer").shape[-1] == 32 and cohort.ecg_sampling_rate_hz == 100.0

    code, _, err = _cli(["cohort", "validate", str(cohort_dir)], capsys)
    assert code == 0
    for said in ("field LAEF: every subject with a value has 40",
                 "field RAEF: every subject with a value has 40",
                 "column(s) with missing values", "cholesterol (8)",
                 "field troponin: 1 subject(s) with extreme values",
                 "only 4 test subject(s)"):  # fmt: skip
        assert said in err, said

    results, book = tmp_path / "results", tmp_path / "book"
    code, _, err = _cli(["run", "--profile", "smoke", "--cohort", str(cohort_dir), "--results",
                         str(results), "--book", "--book-output", str(book), "--no-progress",
                         "--set", "sweep.fractions=[1.0]", "--set", "table2.fraction=1.0"],
                        capsys)  # fmt: skip
    assert code == 0, err[-3000:]
    assert "CMR_sup" not in set(pd.read_csv(results / "table2.csv")["method"])
    screening = pd.read_csv(results / "screening.csv")
    lvef = screening[screening["flag"] == "reduced_lvef"]
    assert len(lvef) and lvef["not_estimable"].str.contains("0 abnormal of 4").all()

    html = book / "_build" / "html" / "book"
    pages = {name: html / f"{name}.html" for name in ("intro", "results", "screening")}
    assert all(page.is_file() for page in pages.values())

    def text(page: Path) -> str:
        return " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())

    left_out = "Left out of every table and figure of this book because the cohort lacks"
    for name, page in pages.items():
        assert left_out in text(page) and "CMR_sup (the cohort has no cmr)" in text(page), name
    assert "not estimable (test split: screening needs both abnormal and normal" in text(
        pages["screening"]
    )
    assert "Pearson r not estimable" in text(pages["results"])  # every test LVEF is 60 %
    for name, page in pages.items():  # the book says which cohort it ran on, and not simulated
        said = text(page)
        assert "profile smoke , an imported cohort, mine (source: imported from study)" in said, (
            name
        )
        assert "simulated by the profile" not in said and "book's simulated cohort" not in said
    # its reproduce page names the cohort and every override it ran with
    reproduce = (book / "source" / "book" / "executed" / "_includes" / "reproduce.md").read_text()
    assert """--profile smoke --cohort "$COHORT" --set 'sweep.fractions=[1.0]'""" in reproduce

    # `--set "screening.flags=[]"`: the screening notebook on the same runs, with no flag
    import papermill

    from ctrip.pipeline.cache import REPO_DIR, load_provenance, run_folder
    from ctrip.pipeline.plan import slug

    parameters = dict(load_provenance(run_folder(results, "screening"))["parameters"])
    alone = tmp_path / "screening_no_flags"
    alone.mkdir()
    stage3 = {m: str(run_folder(results, f"stage3_{slug(m)}")) for m in parameters["methods"]}
    papermill.execute_notebook(
        str(REPO_DIR / "notebooks" / "screening.ipynb"), str(alone / "screening.ipynb"),
        parameters={**parameters, "flags": [], "cohort_path": str(cohort_dir),
                    "out_dir": str(alone), "stage3": stage3},
        kernel_name="ctrip", cwd=str(alone), progress_bar=False,
    )  # fmt: skip
    assert pd.read_csv(alone / "screening.csv").empty
    assert (alone / "figures" / "screening_roc.png").is_file()

    # Every page of that book in headless Chromium, as `make check-book` reads the smoke book
    checked = subprocess.run(
        [sys.executable, str(REPO_DIR / "scripts" / "check_book_in_browser.py"),
         str(book / "_build" / "html")], capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]

    # `ctrip predict` on the raw study folder (every layout the importer read) with the book's
    # L_sup model: one row per subject, and no interval from a 5-subject validation split.
    checkpoint = run_folder(results, "stage3_L_sup") / "fraction1_seed0" / "stage3-localizer.pt"
    code, _, err = _cli(["predict", "--checkpoint", str(checkpoint), "--localizer", str(study),
                         "--out", str(tmp_path / "cps.csv")], capsys)  # fmt: skip
    assert code == 0, err[-3000:]
    predicted = pd.read_csv(tmp_path / "cps.csv")
    assert sorted(predicted["id"].unique()) == sorted(table["id"])
    assert (predicted.groupby("id")["phenotype"].nunique() == 18).all()
    assert np.isfinite(predicted["value"]).all()
    assert "no 90% intervals: split conformal needs at least 9 calibration subjects" in err
    assert "has 5" in err
