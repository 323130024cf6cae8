"""Evidence that each stage worked: loss curves, masked-input reconstructions (Stage I) and
predicted-vs-reference plots (Stage III), drawn from a run's checkpoint and predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ctrip.data.schema import CP_UNITS, MODALITY_LABELS


def plot_history(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Every logged loss per epoch (training solid, validation dashed), one panel."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    epochs = list(history.get("epoch", []))
    for key in sorted(k for k in history if "loss" in k):
        values = list(history[key])
        x = epochs[: len(values)] if len(epochs) >= len(values) else range(len(values))
        ax.plot(x, values, ls="--" if key.startswith("val") else "-", marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _masked_patches(tokenizer, mask: torch.Tensor) -> torch.Tensor:
    """A per-pixel (or per-sample) map of the masked tokens (1 = hidden from the encoder)."""
    numel = tokenizer.patchify(torch.zeros(1, *tokenizer_input_shape(tokenizer))).shape[-1]
    return tokenizer.unpatchify(mask[..., None].expand(-1, -1, numel).float())


def tokenizer_input_shape(tokenizer) -> tuple[int, ...]:
    if hasattr(tokenizer, "image_size"):
        return (tokenizer.in_chans, *tokenizer.image_size)
    return (tokenizer.leads, tokenizer.length)


@torch.no_grad()
def reconstruction_figure(mae, x: torch.Tensor, seed: int = 0, lead: int = 1) -> Figure:
    """Masked input, reconstruction and original of a few validation subjects.

    Images: the middle channel (slice or frame), hidden patches grey. ECGs: one lead (II by
    default) after the tokenizer's preparation, original and reconstruction, hidden windows
    shaded. Reconstructed visible patches are replaced by the input, as in the MAE paper."""
    tokenizer = mae.encoder.tokenizer
    generator = torch.Generator().manual_seed(seed)
    _, pred, mask = mae(x, generator=generator)
    target = tokenizer.unpatchify(tokenizer.patchify(x))
    recon = tokenizer.unpatchify(pred)
    hidden = _masked_patches(tokenizer, mask) > 0.5
    recon = torch.where(hidden, recon, target)
    n = x.shape[0]
    if target.ndim == 4:  # images
        mid = target.shape[1] // 2
        fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n), squeeze=False)
        lo, hi = float(target[:, mid].min()), float(target[:, mid].max())
        for i in range(n):
            masked = target[i, mid].clone()
            masked[hidden[i, mid]] = float("nan")
            for ax, img, name in zip(axes[i], (masked, recon[i, mid], target[i, mid]),
                                     ("masked input (75% hidden)", "reconstruction", "original")):  # fmt: skip
                cmap = plt.get_cmap("gray").with_extremes(bad="#b0b0b0")
                ax.imshow(img.numpy(), cmap=cmap, vmin=lo, vmax=hi)
                ax.set_axis_off()
                if i == 0:
                    ax.set_title(name, fontsize=9)
    else:  # signals
        fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), squeeze=False)
        for i in range(n):
            ax = axes[i, 0]
            t = np.arange(target.shape[-1])
            ax.fill_between(t, 0, 1, where=hidden[i, lead].numpy(), color="0.85",
                            transform=ax.get_xaxis_transform(), label="hidden")  # fmt: skip
            ax.plot(t, target[i, lead].numpy(), lw=0.8, color="k", label="original")
            ax.plot(t, recon[i, lead].numpy(), lw=0.8, color="tab:red", label="reconstruction")
            ax.set_yticks([])
            if i == 0:
                ax.legend(fontsize=7, loc="upper right", ncol=3)
        axes[-1, 0].set_xlabel("sample (standardized lead II)")
    fig.tight_layout()
    return fig


@torch.no_grad()
def mean_patch_by_position(tokenizer, batches) -> torch.Tensor:
    """(1, N, D): the mean patch at each token position over the inputs of `batches` (an
    iterable of input tensors, e.g. the training split), in the tokenizer's standardized units.

    The simplest reconstruction that looks at no visible patch: a heart-centred localizer's
    average anatomy, an ECG's average at each time (about 0 where beats fall anywhere)."""
    total, n = None, 0
    for x in batches:
        patches = tokenizer.patchify(x).double()
        total = patches.sum(dim=0, keepdim=True) + (0 if total is None else total)
        n += len(patches)
    if not n:
        raise ValueError("no input to average: the batches are empty")
    return (total / n).float()


