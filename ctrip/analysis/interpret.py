"""Where an image model looks: attention rollout over the ViT blocks and a captum attribution.

Attention rollout (Abnar and Zuidema 2020) multiplies the per-block attention matrices, each
averaged over heads and mixed with the identity for the residual path, and reads the CLS row:
how much each patch feeds the CLS feature. A patch token holds all three localizer slices, so
rollout gives one map per image; the per-slice view comes from Integrated Gradients (captum) of
a predicted phenotype with respect to each input channel, i.e. each slice.

Where the simulator knows the heart (a simulated cohort's `localizer_heart` mask), the share of
the absolute attribution that falls on the heart's pixels turns "the model looks at the heart"
into a number, set against what reference maps score: a uniform map (the share of the image
the heart covers) and the image itself (Integrated Gradients scale with the input's brightness).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ctrip.analysis import tables
from ctrip.analysis.metrics import bootstrap_ci, paired_bootstrap
from ctrip.progress import console_tqdm_auto


def attention_rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """CLS-to-patch rollout (B, N) from per-block attentions, each (B, heads, 1+N, 1+N).

    Each block's head-averaged attention A becomes `residual * I + (1 - residual) * A`, rows
    renormalized; the product over blocks is read at the CLS row, patches only, scaled to sum 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs the attention of at least one block")
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype, device=attentions[0].device).expand(B, T, T)
    rollout = eye
    for attn in attentions:
        mixed = residual * eye + (1 - residual) * attn.mean(dim=1)
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    cls_to_patches = rollout[:, 0, 1:]
    return cls_to_patches / cls_to_patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def rollout_maps(encoder: nn.Module, images: torch.Tensor, residual: float = 0.5) -> np.ndarray:
    """Rollout of an image encoder upsampled to the image: (B, H, W), each map in [0, 1].

    `encoder(x, return_attention=True)` must return (tokens, attentions) and its tokenizer a
    patch `grid` (rows, cols), as ctrip.models' image encoders do.
    """
    encoder.eval()
    _, attentions = encoder(images, return_attention=True)
    rows, cols = encoder.tokenizer.grid
    maps = attention_rollout(attentions, residual).reshape(-1, 1, rows, cols)
    maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _unit_range(maps.cpu().numpy())


def integrated_gradients(
    predict: nn.Module, images: torch.Tensor, target: int, n_steps: int = 32, batch: int = 256
) -> np.ndarray:
    """Integrated Gradients (captum) of output `target` w.r.t. the images: (B, C, H, W), signed.

    `predict` maps (B, C, H, W) images to (B, outputs); the baseline is a black image. At most
    `batch` interpolated images go through the model at once.
    """
    console_tqdm_auto()  # captum imports tqdm.auto
    from captum.attr import IntegratedGradients

    predict.eval()
    images = images.detach().clone().requires_grad_(True)
    attributions = IntegratedGradients(predict).attribute(
        images,
        baselines=torch.zeros_like(images),
        target=target,
        n_steps=n_steps,
        internal_batch_size=batch,
    )
    return attributions.detach().cpu().numpy()


def slice_attributions(
    predict: nn.Module, images: torch.Tensor, target: int, n_steps: int = 32
) -> np.ndarray:
    """Integrated Gradients of output `target` w.r.t. each input slice: (B, C, H, W) in [0, 1].

    The magnitude of `integrated_gradients` is smoothed with a 3x3 mean and scaled per subject
    over all slices together, so slices stay comparable with each other.
    """
    attributions = torch.from_numpy(integrated_gradients(predict, images, target, n_steps))
    magnitude = F.avg_pool2d(attributions.abs(), 3, stride=1, padding=1)
    flat = magnitude.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    scaled = (flat - low[:, None]) / (high - low).clamp_min(1e-12)[:, None]
    return scaled.reshape(magnitude.shape).numpy()


