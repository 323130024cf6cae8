"""`ctrip run --profile P [--cohort PATH] [--set key=value ...] [--ablation NAME] [--book]
[--results DIR]`."""

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
    parser.add_argument(
        "--ablation", default=None, metavar="NAME",
        help="run the --set values (or the profile's `ablations: {NAME: [...]}`) as ablation NAME of "
        "the base results (--results or results/<profile>), into <base>/ablations/NAME/: only the "
        "runs the change reaches execute, the others are the base's; --book builds the base's "
        "book, which gains the page 'Ablation NAME'",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.config import load_settings
    from ctrip.pipeline.ablations import ablation_status, link_base_runs, prepare_ablation
    from ctrip.pipeline.book import book_output_folder, build_book, check_book_output
    from ctrip.pipeline.cache import REPO_DIR, PipelineError, results_lock
    from ctrip.pipeline.plan import build_plan
    from ctrip.pipeline.runner import NOTEBOOKS_DIR, RunInterrupted, plan_status, run_plan

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: at least 1")
    # With --ablation, --set is the ablation's change and the base is the profile's plan.
    base_overrides = [] if args.ablation else args.overrides
    settings = load_settings(args.profile, base_overrides, cohort=args.cohort)
    plan = build_plan(settings)
    results = (args.results or REPO_DIR / "results" / settings["profile"]).resolve()
    declared = dict(settings.get("ablations") or {})
    if args.ablation:
        declared = {args.ablation: args.overrides or declared.get(args.ablation) or []}
    ablations = [
        prepare_ablation(name, args.profile, base_overrides, list(changes), args.cohort, results,
                         NOTEBOOKS_DIR)
        for name, changes in declared.items()
    ]  # fmt: skip
    if args.book:  # before any work: a book folder holding the user's files is refused
        folder = book_output_folder(REPO_DIR, settings, args.book_output)
        if folder is not None:
            check_book_output(folder, unrecorded_ok=args.book_output is None)
    if args.dry_run:
        if not args.ablation:
            for name, status in plan_status(plan, results, verify=args.verify).items():
                print(f"{name:<24} {status}")
        for ablation in ablations:
            print(f"ablation {ablation.name} (in {ablation.folder}):")
            for name, status in ablation_status(ablation.plan, results, ablation.folder,
                                                NOTEBOOKS_DIR).items():  # fmt: skip
                print(f"  {name:<22} {status}")
        return 0
    t0 = time.perf_counter()
    try:
        jobs = args.jobs or int(settings.get("jobs", 1))
        options = {"jobs": jobs, "progress": not args.no_progress, "verify": args.verify,
                   "executor": args.executor}  # fmt: skip
        if not args.ablation:
            outcomes = run_plan(plan, results, settings=settings, **options)
            executed = sum(o.status == "executed" for o in outcomes)
            print(f"ctrip run: {executed} executed, {len(outcomes) - executed} up to date, "
                  f"{time.perf_counter() - t0:.0f} s; results in {results}")  # fmt: skip
        for ablation in ablations:
            reused = link_base_runs(ablation.plan, results, ablation.folder, NOTEBOOKS_DIR)
            outcomes = run_plan(
                ablation.plan, ablation.folder, settings=ablation.settings, **options
            )
            executed = sum(o.status == "executed" for o in outcomes)
            print(f"ctrip run: ablation {ablation.name}: {executed} executed, {len(reused)} reused "
                  f"from the base, {time.perf_counter() - t0:.0f} s; results in {ablation.folder}")  # fmt: skip
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
