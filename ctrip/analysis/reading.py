"""The Results chapter's words and tables, generated from the result tables: Table 2, the
yardstick (Tables 3 to 3c), the paired differences (Tables 4 and 4b) with the comparisons they
state, the 18-phenotype appendix (Table 6), Fig. 3 in numbers, the summary, the paper's reading
and the landing page's key result. The notebook that computes each table publishes its text
(`table2_texts` from `table2.ipynb`, `curves_texts` from `fraction_curves.ipynb`), and the
chapters paste it by key; a CI that contains 0 always reads as no difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctrip.analysis.tables import ci, fmt, md_table, numbers_table, read_difference, stated
from ctrip.data.schema import CP_NAMES, CP_UNITS


def agreement_rows(table: pd.DataFrame, cps: list[str], ceiling: pd.DataFrame | None = None,
                   ) -> list[list[str]]:  # fmt: skip
    """One row per CP and method: MD, both LoA and r, each with its 95% CI, and the ceiling."""
    top = pd.Series(dtype=float)
    above = pd.Series(dtype=bool)
    if ceiling is not None and len(ceiling):
        top = ceiling.set_index(["method", "cp"])["pearson_r"]
        if "above_ceiling" in ceiling:
            above = ceiling.set_index(["method", "cp"])["above_ceiling"].fillna(False)
    rows = []
    for cp in cps:
        for _, row in table.iterrows():
            key = (row["method"], cp)
            cells = [f"{cp} [{CP_UNITS[cp]}]", str(row["label"]),
                     ci(row[f"{cp}_md"], row[f"{cp}_md_ci_low"], row[f"{cp}_md_ci_high"], 2),
                     ci(row[f"{cp}_loa_low"], row[f"{cp}_loa_low_ci_low"], row[f"{cp}_loa_low_ci_high"]),
                     ci(row[f"{cp}_loa_high"], row[f"{cp}_loa_high_ci_low"], row[f"{cp}_loa_high_ci_high"]),
                     ci(row[f"{cp}_r"], row[f"{cp}_r_ci_low"], row[f"{cp}_r_ci_high"], 3)]  # fmt: skip
            if ceiling is not None:
                flag = " (above: ceiling wrong?)" if bool(above.get(key, False)) else ""
                cells.append(fmt(top.get(key, np.nan), 3) + flag)
            rows.append(cells)
    return rows


AGREEMENT_HEADER = ["CP", "Method", "MD [95% CI]", "LoA lower [95% CI]", "LoA upper [95% CI]",
                    "r [95% CI]"]  # fmt: skip


def table2_markdown(table: pd.DataFrame, oracle: pd.DataFrame, cps: list[str]) -> str:
    """Table 2: per CP and method, MD and both limits of agreement with their CIs, and Pearson r
    with its CI beside the ceiling of the method's input modality."""
    n_test, n_seeds = int(table["n_test"].iloc[0]), int(table["n_seeds"].max())
    header = AGREEMENT_HEADER + (["ceiling r"] if len(oracle) else [])
    caption = (f"Table 2. Agreement with the CMR-derived reference on the {n_test} test subjects "
               f"(difference = prediction - reference), mean over {n_seeds} seed(s).")  # fmt: skip
    note = (
        "\n*MD: mean difference; LoA: MD ± 1.96 SD of the differences. Brackets: 95% CIs over "
        "test subjects (t-based for MD and LoA, Fisher z for r), averaged over seeds."
        + (
            " Ceiling: the best r any model of the method's input modality can reach on this "
            "cohort (see the data chapter); a row whose whole CI lies above it is marked."
            if len(oracle)
            else ""
        )  # fmt: skip
        + " {download}`Download as CSV </book/executed/tables/table2.csv>`.*\n"
    )
    return numbers_table(caption, "table-2", header,
                          agreement_rows(table, cps, oracle if len(oracle) else None)) + note  # fmt: skip


def yardstick_markdown(yardstick: pd.DataFrame, cps: list[str]) -> str:
    """Table 3: the reference baselines (not from the paper) with the same columns."""
    if yardstick.empty:
        return "*No reference baselines were run.*\n"
    caption = ("Table 3. The yardstick (not from the paper): reference baselines on the same "
               "subjects, fractions and seeds.")  # fmt: skip
    return (numbers_table(caption, "table-3", AGREEMENT_HEADER, agreement_rows(yardstick, cps))
            + "\n*{download}`Download as CSV </book/executed/tables/yardstick.csv>`.*\n")  # fmt: skip


