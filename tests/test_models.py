"""Models: position encodings, transformer block, tokenizers, the generic MAE, heads."""

from __future__ import annotations

import math

import pytest
import torch

from ctrip.config import make_config
from ctrip.models import (
    Block,
    ECGTokenizer,
    Encoder,
    ImageTokenizer,
    MaskedAutoencoder,
    ProjectionHead,
    RegressionHead,
    TabularTokenizer,
    build_encoder,
    build_mae,
    highpass,
    random_masking,
    sincos_1d,
    sincos_2d,
)

torch.set_num_threads(1)  # tiny models: one thread is as fast, and robust on a busy machine

# (image size, ECG samples at the cohort rate, ECG rate) of the three profiles' cohorts.
PROFILE_DATA = {"smoke": (32, 1000, 100), "default": (64, 2500, 250), "paper": (224, 5000, 500)}


def tabular_batch(n: int = 6, n_num: int = 5, cards: tuple[int, ...] = (2, 3), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "tab_num": torch.randn(n, n_num, generator=g),
        "tab_num_missing": torch.rand(n, n_num, generator=g) < 0.2,
        "tab_cat": torch.stack([torch.randint(0, c, (n,), generator=g) for c in cards], dim=1),
        "tab_cat_missing": torch.rand(n, len(cards), generator=g) < 0.2,
    }


def test_sincos_encodings():
    pe = sincos_1d(10, 8)
    assert pe.shape == (10, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(pe[3, 0], torch.tensor(math.sin(3.0)))
    pe2 = sincos_2d(3, 5, 16)
    assert pe2.shape == (15, 16)
    # row half depends on the row only, column half on the column only
    assert torch.allclose(pe2[7, :8], sincos_1d(3, 8)[1]) and torch.allclose(
        pe2[7, 8:], sincos_1d(5, 8)[2]
    )
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 6)


