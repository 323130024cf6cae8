"""The book's figures: Pearson r against fine-tuning fraction (Fig. 3), attention maps (Fig. 2A)
and UMAPs of the embeddings before and after alignment (Fig. 2B)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ctrip.data.schema import CP_UNITS
from ctrip.progress import console_tqdm_auto

MODALITY_COLORS = {
    "localizer": "tab:blue",
    "ecg": "tab:red",
    "tabular": "tab:green",
    "cmr": "tab:purple",
}


def plot_fraction_curves(
    curves: pd.DataFrame,
    labels: Mapping[str, str],
    cps: Sequence[str],
    references: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per CP: mean Pearson r over seeds (bars: seed SD) against the data fraction.
    `references` (method -> label) are drawn dashed and grey: the reference baselines, which
    are not from the paper."""
    fig, axes = plt.subplots(1, len(cps), figsize=(3.6 * len(cps), 3.4), sharey=True, squeeze=False)
    markers = "osD^v<>ph*"
    # tab10 without its grey, which the dashed reference lines use
    colors = [plt.get_cmap("tab10")(k) for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    for ax, cp in zip(axes[0], cps):
        for i, (method, label) in enumerate(labels.items()):
            part = curves[(curves["method"] == method) & (curves["cp"] == cp)].sort_values(
                "fraction"
            )
            ax.errorbar(part["fraction"] * 100, part["r"], yerr=part["r_seed_sd"], marker=markers[i % 10],
                        capsize=2, label=label, lw=1.2, ms=4, color=colors[i % len(colors)])  # fmt: skip
        for j, (method, label) in enumerate((references or {}).items()):
            part = curves[(curves["method"] == method) & (curves["cp"] == cp)].sort_values(
                "fraction"
            )
            if not np.isfinite(part["r"]).any():  # the constant mean has no r: nothing to draw
                continue
            ax.plot(part["fraction"] * 100, part["r"], ls="--", lw=1.0, marker=markers[j % 10],
                    ms=3, mfc="none", color=str(0.25 + 0.15 * j),
                    label=f"{label} (reference)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("fine-tuning data [% of train]")
        ax.set_title(f"{cp} [{CP_UNITS[cp]}]")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("Pearson r (test)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(len(names), 8),
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # room below the panels for the legend
    return fig


def plot_attention(
    images: np.ndarray,
    maps: Mapping[str, tuple[np.ndarray, np.ndarray]],
    subject_ids: Sequence[str],
) -> Figure:
    """Rows: subject x method; columns: the 3 slices with the method's per-slice attribution,
    then the attention rollout over the middle slice.

    images: (B, 3, H, W); maps: label -> (rollout (B, H, W), attributions (B, 3, H, W)).
    """
    n_slices = images.shape[1]
    rows = [(b, label) for b in range(len(images)) for label in maps]
    fig, axes = plt.subplots(
        len(rows), n_slices + 1, figsize=(2.2 * (n_slices + 1), 2.2 * len(rows)), squeeze=False
    )
    for r, (b, label) in enumerate(rows):
        rollout, attributions = maps[label]
        for s in range(n_slices):
            ax = axes[r, s]
            ax.imshow(images[b, s], cmap="gray")
            ax.imshow(attributions[b, s], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(f"slice {s + 1}: IG")
        ax = axes[r, n_slices]
        ax.imshow(images[b, n_slices // 2], cmap="gray")
        ax.imshow(rollout[b], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if r == 0:
            ax.set_title("attention rollout")
        axes[r, 0].set_ylabel(f"{subject_ids[b]}\n{label}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_umaps(points: Mapping[str, pd.DataFrame], linked: Sequence[str] = ()) -> Figure:
    """Rows: embeddings (e.g. before / after alignment); columns coloured by modality, LVM, sex.

    Each frame has columns x, y, modality, id, LVM, sex (one row per subject and modality).
    `linked`: subject ids whose first modality's point (the anchor, e.g. the localizer) is
    joined by a line to each of its other modalities' in the modality column, so that a reader
    sees whether a subject's points lie near each other.
    """
    fig, axes = plt.subplots(len(points), 3, figsize=(12, 3.8 * len(points)), squeeze=False)
    lvm_all = pd.concat([df["LVM"] for df in points.values()])
    for row, (title, df) in zip(axes, points.items()):
        for modality, part in df.groupby("modality", sort=False):
            row[0].scatter(part["x"], part["y"], s=5, alpha=0.7, c=MODALITY_COLORS.get(modality, "gray"),
                           label=modality)  # fmt: skip
        for k, subject in enumerate(linked):  # a line from its first modality to each other
            own = df.loc[df["id"] == subject, ["x", "y"]].to_numpy()
            for j, end in enumerate(own[1:]):
                row[0].plot(*np.stack([own[0], end]).T, color="k", lw=0.8, marker="o", ms=3,
                            label="one subject" if k == j == 0 else None)  # fmt: skip
        row[0].legend(fontsize=8, markerscale=2)
        sc = row[1].scatter(df["x"], df["y"], s=5, alpha=0.7, c=df["LVM"], cmap="viridis",
                            vmin=lvm_all.min(), vmax=lvm_all.max())  # fmt: skip
        fig.colorbar(sc, ax=row[1], label="LVM [g]")
        for sex, color in (("female", "tab:orange"), ("male", "tab:cyan")):
            part = df[df["sex"] == sex]
            row[2].scatter(part["x"], part["y"], s=5, alpha=0.7, c=color, label=sex)
        row[2].legend(fontsize=8, markerscale=2)
        for ax, what in zip(row, ("modality", "LVM", "sex")):
            ax.set_title(f"{title}: {what}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def umap_embedding(
    features: np.ndarray,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    seed: int = 0,
) -> np.ndarray:
    """2-D UMAP of (n, d) features (umap imported here: it costs seconds)."""
    console_tqdm_auto()  # umap imports tqdm.auto
    import umap

    # A fixed random_state makes UMAP single-threaded; say so instead of letting it warn.
    reducer = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed, n_jobs=1
    )
    return reducer.fit_transform(np.asarray(features, dtype=np.float32))
