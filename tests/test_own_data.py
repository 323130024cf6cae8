"""A researcher's own data: what a small or odd imported cohort does to the analyses, the data
card and the book (methods left out for a missing modality, analyses a tiny split cannot
support, a constant phenotype), each said in words instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from ctrip.analysis.screening import flag_by_name, screening_over_seeds
from ctrip.analysis.screening_figures import plot_roc_panels
from ctrip.cli import main
from ctrip.data.cohort import (
    MAX_LISTED,
    Cohort,
    CohortError,
    CohortProblems,
    sha256_of,
    with_consistent_chambers,
)
from ctrip.data.schema import CP_NAMES
from ctrip.data.synth import card
from tests.test_screening import cohort_frames

matplotlib.use("Agg")


def _seeded(pred: pd.DataFrame, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """Stage III predictions as the notebook reads them: one copy per seed, one fraction."""
    return pd.concat([pred.assign(fraction=1.0, seed=s) for s in seeds], ignore_index=True)


def test_screening_on_a_split_without_abnormal_hearts_says_not_estimable():
    pred, subjects = cohort_frames(n=6)
    pred["LVEF_ref"] = pred["LVEF_pred"] = 60.0 + np.arange(6)  # none below 50 %
    flags = [flag_by_name("reduced_lvef"), flag_by_name("lv_hypertrophy")]
    predictions = {"L_sup": _seeded(pred), "L+E+T": _seeded(pred)}
    table, panels, reasons = screening_over_seeds(predictions, subjects, flags, n_boot=20)
    lvef = table[table["flag"] == "reduced_lvef"]
    assert set(lvef["method"]) == {"L_sup", "L+E+T"} and lvef["auroc"].isna().all()
    assert lvef["not_estimable"].str.contains("0 abnormal of 6").all()
    assert "test split" in reasons[flag_by_name("reduced_lvef").label]
    assert flag_by_name("reduced_lvef").label not in panels
    fig = plot_roc_panels(panels, reasons)
    assert any("not estimable" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_screening_with_no_flags_is_an_empty_table():
    pred, subjects = cohort_frames(n=6)
    table, panels, reasons = screening_over_seeds({"L_sup": _seeded(pred)}, subjects, [])
    assert table.empty and "not_estimable" in table and panels == {} and reasons == {}
    with pytest.raises(ValueError, match="no ROC panels"):
        plot_roc_panels(panels, reasons)


def test_screening_over_seeds_averages_the_estimable_flags():
    pred, subjects = cohort_frames(n=200)
    flags = [flag_by_name("lv_hypertrophy")]
    table, panels, _ = screening_over_seeds({"L_sup": _seeded(pred)}, subjects, flags, n_boot=20)
    assert len(table) == 1 and table["auroc"].iloc[0] == pytest.approx(1.0)
    assert table["not_estimable"].isna().all() and set(panels) == {flags[0].label}


def test_the_data_card_plots_a_phenotype_constant_to_within_rounding():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({cp: rng.normal(50, 5, 20) for cp in CP_NAMES})
    table["sex"] = ["female", "male"] * 10
    table["LAEF"] = 55.0
    table.loc[3, "LAEF"] = 55.00000000000001  # an extract's one value, recomputed
    table["RAEF"] = 40.0
    fig = card.plot_marginals(table)
    titles = [ax.get_title() for ax in fig.axes]
    assert "LAEF [%]: every subject 55" in titles and "RAEF [%]: every subject 40" in titles
    assert "LVEF [%]" in titles


# ------------------------------------------------------------------ cohort validation, in full


def _edit_table(path: Path, edit) -> None:
    table = edit(pd.read_parquet(path / "subjects.parquet"))
    table.to_parquet(path / "subjects.parquet", index=False)
    manifest = yaml.safe_load((path / "manifest.yaml").read_text())
    manifest["table"]["sha256"] = sha256_of(path / "subjects.parquet")
    manifest["n_subjects"] = len(table)
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _problems(path: Path) -> list[str]:
    with pytest.raises(CohortError) as caught:
        Cohort.validate(path)
    return [str(p) for p in getattr(caught.value, "problems", [caught.value])]


def test_validate_lists_every_problem_in_one_report(tiny_cohort: Path, capsys):
    def damage(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[1, "LVEF"] = np.nan
        table.loc[3, "id"] = table.loc[2, "id"]
        table.loc[5, "split"] = "training"
        return table

    _edit_table(tiny_cohort, damage)
    found = _problems(tiny_cohort)
    assert len(found) == 3
    assert "field LVEF" in found[2] and "not a finite number" in found[2]
    assert "field id: duplicate subject id" in found[1] and "subject S0002" in found[1]
    assert "unknown split 'training'" in found[0] and "subject S0005" in found[0]
    capsys.readouterr()
    assert main(["cohort", "validate", str(tiny_cohort)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 3 problems:") and "Traceback" not in err
    assert all(word in err for word in ("LVEF", "duplicate subject id", "'training'"))


def test_validate_caps_a_long_report_with_a_count(tiny_cohort: Path):
    _edit_table(tiny_cohort, lambda t: t.assign(**{f"lab{i}": np.inf for i in range(60)}))
    with pytest.raises(CohortProblems) as caught:
        Cohort.validate(tiny_cohort)
    assert len(caught.value.problems) == 60
    lines = str(caught.value).splitlines()
    assert lines[0] == "60 problems:" and len(lines) == 1 + MAX_LISTED + 1
    assert lines[-1].strip() == f"... and {60 - MAX_LISTED} more problem(s)"


@pytest.mark.parametrize(
    ("column", "value", "field", "says"),
    [
        ("LVESV", 500.0, "LVESV", "is above LVEDV"),
        ("RVSV", 1.0, "RVSV", "is not RVEDV - RVESV"),
        ("LAEF", 5.0, "LAEF", "is not 100 LASV / LAVmax"),
        ("RAVmin", 400.0, "RAVmin", "is above RAVmax"),
        ("heart_rate", np.inf, "heart_rate", "outside the possible range"),
        ("bmi", 1e308, "bmi", "outside the possible range"),
        ("lab", np.inf, "lab", "not a finite number"),
        ("lab", -np.inf, "lab", "not a finite number"),
        ("lab", 1e308, "lab", "float32"),
    ],
)
def test_validate_checks_cp_relations_and_feature_range(tiny_cohort, column, value, field, says):
    def damage(table: pd.DataFrame) -> pd.DataFrame:
        if column not in table:
            table[column] = 1.0 + np.arange(len(table))
        table.loc[4, column] = value
        return table

    _edit_table(tiny_cohort, damage)
    found = [p for p in _problems(tiny_cohort) if f"field {field}:" in p]
    assert len(found) == 1 and "subject S0004" in found[0] and says in found[0]


def test_constant_missing_and_extreme_columns_are_warned_by_name(tiny_cohort: Path, capsys):
    def odd(table: pd.DataFrame) -> pd.DataFrame:
        table["LAEF"], table["RAEF"] = 40.0, 40.000000000000014
        table["troponin"] = 10.0 + np.arange(len(table)) % 7
        table.loc[6, "troponin"] = 1e6
        table.loc[[2, 9], "smoking_years"] = np.nan
        return with_consistent_chambers(table)

    _edit_table(tiny_cohort, odd)
    cohort = Cohort.validate(tiny_cohort)
    said = "\n".join(cohort.warnings)
    assert "field LAEF: every subject with a value has 40" in said
    assert "field RAEF: every subject with a value has 40" in said
    assert "field troponin: 1 subject(s) with extreme values, e.g. subject S0006: 1e+06" in said
    assert "missing values" in said and "smoking_years (40)" in said and "heart_rate (" in said
    assert main(["cohort", "validate", str(tiny_cohort)]) == 0
    assert "warning: subjects.parquet: field troponin" in capsys.readouterr().err


# ------------------------------------------------------------------ the book's generated text


def _screening_files(folder: Path, screening: pd.DataFrame, counts: pd.DataFrame) -> None:
    rows = [{"method": "L_sup", "fraction": 1.0, "level": 0.9, "cp": cp, "coverage": 1.0,
             "ci_low": 0.5, "ci_high": 1.0} for cp in CP_NAMES]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "coverage.csv", index=False)
    counts.to_csv(folder / "abnormal_counts.csv", index=False)
    screening.to_csv(folder / "screening.csv", index=False)


def test_table_8_says_not_estimable_with_the_reason(tmp_path: Path):
    from ctrip.analysis.screening import screening_markdown

    pred, subjects = cohort_frames(n=6)
    pred["LVEF_ref"] = pred["LVEF_pred"] = 60.0
    table, _, _ = screening_over_seeds({"L_sup": _seeded(pred)}, subjects,
                                       [flag_by_name("reduced_lvef")], n_boot=10)  # fmt: skip
    counts = pd.DataFrame([{"flag": "reduced_lvef", "label": "LVEF < 50%", "split": "test",
                            "n": 6, "n_abnormal": 0, "prevalence": 0.0}])  # fmt: skip
    _screening_files(tmp_path, table, counts)
    parts = screening_markdown(tmp_path, {"L_sup": "L_sup"})
    assert (
        "| LVEF < 50% | L_sup | not estimable (test split: screening needs both"
        in parts["screening"]
    )


def test_the_screening_page_with_no_flags_says_so(tmp_path: Path):
    from ctrip.analysis.screening import abnormal_counts, screening_markdown

    pred, subjects = cohort_frames(n=6)
    table, _, _ = screening_over_seeds({"L_sup": _seeded(pred)}, subjects, [])
    counts = abnormal_counts(subjects.assign(split="test"), [], by="split")
    assert list(counts.columns) == ["flag", "label", "split", "n", "n_abnormal", "prevalence"]
    _screening_files(tmp_path, table, counts)
    parts = screening_markdown(tmp_path, {"L_sup": "L_sup"})
    assert "No screening flag chosen" in parts["counts"]
    assert "none chosen (screening.flags is empty)" in parts["screening"]


def test_the_summary_says_r_is_not_estimable_for_a_constant_reference():
    from ctrip.analysis.reading import summary_markdown

    row = {"LVEF_md": 0.5, "LVEF_loa_low": -1.0, "LVEF_loa_high": 2.0, "LVEF_r": np.nan}
    table = pd.DataFrame([{"method": m, **row} for m in ("L_sup", "L+E+T")])
    curves = pd.DataFrame([{"method": m, "cp": "LVEF", "fraction": 1.0, "r": np.nan}
                           for m in ("L_sup", "L+E+T")])  # fmt: skip
    text = summary_markdown(table, curves, {"L_sup": "L_sup", "L+E+T": "C-TRIP"}, ["LVEF"],
                            "L_sup", "L+E+T")  # fmt: skip
    assert "Pearson r not estimable (the reference does not vary on the test split)" in text


# ------------------------------------------------------------------ the example study


def test_the_template_study_imports_and_validates_cleanly(tmp_path: Path, capsys):
    from ctrip.io.template import write_generic_template

    table = write_generic_template(tmp_path / "study", n_subjects=6, seed=3)
    again = write_generic_template(tmp_path / "again", n_subjects=6, seed=3)
    assert table.read_bytes() == again.read_bytes()  # the seed decides every value
    assert (tmp_path / "study" / "T001" / "localizer" / "IM0000.dcm").read_bytes() == (
        tmp_path / "again" / "T001" / "localizer" / "IM0000.dcm"
    ).read_bytes()
    out = tmp_path / "cohort"
    assert main(["cohort", "import", "generic", "--root", str(tmp_path / "study"), "--out",
                 str(out), "--profile", "smoke", "--no-progress"]) == 0  # fmt: skip
    report = (out / "import_report.txt").read_text()
    assert "imported 6 subject(s); dropped 0" in report
    assert "T001" not in report.split("warnings:")[-1]  # its heart mask places the crop
    capsys.readouterr()
    assert main(["cohort", "validate", str(out)]) == 0
    err = capsys.readouterr().err
    assert "problem" not in err and "constant" not in err and "extreme" not in err
    assert main(["cohort", "template", "generic", str(tmp_path / "study")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_coverage_from_a_too_small_validation_split_is_not_estimable(tmp_path: Path):
    from ctrip.analysis.screening import screening_markdown

    counts = pd.DataFrame(columns=["flag", "label", "split", "n", "n_abnormal", "prevalence"])
    _screening_files(tmp_path, pd.DataFrame(columns=["method", "flag", "label"]), counts)
    coverage = pd.read_csv(tmp_path / "coverage.csv").assign(mean_width=np.inf)
    coverage.to_csv(tmp_path / "coverage.csv", index=False)
    facts = screening_markdown(tmp_path, {"L_sup": "L_sup"})["facts"]
    assert "Coverage not estimable for L_sup: their 90% intervals are infinite" in facts
    assert "at least 9 calibration subjects" in facts