def yardstick_differences_markdown(gaps: pd.DataFrame, labels: dict[str, str],
                                   references: dict[str, str], cps: list[str],
                                   fraction: float) -> str:  # fmt: skip
    """Table 3b: each transformer row minus the reference baseline of its input at `fraction`,
    with its paired CI, and generated sentences naming the rows the reference clearly beats."""
    if gaps.empty:
        return ""
    order = {cp: k for k, cp in enumerate(cps)}
    at = gaps[np.isclose(gaps["fraction"], fraction) & gaps["cp"].isin(order)]
    if at.empty:
        return ""
    at = at.sort_values("cp", key=lambda c: c.map(order), kind="stable")
    rows, within, clearly_below = [], 0, []
    for _, d in at.iterrows():
        name = labels.get(d["method"], d["method"])
        reference = references.get(d["baseline"], d["baseline"])
        clearly = d["ci_high"] < -0.05
        verdict = read_difference(
            d, "no difference", "higher", "lower by more than 0.05" if clearly else "lower"
        )
        within += d["difference"] >= -0.05
        if clearly:
            clearly_below.append(f"{name} on {d['cp']} ({fmt(d['difference'], 3)})")
        rows.append([str(d["cp"]), name, reference, fmt(d["r"], 3), fmt(d["r_baseline"], 3),
                     ci(d["difference"], d["ci_low"], d["ci_high"], 3), verdict])  # fmt: skip
    caption = (f"Table 3b. Pearson r of each transformer row minus that of the reference baseline of "
               f"its input (Table 3) on the same test subjects, at {fraction:.0%} of the training "
               "split (mean over seeds; paired bootstrap 95% CI).")  # fmt: skip
    header = ["CP", "Method", "reference", "r", "r reference", "Δr [95% CI]", "reading"]
    text = numbers_table(caption, "table-3b", header, rows)
    text += (f"\n{within} of the {len(at)} rows and CPs come within 0.05 of their reference "
             "or above it (point estimate).")  # fmt: skip
    if clearly_below:
        text += (" The whole CI lies more than 0.05 below the reference for "
                 + "; ".join(clearly_below) + ". The reference reaches more from the same input, "
                 "so for these rows the transformer at this profile's size and schedule, not the "
                 "input, sets the limit: compare them with each other, not with the input's ceiling.")  # fmt: skip
    low = float(gaps["fraction"].min())
    if not np.isclose(low, fraction):
        small = gaps[np.isclose(gaps["fraction"], low) & gaps["cp"].isin(order)]
        above = [f"{labels.get(d['method'], d['method'])} on {d['cp']} "
                 f"({ci(d['difference'], d['ci_low'], d['ci_high'], 3)})"
                 for _, d in small.iterrows() if d["ci_low"] > 0]  # fmt: skip
        text += (f" With {low:.0%} of the training split, "
                 + ("the whole CI lies above the reference for " + "; ".join(above) + "."
                    if above else "no row's CI lies wholly above its reference."))  # fmt: skip
    return (text + " *{download}`Download as CSV "
            "</book/executed/tables/yardstick_differences.csv>`.*\n")  # fmt: skip


