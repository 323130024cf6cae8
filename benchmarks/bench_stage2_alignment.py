"""Stage II recipes compared on the same Stage I encoders: retrieval, participation ratio and a
linear probe of the aligned localizer features.

Stage I (localizer, ECG, tabular) is trained once per cohort and kept in `--stage1-cache`, so
each Stage II variant costs only its own training. Prints one JSON line per variant: recall@10
localizer -> ECG and -> tabular (chance is 10 / test subjects), the participation ratio of each
modality's projected embeddings (raw and L2-normalized) and of its encoder features, the learned
temperatures, and the test r of a ridge probe (fitted on the validation split) of LVM, LVEF and
RVEDV from the localizer encoder's features.

    nice -n 10 .venv/bin/python benchmarks/bench_stage2_alignment.py \\
        --cohort /tmp/ctrip-bench-cohorts/n3000-s0-64px-heart140mm \\
        --set stage2.augment=false --set stage2.max_epochs=24

Make the cohort with benchmarks/bench_localizer_recipe.py (it caches one per size and field).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from ctrip.analysis.alignment import participation_ratio, retrieval_recall
from ctrip.config import make_config, set_key
from ctrip.data.cohort import Cohort
from ctrip.stages import train
from ctrip.stages.checkpoint import read_checkpoint
from ctrip.stages.inference import embed

MODALITIES = ("localizer", "ecg", "tabular")
PROBED = ("LVM", "LVEF", "RVEDV")


def ridge_probe_r(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  alphas: tuple[float, ...] = tuple(np.logspace(-3, 3, 13))) -> float:  # fmt: skip
    """Test r of a ridge regression whose alpha is chosen by leave-one-out error on the fit set."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-8
    a, b = (x_fit - mean) / std, (x_test - mean) / std
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    uty = u.T @ (y_fit - y_fit.mean())
    best = None
    for alpha in alphas:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink * uty) + y_fit.mean()
        leverage = (u**2 * shrink).sum(1) + 1.0 / len(a)
        loo = np.mean(((y_fit - fitted) / (1 - leverage)) ** 2)
        if best is None or loo < best[0]:
            best = (loo, vt.T @ (s / (s**2 + alpha) * uty))
    pred = b @ best[1] + y_fit.mean()
    return float(np.corrcoef(pred, y_test)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--stage1-cache", type=Path, default=None,
                        help="default: <cohort>-stage1 beside the cohort")  # fmt: skip
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="config key=value (YAML)")
    args = parser.parse_args()

    cohort = Cohort.open(args.cohort)
    base = make_config(args.profile)
    base["trainer"]["threads"] = args.threads
    config = base
    for item in args.set:
        key, _, value = item.partition("=")
        config = set_key(config, key, yaml.safe_load(value))
    cache = args.stage1_cache or args.cohort.with_name(args.cohort.name + "-stage1")
    stage1 = {}
    for m in MODALITIES:
        path = cache / f"stage1-{m}.pt"
        if not path.exists():  # Stage I always with the profile's own config
            t0 = time.perf_counter()
            train.run_stage1(cohort, m, base, cache, seed=args.seed)
            print(f"stage1 {m}: {time.perf_counter() - t0:.0f} s", flush=True)
        stage1[m] = path

    pairs = [("localizer", "ecg"), ("localizer", "tabular")]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        checkpoint = train.run_stage2(cohort, pairs, stage1, config, Path(tmp), seed=args.seed)
        seconds = time.perf_counter() - t0
        ckpt = read_checkpoint(checkpoint)
        projected = {m: embed(checkpoint, cohort, m, "test", projected=True) for m in MODALITIES}
        features = {m: embed(checkpoint, cohort, m, "test") for m in MODALITIES}
        val_ids, val_features = embed(checkpoint, cohort, "localizer", "val")
    result = {"set": args.set, "seconds": round(seconds), "best_epoch": ckpt["best_epoch"],
              "temperatures": {k: round(v, 3) for k, v in ckpt["temperatures"].items()}}  # fmt: skip
    for gallery in ("ecg", "tabular"):
        recall = retrieval_recall(projected["localizer"][1], projected[gallery][1])
        result[f"recall@10 localizer->{gallery}"] = round(recall["recall@10"], 3)
        result["chance@10"] = round(recall["chance@10"], 3)
    for m in MODALITIES:
        x = projected[m][1]
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        result[f"PR {m} (projected, normalized, encoder)"] = [
            round(participation_ratio(v), 1) for v in (x, unit, features[m][1])
        ]
    table = cohort.table.set_index("id")
    test_ids, test_features = features["localizer"]
    for cp in PROBED:
        result[f"probe r {cp}"] = round(
            ridge_probe_r(val_features, table.loc[val_ids, cp].to_numpy(float), test_features,
                          table.loc[test_ids, cp].to_numpy(float)), 3)  # fmt: skip
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
