"""Training throughput of every stage at the default and paper model sizes, on this machine.

For each stage it times full training steps (forward, backward, AdamW update) on random inputs
of the profile's cohort shapes, counts the step's floating-point operations with torch's
FlopCounterMode (matmuls and attention, forward and backward), and prints samples/s and the
achieved GFLOP/s next to the measured fp32 matmul peak of this machine.

    .venv/bin/python benchmarks/bench_train.py                 # default + paper sizes
    .venv/bin/python benchmarks/bench_train.py --profiles default --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ctrip.config import make_config
from ctrip.losses import LocalizerCentricInfoNCE
from ctrip.models import (
    ECGTokenizer,
    Encoder,
    ImageTokenizer,
    MaskedAutoencoder,
    ProjectionHead,
    RegressionHead,
    TabularTokenizer,
)
from ctrip.models.tokenizers import average_resample
from ctrip.stages.modules import adamw, param_groups

# Cohort shapes per profile: image side, ECG samples, ECG rate (Hz); batch size for the bench.
DATA = {"default": (64, 2500, 250.0, 64), "paper": (224, 5000, 500.0, 8)}
TABULAR = (16, [2, 3, 2, 2])  # numerical features, categorical cardinalities (the T variant)


def matmul_peak(seconds: float = 0.4, trials: int = 3) -> float:
    """Best fp32 GFLOP/s of square matmuls (n = 256 .. 2048) over a few trials: the machine
    is shared, so the best trial is the closest to what the cores can do."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(trials):
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                a @ b
                reps += 1
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def tokenizer(modality: str, profile: str, config: dict) -> nn.Module:
    size, T, fs, _ = DATA[profile]
    m = config["models"][modality]
    if modality in ("localizer", "cmr"):
        return ImageTokenizer((size, size), m["patch_size"], m["dim"], stem=m.get("stem", "linear"))
    if modality == "ecg":
        rate = fs if m["rate_hz"] is None else min(m["rate_hz"], fs)
        samples = int(T * rate / fs)
        patch = int(round(m["patch_seconds"] * rate))
        return ECGTokenizer(T, patch, m["dim"], per_lead=m["per_lead"], resample_to=samples,
                            sampling_rate_hz=fs, highpass_hz=m["highpass_hz"])  # fmt: skip
    return TabularTokenizer(TABULAR[0], TABULAR[1], m["dim"])


def encoder(modality: str, profile: str, config: dict) -> Encoder:
    m = config["models"][modality]
    return Encoder(tokenizer(modality, profile, config), m["depth"], m["heads"], m["mlp_ratio"],
                   m.get("pool", "cls"))  # fmt: skip


def inputs(modality: str, profile: str, batch: int) -> object:
    size, T, _, _ = DATA[profile]
    g = torch.Generator().manual_seed(0)
    if modality in ("localizer", "cmr"):
        return torch.rand(batch, 3, size, size, generator=g)
    if modality == "ecg":
        return torch.randn(batch, 12, T, generator=g)
    n, cards = TABULAR
    return {
        "tab_num": torch.randn(batch, n, generator=g),
        "tab_num_missing": torch.rand(batch, n, generator=g) < 0.1,
        "tab_cat": torch.stack([torch.randint(0, c, (batch,), generator=g) for c in cards], 1),
        "tab_cat_missing": torch.zeros(batch, len(cards), dtype=torch.bool),
    }