def standard_cnn_markdown(gaps: pd.DataFrame, labels: dict[str, str], references: dict) -> str:
    """Table 3d: the localizer rows and the cheap 2-D CNN yardstick, each minus a standard small
    CNN trained on the same subjects (`gaps`: `paired_differences` against it, at the whole
    training split). `references`: the reference-baselines run's outputs (its epochs, the
    standard CNN's seeds and epochs; {} where no such run was made)."""
    if not references:
        return "*No reference baselines were run.*\n"
    from ctrip.baselines import CHEAP_IMAGE_CNN, STANDARD_IMAGE_CNN, describe_image_cnn

    cheap = (f"The localizer's yardstick is the cheapest standard 2-D CNN "
             f"({describe_image_cnn(CHEAP_IMAGE_CNN)}, {references['epochs']} epochs), so a row "
             "level with it is level with a floor, not with the best a CNN does from the same "
             "input.")  # fmt: skip
    design = (f"a standard small CNN ({describe_image_cnn(STANDARD_IMAGE_CNN)}, batch norm, AdamW "
              "with a one-cycle schedule, the validation-best weights")  # fmt: skip
    if gaps.empty:
        return (f"{cheap} This run did not train {design}) beside it "
                "(`reference_baselines.standard_cnn_seeds` is empty); "
                "`--set reference_baselines.standard_cnn_seeds=[0]` adds it for seed 0, and "
                "`benchmarks/bench_baselines.py --cohort` trains both outside the book.\n")  # fmt: skip
    seeds = references["standard_cnn_seeds"]
    order = {m: k for k, m in enumerate(labels)}
    gaps = gaps.sort_values("method", key=lambda m: m.map(order), kind="stable")
    cps = list(dict.fromkeys(gaps["cp"]))
    gaps = gaps.sort_values("cp", key=lambda c: c.map(cps.index), kind="stable")
    rows, within, far = [], {}, []
    for _, d in gaps.iterrows():
        name = labels.get(d["method"], d["method"])
        rows.append([str(d["cp"]), name, fmt(d["r"], 3), fmt(d["r_baseline"], 3),
                     ci(d["difference"], d["ci_low"], d["ci_high"], 3),
                     read_difference(d, "no difference", "higher", "lower")])  # fmt: skip
        if d["difference"] >= -0.05:
            within.setdefault(name, []).append(str(d["cp"]))
        if d["ci_high"] < -0.05:
            far.append(f"{name} on {d['cp']} ({fmt(d['difference'], 3)})")
    caption = (f"Table 3d. Pearson r of the localizer rows and of the cheap 2-D CNN minus that of "
               f"{design}, {references['standard_cnn_epochs']} epochs) on the same test subjects, "
               f"on the whole training split (seed{'s' if len(seeds) > 1 else ''} "
               f"{', '.join(map(str, seeds))}; paired bootstrap 95% CI).")  # fmt: skip
    header = ["CP", "Method", "r", "r standard CNN", "Δr [95% CI]", "reading"]
    text = f"{cheap}\n\n" + numbers_table(caption, "table-3d", header, rows)
    names = [labels.get(m, m) for m in sorted(set(gaps["method"]), key=lambda m: order.get(m, 0))]
    reached = "; ".join(f"{n} ({', '.join(within[n])})" for n in names if n in within)
    text += ("\nStated from the numbers (generated; a CI that contains 0 is no difference): "
             + (f"within 0.05 of the standard CNN or above it (point estimate): {reached}. "
                if reached else "no row comes within 0.05 of the standard CNN. ")
             + ("The whole CI lies more than 0.05 below it for " + "; ".join(far) + "."
                if far else "No row's CI lies wholly more than 0.05 below it."))  # fmt: skip
    return text + " *{download}`Download as CSV </book/executed/tables/standard_cnn.csv>`.*\n"


def loa_markdown(loa: pd.DataFrame, labels: dict[str, str], cps: list[str],
                 fraction: float) -> str:  # fmt: skip
    """Table 3c: each row's LoA width minus the constant training mean's at `fraction`, with its
    paired CI, and per CP a generated sentence: which rows the CI shows narrower, no different
    or wider than predicting the mean."""
    if loa.empty:
        return ""
    at = loa[np.isclose(loa["fraction"], fraction) & loa["cp"].isin(cps)]
    if at.empty:
        return ""
    order = {cp: k for k, cp in enumerate(cps)}
    at = at.sort_values("cp", key=lambda c: c.map(order), kind="stable")
    constant = labels.get(at["baseline"].iloc[0], at["baseline"].iloc[0])
    at = at.assign(reading=[read_difference(d, "no difference", "wider", "narrower")
                            for _, d in at.iterrows()])  # fmt: skip
    rows = [[f"{d['cp']} [{CP_UNITS[d['cp']]}]", labels.get(d["method"], d["method"]),
             fmt(d["loa_width"]), fmt(d["loa_width_baseline"]),
             ci(d["difference"], d["ci_low"], d["ci_high"], 2), d["reading"]]
            for _, d in at.iterrows()]  # fmt: skip
    lines = []
    for cp in [c for c in cps if c in set(at["cp"])]:
        group = at[at["cp"] == cp]
        read = {word: ", ".join(labels.get(m, m) for m in group[group["reading"] == word]["method"])
                for word in ("narrower", "no difference", "wider")}  # fmt: skip
        line = (f"- {cp}: {(group['reading'] == 'narrower').sum()} of the {len(group)} rows have "
                f"narrower limits than the {constant} "
                f"({fmt(group['loa_width_baseline'].iloc[0])} {CP_UNITS[cp]} wide)")  # fmt: skip
        if read["no difference"]:
            line += f"; no different for {read['no difference']}"
        if read["wider"]:
            line += f"; wider for {read['wider']}"
        lines.append(line + ".")
    caption = (f"Table 3c. Width of each row's 95% limits of agreement minus that of the {constant} "
               f"(Table 3) on the same test subjects, at {fraction:.0%} of the training split "
               "(mean over seeds; paired bootstrap 95% CI). Negative: narrower limits than "
               "predicting every subject at the mean. Not from the paper.")  # fmt: skip
    header = ["CP", "Method", "LoA width", f"LoA width, {constant}", "Δ width [95% CI]", "reading"]
    return numbers_table(caption, "table-3c", header, rows) + stated(lines, "loa_differences.csv")


