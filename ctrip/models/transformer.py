"""A pre-norm transformer block on `scaled_dot_product_attention`, with a path that also returns
the attention weights (for attention maps and rollout), and ALiBi's distance biases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`bias`: added to the attention logits, broadcast to (B, heads, N, N) (e.g. ALiBi)."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if return_attention:
            # The explicit product is what the fused kernel computes, kept for the maps.
            logits = q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5
            attn = (logits if bias is None else logits + bias).softmax(dim=-1)
            out = attn @ v
        else:
            attn, out = None, F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(B, N, C)), attn


class Block(nn.Module):
    """x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self, x: torch.Tensor, return_attention: bool = False, bias: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out, attn = self.attn(self.norm1(x), return_attention, bias)
        x = x + out
        x = x + self.mlp(self.norm2(x))
        return (x, attn) if return_attention else x


def init_weights(module: nn.Module) -> None:
    """MAE initialization: xavier-uniform linears with zero bias, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def alibi_bias(distances: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention biases of ALiBi (Press et al., ICLR 2022, "Train Short, Test Long"): head h
    subtracts slope_h * distance from the logit of every pair of tokens, slopes 1, 1/2, 1/4, ...,
    so each head starts out looking near (the first) or far (the last). `distances`: (N, N)
    between tokens in their own units (e.g. patches along time). Returns (1, heads, N, N)."""
    slopes = 2.0 ** -torch.arange(heads, dtype=distances.dtype, device=distances.device)
    return -(slopes[:, None, None] * distances[None])[None]