@torch.no_grad()
def reconstruction_skill(
    mae,
    x: torch.Tensor,
    seed: int = 0,
    batch_size: int = 128,
    position_mean: torch.Tensor | None = None,
) -> dict[str, float]:
    """The MAE's loss on the hidden patches of `x` beside two reconstructions that use no
    visible patch, on the same masks: every hidden value as the signal's training mean (0 in
    the tokenizer's standardized units; `mean_loss`) and, if given, each hidden patch as
    `position_mean` (`mean_patch_by_position` of the training inputs; `position_mean_loss`).

    skill = 1 - loss / mean_loss; position_skill = 1 - loss / position_mean_loss (NaN without
    `position_mean`). 0: no better than that reference, 1: exact."""
    mae.eval()
    tokenizer, generator = mae.encoder.tokenizer, torch.Generator().manual_seed(seed)
    loss = mean_loss = position_loss = hidden = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        batch_loss, pred, mask = mae(xb, generator=generator)
        n = float(mask.sum())
        loss += float(batch_loss) * n
        mean_loss += float(tokenizer.reconstruction_loss(torch.zeros_like(pred), xb, mask)) * n
        if position_mean is not None:
            if tuple(position_mean.shape[1:]) != tuple(pred.shape[1:]):
                raise ValueError(
                    f"position_mean has patches of shape {tuple(position_mean.shape[1:])}, the "
                    f"autoencoder's are {tuple(pred.shape[1:])}"
                )
            reference = position_mean.expand_as(pred)
            position_loss += float(tokenizer.reconstruction_loss(reference, xb, mask)) * n
        hidden += n
    if hidden == 0:
        raise ValueError("no hidden patch to score: the mask ratio is 0 or x is empty")
    loss, mean_loss = loss / hidden, mean_loss / hidden
    position_loss = position_loss / hidden if position_mean is not None else float("nan")

    def skill_over(reference: float) -> float:  # undefined where the reference is exact
        return 1.0 - loss / reference if reference > 0 else float("nan")

    return {"loss": loss, "mean_loss": mean_loss, "skill": skill_over(mean_loss),
            "position_mean_loss": position_loss, "position_skill": skill_over(position_loss),
            "n": int(len(x))}  # fmt: skip


def describe_reconstruction_skill(skill: Mapping[str, float], modality: str) -> str:
    """Sentences on `reconstruction_skill`: how much of the hidden signal the MAE recovers,
    and how much of that the mean patch at each position already gives."""
    modality = MODALITY_LABELS.get(modality, modality)
    text = (f"On {skill['n']} validation subjects, the {modality} autoencoder's error on the hidden "
            f"patches is {skill['loss']:.3f} against {skill['mean_loss']:.3f} for predicting the "
            f"signal's training mean (skill {skill['skill']:.2f}; 0: no better than the mean)")  # fmt: skip
    if skill["skill"] < 0.05:
        text += (": it reconstructs the hidden patches hardly better than the mean, so its "
                 "encoder learns little in Stage I and Stage II trains it")  # fmt: skip
    text += "."
    position = skill.get("position_mean_loss", float("nan"))
    if not np.isfinite(position):
        return text
    text += (f" The training subjects' mean patch at each hidden position, which looks at no "
             f"visible patch, scores {position:.3f} (the autoencoder's skill over it: "
             f"{skill['position_skill']:.2f})")  # fmt: skip
    gain = skill["mean_loss"] - skill["loss"]
    if skill["position_skill"] < 0:
        text += f": the autoencoder does worse than this average {modality}"
    elif skill["skill"] >= 0.05 and gain > 0:
        share = min(max((skill["mean_loss"] - position) / gain, 0.0), 1.0)
        text += (f": {100 * share:.0f}% of the autoencoder's gain over the overall mean is the "
                 f"average {modality} at each position, and "
                 f"{100 * (1 - share):.0f}% what it infers from the visible patches")  # fmt: skip
    return text + "."


