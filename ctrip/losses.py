"""Contrastive losses of Stage II. (The Stage I reconstruction losses belong to the tokenizers in
`ctrip.models.tokenizers`: a modality is a tokenizer plus its reconstruction target.)"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of `a` and row i of `b` are the positive pair.

    Embeddings are L2-normalized, so logits are cosine similarities / temperature;
    loss = (CE(a -> b) + CE(b -> a)) / 2, averaged over the batch.
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pair_name(pair: Sequence[str]) -> str:
    return f"{pair[0]}-{pair[1]}"


class LocalizerCentricInfoNCE(nn.Module):
    """Sum of symmetric InfoNCE losses between the anchor (localizer) and each auxiliary
    modality, each pair with its own learnable temperature.

    The temperature is stored as its logarithm and clamped to `bounds` when used. An
    ECG-tabular term (which C-TRIP leaves out on purpose, so that non-imaging modalities cannot
    align through shortcuts) is added only when `ecg_tabular=True`, for the ablation.
    `temperatures` holds the initial temperature of each pair by name ("localizer-ecg"), e.g.
    the training configuration's `stage2.temperatures`.
    """

    def __init__(
        self,
        temperatures: dict[str, float],
        auxiliary: Sequence[str] = ("ecg", "tabular"),
        anchor: str = "localizer",
        ecg_tabular: bool = False,
        learnable: bool = True,
        bounds: tuple[float, float] = (0.01, 1.0),
    ) -> None:
        super().__init__()
        if not auxiliary:
            raise ValueError("the localizer-centric loss needs at least one auxiliary modality")
        if anchor in auxiliary:
            raise ValueError(f"the anchor {anchor!r} cannot also be an auxiliary modality")
        self.anchor = anchor
        self.pairs: list[tuple[str, str]] = [(anchor, m) for m in auxiliary]
        if ecg_tabular:
            if not {"ecg", "tabular"} <= set(auxiliary):
                raise ValueError("the ECG-tabular term needs both ecg and tabular as auxiliaries")
            self.pairs.append(("ecg", "tabular"))
        init = dict(temperatures)
        missing = [pair_name(p) for p in self.pairs if pair_name(p) not in init]
        if missing:
            raise ValueError(f"no initial temperature for the pairs {missing}")
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.log_temperature = nn.ParameterDict(
            {
                pair_name(p): nn.Parameter(
                    torch.tensor(math.log(init[pair_name(p)])), requires_grad=learnable
                )
                for p in self.pairs
            }
        )

    @property
    def modalities(self) -> list[str]:
        return list(dict.fromkeys(m for p in self.pairs for m in p))

    def temperature(self, pair: str) -> torch.Tensor:
        return self.log_temperature[pair].exp().clamp(*self.bounds)

    def forward(
        self, embeddings: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, {"localizer-ecg": loss, ...}) from projected embeddings by modality."""
        parts = {
            pair_name((a, b)): info_nce(
                embeddings[a], embeddings[b], self.temperature(pair_name((a, b)))
            )
            for a, b in self.pairs
        }
        return torch.stack(list(parts.values())).sum(), parts
