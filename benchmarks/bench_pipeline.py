"""Time the pipeline the way `make book` runs it: a fresh run with the book, a second run with
nothing changed, and a run after changing one Stage III parameter (which must re-run only its
dependents). Prints the figures, then where the fresh run's time went: each run's wall and CPU
seconds and the plan's critical path (`ctrip.pipeline.timings`); asserts nothing.

    .venv/bin/python benchmarks/bench_pipeline.py --profile smoke
    .venv/bin/python benchmarks/bench_pipeline.py --profile default --results /tmp/bench-default
    .venv/bin/python benchmarks/bench_pipeline.py --profile default --fresh-only  # the budget's run
    .venv/bin/python benchmarks/bench_pipeline.py --profile default --timings-of RESULTS  # no run
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ctrip_run(
    profile: str, results: Path, book_output: Path, *extra: str
) -> tuple[float, list[str], str]:
    cmd = [str(REPO / ".venv" / "bin" / "ctrip"), "run", "--profile", profile, "--results", str(results),
           "--book", "--book-output", str(book_output), "--no-progress", *extra]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    ran = re.findall(r"\] (\S+)\s+done in ([\d.]+) s", done.stdout)
    for name, s in ran:
        print(f"    {name:<22} {float(s):7.1f} s")
    return seconds, [name for name, _ in ran], done.stdout


def print_timings(profile: str, results: Path) -> None:
    """Each run's wall and CPU seconds in `results` and the critical path of the profile's plan."""
    from ctrip.config import load_settings
    from ctrip.pipeline.plan import build_plan
    from ctrip.pipeline.timings import timings_markdown

    print(f"\nwhere the time went ({results}):\n")
    print(timings_markdown(build_plan(load_settings(profile)), results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="smoke")
    parser.add_argument(
        "--results", type=Path, default=None, help="default: a fresh temporary folder"
    )
    parser.add_argument(
        "--change", default="methods.L_sup.frozen=true", help="the Stage III override"
    )
    parser.add_argument(
        "--timings-of", type=Path, default=None, metavar="RESULTS",
        help="only print the timings of an existing results folder of the profile (no run)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-only", action="store_true",
        help="time only the fresh run with its book (the budget's figure), not steps 2 and 3",
    )  # fmt: skip
    args = parser.parse_args()
    if args.timings_of is not None:
        print_timings(args.profile, args.timings_of)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = args.results or Path(tmp) / "results"
        book = Path(tmp) / "book"
        print(f"profile {args.profile}, results {results}")
        print("1. fresh run + book")
        fresh, ran, _ = ctrip_run(args.profile, results, book)
        if args.fresh_only:
            print(
                f"\nfresh run + book: {fresh:.1f} s ({fresh / 60:.1f} min), {len(ran)} notebooks run"
            )
            print_timings(args.profile, results)
            return
        print("2. second run, nothing changed, + book")
        cached, ran_cached, _ = ctrip_run(args.profile, results, book)
        print(f"3. after --set {args.change}, + book")
        changed, ran_changed, _ = ctrip_run(args.profile, results, book, "--set", args.change)
        print(f"\n{'step':<38} {'wall s':>8} {'notebooks run':>14}")
        print(f"{'fresh run + book':<38} {fresh:8.1f} {len(ran):>14}")
        print(f"{'nothing changed + book':<38} {cached:8.1f} {len(ran_cached):>14}")
        print(
            f"{'one Stage III parameter + book':<38} {changed:8.1f} {len(ran_changed):>14}  ({', '.join(ran_changed)})"
        )
        # the runs the change re-ran have their new times: the fresh run's are those of the rest
        print_timings(args.profile, results)


if __name__ == "__main__":
    main()
