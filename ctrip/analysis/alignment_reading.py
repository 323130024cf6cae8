"""Table 5 and the readings of the alignment, rendered by the notebook that measures them
(`notebooks/umaps.ipynb`) and glued into the results chapter.

Table 5 reads each Stage II run's `retrieval.csv` (recall@k of a subject's own partner, with its
chance level) and `participation.csv` (each side's participation ratio); the readings state what
the numbers say, with the thresholds named in their docstrings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ctrip.analysis import tables
from ctrip.analysis.screening import wilson_interval


def alignment_markdown(
    runs: Mapping[str, tuple[pd.DataFrame, pd.DataFrame, Mapping[str, float]]],
) -> str:
    """Table 5 and its reading: per Stage II run (name -> its retrieval table, its participation
    table indexed by modality, and its learned temperatures by pair), recall@k against chance
    (recall@10 with its Wilson 95% CI), median rank, temperature and participation ratios."""
    rows, folds, fold_cis, ratios, dims = [], [], [], [], []
    for name, (retrieval, participation, temperatures) in runs.items():
        folds += (retrieval["recall@10"] / retrieval["chance@10"]).tolist()
        ratios += participation["participation_ratio"].tolist()
        dims += participation["dim"].tolist()
        for _, r in retrieval.iterrows():
            temp = next((v for k, v in temperatures.items() if r["gallery"] in k), np.nan)
            low, high = wilson_interval(int(round(r["recall@10"] * r["n"])), int(r["n"]))
            fold_cis.append((low / r["chance@10"], high / r["chance@10"]))
            rows.append([name.removeprefix("stage2_"), f"{r['query']} → {r['gallery']}",
                         str(int(r["n"])),
                         *(f"{r[f'recall@{k}']:.3f} ({r[f'chance@{k}']:.3f})" for k in (1, 5)),
                         f"{r['recall@10']:.3f} [{low:.3f}, {high:.3f}] ({r['chance@10']:.3f})",
                         f"{r['median_rank']:.0f}", tables.fmt(temp, 3),
                         tables.fmt(participation.loc[r["query"], "participation_ratio"], 1),
                         tables.fmt(participation.loc[r["gallery"], "participation_ratio"], 1)])  # fmt: skip
    if not rows:
        return "*No Stage II run recorded alignment measures.*\n"
    caption = ("Table 5. Alignment after Stage II on the test split: recall@k of retrieving a "
               "subject's own ECG or record from its localizer embedding (chance in round "
               "brackets; recall@10 with its Wilson 95% CI), "
               "median rank, learned temperature, and each side's participation ratio.")  # fmt: skip
    header = ["Stage II run", "query → gallery", "n", "recall@1", "recall@5", "recall@10",
              "median rank", "temperature", "PR query", "PR gallery"]  # fmt: skip
    text = tables.numbers_table(caption, "table-5", header, rows) + "\n"
    return text + alignment_reading(folds, ratios, int(max(dims)), fold_cis)


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
    before = ", ".join(f"{m} {tables.fmt(p.loc[m, 'before'], 1)}" for m in p.index)
    after = ", ".join(f"{m} {tables.fmt(p.loc[m, 'after'], 1)}" for m in p.index)
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
        pairs = [f"{tables.fmt(r['participation_ratio'], 1)}{' effective dimensions' if k == 0 else ''}"
                 f" with what reaches {names.get(r['b'], r['b'])}"
                 for k, (_, r) in enumerate(shared.iterrows())]  # fmt: skip
        text += (" What the aligned pairs share at all sets the scale: in the simulator's own "
                 "generating quantities, before any noise of the data, what reaches the "
                 f"{shared.iloc[0]['a']} shares {' and '.join(pairs)} (participation ratio of "
                 "the squared held-out canonical correlations). An "
                 "embedding that carried everything a pair shares would use about that many; the "
                 f"{label + ' ' if label else ''}projections use {tables.fmt(p['after'].min(), 1)} to "
                 f"{tables.fmt(p['after'].max(), 1)}.")  # fmt: skip
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