def differences_markdown(differences: pd.DataFrame, labels: dict[str, str], cps: list[str]) -> str:
    """Table 4: difference in r from the comparison method per fraction, with its paired CI."""
    if differences.empty:
        return "*No paired differences were computed.*\n"
    baseline = labels.get(differences["baseline"].iloc[0], differences["baseline"].iloc[0])
    rows = []
    for _, d in differences.sort_values(["cp", "fraction"], kind="stable").iterrows():
        verdict = read_difference(d, "no difference", "higher", "lower")
        rows.append([str(d["cp"]), f"{d['fraction']:.0%}", labels.get(d["method"], d["method"]),
                     fmt(d["r"], 3), fmt(d["r_baseline"], 3),
                     ci(d["difference"], d["ci_low"], d["ci_high"], 3), verdict])  # fmt: skip
    caption = (f"Table 4. Pearson r of each method minus that of {baseline} on the same test "
               "subjects, per fine-tuning fraction (mean over seeds; paired bootstrap 95% CI).")  # fmt: skip
    header = ["CP", "fraction", "Method", "r", f"r {baseline}", "Δr [95% CI]", "reading"]
    return (numbers_table(caption, "table-4", header, rows)
            + "\n*A CI that contains 0 reads as no difference. "
            "{download}`Download as CSV </book/executed/tables/paired_differences.csv>`.*\n")  # fmt: skip


def control_markdown(control_differences: pd.DataFrame, differences: pd.DataFrame,
                     labels: dict[str, str], cps: list[str]) -> str:  # fmt: skip
    """Table 4b: each aligned row minus the control (the Stage I encoder fine-tuned without
    Stage II) per fraction, with its paired CI; then per fraction, generated from the numbers,
    the control against Table 4's comparison method and how many aligned rows clear the control."""
    if control_differences.empty:
        return "*No control was run (`table2.control` is empty).*\n"
    control = control_differences["baseline"].iloc[0]
    name = labels.get(control, control)
    at = control_differences[control_differences["cp"].isin(cps)]
    order = {cp: k for k, cp in enumerate(cps)}
    rows = []
    for _, d in at.assign(_cp=at["cp"].map(order)).sort_values(["_cp", "fraction"]).iterrows():
        rows.append([str(d["cp"]), f"{d['fraction']:.0%}", labels.get(d["method"], d["method"]),
                     fmt(d["r"], 3), fmt(d["r_baseline"], 3),
                     ci(d["difference"], d["ci_low"], d["ci_high"], 3),
                     read_difference(d, "no difference", "higher", "lower")])  # fmt: skip
    caption = (f"Table 4b. Pearson r of each aligned row minus that of {name}, the Stage I "
               "encoder fine-tuned without Stage II, on the same test subjects, per fine-tuning "
               "fraction (mean over seeds; paired bootstrap 95% CI). Not from the paper.")  # fmt: skip
    header = ["CP", "fraction", "Method", "r", f"r {name}", "Δr [95% CI]", "reading"]
    text = numbers_table(caption, "table-4b", header, rows)
    own = differences[differences["method"] == control] if len(differences) else differences
    lines = []
    for fraction in sorted(at["fraction"].unique()):
        aligned, alone = [], []
        for cp in [c for c in cps if c in set(at["cp"])]:
            group = at[np.isclose(at["fraction"], fraction) & (at["cp"] == cp)]
            higher, lower = int((group["ci_low"] > 0).sum()), int((group["ci_high"] < 0).sum())
            same = len(group) - higher - lower
            aligned.append(f"{cp} {fmt(group['difference'].min(), 3)} to "
                           f"{fmt(group['difference'].max(), 3)}, higher for {higher}"
                           + (f", lower for {lower}" if lower else "")
                           + (f", no different for {same}" if same else ""))  # fmt: skip
            mine = (
                own[np.isclose(own["fraction"], fraction) & (own["cp"] == cp)] if len(own) else own
            )
            if len(mine):
                d = mine.iloc[0]
                alone.append(f"{cp} Δr {ci(d['difference'], d['ci_low'], d['ci_high'], 3)}, "
                             f"{read_difference(d, 'no different', 'higher', 'lower')}")  # fmt: skip
        n = int(at[np.isclose(at["fraction"], fraction)]["method"].nunique())
        line = (f"- At {fraction:.0%} of the training split, the {n} aligned rows minus {name}: "
                + "; ".join(aligned) + ".")  # fmt: skip
        if alone:
            base = labels.get(own["baseline"].iloc[0], own["baseline"].iloc[0])
            line += f" {name} itself against {base}: " + "; ".join(alone) + "."
        lines.append(line)
    return text + stated(lines, "control_differences.csv")


