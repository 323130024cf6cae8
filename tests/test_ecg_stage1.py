"""The ECG Stage I recipe: ALiBi's distance biases in the MAE decoder, and Stage I epochs and
learning rate per modality (models.<modality>.stage1), which change no other run's
configuration."""

from __future__ import annotations

import pytest
import torch

from ctrip.config import make_config, run_config, set_key
from ctrip.models import Encoder, MaskedAutoencoder
from ctrip.models.mae import build_mae
from ctrip.models.tokenizers import ECGTokenizer, ImageTokenizer, TabularTokenizer
from ctrip.models.transformer import Attention, alibi_bias


def test_alibi_bias_slopes_halve_per_head():
    distances = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    bias = alibi_bias(distances, 3)
    assert bias.shape == (1, 3, 3, 3)
    torch.testing.assert_close(bias[0, 0], -distances)
    torch.testing.assert_close(bias[0, 2], -distances / 4)


def test_attention_with_a_bias_matches_the_explicit_softmax():
    torch.manual_seed(0)
    attention = Attention(8, 2)
    x = torch.randn(3, 5, 8)
    bias = alibi_bias(torch.cdist(torch.arange(5.0)[:, None], torch.arange(5.0)[:, None]), 2)
    fused, _ = attention(x, bias=bias)
    explicit, _ = attention(x, return_attention=True, bias=bias)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    plain, _ = attention(x)
    assert not torch.allclose(fused, plain)


def test_token_distances_follow_time_and_the_image_grid():
    ecg = ECGTokenizer(40, 10, 8, leads=2, per_lead=False)
    assert ecg.token_distances().tolist() == [[abs(i - j) for j in range(4)] for i in range(4)]
    per_lead = ECGTokenizer(40, 10, 8, leads=2, per_lead=True)  # lead-major: (lead, window)
    d = per_lead.token_distances()
    assert d.shape == (8, 8) and d[0, 4] == 0 and d[0, 5] == 1 and d[3, 4] == 3
    image = ImageTokenizer((8, 8), 4, 8, in_chans=1)
    torch.testing.assert_close(image.token_distances()[0, 3], torch.tensor(2**0.5))
    with pytest.raises(ValueError, match="no order"):
        TabularTokenizer(2, [3], 8).token_distances()


def test_decoder_alibi_biases_only_the_decoder_and_survives_the_spec():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(Encoder(ECGTokenizer(200, 10, 16), 1, 2), 8, 1, 2, decoder_alibi=True)
    n = mae.encoder.num_tokens
    assert mae.decoder_bias.shape == (1, 2, n + 1, n + 1)
    assert (mae.decoder_bias[0, :, 0] == 0).all() and (mae.decoder_bias[0, :, :, 0] == 0).all()
    x = torch.randn(2, 12, 200)
    rebuilt = build_mae(mae.spec())
    rebuilt.load_state_dict(mae.state_dict())
    assert rebuilt.decoder_alibi and "decoder_bias" not in mae.state_dict()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    torch.testing.assert_close(rebuilt(x, generator=g())[0], mae(x, generator=g())[0])
    plain = build_mae({**mae.spec(), "decoder_alibi": False})
    plain.load_state_dict(mae.state_dict())
    assert not torch.allclose(plain(x, generator=g())[0], mae(x, generator=g())[0])
    # a checkpoint written before the key existed rebuilds without the biases
    old = {k: v for k, v in mae.spec().items() if k != "decoder_alibi"}
    assert build_mae(old).decoder_bias is None


