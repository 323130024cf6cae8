"""How much the simulated ECG says about LV mass, against the published large-data figure.

    nice -n 10 .venv/bin/python benchmarks/bench_ecg_lvm.py [--n 20000] [--epochs 12]

Simulates `--n` subjects at default sizes (ECG only), splits them 80/10/10, trains the reference
1-D CNN of `ctrip.baselines` on ECG -> LV mass and prints:
- the CNN's test Pearson r (calibration target 0.74-0.84 around the published r = 0.79 of a CNN
  on about 32,000 UK Biobank ECGs: Khurshid et al. 2021, Circ Cardiovasc Imaging 14:e012281);
- the ECG's oracle ceiling for LV mass on the same test subjects, fitted on `--ceiling-reference`
  further simulated subjects (their ECG latents only, no signal: cheap), because the estimate of a
  ceiling rises with its reference (`--seed 1`: 16,000 subjects r 0.83, 100,000: 0.89, 400,000: 0.91);
- the Sokolow-Lyon voltage vs LV mass index r (published ~0.25-0.28).
The simulated ECGs are cached in `--cache` so a rerun (other epochs or seed) skips simulation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ctrip.baselines import ECGCNN, fit_network
from ctrip.data.ecg import remove_baseline_drift
from ctrip.data.synth import SynthSizes, sample_population
from ctrip.data.synth.card import sokolow_lyon
from ctrip.data.synth.ecg_model import ecg_latents, simulate_ecg
from ctrip.data.synth.generate import BLOCK
from ctrip.data.synth.oracle import ceiling_from_features, oracle_features


def simulate(n: int, seed: int, cache: Path) -> tuple[np.ndarray, object, object]:
    """ECGs (drift removed, float32 memmap), population table and ECG latents of n subjects."""
    sizes = SynthSizes.for_profile("default")
    fs = sizes.ecg_sampling_rate_hz
    stem = cache / f"ecg_lvm_seed{seed}_n{n}"
    pop = sample_population(seed, range(n))
    if (stem.with_suffix(".done")).exists():
        import pandas as pd

        return (
            np.load(stem.with_suffix(".npy"), mmap_mode="r"),
            pop,
            pd.read_parquet(stem.with_suffix(".parquet")),
        )
    import pandas as pd

    cache.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(
        stem.with_suffix(".npy"), mode="w+", dtype=np.float32, shape=(n, 12, sizes.ecg_samples)
    )
    start, parts, sl = time.perf_counter(), [], np.empty(n)
    for a in range(0, n, BLOCK):
        ecg, lat = simulate_ecg(pop.iloc[a : a + BLOCK], seed, fs, sizes.ecg_seconds)
        sl[a : a + len(ecg)] = sokolow_lyon(ecg, fs)
        out[a : a + len(ecg)] = remove_baseline_drift(ecg, fs)
        parts.append(lat)
        if (a // BLOCK) % 100 == 0:
            print(
                f"  simulated {a + len(ecg)}/{n} ({time.perf_counter() - start:.0f} s)", flush=True
            )
    out.flush()
    latents = pd.concat(parts, ignore_index=True).assign(sokolow_lyon=sl)
    latents.to_parquet(stem.with_suffix(".parquet"))
    stem.with_suffix(".done").touch()
    print(f"simulated {n} ECGs in {time.perf_counter() - start:.0f} s", flush=True)
    return np.load(stem.with_suffix(".npy"), mmap_mode="r"), pop, latents


def population_and_ecg_latents(seed: int, start: int, n: int) -> tuple[object, object]:
    """Population and ECG latents of subjects start .. start + n, 20,000 at a time, the signal
    not rendered (cheap: what the ceiling is fitted on)."""
    import pandas as pd

    fs = SynthSizes.for_profile("default").ecg_sampling_rate_hz
    pops, latents = [], []
    for a in range(start, start + n, 20000):
        pops.append(sample_population(seed, range(a, min(start + n, a + 20000))))
        latents.append(ecg_latents(pops[-1], seed, fs))
    return pd.concat(pops, ignore_index=True), pd.concat(latents, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0, help="simulation and training seed")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-subjects", type=int, default=None, help="cap the training set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ceiling-reference", type=int, default=400000, help="subjects the ceiling is fitted on"
    )
    parser.add_argument("--cache", type=Path, default=Path("results/bench_cache"))
    parser.add_argument(
        "--ceiling-only", action="store_true", help="the ceiling alone: no ECG rendered, no CNN"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.ceiling_only:
        ecg, (pop, latents) = None, population_and_ecg_latents(args.seed, 0, args.n)
    else:
        ecg, pop, latents = simulate(args.n, args.seed, args.cache)
    order = np.random.default_rng(args.seed).permutation(args.n)
    n_test = n_val = args.n // 10
    test, val, train = (
        np.sort(order[:n_test]),
        np.sort(order[n_test : n_test + n_val]),
        np.sort(order[n_test + n_val :]),
    )
    if args.train_subjects:
        train = np.sort(train[: args.train_subjects])
    lvm = pop["LVM"].to_numpy()
    mean, sd = lvm[train].mean(), lvm[train].std()
    z = ((lvm - mean) / sd).astype(np.float32)[:, None]

    print(f"fitting the ECG ceiling for LVM on {args.ceiling_reference} subjects ...", flush=True)
    start = time.perf_counter()
    features = oracle_features(latents, "ecg")
    ref_pop, ref_latents = population_and_ecg_latents(args.seed, args.n, args.ceiling_reference)
    x_ref = oracle_features(ref_latents, "ecg").reindex(columns=features.columns, fill_value=0.0)
    ceiling = ceiling_from_features(
        x_ref.to_numpy(),
        ref_pop["LVM"].to_numpy(),
        features.to_numpy()[test],
        seed=args.seed,
    )
    ceiling_r = float(np.corrcoef(ceiling[:, 0], lvm[test])[0, 1])
    print(
        f"ECG ceiling for LVM, test r  {ceiling_r:.3f} ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    if args.ceiling_only:
        return
    start = time.perf_counter()
    result = fit_network(
        ECGCNN(outputs=1),
        np.asarray(ecg[train]),
        z[train],
        np.asarray(ecg[val]),
        z[val],
        np.asarray(ecg[test]),
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=True,
    )
    minutes = (time.perf_counter() - start) / 60
    cnn_r = float(np.corrcoef(result.test[:, 0], z[test, 0])[0, 1])

    lvmi = lvm / pop["bsa"].to_numpy()
    sl_r = float(np.corrcoef(latents["sokolow_lyon"], lvmi)[0, 1])

    print(f"subjects train/val/test      {len(train)}/{len(val)}/{len(test)}")
    print(
        f"CNN epochs (best)            {args.epochs} ({result.chosen['best_epoch']}), {minutes:.1f} min"
    )
    print(f"ECG -> LVM, 1-D CNN test r   {cnn_r:.3f}   (published 0.79; target 0.74-0.84)")
    print(f"ECG ceiling for LVM, test r  {ceiling_r:.3f}   (must lie in [CNN r, CNN r + 0.1])")
    print(f"Sokolow-Lyon vs LVMI r       {sl_r:.3f}   (published 0.25-0.28)")


if __name__ == "__main__":
    main()