def key_result_markdown(differences: pd.DataFrame, labels: dict[str, str], method: str,
                        cps: list[str], simulated: bool = True) -> str:  # fmt: skip
    """The landing page's two generated sentences: the method against the comparison method at
    the full and at the smallest fine-tuning fraction, with paired CIs."""
    part = differences[differences["method"] == method] if len(differences) else differences
    if part.empty:
        return "*The key result needs the paired differences of the results chapter.*\n"
    base = labels.get(part["baseline"].iloc[0], part["baseline"].iloc[0])
    name = labels.get(method, method)

    def clause(fraction: float) -> str:
        rows = part[np.isclose(part["fraction"], fraction)].set_index("cp")
        said = []
        for cp in [c for c in cps if c in rows.index]:
            d = rows.loc[cp]
            word = read_difference(d, "no different", "higher", "lower")
            said.append(f"{cp} r {fmt(d['r'], 2)} vs {fmt(d['r_baseline'], 2)} "
                        f"(Δr {ci(d['difference'], d['ci_low'], d['ci_high'], 2)}, {word})")  # fmt: skip
        return "; ".join(said)

    high, low = part["fraction"].max(), part["fraction"].min()
    cohort = "simulated" if simulated else "imported"
    text = (f"On this book's {cohort} cohort, {name} against {base} with "
            f"all training labels: {clause(high)}.")  # fmt: skip
    if low < high:
        text += f" With {low:.0%} of the labels: {clause(low)}."
    return text + " A CI that contains 0 is no evidence of a difference.\n"


def comparison_sentences(differences: pd.DataFrame, table: pd.DataFrame, yardstick: pd.DataFrame,
                         labels: dict[str, str], cps: list[str], fraction: float) -> str:  # fmt: skip
    """Sentences stating each comparison with its CI, generated from the numbers only."""
    lines = []
    t = table.set_index("method")
    mean_row = (
        yardstick.set_index("method").loc["mean"]
        if "mean" in set(yardstick.get("method", []))
        else None
    )
    if not differences.empty:
        base = differences["baseline"].iloc[0]
        at = differences[np.isclose(differences["fraction"], fraction)]
        for method in [m for m in labels if m != base and m in set(at["method"])]:
            parts = []
            for cp in cps:
                d = at[(at["method"] == method) & (at["cp"] == cp)]
                if d.empty:
                    continue
                d = d.iloc[0]
                word = read_difference(d, "no different from", "above", "below")
                parts.append(
                    f"{cp} Δr {ci(d['difference'], d['ci_low'], d['ci_high'], 3)} ({word})"
                )
            lines.append(f"- {labels[method]} vs {labels.get(base, base)} at {fraction:.0%} of the "
                         "training split: " + "; ".join(parts) + ".")  # fmt: skip
    if mean_row is not None:
        for cp in cps:
            width_mean = mean_row[f"{cp}_loa_high"] - mean_row[f"{cp}_loa_low"]
            no_better = [labels[m] for m in labels if m in t.index
                         and t.loc[m, f"{cp}_r_ci_low"] <= 0]  # fmt: skip
            if no_better:
                lines.append(f"- {cp}: " + ", ".join(no_better) + " predict no better than the "
                             f"training mean (the CI of r includes 0; the mean's LoA width is "
                             f"{fmt(width_mean)} {CP_UNITS[cp]}).")  # fmt: skip
    return "\n".join(lines) + "\n" if lines else "*No comparisons to state.*\n"