def describe_stage1_learning(
    modality: str,
    skill: Mapping[str, float] | None = None,
    tabular_summary: pd.DataFrame | None = None,
) -> str:
    """What a modality's Stage I autoencoder learned, in one generated paragraph: for a
    localizer or an ECG from `reconstruction_skill` (nothing beyond the mean, the average at
    each position only, or what it infers from the visible patches, then the numbers of
    `describe_reconstruction_skill`); for the tabular record from
    `tabular_reconstruction_summary` (the numerical features whose hidden entries correlate
    with their reconstruction, the 95% CI of r above 0, and the categorical features whose
    accuracy lies above always guessing the most frequent level, the 95% Wilson CI above it)."""
    if modality == "tabular":
        if tabular_summary is None:
            raise ValueError("the tabular reading needs tabular_reconstruction_summary's table")
        return _describe_tabular_learning(tabular_summary)
    if skill is None:
        raise ValueError(f"the {modality} reading needs reconstruction_skill's numbers")
    position = skill.get("position_skill", float("nan"))
    name = MODALITY_LABELS.get(modality, modality)
    head = f"What the {name} autoencoder learned in Stage I: "
    if skill["skill"] < 0.05:
        head += "nothing it can use on hidden patches (no better than the signal's mean). "
    elif np.isfinite(position) and position < 0.05:
        head += (f"the average {name} at each position, not what the visible patches say "
                 f"of a subject (skill over that average {position:.2f}). ")  # fmt: skip
    else:
        head += (f"to fill in hidden patches from the visible ones, with {100 * skill['skill']:.0f}%"
                 f" less squared error than the signal's mean. ")  # fmt: skip
    return head + describe_reconstruction_skill(skill, modality)


def _describe_tabular_learning(summary: pd.DataFrame) -> str:
    from scipy.stats import binomtest

    numerical = summary[summary["kind"] == "numerical"].dropna(subset=["r"])
    learned = []
    for _, row in numerical.sort_values("r", ascending=False).iterrows():
        n, r = int(row["n_hidden"]), float(row["r"])
        low = np.tanh(np.arctanh(min(r, 0.999999)) - 1.959964 / np.sqrt(n - 3)) if n > 3 else -1
        if low > 0:
            learned.append(f"{row['feature']} r {r:.2f}")
    categorical = summary[summary["kind"] == "categorical"]
    above = []
    for _, row in categorical.iterrows():
        n = int(row["n_hidden"])
        low = binomtest(int(round(row["accuracy"] * n)), n).proportion_ci(method="wilson").low
        if low > row["majority_share"]:
            above.append(
                f"{row['feature']} {row['accuracy']:.2f} against {row['majority_share']:.2f}"
            )
    text = (f"What the tabular autoencoder learned in Stage I: from the visible entries of a "
            f"record it reconstructs the hidden entries of {len(learned)} of its "
            f"{len(numerical)} numerical features with a correlation whose 95% CI lies above 0")  # fmt: skip
    text += f" ({', '.join(learned)})" if learned else ""
    text += (f"; and the hidden entries of {len(above)} of its {len(categorical)} categorical "
             f"features more often than always guessing the most frequent level, the 95% CI of "
             f"its accuracy above that level's share")  # fmt: skip
    text += f" ({', '.join(above)})" if above else ""
    return text + ". The other features it reconstructs no better than their mean or mode."


def plot_predicted_vs_reference(
    predictions: pd.DataFrame, cps: Sequence[str], split: str = "test"
) -> Figure:
    """Prediction against reference per CP on one split, with the identity line."""
    part = predictions[predictions["split"] == split]
    fig, axes = plt.subplots(1, len(cps), figsize=(3.2 * len(cps), 3.2), squeeze=False)
    for ax, cp in zip(axes[0], cps):
        ref, pred = part[f"{cp}_ref"].to_numpy(float), part[f"{cp}_pred"].to_numpy(float)
        ax.scatter(ref, pred, s=6, alpha=0.5)
        lo, hi = np.nanmin([ref.min(), pred.min()]), np.nanmax([ref.max(), pred.max()])
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        r = np.corrcoef(ref, pred)[0, 1] if len(ref) > 2 else np.nan
        ax.set_title(f"{cp} [{CP_UNITS[cp]}], r = {r:.2f}", fontsize=9)
        ax.set_xlabel("reference")
        ax.set_ylabel("prediction")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@torch.no_grad()
