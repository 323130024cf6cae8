"""What the data card's oracle ceilings cost, and how much their values depend on that cost.

    nice -n 10 .venv/bin/python benchmarks/bench_oracle_ceiling.py --cohort COHORT \\
        [--n-reference N] [--hidden 256 256 256] [--epochs 60] [--modalities ecg] [--out ceiling.csv]

Computes `oracle_ceiling` of a simulated cohort (e.g. `ctrip cohort synth --n 3400 --profile
default`) with the given reference size and perceptron, prints the wall-clock and CPU time and
the ceiling r of every modality for LVM, LVEF and RVEDV; `--out` keeps the whole table, so two
settings can be compared CP by CP.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ctrip.data.cohort import Cohort
from ctrip.data.synth.oracle import EPOCHS, HIDDEN, oracle_ceiling, reference_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--n-reference", type=int, default=None)
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--modalities", nargs="+", default=None, help="default: every modality")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cohort = Cohort.open(args.cohort)
    n_reference = args.n_reference or reference_size(cohort.n)
    start, start_cpu = time.perf_counter(), time.process_time()
    ceiling = oracle_ceiling(
        cohort,
        modalities=tuple(args.modalities) if args.modalities else None,
        n_reference=n_reference,
        hidden=tuple(args.hidden),
        epochs=args.epochs,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if args.out:
        ceiling.to_csv(args.out, index=False)
    print(
        f"{cohort.n} subjects, {n_reference} reference, perceptron {tuple(args.hidden)}, "
        f"{args.epochs} epochs: {wall:.0f} s wall, {cpu:.0f} s CPU"
    )
    table = ceiling.pivot(index="cp", columns="modality", values="pearson_r")
    print(table.loc[["LVM", "LVEF", "RVEDV"]].round(3).to_string())


if __name__ == "__main__":
    main()
