"""`ctrip status RESULTS`: each run of a results folder as done / queued / running / failed,
with the job id and log of `ctrip run --executor submitit-local|slurm`."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="a results folder of `ctrip run`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.pipeline.cache import PipelineError
    from ctrip.pipeline.executors import run_states

    results = args.results
    if not (results / "runs").is_dir():
        raise ValueError(f"{results}: not a results folder of `ctrip run` (it has no runs/)")
    try:
        rows = run_states(results)
    except PipelineError as err:  # an unreadable job record: one line, as for bad input
        raise ValueError(str(err)) from None
    for row in rows:
        print(f"{row['run']:<24} {row['state']:<8} job {row['job_id']:<10} log {row['log']}")
    counts = {
        s: sum(r["state"] == s for r in rows) for s in ("done", "queued", "running", "failed")
    }
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0