def test_attention_path_matches_fused_kernel():
    block = Block(32, 4).eval()
    x = torch.randn(2, 9, 32)
    fused = block(x)
    explicit, attn = block(x, return_attention=True)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert attn.shape == (2, 4, 9, 9)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 9), atol=1e-5)


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_tokenizer_shapes_per_profile(profile):
    cfg = make_config(profile)["models"]
    size, T, fs = PROFILE_DATA[profile]
    img = ImageTokenizer((size, size), cfg["localizer"]["patch_size"], cfg["localizer"]["dim"])
    p = cfg["localizer"]["patch_size"]
    assert img.num_tokens == (size // p) ** 2 and img.patch_numel == 3 * p * p
    ecg_cfg = cfg["ecg"]
    rate = fs if ecg_cfg["rate_hz"] is None else min(ecg_cfg["rate_hz"], fs)
    samples, patch = int(T * rate / fs), int(round(ecg_cfg["patch_seconds"] * rate))
    ecg = ECGTokenizer(T, patch, ecg_cfg["dim"], per_lead=ecg_cfg["per_lead"], resample_to=samples)
    windows = samples // patch
    assert ecg.num_tokens == (12 * windows if ecg_cfg["per_lead"] else windows)
    tab = TabularTokenizer(7, [2, 3, 4], cfg["tabular"]["dim"])
    assert tab.num_tokens == 10
    if profile == "paper":  # shapes only, one sample, no encoder
        assert (img.num_tokens, img.patch_numel, ecg.num_tokens, ecg.patch_numel) == (
            196,
            768,
            600,
            100,
        )
    x = torch.rand(1, 3, size, size)
    assert img(x).shape == (1, img.num_tokens, cfg["localizer"]["dim"])
    assert img.patchify(x).shape == (1, img.num_tokens, img.patch_numel)
    assert ecg(torch.randn(1, 12, T)).shape == (1, ecg.num_tokens, ecg_cfg["dim"])
    assert tab(tabular_batch(1, 7, (2, 3, 4))).shape == (1, 10, cfg["tabular"]["dim"])


def test_highpass_matches_baseline_drift_removal():
    from ctrip.data.ecg import remove_baseline_drift

    fs = 100.0
    t = torch.arange(1000) / fs
    g = torch.Generator().manual_seed(0)
    beat = torch.sin(2 * math.pi * 1.2 * t) ** 15  # spiky 1.2 Hz "beats"
    drift = 0.5 * torch.sin(2 * math.pi * 0.1 * t + 0.3) + 0.2 * t / 10
    x = (beat + drift)[None, None].repeat(2, 12, 1) + 0.01 * torch.randn(2, 12, 1000, generator=g)
    ours = highpass(x, fs, 0.67)
    ref = torch.from_numpy(remove_baseline_drift(x.numpy(), fs))
    inner = slice(100, -100)
    assert (ours - ref)[..., inner].abs().max() < 0.02 * ref.abs().max()
    assert ours[..., inner].mean().abs() < 0.05  # the drift is gone
    tok = ECGTokenizer(1000, 20, 32, per_lead=False, sampling_rate_hz=fs, highpass_hz=0.67)
    assert torch.allclose(tok.unpatchify(tok.patchify(x)), ours, atol=1e-5)


@pytest.mark.parametrize(
    "length, samples",
    [(2500, 1000), (5000, 1000), (5000, 2500), (7, 3), (12, 5), (1000, 1000), (1009, 1000)],
)
def test_average_resample_is_adaptive_average_pooling(length, samples):
    # (1009, 1000): a block of 1009 samples, past the limit, falls back to the pooling itself
    from ctrip.models.tokenizers import average_resample

    x = torch.randn(3, 12, length, generator=torch.Generator().manual_seed(length))
    expected = torch.nn.functional.adaptive_avg_pool1d(x, samples)
    assert torch.allclose(average_resample(x, samples), expected, atol=1e-6)
    x.requires_grad_(True)  # attributions differentiate through it
    average_resample(x, samples).sum().backward()
    assert torch.allclose(x.grad.sum(), torch.tensor(float(3 * 12 * samples)), rtol=1e-4)


def test_patchify_round_trips():
    img = ImageTokenizer((16, 24), 8, 32)
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(img.unpatchify(img.patchify(x)), x)
    # a patch holds one contiguous 8x8 block of every channel
    assert torch.equal(img.patchify(x)[0, 1].reshape(8, 8, 3).permute(2, 0, 1), x[0, :, :8, 8:16])
    y = torch.randn(2, 12, 200)
    for per_lead in (True, False):
        ecg = ECGTokenizer(200, 10, 32, per_lead=per_lead)
        assert torch.equal(ecg.unpatchify(ecg.patchify(y)), y)
    lead_patches = ECGTokenizer(200, 10, 32, per_lead=True).patchify(y)
    assert torch.equal(lead_patches[0, 20], y[0, 1, :10])  # lead-major: token 20 = lead 1, window 0
    down = ECGTokenizer(200, 10, 32, per_lead=False, resample_to=100)
    assert torch.allclose(down.unpatchify(down.patchify(y)), y.reshape(2, 12, 100, 2).mean(-1))
    with pytest.raises(ValueError, match="patches"):
        ECGTokenizer(200, 30, 32)
    with pytest.raises(ValueError, match="divisible"):
        ImageTokenizer((20, 20), 8, 32)


@pytest.mark.parametrize("n", [16, 50, 64, 196, 600])
def test_mask_ratio_is_exact(n):
    tokens = torch.randn(3, n, 4)
    visible, mask, ids_restore = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    assert torch.all(mask.sum(1) == round(n * 0.75))
    assert visible.shape == (3, n - round(n * 0.75), 4)
    # every visible token is an unmasked input token
    for b in range(3):
        kept = tokens[b, mask[b] == 0]
        assert torch.equal(torch.sort(visible[b], 0).values, torch.sort(kept, 0).values)
    assert torch.equal(ids_restore.sort(1).values, torch.arange(n).expand(3, n))


def image_mae(size=16, patch=4, dim=32):
    enc = Encoder(ImageTokenizer((size, size), patch, dim), depth=2, heads=4)
    return MaskedAutoencoder(enc, decoder_dim=16, decoder_depth=1, decoder_heads=2)


def test_encoder_never_receives_a_masked_token():
    mae = image_mae()
    x = torch.rand(2, 3, 16, 16)
    seen = {}
    mae.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.setdefault("h", args[0]))
    latent, mask, _ = mae.encoder.forward_masked(x, 0.75, torch.Generator().manual_seed(1))
    all_tokens = mae.encoder.tokenizer(x)
    assert seen["h"].shape == (2, 1 + 4, 32)  # CLS + 4 of 16 tokens
    for b in range(2):
        visible = all_tokens[b, mask[b] == 0]
        got = seen["h"][b, 1:]
        assert torch.equal(torch.sort(got, 0).values, torch.sort(visible, 0).values)
    # changing only masked pixels leaves the encoder output unchanged
    patches = mae.encoder.tokenizer.patchify(x)
    patches[mask.bool()] = torch.rand_like(patches[mask.bool()])
    x2 = mae.encoder.tokenizer.unpatchify(patches)
    latent2, mask2, _ = mae.encoder.forward_masked(x2, 0.75, torch.Generator().manual_seed(1))
    assert torch.equal(mask, mask2) and torch.allclose(latent, latent2)


def test_mae_loss_counts_masked_patches_only():
    mae = image_mae()
    x = torch.rand(2, 3, 16, 16)
    tok = mae.encoder.tokenizer
    target = tok.patchify(x)
    mask = torch.zeros(2, 16)
    mask[:, :12] = 1
    pred = target.clone()
    pred[:, 12:] += 5.0  # wrong on visible patches only
    assert tok.reconstruction_loss(pred, x, mask) == 0
    pred[:, 0] += 1.0
    assert torch.isclose(tok.reconstruction_loss(pred, x, mask), torch.tensor(1.0 / 12))
    loss, pred, mask = mae(x)
    assert pred.shape == (2, 16, 48) and loss.ndim == 0 and mask.sum() == 24


