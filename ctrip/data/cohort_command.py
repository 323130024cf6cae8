"""`ctrip cohort validate PATH`: open a cohort and report the first problem, or a summary."""

from __future__ import annotations

import argparse

from ctrip.data.cohort import Cohort


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="cohort folder (holding manifest.yaml)")
    parser.add_argument(
        "--skip-checksums", action="store_true", help="do not recompute the files' sha256"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cohort = Cohort.open(args.path, verify_checksums=not args.skip_checksums)
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
    return 0