def test_a_modalitys_stage1_settings_and_decoder_alibi_reach_only_its_stage1_run():
    config = make_config("default", {"models": {"ecg": {"stage1": {"max_epochs": 7, "lr": 5e-3,
                                                                 "batch_size": 8}}}})  # fmt: skip
    ecg = run_config(config, "stage1", ["ecg"])
    assert ecg["stage1"]["max_epochs"] == 7 and ecg["stage1"]["lr"] == 5e-3
    assert ecg["stage1"]["batch_size"] == 8
    assert "stage1" not in ecg["models"]["ecg"]
    assert ecg["models"]["ecg"]["decoder_alibi"] == config["models"]["ecg"]["decoder_alibi"]
    localizer = run_config(config, "stage1", ["localizer"])
    assert localizer["stage1"] == config["stage1"]
    # null keeps the stage1 section's value
    half = make_config("default", {"models": {"ecg": {"stage1": {"max_epochs": 7, "lr": None}}}})
    assert run_config(half, "stage1", ["ecg"])["stage1"]["lr"] == config["stage1"]["lr"]
    # the runs after Stage I read neither key: their configuration does not change with them
    plain = make_config("default", {"models": {"ecg": {"stage1": {"max_epochs": None, "lr": None},
                                                       "decoder_alibi": False}}})  # fmt: skip
    for stage, pairs in (("stage3", None), ("stage2", [["localizer", "ecg"]])):
        modalities = ["ecg"] if stage == "stage3" else ["localizer"]
        ours = run_config(config, stage, modalities, pairs)
        assert ours == run_config(plain, stage, modalities, pairs)
        assert "decoder_alibi" not in ours["models"]["ecg"]


def test_the_default_profile_trains_the_ecg_autoencoder_with_its_own_recipe():
    config = make_config("default")
    ecg = run_config(config, "stage1", ["ecg"])
    assert ecg["models"]["ecg"]["decoder_alibi"] is True
    assert ecg["models"]["ecg"]["decoder_dim"] > config["models"]["localizer"]["decoder_dim"]
    own = config["models"]["ecg"]["stage1"]
    assert ecg["stage1"]["lr"] == own["lr"] > config["stage1"]["lr"]
    assert ecg["stage1"]["batch_size"] == own["batch_size"] < config["stage1"]["batch_size"]
    assert ecg["stage1"]["max_epochs"] == own["max_epochs"] > config["stage1"]["max_epochs"]
    longer = run_config(set_key(config, "models.ecg.stage1.max_epochs", 40), "stage1", ["ecg"])
    assert longer["stage1"]["max_epochs"] == 40  # one key gives the ECG alone more epochs
    localizer = run_config(config, "stage1", ["localizer"])["stage1"]
    assert localizer == config["stage1"]  # the other modalities keep the shared recipe
    assert make_config("paper")["models"]["ecg"]["stage1"] == {
        "max_epochs": None, "lr": None, "batch_size": None}  # fmt: skip
    # the Stage I-only keys change no later run's key: Stage II and III read neither
    shared = make_config("default", {"models": {"ecg": {"decoder_dim": 32, "stage1": own}}})
    for stage, pairs in (("stage3", None), ("stage2", [["localizer", "ecg"]])):
        modalities = ["ecg"] if stage == "stage3" else ["localizer"]
        assert run_config(config, stage, modalities, pairs) == run_config(
            shared, stage, modalities, pairs
        )


def test_the_autoencoder_prepares_an_ecg_once_per_step_with_the_same_loss():
    torch.manual_seed(0)
    tokenizer = ECGTokenizer(500, 10, 16, resample_to=200, sampling_rate_hz=250.0,
                             highpass_hz=0.67)  # fmt: skip
    mae = MaskedAutoencoder(Encoder(tokenizer, 1, 2), 8, 1, 2)
    calls = []
    prepare = tokenizer.prepare
    tokenizer.prepare = lambda x: calls.append(1) or prepare(x)
    x = torch.randn(3, 12, 500)
    loss, pred, mask = mae(x, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1
    # the same number as the loss computed from the input again
    torch.testing.assert_close(loss, tokenizer.reconstruction_loss(pred, x, mask))
    tokens, target = tokenizer.tokens_and_target(x)
    torch.testing.assert_close(tokens, tokenizer(x))
    torch.testing.assert_close(target, tokenizer.patchify(x))