def tabular_reconstruction(
    mae, x: Mapping[str, torch.Tensor], stats, seed: int = 0
) -> pd.DataFrame:
    """Every observed entry of a tabular batch beside its reconstruction, one row per entry.

    x: the dataset's tabular tensors ("tab_num", "tab_num_missing", "tab_cat",
    "tab_cat_missing") of B subjects; stats: the run's `NormalizationStats`, to give numbers in
    their units and levels by name. Columns: subject (row in the batch), feature, kind
    ("numerical" | "categorical"), hidden (masked from the encoder), true, reconstructed, and
    for numerical features both in training-split SD units (true_z, reconstructed_z).
    Missing values have nothing to compare and are left out.
    """
    generator = torch.Generator().manual_seed(seed)
    _, pred, mask = mae(dict(x), generator=generator)
    hidden = mask.bool().numpy()
    n_num = len(stats.numerical)
    rows = []
    mean, std = np.asarray(stats.tab_mean), np.asarray(stats.tab_std)
    num_true, num_pred = x["tab_num"].numpy(), pred["num"].numpy()
    for j, feature in enumerate(stats.numerical):
        for i in np.flatnonzero(~x["tab_num_missing"][:, j].numpy()):
            rows.append({"subject": int(i), "feature": feature, "kind": "numerical",
                         "hidden": bool(hidden[i, j]),
                         "true": float(num_true[i, j] * std[j] + mean[j]),
                         "reconstructed": float(num_pred[i, j] * std[j] + mean[j]),
                         "true_z": float(num_true[i, j]), "reconstructed_z": float(num_pred[i, j])})  # fmt: skip
    for j, (feature, levels) in enumerate(stats.categorical.items()):
        guess = pred["cat"][j].argmax(dim=1).numpy()
        for i in np.flatnonzero(~x["tab_cat_missing"][:, j].numpy()):
            rows.append({"subject": int(i), "feature": feature, "kind": "categorical",
                         "hidden": bool(hidden[i, n_num + j]),
                         "true": levels[int(x["tab_cat"][i, j])], "reconstructed": levels[guess[i]],
                         "true_z": np.nan, "reconstructed_z": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def tabular_reconstruction_summary(entries: pd.DataFrame) -> pd.DataFrame:
    """Per feature, how well the hidden entries were reconstructed, beside a trivial guess.

    Numerical: Pearson r and the RMSE in training-split SD units (predicting the training
    mean scores an RMSE of about 1). Categorical: accuracy, beside the share of the most
    frequent level among those entries (what always guessing that level scores).
    """
    rows = []
    for (feature, kind), part in entries[entries["hidden"]].groupby(
        ["feature", "kind"], sort=False
    ):
        row = {"feature": feature, "kind": kind, "n_hidden": len(part)}
        if kind == "numerical":
            true, rec = part["true_z"].to_numpy(float), part["reconstructed_z"].to_numpy(float)
            varied = len(part) > 2 and true.std() > 0 and rec.std() > 0
            row.update(r=float(np.corrcoef(true, rec)[0, 1]) if varied else np.nan,
                       rmse_sd=float(np.sqrt(np.mean((rec - true) ** 2))))  # fmt: skip
        else:
            row.update(accuracy=float((part["true"] == part["reconstructed"]).mean()),
                       majority_share=float(part["true"].value_counts(normalize=True).iloc[0]))  # fmt: skip
        rows.append(row)
    columns = ["feature", "kind", "n_hidden", "r", "rmse_sd", "accuracy", "majority_share"]
    return pd.DataFrame(rows).reindex(columns=columns)


def tabular_reconstruction_figure(entries: pd.DataFrame, columns: int = 5) -> Figure:
    """Reconstructed against true value of the hidden entries, one panel per numerical feature
    (in its units, identity line), and the accuracy per categorical feature beside always
    guessing its most frequent level."""
    hidden = entries[entries["hidden"]]
    numerical = list(dict.fromkeys(hidden.loc[hidden["kind"] == "numerical", "feature"]))
    summary = tabular_reconstruction_summary(entries).set_index("feature")
    categorical = summary[summary["kind"] == "categorical"]
    panels = len(numerical) + (1 if len(categorical) else 0)
    if panels == 0:
        raise ValueError("no hidden, observed tabular entries to show")
    n_rows = -(-panels // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(2.5 * columns, 2.4 * n_rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, feature in zip(flat, numerical):
        part = hidden[hidden["feature"] == feature]
        true, rec = part["true"].to_numpy(float), part["reconstructed"].to_numpy(float)
        ax.scatter(true, rec, s=5, alpha=0.5)
        lo, hi = min(true.min(), rec.min()), max(true.max(), rec.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.7)
        ax.set_title(f"{feature}, r = {summary.loc[feature, 'r']:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    if len(categorical):
        ax = flat[len(numerical)]
        y = np.arange(len(categorical))
        ax.barh(y + 0.2, categorical["accuracy"], height=0.4, label="reconstruction")
        ax.barh(y - 0.2, categorical["majority_share"], height=0.4, color="0.7",
                label="most frequent level")  # fmt: skip
        ax.set_yticks(y, categorical.index, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title("categorical: accuracy", fontsize=8)
        ax.set_xlabel("share of hidden entries right", fontsize=7)
        ax.legend(fontsize=6, loc="lower right")
    for ax in flat[panels:]:
        ax.set_axis_off()
    fig.supxlabel("true value (hidden entries)", fontsize=9)
    fig.supylabel("reconstructed", fontsize=9)
    fig.tight_layout()
    return fig
