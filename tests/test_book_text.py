"""The book's generated text says what the numbers say: a CI that contains 0 reads as no
difference, a method whose r CI includes 0 is no better than the mean, every CI is shown."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pandas as pd

from ctrip.analysis.interpret import heart_share_markdown
from ctrip.pipeline import book, provenance_pages
from ctrip.pipeline.book import (
    comparison_sentences,
    differences_markdown,
    key_result_markdown,
    table2_markdown,
)
from ctrip.pipeline.cache import REPO_DIR
from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.settings import load_settings

CPS = ["LVM"]
LABELS = {"L_sup": "L_sup", "L+E+T": "L+E+T (C-TRIP)"}


def _table(r_low: float) -> pd.DataFrame:
    rows = []
    for method, label in LABELS.items():
        row = {"method": method, "label": label, "n_test": 500, "n_seeds": 3}
        values = {"md": 1.0, "md_ci_low": 0.5, "md_ci_high": 1.5, "loa_low": -20.0,
                  "loa_low_ci_low": -22.0, "loa_low_ci_high": -18.0, "loa_high": 22.0,
                  "loa_high_ci_low": 20.0, "loa_high_ci_high": 24.0, "md_seed_sd": 0.1,
                  "r": 0.5, "r_ci_low": r_low, "r_ci_high": 0.6, "r_seed_sd": 0.01}  # fmt: skip
        row.update({f"LVM_{k}": v for k, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _differences(low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame([{"method": "L+E+T", "baseline": "L_sup", "fraction": f, "cp": "LVM",
                          "r": 0.52, "r_baseline": 0.50, "difference": 0.02, "ci_low": low,
                          "ci_high": high} for f in (0.05, 1.0)])  # fmt: skip


def test_table2_shows_every_ci_and_the_ceiling_flag():
    oracle = pd.DataFrame([{"method": "L_sup", "cp": "LVM", "pearson_r": 0.4, "above_ceiling": True},
                           {"method": "L+E+T", "cp": "LVM", "pearson_r": 0.9, "above_ceiling": False}])  # fmt: skip
    text = table2_markdown(_table(0.4), oracle, CPS)
    assert text.startswith("```{table} Table 2.") and ":name: table-2" in text
    assert "1.00 [0.50, 1.50]" in text and "-20.0 [-22.0, -18.0]" in text
    assert "0.500 [0.400, 0.600]" in text
    assert text.count("above: ceiling wrong?") == 1


def test_a_ci_containing_zero_reads_as_no_difference():
    assert "no difference" in differences_markdown(_differences(-0.01, 0.05), LABELS, CPS)
    assert "higher" in differences_markdown(_differences(0.01, 0.05), LABELS, CPS)
    said = comparison_sentences(_differences(-0.01, 0.05), _table(0.4), pd.DataFrame(), LABELS,
                                CPS, 1.0)  # fmt: skip
    assert "no different from" in said and "0.020 [-0.010, 0.050]" in said
    key = key_result_markdown(_differences(-0.01, 0.05), LABELS, "L+E+T", CPS, "default")
    assert "no different" in key and "With 5% of the labels" in key


def test_a_ci_bound_near_zero_shows_its_side_of_zero():
    # 0.0008 would print as 0.00 beside "higher": it gets the digits that show it is above 0
    key = key_result_markdown(_differences(0.0008, 0.031), LABELS, "L+E+T", CPS, "default")
    assert "(Δr 0.02 [0.001, 0.03], higher)" in key
    assert "(Δr 0.02 [-0.004, 0.03], no different)" in key_result_markdown(
        _differences(-0.004, 0.031), LABELS, "L+E+T", CPS, "default"
    )
    assert "0.020 [0.000, 0.050]" in differences_markdown(_differences(0.0, 0.05), LABELS, CPS)


def test_no_better_than_the_mean_when_the_r_ci_includes_zero():
    yardstick = _table(0.4).assign(method="mean", label="training mean").iloc[:1]
    said = comparison_sentences(pd.DataFrame(), _table(-0.05), yardstick, LABELS, CPS, 1.0)
    assert "predict no better than the training mean" in said
    assert "no better" not in comparison_sentences(pd.DataFrame(), _table(0.3), yardstick, LABELS,
                                                  CPS, 1.0)  # fmt: skip


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


def _curves(rows: dict[tuple[str, str, float], tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "cp": cp, "fraction": f, "r": r, "r_ci_low": lo,
                          "r_ci_high": hi} for (m, cp, f), (r, lo, hi) in rows.items()])  # fmt: skip


def test_paper_reading_needs_cis_that_clear_the_runner_up():
    from ctrip.pipeline.book import paper_reading_markdown

    labels = {"CMR_sup": "CMR_sup", "L_sup": "L_sup", "E_sup": "E_sup", "L+E+T": "C-TRIP"}
    rows = {}
    for f in (0.03, 1.0):
        rows[("CMR_sup", "LVEF", f)] = (0.9, 0.85, 0.95)
        rows[("L_sup", "LVEF", f)] = (0.5, 0.4, 0.6)
        rows[("L+E+T", "LVEF", f)] = (0.55, 0.45, 0.65)
        rows[("E_sup", "LVEF", f)] = (0.3, 0.2, 0.39)  # clearly last
        rows[("CMR_sup", "LVM", f)] = (0.9, 0.85, 0.95)
        rows[("L_sup", "LVM", f)] = (0.5, 0.4, 0.6)
        rows[("L+E+T", "LVM", f)] = (0.6, 0.5, 0.7)
        rows[("E_sup", "LVM", f)] = (0.45, 0.35, 0.55)  # last, but inside the next CI
    rows[("L_sup", "LVEF", 0.03)] = (0.88, 0.8, 0.95)  # overlaps CMR_sup at 3%
    differences = pd.DataFrame([
        {"method": "L+E+T", "baseline": "L_sup", "fraction": 0.03, "cp": "LVM",
         "difference": 0.1, "ci_low": 0.05, "ci_high": 0.15},
        {"method": "L+E+T", "baseline": "L_sup", "fraction": 0.03, "cp": "LVEF",
         "difference": 0.02, "ci_low": -0.05, "ci_high": 0.08},
        {"method": "L+E+T", "baseline": "L_sup", "fraction": 1.0, "cp": "LVM",
         "difference": -0.1, "ci_low": -0.15, "ci_high": -0.05},
    ])  # fmt: skip
    text = paper_reading_markdown(
        _curves(rows), differences, labels, ["LVEF", "LVM"], "L_sup", "L+E+T"
    )
    assert "CMR_sup is clearly first in 1 of 2 cases" in text
    assert "LVEF at 3%: CMR_sup 0.90 [0.85, 0.95], next L_sup 0.88" in text
    assert "(not clearly CMR_sup first)" in text
    assert "E_sup is clearly last on 1 of 2 phenotypes" in text
    assert "next L_sup 0.50 [0.40, 0.60] (not clearly E_sup last)" in text  # LVM only
    assert text.count("(not clearly E_sup last)") == 1
    assert "LVM: C-TRIP 0.60 [0.50, 0.70], rank 1 of 2" in text
    assert "at 3% higher on LVM, no different on LVEF; at 100% lower on LVM" in text
    assert "Table 4b" not in text  # no control was run
    # the control isolates the alignment: the same words, from the control's paired CIs
    control = differences.assign(baseline="L_MAE", ci_low=[-0.01, 0.01, -0.02],
                                 ci_high=[0.03, 0.05, 0.02])  # fmt: skip
    text = paper_reading_markdown(
        _curves(rows), differences, labels, ["LVEF", "LVM"], "L_sup", "L+E+T", control
    )
    assert ("Against L_MAE, the same encoder pre-trained but not aligned (Table 4b), which "
            "isolates the alignment: at 3% higher on LVEF, no different on LVM; at 100% no "
            "different on LVM.") in text  # fmt: skip
    empty = paper_reading_markdown(_curves({}), differences, labels, ["LVM"], "L_sup", "L+E+T")
    assert "needs Table 2's methods" in empty


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
    from ctrip.pipeline.provenance_pages import profile_markdown
    from ctrip.stages.config import make_config

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


def test_yardstick_gaps_read_as_their_cis_say():
    from ctrip.pipeline.book import yardstick_differences_markdown

    def row(method, cp, d, low, high, fraction=1.0):
        return {"method": method, "baseline": "ref_localizer", "fraction": fraction, "cp": cp,
                "r": 0.8 + d, "r_baseline": 0.8, "difference": d, "ci_low": low, "ci_high": high}  # fmt: skip

    gaps = pd.DataFrame([row("L_sup", "LVM", -0.10, -0.12, -0.07), row("L_sup", "LVEF", -0.02, -0.06, 0.03),
                         row("L+E+T", "LVM", -0.04, -0.06, -0.02), row("L+E+T", "LVEF", 0.05, 0.01, 0.09),
                         row("L_sup", "LVM", -0.5, -0.6, -0.4, fraction=0.1)])  # fmt: skip
    refs = {"ref_localizer": "2-D CNN (localizer)"}
    text = yardstick_differences_markdown(gaps, LABELS, refs, ["LVM", "LVEF"], 1.0)
    assert (
        "| LVM | L_sup | 2-D CNN (localizer) | 0.700 | 0.800 | -0.100 [-0.120, -0.070] | lower by more than 0.05 |"
        in text
    )
    assert "-0.020 [-0.060, 0.030] | no difference |" in text
    assert "-0.040 [-0.060, -0.020] | lower |" in text and "0.050 [0.010, 0.090] | higher |" in text
    assert "3 of the 4 rows and CPs come within 0.05 of their reference" in text
    assert "more than 0.05 below the reference for L_sup on LVM (-0.100)." in text
    assert "-0.500" not in text  # another fraction
    assert "With 10% of the training split, no row's CI lies wholly above its reference." in text
    gaps.loc[4, ["difference", "ci_low", "ci_high"]] = [0.2, 0.1, 0.3]
    assert "the whole CI lies above the reference for L_sup on LVM (0.200 [0.100, 0.300])." in (
        yardstick_differences_markdown(gaps, LABELS, refs, ["LVM", "LVEF"], 1.0)
    )
    assert "more than 0.05 below" not in yardstick_differences_markdown(
        gaps.iloc[1:4], LABELS, refs, ["LVM"], 1.0
    )
    assert yardstick_differences_markdown(gaps.iloc[:0], LABELS, refs, ["LVM"], 1.0) == ""


def test_loa_widths_against_the_training_mean_read_as_their_cis_say():
    from ctrip.pipeline.book import loa_markdown

    def row(method, cp, width, base, low, high, fraction=1.0):
        return {"method": method, "baseline": "mean", "fraction": fraction, "cp": cp,
                "loa_width": width, "loa_width_baseline": base, "difference": width - base,
                "ci_low": low, "ci_high": high}  # fmt: skip

    loa = pd.DataFrame([row("L_sup", "LVEF", 22.5, 25.6, -4.9, -1.4),
                        row("L+E+T", "LVEF", 25.0, 25.6, -1.5, 0.3),
                        row("L_sup", "RVEF", 21.3, 22.3, -1.7, -0.4),
                        row("L+E+T", "RVEF", 23.0, 22.3, 0.2, 1.2),
                        row("L_sup", "LVEF", 30.0, 25.6, 3.0, 5.0, fraction=0.1)])  # fmt: skip
    labels = {**LABELS, "mean": "training mean"}
    text = loa_markdown(loa, labels, ["LVEF", "RVEF"], 1.0)
    assert "Table 3c." in text and ":name: table-3c" in text
    assert "| LVEF [%] | L_sup | 22.5 | 25.6 | -3.10 [-4.90, -1.40] | narrower |" in text
    assert "-0.60 [-1.50, 0.30] | no difference |" in text and "| wider |" in text
    assert (
        "- LVEF: 1 of the 2 rows have narrower limits than the training mean (25.6 % wide); "
        "no different for L+E+T (C-TRIP)." in text
    )
    assert (
        "- RVEF: 1 of the 2 rows have narrower limits than the training mean (22.3 % wide); "
        "wider for L+E+T (C-TRIP)." in text
    )
    assert "30.0" not in text  # another fraction
    assert loa_markdown(loa.iloc[:0], labels, ["LVEF"], 1.0) == ""
    assert loa_markdown(loa, labels, ["LVM"], 1.0) == ""


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


def test_control_reading_counts_the_aligned_rows_that_clear_it():
    from ctrip.pipeline.book import control_markdown

    def row(method, baseline, cp, fraction, d, low, high):
        return {"method": method, "baseline": baseline, "fraction": fraction, "cp": cp,
                "r": 0.5 + d, "r_baseline": 0.5, "difference": d, "ci_low": low, "ci_high": high}  # fmt: skip

    labels = {"L_sup": "L_sup", "L+T": "L+T", "L+E+T": "L+E+T (C-TRIP)",
              "L_MAE": "L_MAE (Stage I only)"}  # fmt: skip
    control = pd.DataFrame([
        row("L+T", "L_MAE", "LVM", 0.03, 0.30, 0.25, 0.35),
        row("L+E+T", "L_MAE", "LVM", 0.03, 0.40, 0.33, 0.45),
        row("L+T", "L_MAE", "LVM", 1.0, 0.01, -0.01, 0.03),
        row("L+E+T", "L_MAE", "LVM", 1.0, -0.03, -0.05, -0.01),
        row("L+T", "L_MAE", "RVEF", 1.0, 0.2, 0.1, 0.3),  # not a CP the book reports
    ])  # fmt: skip
    table4 = pd.DataFrame([row("L_MAE", "L_sup", "LVM", 0.03, 0.04, 0.01, 0.07),
                           row("L_MAE", "L_sup", "LVM", 1.0, -0.03, -0.04, -0.02)])  # fmt: skip
    text = control_markdown(control, table4, labels, ["LVM"])
    assert text.startswith("```{table} Table 4b.") and ":name: table-4b" in text
    assert "| LVM | 3% | L+E+T (C-TRIP) | 0.900 | 0.500 | 0.400 [0.330, 0.450] | higher |" in text
    assert "0.010 [-0.010, 0.030] | no difference |" in text and "RVEF" not in text
    assert ("- At 3% of the training split, the 2 aligned rows minus L_MAE (Stage I only): LVM "
            "0.300 to 0.400, higher for 2. L_MAE (Stage I only) itself against L_sup: LVM Δr "
            "0.040 [0.010, 0.070], higher.") in text  # fmt: skip
    assert ("- At 100% of the training split, the 2 aligned rows minus L_MAE (Stage I only): LVM "
            "-0.030 to 0.010, higher for 0, lower for 1, no different for 1.") in text  # fmt: skip
    assert "control_differences.csv" in text
    assert "No control" in control_markdown(control.iloc[:0], table4, labels, ["LVM"])


def test_every_numbered_table_and_figure_names_the_run_that_made_it():
    """The reproduce page's "which run made what" covers every caption the book writes, in the
    generated includes (ctrip/pipeline/book.py) and in the chapters (book/*.md), and each entry
    names runs of the default plan."""
    from ctrip.analysis import alignment_reading, screening

    sources = [Path(m.__file__) for m in (book, alignment_reading, screening)]
    sources += sorted((REPO_DIR / "book").glob("*.md"))
    captions = {m for s in sources for m in re.findall(r"((?:Table|Fig\.) \d+[A-Za-z]?)\. ",
                                                       s.read_text())}  # fmt: skip
    assert {"Table 2", "Table 3b", "Table 3c", "Table 4b", "Fig. 3"} <= captions
    assert captions - set(provenance_pages.MADE_BY) == set()
    names = [run.name for run in build_plan(load_settings("default"))]
    for item, patterns in provenance_pages.MADE_BY.items():
        for pattern in patterns:
            assert fnmatch.filter(names, pattern), f"{item}: no run of the plan matches {pattern}"