def stage_steps(profile: str) -> dict[str, tuple[nn.Module, Callable[[], torch.Tensor]]]:
    """name -> (model, loss function of one training batch) for every stage."""
    config = make_config(profile)
    batch = DATA[profile][3]
    steps: dict[str, tuple[nn.Module, Callable[[], torch.Tensor]]] = {}
    for modality in ("localizer", "ecg", "tabular"):
        m = config["models"][modality]
        mae = MaskedAutoencoder(encoder(modality, profile, config), m["decoder_dim"],
                                m["decoder_depth"], m["decoder_heads"], m["mask_ratio"], m["mlp_ratio"])  # fmt: skip
        x = inputs(modality, profile, batch)
        steps[f"I {modality} MAE"] = (mae, lambda mae=mae, x=x: mae(x)[0])
    encoders = nn.ModuleDict(
        {m: encoder(m, profile, config) for m in ("localizer", "ecg", "tabular")}
    )
    heads = nn.ModuleDict({m: ProjectionHead(e.dim, 256) for m, e in encoders.items()})
    criterion = LocalizerCentricInfoNCE(config["stage2"]["temperatures"])
    stage2 = nn.ModuleList([encoders, heads, criterion])
    xs = {m: inputs(m, profile, batch) for m in encoders}

    def contrastive() -> torch.Tensor:
        return criterion({m: heads[m](encoders[m].features(xs[m])) for m in encoders})[0]

    steps["II L+E+T align"] = (stage2, contrastive)
    loc = encoder("localizer", profile, config)
    head = RegressionHead(loc.dim)
    x, y = inputs("localizer", profile, batch), torch.randn(batch, 18)
    steps["III L regress"] = (
        nn.ModuleList([loc, head]),
        lambda: F.mse_loss(head(loc.features(x)), y),
    )
    return steps


def bench(model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int) -> tuple[float, float]:
    """(median seconds per training step, FLOPs per step)."""
    optimizer = adamw(param_groups(model, 1e-4, 0.05))  # as the stages build it

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()  # that step doubles as the warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["default", "paper"])
    parser.add_argument("--steps", type=int, default=7, help="timed steps per stage (paper: 2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {args.threads} threads; fp32 matmul peak {peak:.1f} GFLOP/s")
    print("(best square matmul, n = 256..2048; step times are medians; % of that peak)\n")
    print(f"{'profile':8} {'stage':18} {'batch':>5} {'s/step':>8} {'samples/s':>10} "
          f"{'GFLOP/step':>11} {'GFLOP/s':>8} {'% peak':>7}")  # fmt: skip
    for profile in args.profiles:
        batch = DATA[profile][3]
        for name, (model, loss_fn) in stage_steps(profile).items():
            steps = args.steps if profile != "paper" else max(1, min(args.steps, 2))
            seconds, flops = bench(model, loss_fn, steps)
            rate = flops / seconds / 1e9
            print(f"{profile:8} {name:18} {batch:5d} {seconds:8.3f} {batch / seconds:10.1f} "
                  f"{flops / 1e9:11.2f} {rate:8.1f} {100 * rate / peak:6.0f}%", flush=True)  # fmt: skip
    ecgs = torch.randn(64, 12, 2500)
    pooling = median_time(lambda: F.adaptive_avg_pool1d(ecgs, 1000))
    blocks = median_time(lambda: average_resample(ecgs, 1000))
    print(f"\nECG resampling, 64 x 12 x 2500 -> 1000 samples: {1e3 * pooling:.2f} ms adaptive "
          f"pooling, {1e3 * blocks:.2f} ms by blocks (average_resample, as trained)")  # fmt: skip
    model = stage_steps("default")["III L regress"][0]
    model.eval()
    with torch.inference_mode():
        for batch in (64, 256):
            x = torch.rand(batch, 3, DATA["default"][0], DATA["default"][0])
            per_subject = median_time(lambda x=x: model[1](model[0].features(x)), 10) / batch
            print(
                f"evaluation of the default Stage III model, batch {batch}: "
                f"{1e3 * per_subject:.3f} ms per subject"
            )
    model.train()
    print(f"AdamW update of the default Stage III model: {1e3 * update_time(model, False):.2f} ms "
          f"looping over tensors, {1e3 * update_time(model, True):.2f} ms fused (as trained)")  # fmt: skip


def median_time(fn: Callable[[], object], repeats: int = 30) -> float:
    """Median seconds of `fn()` after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def update_time(model: nn.Module, fused: bool, steps: int = 50) -> float:
    """Median seconds of one AdamW update of `model`'s parameters (gradients set once)."""
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    groups = param_groups(model, 1e-4, 0.05)
    optimizer = adamw(groups) if fused else torch.optim.AdamW(groups)
    return median_time(optimizer.step, steps)


if __name__ == "__main__":
    main()