def heart_share(attributions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per subject, the share of the absolute attribution on the heart's pixels: (B,) in [0, 1].

    attributions: (B, ...) raw (signed or not) attributions, e.g. from `integrated_gradients`;
    masks: bool of the same shape, True on the heart. A uniform map scores the heart's share of
    the pixels, `masks.mean()` per subject.
    """
    attributions, masks = np.asarray(attributions), np.asarray(masks)
    if attributions.shape != masks.shape:
        raise ValueError(
            f"attributions {attributions.shape} and heart masks {masks.shape} differ in shape"
        )
    if masks.dtype != np.bool_:
        raise ValueError(f"heart masks must be bool, got {masks.dtype}")
    magnitude = np.abs(attributions.astype(np.float64)).reshape(len(attributions), -1)
    total = magnitude.sum(axis=1)
    if not (np.isfinite(total).all() and (total > 0).all()):
        row = int(np.flatnonzero(~(np.isfinite(total) & (total > 0)))[0])
        raise ValueError(f"subject {row}: its attribution map is all zero or not finite")
    return (magnitude * masks.reshape(len(masks), -1)).sum(axis=1) / total


def heart_share_table(
    shares: Mapping[str, np.ndarray],
    masks: np.ndarray,
    baseline: str,
    images: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean heart share per method with a percentile bootstrap CI over subjects, beside
    reference maps, and paired differences.

    shares: {method: (B,) per-subject shares of the same subjects}; masks: their (B, ...) heart
    masks; images: the same subjects' images, for the brightness reference. References: a
    uniform map (the heart's share of the pixels) and, with `images`, a map equal to the image
    ("brightness"): Integrated Gradients from a black baseline scale with the input, so a model
    whose gradient is the same everywhere scores the share of the image's brightness on the
    heart, not the uniform map's. Rows (`kind`): "method", "reference", "difference" (each
    method minus `baseline`) and "above reference" (each method minus each reference); the
    differences resample the same subjects for both sides.
    """
    if baseline not in shares:
        raise ValueError(f"baseline {baseline!r} is not one of the methods {sorted(shares)}")
    masks = np.asarray(masks)
    references = {"uniform": masks.reshape(len(masks), -1).mean(axis=1)}
    if images is not None:
        references["brightness"] = heart_share(images, masks)
    mean = lambda x, _: float(np.mean(x))  # noqa: E731
    rows = []

    def row(kind: str, name: str, values: np.ndarray) -> None:
        boot = bootstrap_ci(values, values, mean, n_boot, seed, confidence)
        rows.append({"kind": kind, "map": name, "n": boot["n"], "share": boot["estimate"],
                     "ci_low": boot["ci_low"], "ci_high": boot["ci_high"]})  # fmt: skip

    def difference(kind: str, name: str, a: np.ndarray, b: np.ndarray) -> None:
        boot = paired_bootstrap(a, b, a, mean, n_boot, seed, confidence)
        rows.append({"kind": kind, "map": name, "n": boot["n"], "share": boot["difference"],
                     "ci_low": boot["ci_low"], "ci_high": boot["ci_high"]})  # fmt: skip

    for name, values in shares.items():
        if np.shape(values) != (len(masks),):
            raise ValueError(
                f"{name}: {np.shape(values)} shares for {len(masks)} subjects' heart masks"
            )
        row("method", name, np.asarray(values, dtype=np.float64))
    for name, values in references.items():
        row("reference", name, values)
    for name, values in shares.items():
        if name != baseline:
            difference("difference", f"{name} - {baseline}", values, shares[baseline])
    for reference, against in references.items():
        for name, values in shares.items():
            difference("above reference", f"{name} - {reference}", values, against)
    return pd.DataFrame(rows)


def _unit_range(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    return ((flat - low) / np.maximum(high - low, 1e-12)).reshape(maps.shape)


def heart_share_markdown(share: pd.DataFrame | None, labels: dict[str, str], target_cp: str) -> str:
    """Fig. 2A in numbers: the share of attribution on the heart per method with its CI, what
    reference maps score, and the paired differences read as their CIs say; or why it is
    missing."""
    if share is None or share.empty:
        return ("*The share of attribution on the heart cannot be measured: this cohort has no "
                "heart masks (only a simulated cohort knows where the heart is).*\n")  # fmt: skip
    references = {"uniform": "a uniform map", "brightness": "the image itself"}
    name = lambda m: labels.get(m, references.get(m, m))  # noqa: E731
    ci = lambda r: tables.ci(r["share"], r["ci_low"], r["ci_high"], 2)  # noqa: E731

    def reading(r: pd.Series) -> str:
        if r["ci_low"] <= 0 <= r["ci_high"]:
            return "no difference"
        return "more on the heart" if r["ci_low"] > 0 else "less on the heart"

    kind = lambda k: share[share["kind"] == k].iterrows()  # noqa: E731
    methods = "; ".join(f"{name(r['map'])} {ci(r)}" for _, r in kind("method"))
    refs = "; ".join(f"{name(r['map'])} {tables.fmt(r['share'], 2)}" for _, r in kind("reference"))
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
