"""The Results chapter's generated text (ctrip.analysis.reading) says what the numbers say: a CI
that contains 0 reads as no difference, a method whose r CI includes 0 is no better than the
mean, every CI is shown; and what the notebooks publish follows their result tables."""

from __future__ import annotations

import pandas as pd

from ctrip.analysis.reading import (
    comparison_sentences,
    differences_markdown,
    key_result_markdown,
    table2_markdown,
)

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


def _curves(rows: dict[tuple[str, str, float], tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "cp": cp, "fraction": f, "r": r, "r_ci_low": lo,
                          "r_ci_high": hi} for (m, cp, f), (r, lo, hi) in rows.items()])  # fmt: skip


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
    key = key_result_markdown(_differences(-0.01, 0.05), LABELS, "L+E+T", CPS)
    assert "no different" in key and "With 5% of the labels" in key


def test_a_ci_bound_near_zero_shows_its_side_of_zero():
    # 0.0008 would print as 0.00 beside "higher": it gets the digits that show it is above 0
    key = key_result_markdown(_differences(0.0008, 0.031), LABELS, "L+E+T", CPS)
    assert "(Δr 0.02 [0.001, 0.03], higher)" in key
    assert "(Δr 0.02 [-0.004, 0.03], no different)" in key_result_markdown(
        _differences(-0.004, 0.031), LABELS, "L+E+T", CPS
    )
    assert "0.020 [0.000, 0.050]" in differences_markdown(_differences(0.0, 0.05), LABELS, CPS)


def test_no_better_than_the_mean_when_the_r_ci_includes_zero():
    yardstick = _table(0.4).assign(method="mean", label="training mean").iloc[:1]
    said = comparison_sentences(pd.DataFrame(), _table(-0.05), yardstick, LABELS, CPS, 1.0)
    assert "predict no better than the training mean" in said
    assert "no better" not in comparison_sentences(pd.DataFrame(), _table(0.3), yardstick, LABELS,
                                                  CPS, 1.0)  # fmt: skip


def test_paper_reading_needs_cis_that_clear_the_runner_up():
    from ctrip.analysis.reading import paper_reading_markdown

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


def test_yardstick_gaps_read_as_their_cis_say():
    from ctrip.analysis.reading import yardstick_differences_markdown

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


def test_standard_cnn_table_reads_as_its_cis_say_and_says_when_it_was_not_trained():
    from ctrip.analysis.reading import standard_cnn_markdown

    def row(method, cp, d, low, high):
        return {"method": method, "baseline": "standard_localizer", "fraction": 1.0, "cp": cp,
                "r": 0.85 + d, "r_baseline": 0.85, "difference": d, "ci_low": low, "ci_high": high}  # fmt: skip

    gaps = pd.DataFrame([row("L_sup", "LVM", -0.03, -0.05, -0.01), row("L_sup", "RVEDV", -0.06, -0.09, -0.04),
                         row("ref_localizer", "LVM", -0.02, -0.04, 0.01),
                         row("ref_localizer", "RVEDV", -0.03, -0.04, -0.02)])  # fmt: skip
    labels = {**LABELS, "ref_localizer": "2-D CNN (localizer)"}
    outputs = {"epochs": 12, "standard_cnn_seeds": [0, 1], "standard_cnn_epochs": 15}
    text = standard_cnn_markdown(gaps, labels, outputs)
    assert "widths 16-32-64-64, 12 epochs" in text and "15 epochs) on the same test" in text
    assert "(seeds 0, 1; paired bootstrap 95% CI)" in text
    assert "| LVM | L_sup | 0.820 | 0.850 | -0.030 [-0.050, -0.010] | lower |" in text
    assert (
        "| LVM | 2-D CNN (localizer) | 0.830 | 0.850 | -0.020 [-0.040, 0.010] | no difference |"
        in text
    )
    # rows by CP, then in the methods' order
    assert text.index("| LVM | 2-D CNN") < text.index("| RVEDV | L_sup")
    assert "L_sup (LVM); 2-D CNN (localizer) (LVM, RVEDV)" in text
    assert "No row's CI lies wholly more than 0.05 below it." in text
    gaps.loc[1, "ci_high"] = -0.051
    assert "more than 0.05 below it for L_sup on RVEDV (-0.060)." in standard_cnn_markdown(
        gaps, labels, outputs
    )
    untrained = standard_cnn_markdown(gaps.iloc[:0], labels, {**outputs, "standard_cnn_seeds": []})
    assert "did not train" in untrained and "standard_cnn_seeds=[0]" in untrained
    assert (
        standard_cnn_markdown(gaps.iloc[:0], labels, {}) == "*No reference baselines were run.*\n"
    )


