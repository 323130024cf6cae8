"""Does the ECG masked autoencoder learn in Stage I, and at what cost? Skill and seconds per recipe.

Runs the library's Stage I (`ctrip.stages.train.run_stage1`, Lightning, as `ctrip run` does) on
the ECG of a cohort once per variant, then scores the best epoch's autoencoder as the Stage I
notebook does: its error on the hidden patches of the first 256 validation subjects (masks of
seed 0) against predicting the signal's training mean (`reconstruction_skill`; 0: no better
than the mean, 1: exact) and against the training subjects' mean patch at each position.

A variant is a name and `--set`-style overrides of the profile's training config:

    nice -n 10 .venv/bin/python benchmarks/bench_ecg_stage1.py \\
        --cohort results/default/runs/cohort/cohort \\
        --variant "profile" --variant "30 epochs:stage1.max_epochs=30"

Prints one row per variant: epochs run, best epoch, seconds of `run_stage1` (training and
validation; the machine is shared, so compare variants run side by side), skill and skill over
the mean patch at each position, and the validation loss per epoch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ctrip.config import make_config, run_config, set_key


def parse_variant(text: str) -> tuple[str, list[tuple[str, Any]]]:
    """ "name:key=value,key=value" -> (name, [(key, value), ...]); a bare name: no overrides."""
    name, _, rest = text.partition(":")
    overrides = []
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not key=value")
        overrides.append((key.strip(), yaml.safe_load(value)))
    return name.strip(), overrides


def score(checkpoint: Path, cohort: Any, seed: int) -> dict[str, float]:
    """The Stage I notebook's numbers for an ECG checkpoint (validation split)."""
    from torch.utils.data import DataLoader

    from ctrip.analysis.training import mean_patch_by_position, reconstruction_skill
    from ctrip.data.dataset import CohortDataset, NormalizationStats
    from ctrip.stages.checkpoint import load_mae, read_checkpoint

    stats = NormalizationStats.from_dict(read_checkpoint(checkpoint)["stats"])
    val = CohortDataset(cohort, ("ecg",), "val", stats=stats)
    x = torch.stack([val[i]["ecg"] for i in range(min(256, len(val)))])
    train = CohortDataset(cohort, ("ecg",), "train", stats=stats)
    mae = load_mae(checkpoint)
    batches = (batch["ecg"] for batch in DataLoader(train, batch_size=256))
    position_mean = mean_patch_by_position(mae.encoder.tokenizer, batches)
    return reconstruction_skill(mae, x, seed, position_mean=position_mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, help="a cohort folder (e.g. the default's)")
    parser.add_argument("--profile", default="default", help="the training config's profile")
    parser.add_argument("--variant", action="append", default=[],
                        help='"name:key=value,..." (repeatable); default: the profile alone')  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from ctrip.data.cohort import Cohort
    from ctrip.stages.checkpoint import read_checkpoint
    from ctrip.stages.train import run_stage1

    cohort = Cohort.open(args.cohort)
    print(f"{'variant':<34} {'epochs':>6} {'best':>4} {'seconds':>8} {'skill':>6} "
          f"{'over position mean':>18}  validation loss per epoch", flush=True)  # fmt: skip
    for text in args.variant or ["profile"]:
        name, overrides = parse_variant(text)
        config = make_config(args.profile)
        for key, value in overrides:
            config = set_key(config, key, value)
        config["trainer"]["threads"] = args.threads
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            checkpoint = run_stage1(
                cohort, "ecg", run_config(config, "stage1", ["ecg"]), tmp, seed=args.seed
            )
            seconds = time.perf_counter() - start
            ckpt = read_checkpoint(checkpoint)
            skill = score(checkpoint, cohort, args.seed)
        losses = " ".join(f"{v:.3f}" for v in ckpt["history"].get("val_loss", []))
        print(f"{name:<34} {len(ckpt['history']['epoch']):>6} {ckpt['best_epoch']:>4} "
              f"{seconds:>8.1f} {skill['skill']:>6.3f} {skill['position_skill']:>18.3f}  "
              f"{losses}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
