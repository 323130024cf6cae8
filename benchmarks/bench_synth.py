"""Simulator throughput: subjects per second per modality on one core, default and paper sizes.

    .venv/bin/python benchmarks/bench_synth.py [--n 256] [--n-paper 32]

Target: >= 200 whole subjects/s at default sizes on one core. "oracle reference" is the latents
alone of a subject (no images, no ECG signal), as the oracle ceiling's reference sample draws
them. Two figures per stage: wall clock and this process's CPU time (the second is the one-core
figure when other jobs share the CPUs).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

from ctrip.data.ecg import measure_intervals_batch  # noqa: E402
from ctrip.data.synth import SynthSizes, generate_subjects, sample_population  # noqa: E402
from ctrip.data.synth.cine import render_cine  # noqa: E402
from ctrip.data.synth.ecg_model import simulate_ecg  # noqa: E402
from ctrip.data.synth.generate import reference_subjects  # noqa: E402
from ctrip.data.synth.localizer import render_localizers  # noqa: E402


def rate(fn, n: int, repeats: int = 2) -> tuple[float, float]:
    """Subjects/s by wall clock and by CPU time, best of `repeats`."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return n / wall, n / cpu


def bench_profile(profile: str, n: int) -> None:
    sizes = SynthSizes.for_profile(profile)
    fs, seconds = sizes.ecg_sampling_rate_hz, sizes.ecg_seconds
    pop = sample_population(0, range(n))
    ecg, _ = simulate_ecg(pop, 0, fs, seconds)
    stages = {
        "population + CPs": lambda: sample_population(0, range(n)),
        "localizer": lambda: render_localizers(pop, 0, sizes.image_size),
        "cine": lambda: render_cine(pop, 0, sizes.cmr_size),
        "ecg signal": lambda: simulate_ecg(pop, 0, fs, seconds),
        "ecg intervals": lambda: measure_intervals_batch(ecg, fs),
        "whole subject": lambda: generate_subjects(0, range(n), sizes),
        "oracle reference": lambda: reference_subjects(0, range(n), sizes),
    }
    for name, fn in stages.items():
        wall, cpu = rate(fn, n)
        print(f"{profile:8s} {name:22s} {wall:10.0f} {cpu:10.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256, help="subjects per run at default sizes")
    parser.add_argument("--n-paper", type=int, default=32, help="subjects per run at paper sizes")
    args = parser.parse_args()
    print(f"{'profile':8s} {'stage':22s} {'subj/s wall':>10s} {'subj/s cpu':>10s}")
    bench_profile("default", args.n)
    bench_profile("paper", args.n_paper)


if __name__ == "__main__":
    main()