def _ranked(curves: pd.DataFrame, methods: list[str], cp: str, fraction: float) -> pd.DataFrame:
    """`methods`' r and Fisher-z CI for `cp` at `fraction`, highest r first."""
    at = curves[(curves["cp"] == cp) & np.isclose(curves["fraction"], fraction)]
    return at[at["method"].isin(methods)].set_index("method").sort_values("r", ascending=False)


def _r(row: pd.Series) -> str:
    return ci(row["r"], row["r_ci_low"], row["r_ci_high"], 2)


def paper_reading_markdown(curves: pd.DataFrame, differences: pd.DataFrame,
                           labels: dict[str, str], cps: list[str], baseline: str,
                           method: str, control_differences: pd.DataFrame | None = None) -> str:  # fmt: skip
    """The paper's qualitative reading of its Table 2 and Fig. 3, claim by claim, beside this
    book's numbers, generated from them. Ranks use each method's r with its Fisher-z CI on the
    test subjects: a method is first (or last) only where its CI clears the runner-up's; the
    alignment claim uses the paired bootstrap CIs of the differences from the baseline."""
    present = set(curves["method"]) if "method" in curves else set()
    table_methods = [m for m in labels if m in present]
    if method not in table_methods or baseline not in table_methods:
        return "*The paper's reading needs Table 2's methods on the results page.*\n"
    fractions = sorted(curves["fraction"].unique())
    low, high = fractions[0], fractions[-1]
    functional = [cp for cp in ("LVEF", "RVEF") if cp in cps]
    structural = [cp for cp in ("LVM", "RVEDV") if cp in cps]
    name = lambda m: labels.get(m, m)  # noqa: E731
    lines = []

    if "CMR_sup" in table_methods and functional:
        said, held = [], 0
        for cp in functional:
            for f in fractions:
                ranked = _ranked(curves, table_methods, cp, f)
                first, second = ranked.iloc[0], ranked.iloc[1]
                clear = ranked.index[0] == "CMR_sup" and first["r_ci_low"] > second["r_ci_high"]
                held += clear
                said.append(f"{cp} at {f:.0%}: {name(ranked.index[0])} {_r(first)}, next "
                            f"{name(ranked.index[1])} {_r(second)}"
                            + ("" if clear else " (not clearly CMR_sup first)"))  # fmt: skip
        lines.append("- *The cine-CMR model correlates best on the functional phenotypes, even with "
                     f"little labelled data.* Here CMR_sup is clearly first in {held} of "
                     f"{len(said)} cases: " + "; ".join(said) + ".")  # fmt: skip

    if "E_sup" in table_methods:
        said, held = [], 0
        for cp in cps:
            ranked = _ranked(curves, table_methods, cp, high)
            last, before = ranked.iloc[-1], ranked.iloc[-2]
            clear = ranked.index[-1] == "E_sup" and last["r_ci_high"] < before["r_ci_low"]
            held += clear
            said.append(f"{cp}: lowest {name(ranked.index[-1])} {_r(last)}, next "
                        f"{name(ranked.index[-2])} {_r(before)}"
                        + ("" if clear else " (not clearly E_sup last)"))  # fmt: skip
        lines.append(f"- *The ECG-only model is the weakest overall.* At {high:.0%}, E_sup is clearly "
                     f"last on {held} of {len(cps)} phenotypes: " + "; ".join(said) + ".")  # fmt: skip

    localizer_rows = [m for m in table_methods if m not in ("CMR_sup", "E_sup", "T_sup")]
    if structural and len(localizer_rows) > 1:
        said = []
        for cp in structural:
            ranked = _ranked(curves, localizer_rows, cp, low)
            rank = list(ranked.index).index(method) + 1
            said.append(f"{cp}: {name(method)} {_r(ranked.loc[method])}, rank {rank} of "
                        f"{len(ranked)}" + ("" if rank == 1 else
                        f" (first {name(ranked.index[0])} {_r(ranked.iloc[0])})"))  # fmt: skip
        lines.append(f"- *{name(method)} correlates highly on the structural phenotypes even with "
                     f"little labelled data.* Among the localizer rows at {low:.0%}: "
                     + "; ".join(said) + ".")  # fmt: skip

    def by_fraction(part: pd.DataFrame) -> str:
        said = []
        for f in sorted(part["fraction"].unique()):
            rows = part[np.isclose(part["fraction"], f) & part["cp"].isin(cps)]
            above = rows[rows["ci_low"] > 0]["cp"].tolist()
            below = rows[rows["ci_high"] < 0]["cp"].tolist()
            same = [cp for cp in rows["cp"] if cp not in above + below]
            words = [f"higher on {', '.join(above)}" if above else "",
                     f"lower on {', '.join(below)}" if below else "",
                     f"no different on {', '.join(same)}" if same else ""]  # fmt: skip
            said.append(f"at {f:.0%} " + ", ".join(w for w in words if w))
        return "; ".join(said)

    part = differences[differences["method"] == method] if len(differences) else differences
    if not part.empty:
        text = (f"- *Aligning the localizer with the ECG and the record helps the localizer "
                f"model (the paper's premise).* {name(method)} against {name(baseline)}, by "
                f"the paired CIs of Table 4: {by_fraction(part)}.")  # fmt: skip
        control = control_differences if control_differences is not None else pd.DataFrame()
        own = control[control["method"] == method] if len(control) else control
        if not own.empty:
            text += (f" Against {name(own['baseline'].iloc[0])}, the same encoder pre-trained "
                     f"but not aligned (Table 4b), which isolates the alignment: "
                     f"{by_fraction(own)}.")  # fmt: skip
        lines.append(text)
    return "\n".join(lines) + "\n"


