"""Figures of the screening section: ROC curves per method for one flag, and the empirical
coverage of the conformal intervals against the nominal level per phenotype."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _draw_roc(ax: plt.Axes, results: Mapping[str, Mapping], title: str) -> None:
    if not results:
        raise ValueError("no ROC results to plot")
    for label, res in results.items():
        line = ax.plot(np.asarray(res["fpr"]), np.asarray(res["tpr"]), lw=1.4,
                       label=f"{label}: {res['auroc']:.2f} "
                       f"({res['auroc_ci_low']:.2f}-{res['auroc_ci_high']:.2f})")  # fmt: skip
        if "sensitivity" in res and np.isfinite(res["sensitivity"]):
            ax.plot(1 - res["specificity"], res["sensitivity"], "o", ms=5,
                    color=line[0].get_color())  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right", title="AUROC (95% CI); dot: at threshold",
              title_fontsize=6.5)  # fmt: skip


def plot_roc_curves(results: Mapping[str, Mapping], title: str = "") -> Figure:
    """One ROC panel with a curve per method. `results` maps a method label to a
    `screening_performance` result (or a `screening_table` row): fpr, tpr, auroc and its
    bootstrap CI (auroc_ci_low, auroc_ci_high), which the legend shows. The marker on each
    curve is the operating point at the published threshold (1 - specificity, sensitivity)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    _draw_roc(ax, results, title)
    fig.tight_layout()
    return fig


def plot_roc_panels(
    panels: Mapping[str, Mapping[str, Mapping]], not_estimable: Mapping[str, str] | None = None
) -> Figure:
    """One ROC panel per flag (`panels` maps a panel title, e.g. the flag's label, to the
    `results` of `plot_roc_curves`), side by side in one figure. A flag in `not_estimable`
    (title -> reason, e.g. no abnormal heart on the test split) gets a panel stating why it
    has no curve, so the figure exists whatever the split supports."""
    not_estimable = {k: v for k, v in (not_estimable or {}).items() if not panels.get(k)}
    titles = [*(k for k in panels if panels[k]), *not_estimable]
    if not titles:
        raise ValueError("no ROC panels to plot")
    fig, axes = plt.subplots(1, len(titles), figsize=(4.6 * len(titles), 4.6), squeeze=False)
    for ax, title in zip(axes[0], titles):
        if title in not_estimable:
            ax.set_axis_off()
            ax.set_title(title, fontsize=10)
            ax.text(0.5, 0.5, "not estimable:\n" + textwrap.fill(not_estimable[title], 40),
                    ha="center", va="center", fontsize=8, transform=ax.transAxes)  # fmt: skip
        else:
            _draw_roc(ax, panels[title], title)
    fig.tight_layout()
    return fig


def plot_coverage(table: pd.DataFrame, tolerance: float = 0.03) -> Figure:
    """Empirical coverage (Wilson 95% CI as bars) per phenotype against the nominal level (line,
    with a band of +- `tolerance`). `table`: `coverage_table` rows (cp, level, coverage,
    ci_low, ci_high), optionally with a "method" column for one series per method."""
    needed = {"cp", "level", "coverage", "ci_low", "ci_high"}
    if not needed <= set(table.columns):
        raise ValueError(f"the coverage table lacks columns {sorted(needed - set(table.columns))}")
    if table["level"].nunique() != 1:
        raise ValueError("plot one nominal level at a time")
    level = float(table["level"].iloc[0])
    methods = list(table["method"].unique()) if "method" in table else [None]
    cps = list(dict.fromkeys(table["cp"]))
    x = np.arange(len(cps))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(cps) * max(1, len(methods) / 2)), 3.6))
    ax.axhspan(level - tolerance, level + tolerance, color="grey", alpha=0.15, lw=0)
    ax.axhline(level, color="grey", lw=1, ls="--", label=f"nominal {level:.0%}")
    for j, method in enumerate(methods):
        part = table if method is None else table[table["method"] == method]
        part = part.set_index("cp").reindex(cps)
        xs = x - 0.4 + width * (j + 0.5)
        yerr = np.vstack([part["coverage"] - part["ci_low"], part["ci_high"] - part["coverage"]])
        ax.errorbar(xs, part["coverage"], yerr=yerr, fmt="o", ms=3, capsize=2, lw=1,
                    label=str(method) if method is not None else "empirical")  # fmt: skip
    ax.set_xticks(x, cps, rotation=60, fontsize=8)
    ax.set_ylabel("empirical coverage (test)")
    ax.set_ylim(max(0.0, min(level - 0.25, float(np.nanmin(table["ci_low"])) - 0.02)), 1.0)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=min(4, len(methods) + 1), loc="lower left")
    fig.tight_layout()
    return fig
