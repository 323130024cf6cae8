"""The book's generated text says what the numbers say: a CI that contains 0 reads as no
difference, a method whose r CI includes 0 is no better than the mean, every CI is shown."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pandas as pd

from ctrip.analysis import reading
from ctrip.analysis.interpret import heart_share_markdown
from ctrip.config import load_settings
from ctrip.pipeline import book, provenance_pages
from ctrip.pipeline.cache import REPO_DIR
from ctrip.pipeline.plan import build_plan

LABELS = {"L_sup": "L_sup", "L+E+T": "L+E+T (C-TRIP)"}


def test_the_book_shows_the_parameters_that_ran():
    import nbformat

    from ctrip.pipeline.book import show_parameters_that_ran

    book = nbformat.v4.new_notebook()
    book.cells = [
        nbformat.v4.new_code_cell('method = "L_sup"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            '# Parameters\nmethod = "L+E+T"\n', metadata={"tags": ["injected-parameters"]}
        ),  # fmt: skip
        nbformat.v4.new_code_cell("print(method)"),
    ]
    show_parameters_that_ran(book)
    assert len(book.cells) == 2
    assert 'method = "L+E+T"' in book.cells[0].source and "L_sup" not in book.cells[0].source


def test_the_heart_share_reads_as_its_cis_say():
    def share(low: float, high: float) -> pd.DataFrame:
        rows = [("method", "L_sup", 0.30, 0.27, 0.33), ("method", "L+E+T", 0.31, 0.28, 0.34),
                ("reference", "uniform", 0.22, 0.21, 0.23),
                ("reference", "brightness", 0.35, 0.33, 0.37),
                ("difference", "L+E+T - L_sup", 0.01, low, high),
                ("above reference", "L_sup - uniform", 0.08, 0.05, 0.11),
                ("above reference", "L+E+T - uniform", 0.09, -0.01, 0.12),
                ("above reference", "L_sup - brightness", -0.05, -0.08, -0.02)]  # fmt: skip
        return pd.DataFrame(rows, columns=["kind", "map", "share", "ci_low", "ci_high"]).assign(
            n=64
        )

    said = heart_share_markdown(share(-0.02, 0.04), LABELS, "LVM")
    assert "mean over 64 test subjects" in said and "predicted LVM" in said
    assert "L_sup 0.30 [0.27, 0.33]; L+E+T (C-TRIP) 0.31 [0.28, 0.34]." in said
    assert "Reference maps: a uniform map 0.22; the image itself 0.35" in said
    assert "L+E+T (C-TRIP) vs L_sup: 0.01 [-0.02, 0.04] (no difference)" in said
    assert "L_sup vs a uniform map 0.08 [0.05, 0.11] (more on the heart)" in said
    assert "L+E+T (C-TRIP) vs a uniform map 0.09 [-0.01, 0.12] (no difference)" in said
    assert "L_sup vs the image itself -0.05 [-0.08, -0.02] (less on the heart)" in said
    assert "(less on the heart)." in heart_share_markdown(share(-0.04, -0.01), LABELS, "LVM")
    assert "cannot be measured" in heart_share_markdown(None, LABELS, "LVM")


def test_alignment_reading_says_what_the_numbers_say():
    from ctrip.analysis.alignment_reading import alignment_reading

    text = alignment_reading([3.2, 9.5], [2.1, 4.0], 256)
    assert "3.2 to 9.5 times its chance level" in text and "few effective dimensions" in text
    assert "256 dimensions" in text and "not retrieve" not in text
    chance = alignment_reading([0.9, 1.1], [12.0, 20.0], 256)
    assert "does not retrieve partners better than chance" in chance and "many" in chance
    assert alignment_reading([], [], 256) == ""
    with_ci = alignment_reading([2.9, 4.1], [3.0], 256, [(2.0, 4.1), (3.0, 5.4)])
    assert "2.9 to 4.1 times its chance level (the lower ends of its 95% CIs: 2.0 to 3.0" in with_ci
    assert "not retrieve" not in with_ci
    assert "not retrieve" in alignment_reading([1.6, 1.8], [3.0], 256, [(0.7, 2.5), (0.9, 2.7)])


def test_screening_facts_name_each_coverage_outside_three_points(tmp_path):
    import pandas as pd

    from ctrip.analysis.screening import screening_markdown
    from ctrip.data.schema import CP_NAMES

    rows = []
    for method in ("L_sup", "L+E+T"):
        for cp in CP_NAMES:
            cov = 0.935 if (method, cp) == ("L_sup", "LAEF") else 0.9
            rows.append({"method": method, "fraction": 1.0, "level": 0.9, "cp": cp,
                         "coverage": cov, "ci_low": cov - 0.04, "ci_high": cov + 0.02})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "coverage.csv", index=False)
    pd.DataFrame([{"label": "LVEF < 50%", "split": "test", "n": 510, "n_abnormal": 24,
                   "prevalence": 24 / 510}]).to_csv(tmp_path / "abnormal_counts.csv", index=False)  # fmt: skip
    pd.DataFrame(columns=["label", "method", "auroc", "auroc_ci_low", "auroc_ci_high", "sensitivity",
                          "sensitivity_ci_low", "sensitivity_ci_high", "specificity",
                          "specificity_ci_low", "specificity_ci_high"]).to_csv(
        tmp_path / "screening.csv", index=False)  # fmt: skip
    facts = screening_markdown(tmp_path, {"L_sup": "L_sup", "L+E+T": "C-TRIP"})["facts"]
    assert "L_sup: 17 of 18 phenotypes within 3 points of 90%" in facts
    assert "LAEF 0.935 [0.895, 0.955] (the nominal level lies inside its CI)" in facts
    assert "C-TRIP: 18 of 18 phenotypes" in facts


def test_dimensionality_reading_states_both_sides_and_the_threshold():
    from ctrip.analysis.alignment_reading import dimensionality_reading

    few = pd.DataFrame({"modality": ["localizer", "ecg"], "dim_before": [64, 64],
                        "before": [2.47, 4.4], "dim_after": [256, 256], "after": [5.1, 3.7]})  # fmt: skip
    text = dimensionality_reading(few, "C-TRIP")
    assert "(64 dimensions) have participation ratios localizer 2.5, ecg 4.4" in text
    assert "projections of C-TRIP have localizer 5.1, ecg 3.7" in text
    assert "already concentrate on few directions" in text
    many = few.assign(before=[9.0, 12.0])
    assert "few directions" not in dimensionality_reading(many, "C-TRIP")
    assert dimensionality_reading(few.iloc[:0], "C-TRIP") == ""
    assert "For comparison" not in text
    compared = dimensionality_reading(few, "C-TRIP", 4.62)
    assert (
        "the 18 CPs of the same subjects, each z-scored, have a participation ratio of 4.6:"
        in compared
    )
    assert "For comparison" not in dimensionality_reading(few, "C-TRIP", float("nan"))


def test_the_scaled_down_table_lists_each_departure_with_the_values_that_ran():
    from ctrip.config import make_config
    from ctrip.pipeline.provenance_pages import profile_markdown

    settings = {
        "profile": "default",
        "config": make_config("default", {"stage2": {"patience": 4}}),
        "cohort": {"n_subjects": 3400, "sizes": {"image_size": 64, "ecg_sampling_rate_hz": 250.0, "ecg_seconds": 10.0}},
        "sweep": {"fractions": [0.03, 0.1, 1.0], "seeds": [0, 1, 2]},
    }  # fmt: skip
    rows = {
        line.split(" | ")[0].strip("| "): line for line in profile_markdown(settings).splitlines()
    }
    assert (
        "8 / 4 / 10 | 400 / 30 / 20" in rows["early-stopping patience Stage I / II / III (epochs)"]
    )
    paper = make_config("paper")
    settings["config"]["stage1"]["patience"] = paper["stage1"]["patience"]
    settings["config"]["stage2"]["patience"] = paper["stage2"]["patience"]
    settings["config"]["stage3"]["patience"] = paper["stage3"]["patience"]
    assert "early-stopping patience" not in profile_markdown(settings)


def test_dimensionality_reading_gives_what_each_pair_shares():
    from ctrip.analysis.alignment_reading import dimensionality_reading

    few = pd.DataFrame({"modality": ["localizer", "ecg"], "dim_before": [64, 64],
                        "before": [2.47, 4.4], "dim_after": [256, 256], "after": [5.1, 3.7]})  # fmt: skip
    shared = pd.DataFrame({"a": ["localizer", "localizer"], "b": ["ecg", "tabular"],
                           "participation_ratio": [3.89, 5.4]})  # fmt: skip
    text = dimensionality_reading(few, "C-TRIP", 4.62, shared)
    assert ("what reaches the localizer shares 3.9 effective dimensions with what reaches the "
            "ECG and 5.4 with what reaches the tabular record (participation ratio") in text  # fmt: skip
    assert text.rstrip().endswith("the C-TRIP projections use 3.7 to 5.1.")
    assert "sets the scale" not in dimensionality_reading(few, "C-TRIP", 4.62, shared.iloc[:0])


def test_every_numbered_table_and_figure_names_the_run_that_made_it():
    """The reproduce page's "which run made what" covers every caption the book writes, in the
    generated includes (ctrip/pipeline/book.py), in what the notebooks publish
    (ctrip/analysis/reading.py) and in the chapters (book/*.md), and each entry
    names runs of the default plan."""
    from ctrip.analysis import alignment_reading, screening

    sources = [Path(m.__file__) for m in (book, reading, alignment_reading, screening)]
    sources += sorted((REPO_DIR / "book").glob("*.md"))
    captions = {m for s in sources for m in re.findall(r"((?:Table|Fig\.) \d+[A-Za-z]?)\. ",
                                                       s.read_text())}  # fmt: skip
    assert {"Table 2", "Table 3b", "Table 3c", "Table 4b", "Fig. 3"} <= captions
    assert captions - set(provenance_pages.MADE_BY) == set()
    names = [run.name for run in build_plan(load_settings("default"))]
    for item, patterns in provenance_pages.MADE_BY.items():
        for pattern in patterns:
            assert fnmatch.filter(names, pattern), f"{item}: no run of the plan matches {pattern}"
