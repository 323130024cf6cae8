"""How far a split-conformal interval's empirical test coverage strays from the nominal level,
by calibration (validation) and test split size: the sizing behind a "coverage within
x points of nominal" check.

Draws exchangeable residuals (the coverage of split conformal does not depend on their
distribution), fits `fit_conformal` on n_cal subjects, measures coverage on n_test, repeats,
and prints the SD of the coverage error and the share of single runs that miss nominal by more
than the tolerance; and the same for the mean over `--seeds` independent runs.

    .venv/bin/python benchmarks/bench_conformal_coverage.py [--level 0.9] [--tol 0.03] [--reps 2000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from ctrip.analysis.screening import conformal_quantile


def coverage_errors(n_cal: int, n_test: int, level: float, reps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    errors = np.empty(reps)
    for r in range(reps):
        cal, test = np.abs(rng.standard_normal(n_cal)), np.abs(rng.standard_normal(n_test))
        errors[r] = (test <= conformal_quantile(cal, level)).mean() - level
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--tol", type=float, default=0.03)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3, help="runs averaged per check")
    args = parser.parse_args()
    rows = []
    for n_cal in (100, 150, 300, 500, 1000):
        for n_test in (150, 500, 1000):
            e = coverage_errors(n_cal, n_test, args.level, args.reps, seed=n_cal * 7 + n_test)
            mean_e = e[: len(e) // args.seeds * args.seeds].reshape(-1, args.seeds).mean(axis=1)
            rows.append({
                "n_cal": n_cal, "n_test": n_test, "mean_error": e.mean(), "sd_error": e.std(),
                "p_miss_single": (np.abs(e) > args.tol).mean(),
                f"p_miss_mean_of_{args.seeds}": (np.abs(mean_e) > args.tol).mean(),
            })  # fmt: skip
    pd.set_option("display.width", 120)
    print(f"level {args.level}, tolerance +-{args.tol}, {args.reps} repetitions each")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
