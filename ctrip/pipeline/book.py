"""Build the Jupyter Book from a finished pipeline: executed notebooks, figures, generated includes.

The chapters in `book/` are hand-written prose. The tables and readings of the results chapter
are published by the notebooks that compute them and pasted by key (```{glued} key```,
`book/_ext/glued.py`); the other generated parts come from `book/executed/_includes/*.md`,
written here from the results tables and provenance records.
Executed notebooks are copied to `book/executed/` (numbered in run order, picked up by the
`_toc.yml` glob) and MathJax must already be vendored in `book/_vendor/` by the set-up step (offline build).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import yaml

from ctrip.analysis.tables import ci as _ci
from ctrip.analysis.tables import fmt as _fmt
from ctrip.analysis.tables import md_table as _md_table
from ctrip.analysis.tables import numbers_table as _numbers_table
from ctrip.data.schema import CP_NAMES, CP_UNITS
from ctrip.pipeline.cache import REPO_DIR, PipelineError, load_provenance, run_folder
from ctrip.pipeline.mathjax import MathJaxError, require_mathjax
from ctrip.pipeline.outputs import load_outputs
from ctrip.pipeline.plan import Run, cohort_facts, methods_for_cohort, paper_rows


def _write(path: Path, data: str | bytes) -> None:
    """Write only when the content changes, so Sphinx rebuilds only the pages that changed."""
    data = data.encode() if isinstance(data, str) else data
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def alignment_markdown(plan: list[Run], results_dir: Path, labels: dict[str, str]) -> str:
    """Table 5: cross-modal retrieval and participation ratios of every Stage II run."""
    from ctrip.analysis.screening import wilson_interval

    rows, folds, fold_cis, ratios, dims = [], [], [], [], []
    for run in plan:
        folder = run_folder(results_dir, run.name)
        if run.step != "stage2" or not (folder / "retrieval.csv").exists():
            continue
        retrieval = pd.read_csv(folder / "retrieval.csv")
        participation = pd.read_csv(folder / "participation.csv").set_index("modality")
        folds += (retrieval["recall@10"] / retrieval["chance@10"]).tolist()
        ratios += participation["participation_ratio"].tolist()
        dims += participation["dim"].tolist()
        temperatures = load_outputs(folder).get("temperatures") or {}
        for _, r in retrieval.iterrows():
            temp = next((v for k, v in temperatures.items() if r["gallery"] in k), np.nan)
            low, high = wilson_interval(int(round(r["recall@10"] * r["n"])), int(r["n"]))
            fold_cis.append((low / r["chance@10"], high / r["chance@10"]))
            rows.append([run.name.removeprefix("stage2_"), f"{r['query']} → {r['gallery']}",
                         str(int(r["n"])),
                         *(f"{r[f'recall@{k}']:.3f} ({r[f'chance@{k}']:.3f})" for k in (1, 5)),
                         f"{r['recall@10']:.3f} [{low:.3f}, {high:.3f}] ({r['chance@10']:.3f})",
                         f"{r['median_rank']:.0f}", _fmt(temp, 3),
                         _fmt(participation.loc[r["query"], "participation_ratio"], 1),
                         _fmt(participation.loc[r["gallery"], "participation_ratio"], 1)])  # fmt: skip
    if not rows:
        return "*No Stage II run recorded alignment measures.*\n"
    caption = ("Table 5. Alignment after Stage II on the test split: recall@k of retrieving a "
               "subject's own ECG or record from its localizer embedding (chance in round "
               "brackets; recall@10 with its Wilson 95% CI), "
               "median rank, learned temperature, and each side's participation ratio.")  # fmt: skip
    header = ["Stage II run", "query → gallery", "n", "recall@1", "recall@5", "recall@10",
              "median rank", "temperature", "PR query", "PR gallery"]  # fmt: skip
    text = _numbers_table(caption, "table-5", header, rows) + "\n"
    text += alignment_reading(folds, ratios, int(max(dims)), fold_cis)
    umaps = next((run for run in plan if run.name == "umaps"), None)
    if umaps is not None:  # Fig. 2B's runs: the same measure before alignment
        before_after = run_folder(results_dir, umaps.name) / "participation_before_after.csv"
        if before_after.exists():
            method = str(umaps.parameters.get("method", ""))
            phenotypes = before_after.with_name("phenotype_participation.csv")
            phenotype_pr = (float(pd.read_csv(phenotypes)["participation_ratio"].iloc[0])
                            if phenotypes.exists() else None)  # fmt: skip
            shared = before_after.with_name("shared_dimensionality.csv")
            text += dimensionality_reading(
                pd.read_csv(before_after), labels.get(method, method), phenotype_pr,
                pd.read_csv(shared) if shared.exists() else None,
            )  # fmt: skip
    return text


def dimensionality_reading(
    participation: pd.DataFrame,
    label: str,
    phenotype_pr: float | None = None,
    shared: pd.DataFrame | None = None,
) -> str:
    """Generated sentences: each modality's participation ratio in its pre-trained encoder's
    own feature space and after alignment (Fig. 2B's runs), so a reader sees whether few
    effective dimensions come from Stage II or were there before it; when given, that of the
    18 z-scored CPs of the same subjects, what an embedding of the phenotypes alone uses; and
    how many dimensions each aligned pair shares at all in the simulator's generating
    quantities (`ctrip.data.synth.oracle.shared_dimensions`: rows a, b, participation_ratio)."""
    if participation.empty:
        return ""
    p = participation.set_index("modality")
    before = ", ".join(f"{m} {_fmt(p.loc[m, 'before'], 1)}" for m in p.index)
    after = ", ".join(f"{m} {_fmt(p.loc[m, 'after'], 1)}" for m in p.index)
    text = (f"\nBefore alignment, the Stage I encoders' own features ({int(p['dim_before'].max())} "
            f"dimensions) have participation ratios {before}; after it, the shared projections"
            f"{' of ' + label if label else ''} have {after}")  # fmt: skip
    if p["before"].max() < 8:
        text += (", so the pre-trained features already concentrate on few directions "
                 "before Stage II aligns them")  # fmt: skip
    text += "."
    if phenotype_pr is not None and np.isfinite(phenotype_pr):
        text += (f" For comparison, the 18 CPs of the same subjects, each z-scored, have a "
                 f"participation ratio of {phenotype_pr:.1f}: an embedding that carried exactly the "
                 "phenotypes, and nothing else, would use about that many effective dimensions.")  # fmt: skip
    if shared is not None and not shared.empty:
        names = {"ecg": "the ECG", "tabular": "the tabular record", "cmr": "the CMR"}
        pairs = [f"{_fmt(r['participation_ratio'], 1)}{' effective dimensions' if k == 0 else ''}"
                 f" with what reaches {names.get(r['b'], r['b'])}"
                 for k, (_, r) in enumerate(shared.iterrows())]  # fmt: skip
        text += (" What the aligned pairs share at all sets the scale: in the simulator's own "
                 "generating quantities, before any noise of the data, what reaches the "
                 f"{shared.iloc[0]['a']} shares {' and '.join(pairs)} (participation ratio of "
                 "the squared held-out canonical correlations). An "
                 "embedding that carried everything a pair shares would use about that many; the "
                 f"{label + ' ' if label else ''}projections use {_fmt(p['after'].min(), 1)} to "
                 f"{_fmt(p['after'].max(), 1)}.")  # fmt: skip
    return text + "\n"


def alignment_reading(folds: list[float], ratios: list[float], dim: int,
                      fold_cis: list[tuple[float, float]] | None = None) -> str:  # fmt: skip
    """One generated sentence on Table 5: recall@10 as a multiple of chance (with the span of
    its CIs, as multiples of chance, when given), and how many dimensions the embeddings use."""
    folds = [f for f in folds if np.isfinite(f)]
    ratios = [r for r in ratios if np.isfinite(r)]
    cis = [c for c in fold_cis or [] if np.isfinite(c).all()]
    if not folds:
        return ""
    text = (f"Across the Stage II runs, recall@10 is {min(folds):.1f} to {max(folds):.1f} times "
            "its chance level")  # fmt: skip
    if cis:
        lows = [c[0] for c in cis]
        text += (f" (the lower ends of its 95% CIs: {min(lows):.1f} to {max(lows):.1f} times "
                 "chance)")  # fmt: skip
    # no better than chance: every CI reaches down to chance (without CIs: under 1.5x chance)
    no_better = max(c[0] for c in cis) <= 1.0 if cis else max(folds) < 1.5
    if no_better:
        text += ", so the alignment does not retrieve partners better than chance"
    if ratios:
        text += (f"; the embeddings' participation ratios lie between {min(ratios):.1f} and "
                 f"{max(ratios):.1f} (1: every subject on one line; the shared space has "
                 f"{dim} dimensions), so the aligned embeddings use "
                 f"{'few' if max(ratios) < 8 else 'many'} effective dimensions")  # fmt: skip
    return text + ".\n"


def heart_share_markdown(share: pd.DataFrame | None, labels: dict[str, str], target_cp: str) -> str:
    """Fig. 2A in numbers: the share of attribution on the heart per method with its CI, what
    reference maps score, and the paired differences read as their CIs say; or why it is
    missing."""
    if share is None or share.empty:
        return ("*The share of attribution on the heart cannot be measured: this cohort has no "
                "heart masks (only a simulated cohort knows where the heart is).*\n")  # fmt: skip
    references = {"uniform": "a uniform map", "brightness": "the image itself"}
    name = lambda m: labels.get(m, references.get(m, m))  # noqa: E731
    ci = lambda r: _ci(r["share"], r["ci_low"], r["ci_high"], 2)  # noqa: E731

    def reading(r: pd.Series) -> str:
        if r["ci_low"] <= 0 <= r["ci_high"]:
            return "no difference"
        return "more on the heart" if r["ci_low"] > 0 else "less on the heart"

    kind = lambda k: share[share["kind"] == k].iterrows()  # noqa: E731
    methods = "; ".join(f"{name(r['map'])} {ci(r)}" for _, r in kind("method"))
    refs = "; ".join(f"{name(r['map'])} {_fmt(r['share'], 2)}" for _, r in kind("reference"))
    text = (f"Share of the absolute Integrated Gradients of the predicted {target_cp} that falls on "
            f"the heart, mean over {int(share['n'].iloc[0])} test subjects [95% CI]: {methods}. "
            f"Reference maps: {refs} (a uniform map scores the heart's share of the pixels; "
            "Integrated Gradients from a black image scale with the input, so a model that "
            "weighs every pixel alike scores the image's share of brightness on the heart).")  # fmt: skip
    for _, r in kind("difference"):
        method, base = r["map"].split(" - ")
        text += f" {name(method)} vs {name(base)}: {ci(r)} ({reading(r)})."
    against = [f"{name(r['map'].split(' - ')[0])} vs {name(r['map'].split(' - ')[1])} {ci(r)} "
               f"({reading(r)})" for _, r in kind("above reference")]  # fmt: skip
    if against:
        text += " Against the references: " + "; ".join(against) + "."
    return (text + " A CI that contains 0 is no evidence of a difference. "
            "{download}`Download as CSV </book/executed/tables/heart_share.csv>`.\n")  # fmt: skip


def _heart_share_file(results_dir: Path) -> Path | None:
    """The attention run's heart-share table, None when its cohort had no heart masks."""
    folder = run_folder(results_dir, "attention_maps")
    if not (folder / "outputs.json").exists():
        return None
    return load_outputs(folder).get("heart_share")


def screening_markdown(results_dir: Path, labels: dict[str, str],
                       coverage_methods: list[str] | tuple[str, ...] = ("L_sup", "L+E+T"),
                       ) -> dict[str, str]:  # fmt: skip
    """The screening chapter's generated parts: abnormal counts, coverage (Table 7) and screening
    performance (Table 8), from the screening run's tables."""
    parts = {}
    counts_file, coverage_file = results_dir / "abnormal_counts.csv", results_dir / "coverage.csv"
    screening_file = results_dir / "screening.csv"
    if not (counts_file.exists() and coverage_file.exists() and screening_file.exists()):
        return {"counts": "*No screening run.*\n", "coverage": "", "screening": "", "facts": ""}
    counts = pd.read_csv(counts_file)
    rows = [[r["label"], str(r["split"]), str(int(r["n"])), str(int(r["n_abnormal"])),
             f"{r['prevalence']:.1%}"] for _, r in counts.iterrows()]  # fmt: skip
    parts["counts"] = (_md_table(["flag", "split", "subjects", "abnormal", "prevalence"], rows)
                       if rows else "*No screening flag chosen (screening.flags is empty).*\n")  # fmt: skip
    coverage = pd.read_csv(coverage_file)
    top = coverage[np.isclose(coverage["fraction"], coverage["fraction"].max())]
    level = float(top["level"].iloc[0])
    rows = []
    for cp in CP_NAMES:
        cells = [f"{cp} [{CP_UNITS[cp]}]"]
        for method in labels:
            c = top[(top["method"] == method) & (top["cp"] == cp)]
            cells.append("n/a" if c.empty else _ci(c["coverage"].iloc[0], c["ci_low"].iloc[0],
                                                   c["ci_high"].iloc[0], 3))  # fmt: skip
        rows.append(cells)
    caption = (f"Table 7. Empirical coverage on the test split of the {level:.0%} split-conformal "
               "intervals per phenotype and method at the full fine-tuning set (mean over seeds; "
               "Wilson 95% CI).")  # fmt: skip
    parts["coverage"] = (_numbers_table(caption, "table-7", ["CP"] + list(labels.values()), rows)
                         + "\n*{download}`Download as CSV (every fraction) "
                         "</book/executed/tables/coverage.csv>`.*\n")  # fmt: skip
    worst = top.loc[(top["coverage"] - level).abs().idxmax()]
    within = float(((top["coverage"] - level).abs() <= 0.03).mean())
    parts["facts"] = (
        f"- Across methods and phenotypes at the full fine-tuning set, {within:.0%} of the "
        f"coverages lie within 3 points of the nominal {level:.0%}; the furthest is "
        f"{labels.get(worst['method'], worst['method'])}, {worst['cp']}: "
        f"{_ci(worst['coverage'], worst['ci_low'], worst['ci_high'], 3)}.\n"
    )
    widths = top["mean_width"] if "mean_width" in top else pd.Series(1.0, index=top.index)
    infinite = top[~np.isfinite(widths.astype(float))]
    if len(infinite):  # a validation split too small for the level: whole-line intervals
        need = math.ceil(level / (1 - level) - 1e-9)
        who = ", ".join(dict.fromkeys(labels.get(m, m) for m in infinite["method"]))
        parts["facts"] = (
            f"- Coverage not estimable for {who}: their {level:.0%} intervals are infinite, "
            f"because the validation split is too small for that level (split-conformal needs "
            f"at least {need} calibration subjects), so a coverage of 1 says nothing.\n"
        ) + parts["facts"]
    for method in coverage_methods:  # the rows the coverage criterion is judged on
        own = top[top["method"] == method]
        if own.empty:
            continue
        off = own[(own["coverage"] - level).abs() > 0.03]
        line = (f"- {labels.get(method, method)}: {len(own) - len(off)} of {len(own)} phenotypes "
                f"within 3 points of {level:.0%}")  # fmt: skip
        if len(off):
            line += "; outside: " + ", ".join(
                f"{r['cp']} {_ci(r['coverage'], r['ci_low'], r['ci_high'], 3)}"
                + (" (the nominal level lies inside its CI)" if r["ci_low"] <= level <= r["ci_high"] else "")
                for _, r in off.iterrows()
            )  # fmt: skip
        parts["facts"] += line + ".\n"
    screening = pd.read_csv(screening_file)
    reasons = screening.get("not_estimable", pd.Series(np.nan, index=screening.index))
    rows = [[r["label"], labels.get(r["method"], r["method"]),
             *([_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"], 3)
                for m in ("auroc", "sensitivity", "specificity")]
               if pd.isna(reasons[i]) else [f"not estimable ({reasons[i]})", "", ""])]
            for i, r in screening.iterrows()]  # fmt: skip
    if not rows:
        rows = [["none chosen (screening.flags is empty)", "", "", "", ""]]
    caption = ("Table 8. Screening on the test split at the full fine-tuning set: AUROC, and "
               "sensitivity and specificity at the published limit (mean over seeds; bootstrap "
               "95% CIs).")  # fmt: skip
    parts["screening"] = (_numbers_table(caption, "table-8", ["flag", "Method", "AUROC [95% CI]",
                                          "sensitivity [95% CI]", "specificity [95% CI]"], rows)
                          + "\n*{download}`Download as CSV </book/executed/tables/screening.csv>`.*\n")  # fmt: skip
    return parts


def profile_markdown(settings: dict) -> str:
    """What the profile runs beside the paper's setup, and why each departure was made."""
    from ctrip.stages.config import make_config

    config, paper = settings["config"], make_config("paper")
    cohort = settings["cohort"]
    sizes = cohort.get("sizes") or {}
    loc, ploc = config["models"]["localizer"], paper["models"]["localizer"]
    ecg, pecg = config["models"]["ecg"], paper["models"]["ecg"]
    tab, ptab = config["models"]["tabular"], paper["models"]["tabular"]
    if cohort.get("path"):
        subjects, image, ecg_input = "(imported cohort)", "(the cohort's)", "(the cohort's)"
    else:
        subjects, side = str(cohort["n_subjects"]), sizes["image_size"]
        rate = ecg["rate_hz"] or sizes["ecg_sampling_rate_hz"]
        image = f"{side} x {side}"
        ecg_input = f"12 x {int(rate * sizes['ecg_seconds'])} ({rate:g} Hz)"
    compute = "compute: the whole book on a 2-core CPU"

    def stem(model: dict) -> str:
        return f"{model['stem']} stem, {model['pool']} pooling"

    def augment(stage: str, cfg: dict, key: str = "augment") -> str:
        return "on" if cfg[stage].get(key) else "off"

    def image_augment(stage: str, cfg: dict) -> str:
        kinds = [name for key, name in (("augment", "crop, rotation, zoom"),
                                        ("augment_rigid", "rotation, shift")) if cfg[stage].get(key)]  # fmt: skip
        return " + ".join(kinds) or "off"

    def per_stage(cfg: dict, key: str) -> str:
        return " / ".join(str(cfg[s][key]) for s in ("stage1", "stage2", "stage3"))

    rows = [
        ["subjects", subjects, "UK Biobank imaging visit", "enough test subjects to tell methods apart, within the compute"],
        ["localizer / CMR image", image, "224 x 224", compute],
        ["ECG as the model sees it", ecg_input, "12 x 5000 (500 Hz)", compute],
        ["ECG tokens", "per lead" if ecg["per_lead"] else "all leads per token", "per lead",
         "per-lead tokens cost 10-20x more"],
        ["localizer ViT (dim / depth / heads, patch)", f"{loc['dim']} / {loc['depth']} / {loc['heads']}, {loc['patch_size']}",
         f"{ploc['dim']} / {ploc['depth']} / {ploc['heads']}, {ploc['patch_size']}", compute],
        ["image patch embedding and pooling", stem(loc), stem(ploc),
         "a patch-local stem and token averaging learn from a few thousand subjects "
         "(`benchmarks/bench_localizer_recipe.py`); the stem keeps MAE masking patch-wise"],
        ["ECG ViT (dim / depth / heads)", f"{ecg['dim']} / {ecg['depth']} / {ecg['heads']}", f"{pecg['dim']} / {pecg['depth']} / {pecg['heads']}", compute],
        ["tabular transformer (dim / depth)", f"{tab['dim']} / {tab['depth']}", f"{ptab['dim']} / {ptab['depth']}", compute],
        ["epochs Stage I / II / III (max)", per_stage(config, "max_epochs"), per_stage(paper, "max_epochs"),
         compute + "; early stopping on the validation loss"],
        ["early-stopping patience Stage I / II / III (epochs)",
         per_stage(config, "patience"), per_stage(paper, "patience"),
         "Stage II's validation loss rises steadily past its minimum, so a short patience keeps "
         "the same weights for less compute; Stage III's swings while its learning rate is high"],
        ["batch size", str(config["stage1"]["batch_size"]), str(paper["stage1"]["batch_size"]),
         "more optimizer steps per epoch on a small cohort"],
        ["Stage III learning rate of a pre-trained encoder", f"{config['stage3']['lr_encoder']:g}",
         f"{paper['stage3']['lr_encoder']:g}",
         "over far fewer epochs than the paper's, 1e-4 leaves the encoder near its start (C-TRIP, seed 0: test "
         "LVM r 0.60 at 1e-4, 0.80 at 1e-3); 2e-3 moves it too far with little data (C-TRIP, 3%, "
         "seeds 0 / 1: 0.637 / 0.575 at 2e-3, 0.680 / 0.686 at 1e-3)"],
        ["Stage III learning rate of an encoder trained from scratch",
         f"{config['stage3']['lr_encoder_scratch']:g}", "not stated",
         "within 15 epochs a ViT from scratch learns more at 2e-3 than at 1e-3 (L_sup, 100%, seeds "
         "0 / 1: test LVM r 0.916 / 0.912 vs 0.886 / 0.881; E_sup, CMR_sup and T_sup, seed 0: "
         "0.654 vs 0.614, 0.960 vs 0.954, 0.718 vs 0.716)"],
        ["image augmentation in Stage II / III",
         f"{image_augment('stage2', config)} / {image_augment('stage3', config)}",
         f"{image_augment('stage2', paper)} / {image_augment('stage3', paper)}",
         "crops and zooms change the apparent heart size, which the labels, the ECG and the record "
         "carry; a rotation (up to 10 degrees) and a shift (up to 1/16 of the side) keep it, and teach "
         "the ViT the indifference to position that a CNN has by construction. On this "
         "profile's cohort, test LVM r: L_sup, 100%, seeds 0 / 1, 0.865 / 0.827 without, "
         "0.886 / 0.881 with (Stage III); C-TRIP, 3%, seeds 0 / 1, 0.617 / 0.544 without, "
         "0.680 / 0.686 with (Stages II and III)"],
        ["ECG time shift in Stage II / III", f"{augment('stage2', config, 'augment_ecg')} / "
         f"{augment('stage3', config, 'augment_ecg')}",
         f"{augment('stage2', paper, 'augment_ecg')} / {augment('stage3', paper, 'augment_ecg')}",
         "each training ECG is rotated in time by a random offset; without it the ECG transformer "
         "learns where beats fall in its patches and overfits within 2 epochs (E_sup, test LVM r "
         "0.60 without, 0.65 with, mean of 3 seeds; localizer-ECG recall@10 0.057 vs 0.077)"],
        ["fine-tuning fractions", ", ".join(f"{f:g}" for f in settings["sweep"]["fractions"]), "0.01, 0.1, 1",
         "the low-data point keeps at least 50 fine-tuning subjects"],
        ["seeds", ", ".join(str(s) for s in settings["sweep"]["seeds"]), "not stated", "seed spread in every CI"],
    ]  # fmt: skip
    rows = [r for r in rows if r[1] != r[2]]
    header = ["", f"this book (profile `{settings['profile']}`)", "the paper", "why"]
    return _md_table(header, rows)


def left_out_markdown(left_out: dict[str, str]) -> str:
    """The sentence a results page opens with when the cohort could not run every method: which
    were left out, and why (e.g. CMR_sup on a cohort without CMR)."""
    if not left_out:
        return ""
    return ("*Left out of every table and figure of this book because the cohort lacks what they "
            "need: " + "; ".join(f"{name} ({reason})" for name, reason in left_out.items()) + ".*\n")  # fmt: skip


def cohort_markdown(settings: dict) -> str:
    """Which cohort the book ran on, the Table 2 methods it left out and why, and whether the
    simulator-only parts (reference comparison, oracle ceilings, latents) apply."""
    facts = cohort_facts(settings)
    _, left_out = methods_for_cohort(settings)
    if facts["simulated"]:
        text = "The cohort is simulated, so the data card compares it with published reference values and every method's Pearson r stands beside its modality's oracle ceiling.\n"
    else:
        text = ("The cohort is not simulated (it was imported), so the simulator-only parts are left out: the comparison "
                "with published reference values, the oracle ceilings and the latent variables.\n")  # fmt: skip
    if left_out:
        text += "\n" + left_out_markdown(left_out)
    return text


def provenance_markdown(plan: list[Run], results_dir: Path, order: dict[str, str]) -> str:
    """One section per run: what it is, its key, hashes, time and parameters."""
    out = []
    rows = []
    for run in plan:
        record = load_provenance(run_folder(results_dir, run.name))
        if record is None:
            raise PipelineError(f"run {run.name} has no provenance record in {results_dir}")
        page = f"{{doc}}`{run.name} <{order[run.name]}>`" if run.name in order else run.name
        rows.append([page, record["notebook"] or "cohort synthesis", f"`{record['key'][:12]}`",
                     f"{record['seconds']:.1f}", record["started"]])  # fmt: skip
        params = {k: v for k, v in record["parameters"].items()}
        out.append(f"## {run.name}\n\n- key `{record['key']}`\n"
                   f"- notebook sha256 `{record['hashes']['notebook_sha256']}`\n"
                   f"- ctrip code sha256 `{record['hashes']['ctrip_code_sha256']}`\n"
                   f"- inputs: {', '.join(f'{n} `{k[:12]}`' for n, k in record['inputs'].items()) or 'none'}\n"
                   f"- git commit `{record['git']['commit']}` (uncommitted changes: {record['git']['dirty']})\n\n"
                   "```yaml\n" + yaml.safe_dump(params, sort_keys=False, width=100) + "```\n")  # fmt: skip
    first = load_provenance(run_folder(results_dir, plan[0].name)) or {}
    packages = ", ".join(f"{k} {v}" for k, v in (first.get("packages") or {}).items())
    head = _md_table(["run", "notebook", "key", "seconds", "started (UTC)"], rows)
    return head + f"\nPackages: {packages}.\n\n" + "\n".join(out)


# What each numbered table and figure of the book is made by (run names of the plan).
MADE_BY = {
    "Table 2": ["table2"], "Table 3": ["reference_baselines", "table2"],
    "Table 3b": ["reference_baselines", "table2"], "Table 3c": ["reference_baselines", "table2"],
    "Table 4": ["table2"], "Table 4b": ["table2"],
    "Table 5": ["stage2_*"], "Table 6": ["table2"], "Fig. 2A": ["attention_maps"],
    "Fig. 2B": ["umaps"], "Fig. 3": ["fraction_curves"], "Fig. 4": ["screening"],
    "Fig. 5": ["screening"], "Table 7": ["screening"], "Table 8": ["screening"],
}  # fmt: skip


def reproduce_markdown(plan: list[Run], results_dir: Path, settings: dict, params_dir: Path) -> str:
    """For every table and figure: the run that made it, its outputs' sha256, and the commands
    that remake it: `ctrip run` for the whole chain, or papermill on that one notebook with the
    run's full parameters (written to `params_dir/<run>.yaml`) in a fresh folder beside it."""
    from ctrip.pipeline.runner import notebook_parameters

    # Paths relative to the repository root, where the commands run; a results folder elsewhere
    # is `$RESULTS`, so that the page names no folder of the machine that built it.
    inside = results_dir.is_relative_to(REPO_DIR)
    results_rel = os.path.relpath(results_dir, REPO_DIR) if inside else '"$RESULTS"'
    notebooks_dir = REPO_DIR / "notebooks"
    by_name = {run.name: run for run in plan}
    sections = []
    for item, patterns in MADE_BY.items():
        names = [n for pat in patterns for n in by_name if fnmatch.fnmatch(n, pat)]
        if names:
            sections.append(
                f"- **{item}**: "
                + ", ".join(f"{{ref}}`{n} <run-{n.replace('_', '-').lower()}>`" for n in names)
            )
    out = ["## Which run made what\n", "\n".join(sections), "\n\n## Remaking one run\n"]
    if not inside:
        out.append(
            f"This book's results folder (`{results_dir.name}`) lies outside the repository: run "
            "the commands below from the repository root with `RESULTS` set to that folder.\n"
        )
    out.append(
        f"Everything, from the cohort up, with the cache skipping what is up to date:\n\n"
        f"```bash\n.venv/bin/ctrip run --profile {settings['profile']} --results {results_rel} "
        "--book\n```\n\n"
        "One notebook on its own, with exactly the parameters it ran with, in a new folder beside "
        "the runs it reads (so its relative inputs resolve) and the thread count it ran with; its "
        "outputs' sha256 must equal those listed:\n"
    )
    for run in plan:
        if not run.notebook:
            continue
        record = load_provenance(run_folder(results_dir, run.name)) or {}
        params = notebook_parameters(run, notebooks_dir / run.notebook, results_dir, plan)
        _write(params_dir / f"{run.name}.yaml", yaml.safe_dump(params, sort_keys=False, width=100))
        remake = f"{results_rel}/runs/remake-{run.name}"
        threads = int(run.threads)
        env = " ".join(
            f"{v}={threads}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        )
        outputs = (record.get("hashes") or {}).get("outputs_sha256") or {}
        listed = (
            "\n".join(f"  - `{name}`: `{digest}`" for name, digest in sorted(outputs.items()))
            or "  - (none recorded)"
        )
        out.append(
            f"\n(run-{run.name.replace('_', '-').lower()})=\n### {run.name}\n\n"
            f"{{download}}`Parameters ({run.name}.yaml) </book/executed/params/{run.name}.yaml>`; "
            f"key `{record.get('key', '?')[:16]}`.\n\n"
            f"```bash\nmkdir -p {remake}\n{env} .venv/bin/papermill notebooks/{run.notebook} "
            f"{remake}/{run.name}.ipynb -k ctrip --cwd {remake} -f book/executed/params/{run.name}.yaml\n```\n\n"
            f"Outputs:\n\n{listed}\n"
        )  # fmt: skip
    return "\n".join(out) + "\n"


def show_parameters_that_ran(book: nbformat.NotebookNode) -> None:
    """In the book's copy, the parameters cell shows the values the run used: papermill's
    injected cell replaces the notebook's defaults (which name another profile's paths)."""
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in book.cells]
    injected = next((i for i, t in enumerate(tags) if "injected-parameters" in t), None)
    defaults = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    if injected is None or defaults is None:
        return
    body = book.cells[injected].source.replace("# Parameters\n", "", 1)
    book.cells[defaults].source = "# Parameters of this run (set by the pipeline)\n" + body
    del book.cells[injected]


def _copy_executed(plan: list[Run], results_dir: Path, executed: Path) -> dict[str, str]:
    """Executed notebooks into `executed/NN_<run>.ipynb`, their title naming the run."""
    order = {}
    for i, run in enumerate(r for r in plan if r.notebook):
        source = run_folder(results_dir, run.name) / f"{run.name}.ipynb"
        if not source.exists():
            raise PipelineError(
                f"run {run.name}: executed notebook {source} is missing; run the pipeline first"
            )
        book = nbformat.read(source, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "markdown" and cell.source.startswith("# "):
                title, _, rest = cell.source.partition("\n")
                if run.name not in title:
                    cell.source = f"{title} (run `{run.name}`)\n{rest}"
                break
        show_parameters_that_ran(book)
        name = f"{i + 1:02d}_{run.name}.ipynb"
        _write(executed / name, nbformat.writes(book))
        order[run.name] = f"executed/{name[:-6]}"
    return order


def write_includes(
    plan: list[Run], results_dir: Path, settings: dict, includes: Path, order: dict[str, str]
) -> None:
    """The generated parts of the chapters, from the result tables and provenance."""
    includes.mkdir(parents=True, exist_ok=True)
    # the methods this cohort ran: one needing a modality it lacks (CMR_sup) is left out
    methods, left_out = methods_for_cohort(settings)
    labels = {m: spec.get("label", m) for m, spec in methods.items()}
    # the paper's rows (Table 2 and what reads it); a control (paper: false) joins the comparisons
    paper_labels = {m: labels[m] for m in paper_rows(methods)}
    left_out_note = left_out_markdown(left_out)
    table = pd.read_csv(results_dir / "table2.csv")
    attention = settings["figures"]["attention"]
    tables = includes.parent / "tables"  # every table of the results page, downloadable
    for name in ("table2.csv", "table2_cp18.csv", "yardstick.csv", "yardstick_differences.csv",
                 "loa_differences.csv", "paired_differences.csv", "control_differences.csv",
                 "pearson_vs_fraction.csv", "oracle.csv", "coverage.csv", "screening.csv"):  # fmt: skip
        if (results_dir / name).exists():
            _write(tables / name, (results_dir / name).read_bytes())
    _write(includes / "alignment.md", alignment_markdown(plan, results_dir, labels))
    share_file, share = _heart_share_file(results_dir), None
    if share_file is not None:
        share = pd.read_csv(share_file)
        _write(tables / "heart_share.csv", share_file.read_bytes())
    _write(includes / "heart_share.md", heart_share_markdown(share, labels, attention["target_cp"]))
    _write(includes / "left_out.md", left_out_note)  # the landing page, under its key result
    coverage_methods = settings["screening"]["coverage_methods"]
    for part, text in screening_markdown(results_dir, paper_labels, coverage_methods).items():
        _write(
            includes / f"screening_{part}.md",
            (left_out_note + "\n" if part == "coverage" else "") + text,
        )
    _write(includes / "profile.md", profile_markdown(settings) + "\n" + cohort_markdown(settings))
    _write(includes / "provenance.md", provenance_markdown(plan, results_dir, order))
    _write(includes / "reproduce.md",
           reproduce_markdown(plan, results_dir, settings, includes.parent / "params"))  # fmt: skip
    seeds = ", ".join(str(s) for s in settings["sweep"]["seeds"])
    _write(
        includes / "facts.md",
        f"profile `{settings['profile']}`, {int(table['n_test'].iloc[0])} test subjects, seeds {seeds}\n",
    )


BOOK_FILES = ".ctrip-book.json"  # in a book's output folder: the files the build wrote there


def book_output_folder(root: Path, settings: dict, output: Path | None) -> Path | None:
    """Where a book is built: `output`, `root/_build/<profile>` for a profile other than the
    default, or None for the default book (built in place in `root`)."""
    if output is None and settings["profile"] != "default":
        output = Path(root) / "_build" / settings["profile"]
    return None if output is None else Path(output).resolve()


def _made_files(folder: Path) -> set[str]:
    """The files a book build wrote in `folder` (its record), empty when there is none."""
    try:
        record = json.loads((folder / BOOK_FILES).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    files = record.get("files") if isinstance(record, dict) else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _own_files(folder: Path) -> list[str]:
    """The files in a book's output folder outside jupyter-book's own `_build/` (which it
    manages), relative to the folder."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if not p.is_dir() and p.relative_to(folder).parts[0] != "_build" and p.name != BOOK_FILES
    )


def check_book_output(folder: Path, unrecorded_ok: bool = False) -> None:
    """Refuse to build into `folder` when it holds files a book build did not write (the build
    replaces `source/book`): a missing or empty folder, or one a build made, is fine.
    `unrecorded_ok` accepts a folder without a record (the default `_build/<profile>`, made
    before builds kept one)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; choose another --book-output")
    if not (folder / BOOK_FILES).exists() and (unrecorded_ok or not any(folder.iterdir())):
        return
    foreign = sorted(set(_own_files(folder)) - _made_files(folder))
    if not (folder / BOOK_FILES).exists():
        foreign = foreign or sorted(p.name for p in folder.iterdir())
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ValueError(
            f"{folder}: holds files the book build did not make ({shown}); refusing to replace "
            "its sources: choose another --book-output, or move those files away"
        )


def record_book_files(folder: Path) -> None:
    """Record every file now in `folder` (outside `_build/`) as written by the book build."""
    record = {"made_by": "ctrip run --book", "files": _own_files(folder)}
    _write(folder / BOOK_FILES, json.dumps(record, indent=1))


def book_sources(root: Path, target: Path) -> Path:
    """A copy of the book's sources (config, table of contents, chapters, vendored MathJax) in
    `target`, without executed notebooks: the source of a book that is not the default one."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copyfile(root / name, target / name)
    shutil.rmtree(target / "book", ignore_errors=True)
    shutil.copytree(root / "book", target / "book",
                    ignore=shutil.ignore_patterns("executed", "_build"))  # fmt: skip
    return target


def build_book(
    root: Path, results_dir: Path, plan: list[Run], settings: dict, output: Path | None = None
) -> Path:
    """Assemble the executed notebooks and generated includes and run `jupyter-book build -W`.

    The default profile's book is built in place (`root/book/executed/`, `root/_build/html`).
    Any other profile, or an explicit `output`, gets its own copy of the sources in
    `<output>/source` (default output: `root/_build/<profile>`) and its html in
    `<output>/_build/html`, so a smoke or paper build never replaces the default book.
    """
    root, results_dir = Path(root).resolve(), Path(results_dir).resolve()
    try:
        require_mathjax(root / "book" / "_vendor")
    except MathJaxError as err:
        raise PipelineError(str(err)) from None
    default_folder = output is None
    output = book_output_folder(root, settings, output)
    if output is not None:
        check_book_output(output, unrecorded_ok=default_folder)
    try:
        source = root if output is None else book_sources(root, output / "source")
        executed = source / "book" / "executed"
        (executed / "figures").mkdir(parents=True, exist_ok=True)
        order = _copy_executed(plan, results_dir, executed)
        figures = sorted((results_dir / "figures").glob("*.png"))
        for png in figures:
            _write(executed / "figures" / png.name, png.read_bytes())
        write_includes(plan, results_dir, settings, executed / "_includes", order)
        _write(
            executed / "_includes" / "settings.json", json.dumps(settings, indent=2, default=str)
        )
        keep = {executed / f"{order[r]}.ipynb".removeprefix("executed/") for r in order}
        keep |= {executed / "figures" / p.name for p in figures}
        for stale in [*executed.glob("*.ipynb"), *(executed / "figures").glob("*.png")]:
            if stale not in keep:  # from an earlier plan (e.g. a method since removed)
                stale.unlink()
    finally:  # what was written, even by a build that failed, is the build's to replace
        if output is not None and output.exists():
            record_book_files(output)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source), "-W",
           "--keep-going"]  # fmt: skip
    if output is not None:
        cmd += ["--path-output", str(Path(output).resolve())]
    print(f"building the book: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"jupyter-book build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return (Path(output).resolve() if output else root) / "_build" / "html"
