"""Heads on top of an encoder's CLS feature."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear-GELU-Linear into the shared contrastive space (256-d in the paper)."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden_dim: int | None = None) -> None:
        hidden = hidden_dim or in_dim
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden


class RegressionHead(nn.Sequential):
    """BatchNorm -> 512 -> GELU -> dropout -> 256 -> GELU -> 18 z-scored CPs (public code)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 18,
        hidden: tuple[int, int] | list[int] = (512, 256),
        dropout: float = 0.3,
    ) -> None:
        h1, h2 = hidden
        super().__init__(
            nn.BatchNorm1d(in_dim),
            nn.Linear(in_dim, h1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            nn.GELU(),
            nn.Linear(h2, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)
