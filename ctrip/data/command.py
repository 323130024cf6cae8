"""`ctrip cohort validate PATH`: check a cohort in full and report every problem (up to a cap,
with a count of the rest), or a summary with the plausibility warnings, one line each (see
`ctrip.data.plausibility`)."""

from __future__ import annotations

import argparse
import sys

from ctrip.data.cohort import Cohort


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="cohort folder (holding manifest.yaml)")
    parser.add_argument(
        "--skip-checksums", action="store_true", help="do not recompute the files' sha256"
    )
    parser.add_argument(
        "--min-per-split", type=int, default=1, metavar="N",
        help="fewest subjects each of train, val, test must hold (default 1; 0 for an external "
        "cohort that is only evaluated)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cohort = Cohort.validate(
        args.path, verify_checksums=not args.skip_checksums, min_per_split=args.min_per_split
    )
    counts = cohort.table["split"].value_counts()
    print(f"{cohort.path}: valid cohort ({cohort.manifest['source']}), {cohort.n} subjects")
    print(
        "  splits: " + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in ("train", "val", "test"))
    )
    for name in cohort.modalities:
        if name == "tabular":
            variants = cohort.manifest["tabular_variants"]
            described = [
                f"{v} ({len(cohort.tabular_spec(v).columns)} features"
                + (", leaking on purpose)" if cohort.tabular_spec(v).leaking else ")")
                for v in variants
            ]
            print("  tabular: " + ", ".join(described))
        else:
            print(f"  {name}: {list(cohort.array(name).shape)} {cohort.array(name).dtype}")
    for warning in cohort.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
