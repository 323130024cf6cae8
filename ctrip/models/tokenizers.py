"""Tokenizers: how each modality becomes a sequence of tokens, and what its autoencoder
reconstructs. A modality is a tokenizer plus a reconstruction target; the masked autoencoder
(`ctrip.models.mae`) is the same for all of them.

Every tokenizer has `num_tokens`, `forward(x) -> (B, num_tokens, dim)` (position included),
`position(dim)` (the fixed encoding the decoder adds, or None for a learned one),
`token_distances()` (between tokens, for ALiBi's biases; an error where tokens have no order),
`prediction_head(decoder_dim)`, `reconstruction_loss(pred, x, mask, target=None)` and
`tokens_and_target(x)` (the tokens and the target, for one pass in the autoencoder), and `spec()`, the
plain dict that rebuilds it with `build_tokenizer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctrip.models.position import sincos_1d, sincos_2d


class PatchTokenizer(nn.Module):
    """Shared part of image and ECG tokenizers: non-overlapping patches, a linear embedding,
    a fixed sin-cos position, and MSE on the masked patches.

    Inputs are standardized with `input_mean` and `input_std` (training-split statistics,
    fixed when the model is created) so that patch content and position encoding have
    comparable scales; reconstructions are in these standardized units (`denormalize` undoes it).
    """

    def __init__(
        self, patch_numel: int, dim: int, input_mean: float = 0.0, input_std: float = 1.0
    ) -> None:
        super().__init__()
        if not input_std > 0:
            raise ValueError(f"input_std must be positive, got {input_std}")
        self.dim = dim
        self.patch_numel = patch_numel
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        self.embed = nn.Linear(patch_numel, dim)
        nn.init.xavier_uniform_(self.embed.weight)
        nn.init.zeros_(self.embed.bias)
        self.register_buffer("pos", self.position(dim)[None], persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_std + self.input_mean

    @property
    def num_tokens(self) -> int:
        return self.pos.shape[1]

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def position(self, dim: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.patchify(x)) + self.pos

    def tokens_and_target(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward(x)` and the reconstruction target `patchify(x)`, patchified once (an ECG's
        resampling and high-pass are then done once per step instead of twice)."""
        patches = self.patchify(x)
        return self.embed(patches) + self.pos, patches

    def prediction_head(self, decoder_dim: int) -> nn.Module:
        return nn.Linear(decoder_dim, self.patch_numel)

    def reconstruction_loss(
        self,
        pred: torch.Tensor,
        x: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error over the masked patches only (mask: 1 = masked). Pixels are not
        normalized per patch (norm_pix_loss off), so reconstructions stay in image units.
        `target`: `patchify(x)` if already computed."""
        target = self.patchify(x) if target is None else target
        per_token = ((pred - target) ** 2).mean(dim=-1)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, C, H, W) map: per sub-patch, so
    that a token never depends on other tokens or on the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class HierarchicalPatchStem(nn.Sequential):
    """hMLP stem (Touvron et al., ECCV 2022, "Three things everyone should know about Vision
    Transformers"): a linear map of 4x4 sub-patches, then of 2x2 groups of them, up to the
    patch size, with a norm and GELU between. Every convolution has stride = kernel, so each
    token sees only its own patch: the stem is as patch-local as a linear embedding and masking
    before or after it is the same (MAE-compatible). Norm: per-position LayerNorm in place of the
    paper's BatchNorm, so that tokens do not depend on the batch."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        factors, rest = [4], patch_size // 4
        while rest > 1 and rest % 2 == 0:
            factors.append(2)
            rest //= 2
        if patch_size % 4 or rest != 1:
            raise ValueError(
                f"the hMLP stem needs a patch size of 4 times a power of 2, got {patch_size}"
            )
        # Touvron et al. use dim / 4 hidden channels; at small widths that would squeeze each
        # 4x4 sub-patch (16 * in_chans values) through fewer channels than it has values, so the
        # stem keeps at least that many (at 64-d: test LVM r 0.77 -> 0.81, bench_localizer_recipe).
        hidden = max(dim // 4, 16 * in_chans)
        widths = [in_chans] + [hidden] * (len(factors) - 1) + [dim]
        layers: list[nn.Module] = []
        for k, factor in enumerate(factors):
            layers.append(nn.Conv2d(widths[k], widths[k + 1], factor, stride=factor))
            if k < len(factors) - 1:
                layers += [ChannelNorm(widths[k + 1], eps=1e-6), nn.GELU()]
        super().__init__(*layers)


STEMS = ("linear", "hmlp")


class ImageTokenizer(PatchTokenizer):
    """Square patches of a (B, C, H, W) image; the 3 localizer slices (or CMR frames) are the
    channels. Position: 2D sin-cos over the (row, column) patch grid.

    stem: "linear" (one linear map of the flattened patch, ViT/MAE) or "hmlp" (the patch-local
    `HierarchicalPatchStem`, which helps ViTs learn from little data).
    """

    def __init__(
        self,
        image_size: tuple[int, int] | list[int],
        patch_size: int,
        dim: int,
        in_chans: int = 3,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        stem: str = "linear",
    ) -> None:
        H, W = image_size
        if H % patch_size or W % patch_size:
            raise ValueError(f"image size {H}x{W} is not divisible by the patch size {patch_size}")
        if stem not in STEMS:
            raise ValueError(f"unknown patch stem {stem!r}; expected one of {STEMS}")
        self.image_size = (int(H), int(W))
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid = (H // patch_size, W // patch_size)
        self.stem = stem
        super().__init__(patch_size * patch_size * in_chans, dim, input_mean, input_std)
        if stem == "hmlp":
            del self.embed
            self.hmlp = HierarchicalPatchStem(in_chans, dim, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem == "linear":
            return super().forward(x)
        self._check_shape(x)
        # channels-last memory: oneDNN's strided convolutions and the per-position norm run
        # faster on it (one thread, 64 localizers: the stem's forward and backward 10 vs 15 ms,
        # a default Stage III step 72 vs 75 ms)
        x = self.normalize(x).contiguous(memory_format=torch.channels_last)
        return self.hmlp(x).flatten(2).transpose(1, 2) + self.pos

    def tokens_and_target(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stem == "linear":
            return super().tokens_and_target(x)
        return self(x), self.patchify(x)

    def _check_shape(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != (self.in_chans, *self.image_size):
            raise ValueError(
                f"expected images of shape {(self.in_chans, *self.image_size)}, got {tuple(x.shape[1:])}"
            )

    def position(self, dim: int) -> torch.Tensor:
        return sincos_2d(*self.grid, dim)

    def token_distances(self) -> torch.Tensor:
        """(N, N) Euclidean distances between the patches' grid positions, in patches."""
        rows, cols = torch.meshgrid(torch.arange(self.grid[0]), torch.arange(self.grid[1]),
                                    indexing="ij")  # fmt: skip
        where = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
        return torch.cdist(where, where)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, h*w, p*p*C) standardized, MAE's ordering."""
        self._check_shape(x)
        B, C = x.shape[:2]
        (h, w), p = self.grid, self.patch_size
        x = self.normalize(x).reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(B, h * w, p * p * C)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, h*w, p*p*C) -> (B, C, H, W)."""
        B = patches.shape[0]
        (h, w), p, C = self.grid, self.patch_size, self.in_chans
        x = patches.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, C, h * p, w * p)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "image_size": list(self.image_size),
            "patch_size": self.patch_size,
            "dim": self.dim,
            "in_chans": self.in_chans,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "stem": self.stem,
        }


def average_resample(x: torch.Tensor, samples: int) -> torch.Tensor:
    """The last axis averaged down to `samples`: the windows of `F.adaptive_avg_pool1d`, computed
    as one matrix product per block where they repeat (length / gcd(length, samples) input
    samples give samples / gcd outputs: 2500 -> 1000 is 5 -> 2). One thread, 64 ECGs of
    12 x 2500: 2.8 vs 4.9 ms (`benchmarks/bench_train.py`). Falls back to the pooling when the
    block is long (lengths with a small common divisor)."""
    length = x.shape[-1]
    if samples == length:
        return x
    common = math.gcd(length, samples)
    block, out = length // common, samples // common
    if block > 64:
        return F.adaptive_avg_pool1d(x, samples)
    weights = torch.zeros(block, out, dtype=x.dtype, device=x.device)
    for i in range(out):  # adaptive pooling's window i: [floor(i L / S), ceil((i + 1) L / S))
        start, stop = (i * block) // out, -((-(i + 1) * block) // out)
        weights[start:stop, i] = 1.0 / (stop - start)
    blocks = x.reshape(*x.shape[:-1], common, block) @ weights
    return blocks.reshape(*x.shape[:-1], samples)


def highpass(x: torch.Tensor, fs: float, cutoff_hz: float, order: int = 2) -> torch.Tensor:
    """Zero-phase Butterworth high-pass of the last axis, in the frequency domain.

    The gain 1 / (1 + (fc / f)^(2 order)) is that of a forward-backward (filtfilt) Butterworth
    filter of `order`, as in `ctrip.data.ecg.remove_baseline_drift` (same result away from the
    edges). Odd reflection of half the record on each side keeps the circular FFT from joining
    the two ends. Torch, so it runs on the device and stays differentiable for attributions.
    """
    T = x.shape[-1]
    pad = T // 2
    left = 2 * x[..., :1] - x[..., 1 : pad + 1].flip(-1)
    right = 2 * x[..., -1:] - x[..., -pad - 1 : -1].flip(-1)
    padded = torch.cat([left, x, right], dim=-1)
    n = padded.shape[-1]
    f = torch.fft.rfftfreq(n, d=1.0 / fs, device=x.device)
    gain = torch.where(f > 0, 1.0 / (1.0 + (cutoff_hz / f.clamp(min=1e-12)) ** (2 * order)), 0.0)
    return torch.fft.irfft(torch.fft.rfft(padded) * gain, n)[..., pad : pad + T]


class ECGTokenizer(PatchTokenizer):
    """ECG (B, leads, T) in patches of `patch_size` samples.

    per_lead=True: one token per (lead, time window), as in the peer ECG code; position is a
    2D sin-cos over (lead, time). per_lead=False: one token holds all leads of a time window
    (cheaper: leads times fewer tokens); position is 1D over time. `resample_to` first
    averages the signal down to that many samples (a reduced sampling rate for small
    profiles; adaptive average pooling is the anti-aliasing filter); the reconstruction
    target is then the resampled signal. `highpass_hz` (with `sampling_rate_hz`) removes
    baseline drift, as the paper's preprocessing does (0.67 Hz, see `highpass`).
    """

    def __init__(
        self,
        length: int,
        patch_size: int,
        dim: int,
        leads: int = 12,
        per_lead: bool = True,
        resample_to: int | None = None,
        sampling_rate_hz: float | None = None,
        highpass_hz: float | None = None,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        if highpass_hz and not sampling_rate_hz:
            raise ValueError("the ECG high-pass needs the sampling rate")
        self.sampling_rate_hz = None if sampling_rate_hz is None else float(sampling_rate_hz)
        self.highpass_hz = None if not highpass_hz else float(highpass_hz)
        samples = int(resample_to or length)
        if samples > length:
            raise ValueError(f"cannot resample an ECG of {length} samples up to {samples}")
        if samples % patch_size:
            raise ValueError(
                f"an ECG of {samples} samples does not split into patches of {patch_size}; "
                "choose a patch size that divides it"
            )
        self.length, self.leads, self.per_lead = int(length), int(leads), bool(per_lead)
        self.patch_size, self.samples = int(patch_size), samples
        self.windows = samples // patch_size
        super().__init__(patch_size if per_lead else patch_size * leads, dim, input_mean, input_std)

    def position(self, dim: int) -> torch.Tensor:
        if self.per_lead:
            return sincos_2d(self.leads, self.windows, dim)
        return sincos_1d(self.windows, dim)

    def token_distances(self) -> torch.Tensor:
        """(N, N) distances between the tokens' time windows, in windows (tokens of one window
        in different leads are at 0)."""
        window = torch.arange(self.num_tokens) % self.windows
        return (window[:, None] - window[None, :]).abs().float()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (self.leads, self.length):
            raise ValueError(
                f"expected ECGs of shape {(self.leads, self.length)}, got {tuple(x.shape[1:])}"
            )
        # Resample first: both steps are linear and nearly commute, and the FFT is then shorter.
        x = average_resample(x, self.samples)
        if self.highpass_hz:
            x = highpass(x, self.sampling_rate_hz * self.samples / self.length, self.highpass_hz)
        return self.normalize(x)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, T) -> (B, L*n, P) lead-major when per_lead, else (B, n, L*P)."""
        x = self.prepare(x)
        B, L = x.shape[:2]
        x = x.reshape(B, L, self.windows, self.patch_size)
        if self.per_lead:
            return x.reshape(B, L * self.windows, self.patch_size)
        return x.permute(0, 2, 1, 3).reshape(B, self.windows, L * self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches back to (B, L, samples)."""
        B, L, n, P = patches.shape[0], self.leads, self.windows, self.patch_size
        if self.per_lead:
            return patches.reshape(B, L, n * P)
        return patches.reshape(B, n, L, P).permute(0, 2, 1, 3).reshape(B, L, n * P)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "ecg",
            "length": self.length,
            "patch_size": self.patch_size,
            "dim": self.dim,
            "leads": self.leads,
            "per_lead": self.per_lead,
            "resample_to": self.samples if self.samples != self.length else None,
            "sampling_rate_hz": self.sampling_rate_hz,
            "highpass_hz": self.highpass_hz,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
        }


class TabularHead(nn.Module):
    """Decoder tokens -> one value per numerical feature and logits per categorical feature."""

    def __init__(self, decoder_dim: int, n_numerical: int, cardinalities: list[int]) -> None:
        super().__init__()
        self.n_numerical = n_numerical
        self.num_weight = nn.Parameter(torch.randn(n_numerical, decoder_dim) * decoder_dim**-0.5)
        self.num_bias = nn.Parameter(torch.zeros(n_numerical))
        self.cat = nn.ModuleList(nn.Linear(decoder_dim, c) for c in cardinalities)

    def forward(self, tokens: torch.Tensor) -> dict[str, Any]:
        n = self.n_numerical
        num = torch.einsum("bfd,fd->bf", tokens[:, :n], self.num_weight) + self.num_bias
        cat = [head(tokens[:, n + j]) for j, head in enumerate(self.cat)]
        return {"num": num, "cat": cat}


class TabularTokenizer(nn.Module):
    """One token per feature: each numerical feature its own linear embedding (value * w_f + b_f),
    each categorical feature its own embedding table; a missing value becomes a learned missing
    token. A learned per-feature embedding tells tokens apart (the features have no order).

    Input: the dataset's dict with "tab_num" (B, Fn) z-scored, "tab_num_missing" (B, Fn),
    "tab_cat" (B, Fc) level codes, "tab_cat_missing" (B, Fc).
    """

    def __init__(self, n_numerical: int, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        if n_numerical + len(cardinalities) == 0:
            raise ValueError("a tabular tokenizer needs at least one feature")
        if any(c < 1 for c in cardinalities):
            raise ValueError(f"every categorical feature needs a level, got {cardinalities}")
        self.dim, self.n_numerical, self.cardinalities = dim, n_numerical, list(cardinalities)
        self.num_weight = nn.Parameter(torch.randn(n_numerical, dim) * 0.02)
        self.num_bias = nn.Parameter(torch.zeros(n_numerical, dim))
        self.cat_embed = nn.Embedding(max(sum(cardinalities), 1), dim)
        nn.init.normal_(self.cat_embed.weight, std=0.02)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("cat_offsets", offsets[: len(cardinalities)], persistent=False)
        self.missing_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.feature_embed = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)

    @property
    def num_tokens(self) -> int:
        return self.n_numerical + len(self.cardinalities)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        num, cat = x["tab_num"], x["tab_cat"]
        if num.shape[1] != self.n_numerical or cat.shape[1] != len(self.cardinalities):
            raise ValueError(
                f"expected {self.n_numerical} numerical and {len(self.cardinalities)} categorical "
                f"features, got {num.shape[1]} and {cat.shape[1]}"
            )
        tokens = torch.cat(
            [
                num[..., None] * self.num_weight + self.num_bias,
                self.cat_embed(cat + self.cat_offsets),
            ],
            dim=1,
        )
        missing = torch.cat([x["tab_num_missing"], x["tab_cat_missing"]], dim=1)[..., None]
        return torch.where(missing, self.missing_token, tokens) + self.feature_embed

    def position(self, dim: int) -> None:
        return None

    def token_distances(self) -> torch.Tensor:
        raise ValueError("tabular features have no order: there is no distance between tokens")

    def prediction_head(self, decoder_dim: int) -> nn.Module:
        return TabularHead(decoder_dim, self.n_numerical, self.cardinalities)

    def tokens_and_target(
        self, x: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(x), x

    def reconstruction_loss(
        self,
        pred: dict[str, Any],
        x: dict[str, torch.Tensor],
        mask: torch.Tensor,
        target: Any = None,
    ) -> torch.Tensor:
        """MSE over the numerical features plus mean cross-entropy over the categorical ones,
        on the whole sequence (masked and visible, as in the tabular MAE of the paper). Missing
        values have no target and are left out; `mask` is accepted for a uniform interface."""
        loss = pred["num"].new_zeros(())
        observed = ~x["tab_num_missing"]
        if self.n_numerical and observed.any():
            loss = loss + ((pred["num"] - x["tab_num"]) ** 2)[observed].mean()
        ce = []
        for j, logits in enumerate(pred["cat"]):
            seen = ~x["tab_cat_missing"][:, j]
            if seen.any():
                ce.append(F.cross_entropy(logits[seen], x["tab_cat"][seen, j]))
        if ce:
            loss = loss + torch.stack(ce).mean()
        return loss

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "tabular",
            "n_numerical": self.n_numerical,
            "cardinalities": list(self.cardinalities),
            "dim": self.dim,
        }


def build_tokenizer(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a tokenizer from its `spec()`."""
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    kinds = {"image": ImageTokenizer, "ecg": ECGTokenizer, "tabular": TabularTokenizer}
    if spec.get("kind") not in kinds:
        raise ValueError(
            f"unknown tokenizer kind {spec.get('kind')!r}; expected one of {list(kinds)}"
        )
    return kinds[spec["kind"]](**kwargs)