def cp18_markdown(summary: pd.DataFrame, labels: dict[str, str]) -> str:
    """All 18 CPs: per method MD (LoA) and r."""
    rows = []
    frame = summary.set_index(["method", "cp"])
    for cp in CP_NAMES:
        cells = [f"{cp} [{CP_UNITS[cp]}]"]
        for method in labels:
            m = frame.loc[(method, cp)]
            cells.append(
                f"{fmt(m['md'], 2)} ({fmt(m['loa_low'])}, {fmt(m['loa_high'])}); r {fmt(m['r'], 2)}"
            )
        rows.append(cells)
    caption = (f"Table 6. All {len(CP_NAMES)} phenotypes on the test split at the full fine-tuning set: MD "
               "(LoA lower, LoA upper) and Pearson r per method, mean over seeds.")  # fmt: skip
    return (numbers_table(caption, "table-6", ["CP"] + list(labels.values()), rows)
            + "\n*{download}`Download as CSV </book/executed/tables/table2_cp18.csv>` (with "
            "every CI).*\n")  # fmt: skip


def summary_markdown(table: pd.DataFrame, curves: pd.DataFrame, labels: dict[str, str], cps: list[str],
                     baseline: str, method: str) -> str:  # fmt: skip
    """Sentences that state, from the tables, who is best where and how C-TRIP compares."""
    t = table.set_index("method")
    lines = []
    for cp in cps:
        width = t[f"{cp}_loa_high"] - t[f"{cp}_loa_low"]
        best_md = t[f"{cp}_md"].abs().idxmin()
        best_w = width.idxmin()
        r = t[f"{cp}_r"].dropna()
        # Pearson r is undefined where the reference does not vary (a tiny or constant test split)
        highest = (f"highest r {labels[r.idxmax()]} ({fmt(r.max(), 3)})" if len(r) else
                   "Pearson r not estimable (the reference does not vary on the test split)")  # fmt: skip
        rank = int(width.rank().loc[method])
        lines.append(
            f"- **{cp}**: smallest |MD| {labels[best_md]} ({fmt(t.loc[best_md, f'{cp}_md'], 2)} {CP_UNITS[cp]}); "
            f"narrowest LoA {labels[best_w]} (width {fmt(width[best_w])} {CP_UNITS[cp]}); {highest}. "
            f"{labels[method]} has LoA width "
            f"{fmt(width[method])} (rank {rank} of {len(t)}) against {fmt(width[baseline])} for {labels[baseline]}."
        )  # fmt: skip
    low = curves["fraction"].min()
    part = curves[np.isclose(curves["fraction"], low)].set_index(["method", "cp"])["r"]
    lines.append(
        f"- At the smallest fine-tuning fraction ({low:.0%}), Pearson r of {labels[method]} vs {labels[baseline]}: "
        + "; ".join(f"{cp} {fmt(part.get((method, cp), np.nan), 3)} vs {fmt(part.get((baseline, cp), np.nan), 3)}"
                    for cp in cps) + "."
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def fractions_markdown(curves: pd.DataFrame, labels: dict[str, str], cps: list[str]) -> str:
    """Fig. 3 in numbers: Pearson r (mean over seeds) per method, CP and fine-tuning fraction."""
    fractions = sorted(curves["fraction"].unique())
    rows = [[labels[m], cp] + [fmt(curves[(curves.method == m) & (curves.cp == cp) & np.isclose(curves.fraction, f)]["r"].mean(), 3)
                               for f in fractions] for cp in cps for m in labels]  # fmt: skip
    return md_table(["method", "CP"] + [f"{f:.0%}" for f in fractions], rows)


def _read(folder: Path, name: str) -> pd.DataFrame:
    """A result table of `folder`, empty when the run did not write it."""
    return pd.read_csv(folder / name) if (folder / name).exists() else pd.DataFrame()


def table2_texts(folder: Path, methods: dict[str, str], controls: list[str], cps: list[str],
                 yardstick_cps: list[str], loa_cps: list[str], fraction: float) -> dict[str, str]:  # fmt: skip
    """What `table2.ipynb` publishes, by glue key, from the tables it wrote in `folder`: Table 2,
    the yardstick (3, 3b, 3c), Table 4 and the comparisons it states, Table 4b, and Table 6.
    `methods` maps every method to its label (the `controls` are not rows of the paper's
    tables)."""
    folder = Path(folder)
    paper = {m: label for m, label in methods.items() if m not in controls}
    table, yardstick = _read(folder, "table2.csv"), _read(folder, "yardstick.csv")
    references = dict(zip(yardstick.get("method", []), yardstick.get("label", [])))
    differences = _read(folder, "paired_differences.csv")
    summary = _read(folder, "table2_cp18.csv")
    gaps = yardstick_differences_markdown(_read(folder, "yardstick_differences.csv"), methods,
                                          references, yardstick_cps, fraction)  # fmt: skip
    loa = loa_markdown(_read(folder, "loa_differences.csv"), {**methods, **references}, loa_cps,
                       fraction)  # fmt: skip
    return {
        "table2": table2_markdown(table, _read(folder, "oracle.csv"), cps),
        "yardstick": yardstick_markdown(yardstick, cps) + "\n" + gaps + ("\n" + loa if loa else ""),
        "differences": differences_markdown(differences, methods, cps),
        "comparisons": comparison_sentences(differences, table, yardstick, methods, cps, fraction),
        "control": control_markdown(
            _read(folder, "control_differences.csv"), differences, methods, cps
        ),  # fmt: skip
        "cp18": cp18_markdown(summary[np.isclose(summary["fraction"], fraction)], paper),
    }


def curves_texts(curves: pd.DataFrame, table2_folder: Path, methods: dict[str, str],
                 cps: list[str], baseline: str, method: str, simulated: bool) -> dict[str, str]:  # fmt: skip
    """What `fraction_curves.ipynb` publishes, by glue key: Fig. 3 in numbers, and the readings
    that set the curves beside Table 2 and its paired differences (read from `table2_folder`):
    the summary, the paper's reading and the landing page's key result of `method` against
    `baseline`."""
    folder = Path(table2_folder)
    table, differences = _read(folder, "table2.csv"), _read(folder, "paired_differences.csv")
    paper = dict(zip(table["method"], table["label"]))  # Table 2's rows: the paper's methods
    return {
        "fractions": fractions_markdown(curves, methods, cps),
        "summary": summary_markdown(table, curves, paper, cps, baseline, method),
        "paper_reading": paper_reading_markdown(
            curves,
            differences,
            paper,
            cps,
            baseline,
            method,
            _read(folder, "control_differences.csv"),
        ),  # fmt: skip
        "key_result": key_result_markdown(differences, methods, method, cps, simulated),
    }