def test_tabular_tokens_and_loss():
    tok = TabularTokenizer(5, [2, 3], 16)
    batch = tabular_batch()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["tab_num"][batch["tab_num_missing"]] = 99.0  # a missing value's content is ignored
    assert torch.equal(tok(batch), tok(changed))
    assert batch["tab_num_missing"].any()
    mae = MaskedAutoencoder(Encoder(tok, 1, 4), 8, 1, 2)
    loss, pred, mask = mae(batch)
    assert pred["num"].shape == (6, 5) and [c.shape for c in pred["cat"]] == [(6, 2), (6, 3)]
    assert torch.isfinite(loss)
    # whole-sequence loss: a perfect numerical prediction and confident categorical logits -> ~0
    perfect = {
        "num": batch["tab_num"].clone(),
        "cat": [
            100 * torch.nn.functional.one_hot(batch["tab_cat"][:, j], c).float()
            for j, c in enumerate([2, 3])
        ],
    }
    assert tok.reconstruction_loss(perfect, batch, mask) < 1e-6
    perfect["num"][batch["tab_num_missing"]] += 10  # missing entries have no target
    assert tok.reconstruction_loss(perfect, batch, mask) < 1e-6


def test_spec_rebuilds_identical_models():
    mae = image_mae()
    copy = build_mae(mae.spec())
    copy.load_state_dict(mae.state_dict())
    x = torch.rand(2, 3, 16, 16)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(mae(x, generator=g())[0], copy(x, generator=g())[0])
    enc = Encoder(ECGTokenizer(200, 4, 32, per_lead=True, resample_to=100), 1, 4)
    twin = build_encoder(enc.spec())
    twin.load_state_dict(enc.state_dict())
    y = torch.randn(2, 12, 200)
    assert torch.equal(enc.features(y), twin.features(y))
    tokens, attentions = enc(y, return_attention=True)
    assert tokens.shape == (2, 1 + 12 * 25, 32) and attentions[0].shape == (2, 4, 301, 301)


def test_heads():
    assert ProjectionHead(64)(torch.randn(3, 64)).shape == (3, 256)
    head = RegressionHead(64)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["BatchNorm1d", "Linear", "GELU", "Dropout", "Linear", "GELU", "Linear"]
    assert head[1].out_features == 512 and head[4].out_features == 256 and head[3].p == 0.3
    assert head(torch.randn(4, 64)).shape == (4, 18)


def test_pooling():
    enc = Encoder(ImageTokenizer((16, 16), 4, 32), 1, 4).eval()
    x = torch.rand(2, 3, 16, 16)
    tokens = enc(x)
    assert torch.equal(enc.features(x), tokens[:, 0])
    enc.pool = "mean"
    assert torch.allclose(enc.features(x), tokens[:, 1:].mean(1))
    assert build_encoder(enc.spec()).pool == "mean"
    with pytest.raises(ValueError):
        Encoder(ImageTokenizer((16, 16), 4, 32), 1, 4, pool="max")


@pytest.mark.parametrize("patch", [4, 8, 16])
def test_hmlp_stem_is_patch_local_and_keeps_mae_masking(patch):
    """Each token of the hMLP stem depends on its own patch only, so masking after the stem is
    masking the patch: the encoder output ignores the masked patches' pixels."""
    size = 2 * patch
    tok = ImageTokenizer((size, size), patch, 32, stem="hmlp")
    x = torch.rand(2, 3, size, size)
    tokens = tok(x)
    assert tokens.shape == (2, 4, 32)
    changed = x.clone()
    changed[:, :, :patch, :patch] = torch.rand(2, 3, patch, patch)  # patch 0 only
    diff = (tok(changed) - tokens).abs().amax(dim=(0, 2))
    assert diff[0] > 0 and torch.all(diff[1:] == 0)
    mae = MaskedAutoencoder(Encoder(tok, 1, 4), 16, 1, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    loss, pred, mask = mae(x, generator=g())
    assert pred.shape == (2, 4, 3 * patch * patch) and torch.isfinite(loss)
    patches = tok.patchify(x)
    patches[mask.bool()] = torch.rand_like(patches[mask.bool()])
    latent, _, _ = mae.encoder.forward_masked(x, 0.75, g())
    latent2, _, _ = mae.encoder.forward_masked(tok.unpatchify(patches), 0.75, g())
    assert torch.allclose(latent, latent2)
    twin = build_encoder(mae.encoder.spec())
    twin.load_state_dict(mae.encoder.state_dict())
    assert twin.tokenizer.stem == "hmlp" and torch.equal(twin.features(x), mae.encoder.features(x))


def test_hmlp_stem_rejects_patch_sizes_it_cannot_split():
    with pytest.raises(ValueError, match="hMLP"):
        ImageTokenizer((24, 24), 6, 32, stem="hmlp")
    with pytest.raises(ValueError, match="stem"):
        ImageTokenizer((16, 16), 4, 32, stem="conv3x3")
    assert build_encoder(Encoder(ImageTokenizer((16, 16), 4, 32), 1, 4).spec()).tokenizer.stem == (
        "linear"
    )
