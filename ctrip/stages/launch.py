"""One training run from a plain script (no notebook kernel), for several GPUs or nodes.

    srun python -m ctrip.stages.launch stage3 --cohort C --config run.json --out DIR \\
        --modality localizer --init stage2.pt --fraction 0.1 --seed 1

Every process of the job runs this same command; Lightning's DDP strategy
(`trainer.strategy: ddp`, `trainer.devices`, `trainer.num_nodes` in the config) finds its rank
from SLURM's variables under `srun`, or from RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR /
MASTER_PORT (torchrun, or a test's own processes). The recipes are those of the notebooks
(`ctrip.stages.train`) and the checkpoint format is theirs: rank 0 writes it; Stage III's
predictions (validation and test) go to `predictions.parquet` beside it.

--config is the run's full configuration, as `ctrip.config.run_config` makes it and a
Stage notebook stores it (a JSON or YAML file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml


class LaunchError(ValueError):
    """Bad input to the entry point: one line, the option and what is wrong."""


def read_config(path: Path) -> dict[str, Any]:
    """A run's configuration from a JSON or YAML file."""
    try:
        text = path.read_text()
    except OSError as err:
        raise LaunchError(f"--config {path}: cannot read it ({err.strerror or err})") from None
    try:
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise LaunchError(f"--config {path}: not JSON/YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict) or "trainer" not in config:
        raise LaunchError(f"--config {path}: not a run's configuration (it has no `trainer`)")
    return config


def _encoders(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        modality, sep, path = item.partition("=")
        if not sep or not path:
            raise LaunchError(f"--encoder {item!r}: expected MODALITY=CHECKPOINT")
        out[modality] = path
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ctrip.stages.launch",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("stage", choices=("stage1", "stage2", "stage3"))
    parser.add_argument("--cohort", type=Path, required=True, help="a cohort folder")
    parser.add_argument("--config", type=Path, required=True, help="the run's config (JSON/YAML)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the checkpoint")
    parser.add_argument("--modality", help="stage1, stage3: the modality trained")
    parser.add_argument("--pairs", default="", help="stage2: e.g. localizer-ecg,localizer-tabular")
    parser.add_argument("--encoder", action="append", default=[], metavar="MODALITY=CHECKPOINT",
                        help="stage2: a Stage I checkpoint per modality")  # fmt: skip
    parser.add_argument("--init", default=None, help="stage3: the checkpoint to start from")
    parser.add_argument("--fraction", type=float, default=None, help="stage3: training fraction")
    parser.add_argument("--frozen", action="store_true", help="stage3: train the head only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tabular-variant", default="T")
    return parser.parse_args(argv)


def launch(args: argparse.Namespace) -> Path:
    """Train the run `args` describe in this process (one rank of it); the checkpoint path."""
    from ctrip.data.cohort import Cohort
    from ctrip.stages.train import run_stage1, run_stage2, run_stage3

    config = read_config(args.config)
    if args.stage in ("stage1", "stage3") and not args.modality:
        raise LaunchError(f"{args.stage}: --modality is required")
    cohort = Cohort.open(args.cohort)
    if args.stage == "stage1":
        return run_stage1(cohort, args.modality, config, args.out, args.seed, args.tabular_variant)
    if args.stage == "stage2":
        pairs = [p.split("-") for p in args.pairs.split(",") if p]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise LaunchError(
                f"--pairs {args.pairs!r}: expected e.g. localizer-ecg,localizer-tabular"
            )
        return run_stage2(cohort, pairs, _encoders(args.encoder), config, args.out, args.seed,
                          args.tabular_variant)  # fmt: skip
    result = run_stage3(cohort, args.modality, args.init, config, args.out, args.seed,
                        args.fraction, args.frozen, args.tabular_variant)  # fmt: skip
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # the rank the trainer set (SLURM's, torchrun's or ours)
        result.predictions.to_parquet(Path(args.out) / "predictions.parquet", index=False)
    return result.checkpoint


def main(argv: list[str] | None = None) -> int:
    from ctrip.data.cohort import CohortError

    args = parse_args(argv)
    try:
        path = launch(args)
    except (LaunchError, CohortError, ValueError, OSError) as err:
        if os.environ.get("CTRIP_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.stage}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