def test_loa_widths_against_the_training_mean_read_as_their_cis_say():
    from ctrip.analysis.reading import loa_markdown

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


def test_control_reading_counts_the_aligned_rows_that_clear_it():
    from ctrip.analysis.reading import control_markdown

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


def _results_folder(folder, r: float, difference: float):
    """The tables `table2.ipynb` writes, for two methods on LVM, with L+E+T's r and its paired
    difference from L_sup set."""
    from ctrip.data.schema import CP_NAMES

    table = _table(0.4)
    table.loc[table["method"] == "L+E+T", "LVM_r"] = r
    table.to_csv(folder / "table2.csv", index=False)
    _differences(difference - 0.01, difference + 0.01).assign(difference=difference).to_csv(
        folder / "paired_differences.csv", index=False
    )
    pd.DataFrame([{"method": m, "cp": cp, "fraction": 1.0, "md": 0.1, "loa_low": -1.0,
                   "loa_high": 1.0, "r": r if m == "L+E+T" else 0.5}
                  for m in LABELS for cp in CP_NAMES]).to_csv(folder / "table2_cp18.csv", index=False)  # fmt: skip


def test_what_the_notebooks_publish_follows_their_result_tables(tmp_path):
    """Change a number in the result tables and the published text (what the chapters paste)
    changes with it: no number of the Results chapter is kept anywhere else."""
    from ctrip.analysis.reading import curves_texts, table2_texts

    curves = pd.DataFrame([{"method": m, "cp": "LVM", "fraction": f, "r": 0.5, "r_ci_low": 0.4,
                            "r_ci_high": 0.6} for m in LABELS for f in (0.05, 1.0)])  # fmt: skip

    def published(r: float, difference: float) -> dict[str, str]:
        _results_folder(tmp_path, r, difference)
        texts = table2_texts(tmp_path, LABELS, [], CPS, CPS, CPS, 1.0)
        return texts | curves_texts(curves, tmp_path, LABELS, CPS, "L_sup", "L+E+T", True)

    before, after = published(0.512, 0.02), published(0.734, 0.25)
    assert "0.512 [0.400, 0.600]" in before["table2"] and "0.512" not in after["table2"]
    assert "0.734 [0.400, 0.600]" in after["table2"]
    assert "r 0.73" in after["cp18"] and "r 0.51" in before["cp18"]
    assert "highest r L+E+T (C-TRIP) (0.734)" in after["summary"]
    assert "(Δr 0.02 [0.01, 0.03], higher)" in before["key_result"]
    assert "(Δr 0.25 [0.24, 0.26], higher)" in after["key_result"]
    assert "0.250 [0.240, 0.260]" in after["differences"] and "0.250" in after["comparisons"]
    assert before["fractions"] == after["fractions"]  # the curves did not change
    assert "imported cohort" in curves_texts(curves, tmp_path, LABELS, CPS, "L_sup", "L+E+T",
                                             False)["key_result"]  # fmt: skip


def test_a_published_text_reaches_the_chapter_by_its_key(tmp_path):
    """`publish` in a running notebook glues the text where the book's `glued` directive finds
    it, shows it without its label, and a key glued twice is found twice (the build fails)."""
    import importlib.util

    import nbformat
    from nbclient import NotebookClient

    from ctrip.pipeline.cache import REPO_DIR

    spec = importlib.util.spec_from_file_location("glued", REPO_DIR / "book/_ext/glued.py")
    glued = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glued)
    text = "```{table} Table 9. A caption\n:name: table-9\n\n| a |\n|---|\n| 0.5 |\n```\n"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        f"from ctrip.analysis.tables import publish\npublish('answer', {text!r})")]  # fmt: skip
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    (tmp_path / "01_a.ipynb").write_text(nbformat.writes(notebook))
    assert glued.glued_markdown(tmp_path / "01_a.ipynb") == {"answer": text}
    shown = [o for o in notebook.cells[0].outputs if "text/markdown" in o.get("data", {})]
    # the notebook shows the table under its caption in bold, with no label and no directive
    assert [o["data"]["text/markdown"] for o in shown] == [
        "**Table 9. A caption**\n\n| a |\n|---|\n| 0.5 |\n"
    ]
    (tmp_path / "02_b.ipynb").write_text(nbformat.writes(notebook))
    assert [p.name for p, _ in glued.glued_index(tmp_path)["answer"]] == [
        "01_a.ipynb",
        "02_b.ipynb",
    ]
