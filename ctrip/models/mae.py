"""One masked autoencoder for every modality (He et al. 2022, facebookresearch/mae), with the
modality supplied by a tokenizer: random masking, an encoder that sees only the visible tokens,
a light decoder that fills in mask tokens (optionally with ALiBi's distance biases, so that it
starts out reading the visible tokens near each hidden one), and the tokenizer's reconstruction
loss.

The same `Encoder` runs unmasked in Stage II and III; its CLS token is the modality feature.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctrip.models.tokenizers import build_tokenizer
from ctrip.models.transformer import Block, alibi_bias, init_weights


def random_masking(
    tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of tokens per sample.

    Exactly round(N * mask_ratio) of the N tokens are masked (at least one is kept).
    Returns the visible tokens (B, K, D), the mask (B, N; 1 = masked) and the permutation
    that restores the original order (B, N).
    """
    B, N, D = tokens.shape
    n_keep = max(1, N - int(round(N * mask_ratio)))
    device = generator.device if generator is not None else tokens.device
    noise = torch.rand(B, N, generator=generator, device=device)
    ids_shuffle = noise.to(tokens.device).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    visible = tokens.gather(1, ids_keep[..., None].expand(-1, -1, D))
    mask = torch.ones(B, N, device=tokens.device)
    mask[:, :n_keep] = 0
    return visible, mask.gather(1, ids_restore), ids_restore


class Encoder(nn.Module):
    """Tokenizer, CLS token, pre-norm transformer blocks and a final LayerNorm.

    `pool` picks the modality feature: "cls" (the CLS token) or "mean" (the average of the
    other tokens, MAE's global pooling); it holds no weights, so it may be changed at will.
    """

    def __init__(
        self,
        tokenizer: nn.Module,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.pool = pool
        self.tokenizer = tokenizer
        self.dim = tokenizer.dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.dim))
        self.blocks = nn.ModuleList(Block(self.dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(self.dim, eps=1e-6)
        self.depth, self.heads, self.mlp_ratio = depth, heads, mlp_ratio
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_weights)
        self.norm.apply(init_weights)

    @property
    def num_tokens(self) -> int:
        return self.tokenizer.num_tokens

    def _with_cls(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def forward(
        self, x: Any, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """All tokens, unmasked: (B, 1 + N, D) with the CLS token first. With
        return_attention, also the attention weights of every block, each (B, heads, 1+N, 1+N)."""
        h = self._with_cls(self.tokenizer(x))
        attentions = []
        for block in self.blocks:
            if return_attention:
                h, attn = block(h, return_attention=True)
                attentions.append(attn)
            else:
                h = block(h)
        h = self.norm(h)
        return (h, attentions) if return_attention else h

    def features(self, x: Any) -> torch.Tensor:
        """The modality feature (B, D) used by Stage II and III: CLS token or token mean."""
        h = self.forward(x)
        return h[:, 0] if self.pool == "cls" else h[:, 1:].mean(dim=1)

    def forward_masked(
        self,
        x: Any,
        mask_ratio: float,
        generator: torch.Generator | None = None,
        tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the visible tokens: (latent (B, 1 + K, D), mask (B, N), ids_restore).
        `tokens`: `tokenizer(x)` if already computed."""
        tokens = self.tokenizer(x) if tokens is None else tokens
        visible, mask, ids_restore = random_masking(tokens, mask_ratio, generator)
        h = self._with_cls(visible)
        for block in self.blocks:
            h = block(h)
        return self.norm(h), mask, ids_restore

    def spec(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer.spec(),
            "depth": self.depth,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "pool": self.pool,
        }


class MaskedAutoencoder(nn.Module):
    """Encoder + light decoder. `forward(x)` returns (loss, prediction, mask)."""

    def __init__(
        self,
        encoder: Encoder,
        decoder_dim: int,
        decoder_depth: int,
        decoder_heads: int,
        mask_ratio: float = 0.75,
        mlp_ratio: float = 4.0,
        decoder_alibi: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.decoder_dim, self.decoder_depth, self.decoder_heads = (
            decoder_dim,
            decoder_depth,
            decoder_heads,
        )
        tokenizer = encoder.tokenizer
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        fixed = tokenizer.position(decoder_dim)
        if fixed is None:  # features without an order (tabular): learn where each one sits
            self.decoder_pos = nn.Parameter(
                torch.randn(1, tokenizer.num_tokens, decoder_dim) * 0.02
            )
        else:
            self.register_buffer("decoder_pos", fixed[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = tokenizer.prediction_head(decoder_dim)
        self.decoder_alibi = bool(decoder_alibi)
        if self.decoder_alibi:  # the CLS token (first) is at no distance from any token
            distances = F.pad(tokenizer.token_distances(), (1, 0, 1, 0))
            self.register_buffer(
                "decoder_bias", alibi_bias(distances, decoder_heads), persistent=False
            )
        else:
            self.decoder_bias = None
        nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.head):
            module.apply(init_weights)

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> Any:
        h = self.decoder_embed(latent)
        B, N = ids_restore.shape
        masked = self.mask_token.expand(B, N + 1 - h.shape[1], -1)
        tokens = torch.cat([h[:, 1:], masked], dim=1)
        tokens = tokens.gather(1, ids_restore[..., None].expand(-1, -1, h.shape[2]))
        h = torch.cat([h[:, :1], tokens + self.decoder_pos], dim=1)
        for block in self.decoder_blocks:
            h = block(h, bias=self.decoder_bias)
        return self.head(self.decoder_norm(h)[:, 1:])

    def forward(
        self, x: Any, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        tokenizer = self.encoder.tokenizer
        tokens, target = tokenizer.tokens_and_target(x)
        latent, mask, ids_restore = self.encoder.forward_masked(x, ratio, generator, tokens)
        pred = self.decode(latent, ids_restore)
        return tokenizer.reconstruction_loss(pred, x, mask, target), pred, mask

    def spec(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.spec(),
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "decoder_heads": self.decoder_heads,
            "mask_ratio": self.mask_ratio,
            "decoder_alibi": self.decoder_alibi,
        }


def build_encoder(spec: dict[str, Any]) -> Encoder:
    """Rebuild an encoder from `Encoder.spec()` (as stored in checkpoints)."""
    return Encoder(
        build_tokenizer(spec["tokenizer"]),
        spec["depth"],
        spec["heads"],
        spec.get("mlp_ratio", 4.0),
        spec.get("pool", "cls"),
    )


def build_mae(spec: dict[str, Any]) -> MaskedAutoencoder:
    """Rebuild a masked autoencoder from `MaskedAutoencoder.spec()`."""
    return MaskedAutoencoder(
        build_encoder(spec["encoder"]),
        spec["decoder_dim"],
        spec["decoder_depth"],
        spec["decoder_heads"],
        spec.get("mask_ratio", 0.75),
        spec["encoder"].get("mlp_ratio", 4.0),
        spec.get("decoder_alibi", False),
    )
