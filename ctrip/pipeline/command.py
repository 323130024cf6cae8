"""`ctrip run --profile P [--cohort PATH] [--set key=value ...] [--book] [--results DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ctrip.pipeline.executors import EXECUTORS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="default",
                        help="smoke | default | paper, or a YAML file of the same form (default: default)")  # fmt: skip
    parser.add_argument("--cohort", type=Path, default=None,
                        help="run on this cohort (made by `ctrip cohort import` or synth) instead of "
                        "simulating one; methods needing a modality it lacks are left out")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set sweep.seeds=[0,1] --set methods.L_sup.frozen=true")  # fmt: skip
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder (default: results/<profile>)")  # fmt: skip
    parser.add_argument(
        "--book", action="store_true",
        help="then build the Jupyter Book: _build/html for the default profile, "
        "_build/<profile>/_build/html for any other (never replacing the default book)",
    )  # fmt: skip
    parser.add_argument("--book-output", type=Path, default=None,
                        help="build the book into this folder instead (its _build/html/ subfolder); "
                        "refused when it holds files an earlier build did not write")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebooks executed at once, also with --executor submitit-local "
                        "(default: the profile's `jobs`); "
                        "the numbers do not depend on it")  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs and whether each is up to date"
    )
    parser.add_argument(
        "--verify", action="store_true",
        help="recompute the sha256 of every recorded output and re-run what differs (by default "
        "an output with its recorded size and modification time is trusted unchanged; one whose "
        "size or time moved is hashed)",
    )  # fmt: skip
    parser.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="local: notebooks on this machine (--jobs at once); slurm: each run one SLURM job "
        "(the profile's `resources:`), submitted once the runs it reads are done; "
        "submitit-local: the same as separate local processes. `ctrip status RESULTS` lists them",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.pipeline.book import book_output_folder, build_book, check_book_output
    from ctrip.pipeline.cache import REPO_DIR, PipelineError, results_lock
    from ctrip.pipeline.plan import build_plan
    from ctrip.pipeline.runner import RunInterrupted, plan_status, run_plan
    from ctrip.pipeline.settings import load_settings

    settings = load_settings(args.profile, args.overrides, cohort=args.cohort)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: at least 1")
    plan = build_plan(settings)
    results = (args.results or REPO_DIR / "results" / settings["profile"]).resolve()
    if args.book:  # before any work: a book folder holding the user's files is refused
        folder = book_output_folder(REPO_DIR, settings, args.book_output)
        if folder is not None:
            check_book_output(folder, unrecorded_ok=args.book_output is None)
    if args.dry_run:
        for name, status in plan_status(plan, results, verify=args.verify).items():
            print(f"{name:<24} {status}")
        return 0
    t0 = time.perf_counter()
    try:
        jobs = args.jobs or int(settings.get("jobs", 1))
        outcomes = run_plan(
            plan, results, settings=settings, jobs=jobs, progress=not args.no_progress,
            verify=args.verify, executor=args.executor,
        )  # fmt: skip
        executed = sum(o.status == "executed" for o in outcomes)
        print(f"ctrip run: {executed} executed, {len(outcomes) - executed} up to date, "
              f"{time.perf_counter() - t0:.0f} s; results in {results}")  # fmt: skip
        if args.book:
            with results_lock(results):
                html = build_book(REPO_DIR, results, plan, settings, output=args.book_output)
            print(f"ctrip run: book built in {html} ({time.perf_counter() - t0:.0f} s in all)")
    except RunInterrupted as err:
        print(f"ctrip run: {err}", file=sys.stderr)
        return 130  # the shell's code for a command ended by SIGINT
    except KeyboardInterrupt:  # a second Ctrl-C
        print("ctrip run: interrupted twice: stopped at once; unfinished runs are not kept, "
              "a re-run of the same command resumes", file=sys.stderr)  # fmt: skip
        return 130
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
