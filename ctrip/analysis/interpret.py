"""Where an image model looks: attention rollout over the ViT blocks and a captum attribution.

Attention rollout (Abnar and Zuidema 2020) multiplies the per-block attention matrices, each
averaged over heads and mixed with the identity for the residual path, and reads the CLS row:
how much each patch feeds the CLS feature. A patch token holds all three localizer slices, so
rollout gives one map per image; the per-slice view comes from Integrated Gradients (captum) of
a predicted phenotype with respect to each input channel, i.e. each slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


def slice_attributions(
    predict: nn.Module, images: torch.Tensor, target: int, n_steps: int = 32
) -> np.ndarray:
    """Integrated Gradients of output `target` w.r.t. each input slice: (B, C, H, W) in [0, 1].

    `predict` maps (B, C, H, W) images to (B, outputs); the baseline is a black image. The
    magnitude is smoothed with a 3x3 mean and scaled per subject over all slices together, so
    slices stay comparable with each other.
    """
    console_tqdm_auto()  # captum imports tqdm.auto
    from captum.attr import IntegratedGradients

    predict.eval()
    images = images.detach().clone().requires_grad_(True)
    attributions = IntegratedGradients(predict).attribute(
        images, baselines=torch.zeros_like(images), target=target, n_steps=n_steps
    )
    magnitude = F.avg_pool2d(attributions.abs().detach(), 3, stride=1, padding=1)
    flat = magnitude.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    scaled = (flat - low[:, None]) / (high - low).clamp_min(1e-12)[:, None]
    return scaled.reshape(magnitude.shape).cpu().numpy()


def _unit_range(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    return ((flat - low) / np.maximum(high - low, 1e-12)).reshape(maps.shape)
