"""Fixed sine-cosine position encodings (Vaswani et al. 2017; 2D variant as in MAE)."""

from __future__ import annotations

import torch


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """(n, dim) encoding of positions 0..n-1: first half sines, second half cosines."""
    if dim % 2:
        raise ValueError(f"a 1D sin-cos encoding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows * cols, dim) encoding of a row-major grid: half the channels encode the row, half
    the column. Used for image patches (y, x) and per-lead ECG patches (lead, time)."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos encoding needs dim divisible by 4, got {dim}")
    row = sincos_1d(rows, dim // 2)[:, None, :].expand(rows, cols, dim // 2)
    col = sincos_1d(cols, dim // 2)[None, :, :].expand(rows, cols, dim // 2)
    return torch.cat([row, col], dim=-1).reshape(rows * cols, dim)
