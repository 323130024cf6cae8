"""`ctrip cohort import ukbiobank|generic ...`: real data into the cohort format.

    ctrip cohort import ukbiobank --showcase ukb.csv --bulk bulk/ --out cohorts/ukb
    ctrip cohort import generic --root my_study/ --out cohorts/my_study --modalities localizer

Both resume an interrupted run (same command again), and end with a report of who was
imported and who was dropped, and why (also written to <out>/import_report.txt).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ctrip.arguments import number_in
from ctrip.data.schema import CP_NAMES
from ctrip.io.preprocess import DEFAULT_CROP_MM

if TYPE_CHECKING:
    from ctrip.io.importer import ImportReport


# The flags a profile sets (what its models train on), and the profile's cohort size key.
PROFILE_SIZES = {
    "image_size": "image_size",
    "ecg_rate": "ecg_sampling_rate_hz",
    "ecg_seconds": "ecg_seconds",
}
DEFAULT_SIZES = {"image_size": 224, "ecg_rate": 500.0, "ecg_seconds": 10.0}  # the paper's

GENERIC_LAYOUT = f"""\
layout of --root (one folder per subject, named by its id, plus one table):

  subjects.csv                      one row per subject (columns below)
  <id>/localizer/                   a DICOM series (a folder of slices), or instead
  <id>/localizer.zip | .dcm | .nii | .nii.gz | .npy
  <id>/cmr/                         a DICOM cine, or cmr.zip | .nii(.gz) (4D: X, Y, Z, T) | .npy
                                    (only with --modalities ...,cmr)
  <id>/ecg.xml | ecg.hea + ecg.dat | ecg.dcm
                                    CardioSoft XML, a WFDB record, or a DICOM 12-lead waveform
  <id>/localizer_mask.nii.gz | .npy optional heart mask, same shape as the localizer
  <id>/cmr_mask.nii.gz | .npy       optional cine mask (LV blood pool = label 1)

subjects.csv columns:
  required: {", ".join(("id", "sex", "age", "height", "weight"))}, and the 18 phenotypes
            {" ".join(CP_NAMES[:9])}
            {" ".join(CP_NAMES[9:])}
            (sex female/male or F/M; age in years, height in cm, weight in kg; volumes in mL,
            fractions in %, LVCO in L/min, LVM in g; SV = EDV - ESV, EF = 100 SV / EDV)
  optional: split (train/val/test; default: a stratified split from --split-seed), and any
            other column: a tabular input (numbers numerical, text categorical, or named in
            --categorical), unless it would leak a phenotype (by name or UK Biobank field id)

sizes: --profile smoke|default|paper sets --image-size, --ecg-rate and --ecg-seconds to what
that profile trains on ({{profiles}});
a flag given explicitly wins. Without --profile: {DEFAULT_SIZES["image_size"]} px, \
{DEFAULT_SIZES["ecg_rate"]:g} Hz, {DEFAULT_SIZES["ecg_seconds"]:g} s (the paper's).

work files: each subject is prepared into <out>.work (or --work) so that an interrupted import
resumes; after a successful import they are deleted (the cohort holds everything), unless
--keep-work. --restart, and that clean-up, delete only the files the import made there.

an example tree that imports cleanly: ctrip cohort template generic DIR
"""


def profile_sizes(profile: str) -> dict[str, float]:
    """The import flags a profile sets: the cohort sizes its models train on."""
    from ctrip.config import load_profile

    sizes = load_profile(profile)["cohort"]["sizes"]
    return {flag: sizes[key] for flag, key in PROFILE_SIZES.items()}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="cohort folder to write")
    parser.add_argument(
        "--profile", choices=("smoke", "default", "paper"),
        help="take --image-size, --ecg-rate and --ecg-seconds from what this profile trains on "
        "(explicit flags win)",
    )  # fmt: skip
    parser.add_argument(
        "--modalities", default="localizer,ecg",
        help="comma-separated array modalities each subject must have: localizer, cmr, ecg "
        "(default: localizer,ecg; the tabular data always comes from the table)",
    )  # fmt: skip
    parser.add_argument(
        "--image-size", type=number_in(8, 4096, integer=True),
        help="output image side (default: the profile's, else 224)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-rate", type=number_in(50, 20000),
        help="ECG sampling rate, Hz (default: the profile's, else 500)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-seconds", type=number_in(1, 600),
        help="ECG duration, s (default: the profile's, else 10)",
    )  # fmt: skip
    parser.add_argument(
        "--crop-mm", type=number_in(10, 2000), default=DEFAULT_CROP_MM,
        help=f"side of the centred crop when no heart mask or box is given (default {DEFAULT_CROP_MM:g} mm)",
    )  # fmt: skip
    parser.add_argument(
        "--localizer-boxes", help="CSV id,r0,c0,r1,c1[,slice]: heart boxes on the localizer"
    )
    parser.add_argument("--cmr-frames", help="CSV id,ed,es: end-diastole/end-systole frame indices")
    parser.add_argument("--work", help="work folder for resuming (default: <out>.work)")
    parser.add_argument(
        "--workers", type=number_in(1, 256, integer=True), default=1,
        help="parallel processes (default 1)",
    )  # fmt: skip
    parser.add_argument("--retry-dropped", action="store_true", help="try dropped subjects again")
    parser.add_argument(
        "--restart", action="store_true",
        help="delete the files an earlier import made in the work folder and start afresh",
    )  # fmt: skip
    parser.add_argument(
        "--keep-work", action="store_true",
        help="keep the work files after a successful import (by default they are deleted: "
        "they take as much disk as the cohort)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing cohort at --out"
    )
    parser.add_argument(
        "--split-seed", type=number_in(0, 2**63 - 1, integer=True), default=0,
        help="seed of the train/val/test split",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def configure(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", required=True, metavar="{ukbiobank,generic}")
    ukb = formats.add_parser("ukbiobank", help="UK Biobank showcase CSV + bulk files")
    ukb.add_argument("--showcase", required=True, help="showcase CSV (eid + field columns)")
    ukb.add_argument(
        "--bulk", required=True, help="folder of bulk files <eid>_<field>_<instance>_<array>"
    )
    ukb.add_argument(
        "--masks", help="folder of <eid>_localizer_mask / <eid>_cmr_mask (.nii.gz or .npy)"
    )
    ukb.add_argument(
        "--limit", type=number_in(1, integer=True), help="import only the first N participants"
    )
    _common(ukb)
    generic = formats.add_parser(
        "generic",
        help="one folder per subject: DICOM, NIfTI, WFDB, XML + a CSV",
        description="Import a study laid out as one folder per subject plus a subjects CSV.",
        epilog=GENERIC_LAYOUT.format(
            profiles=", ".join(
                f"{name} {sizes['image_size']} px / {sizes['ecg_rate']:g} Hz / {sizes['ecg_seconds']:g} s"
                for name in ("smoke", "default", "paper")
                for sizes in [profile_sizes(name)]
            )
        ),  # fmt: skip
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generic.add_argument(
        "--root", required=True, help="folder with subjects.csv and one folder per subject"
    )
    generic.add_argument("--table", help="subjects CSV (default: <root>/subjects.csv)")
    generic.add_argument(
        "--categorical", default="", help="comma-separated table columns to treat as categorical"
    )
    generic.add_argument("--source", help="source name in the manifest")
    _common(generic)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.data.cohort import plausibility_warnings_printed

    with plausibility_warnings_printed():
        report = _import(args)
    print(report.summary())
    print(f"cohort written to {report.cohort}; report in {report.cohort}/import_report.txt")
    if report.kept:
        print(f"the work folder keeps {len(report.kept)} file(s) the import did not make, e.g. "
              f"{report.kept[0]}")  # fmt: skip
    return 0


def import_sizes(args: argparse.Namespace) -> dict[str, float]:
    """--image-size, --ecg-rate, --ecg-seconds: as given, else the profile's, else the paper's."""
    base = profile_sizes(args.profile) if args.profile else DEFAULT_SIZES
    return {flag: getattr(args, flag) if getattr(args, flag) is not None else base[flag]
            for flag in DEFAULT_SIZES}  # fmt: skip


def _import(args: argparse.Namespace) -> ImportReport:
    from ctrip.io.importer import ImportSettings, read_boxes, read_cmr_frames

    sizes = import_sizes(args)
    settings = ImportSettings(
        modalities=tuple(m.strip() for m in args.modalities.split(",") if m.strip()),
        image_size=int(sizes["image_size"]),
        ecg_sampling_rate_hz=float(sizes["ecg_rate"]),
        ecg_seconds=float(sizes["ecg_seconds"]),
        crop_mm=args.crop_mm,
    )
    common = dict(
        boxes=read_boxes(args.localizer_boxes) if args.localizer_boxes else None,
        cmr_frames=read_cmr_frames(args.cmr_frames) if args.cmr_frames else None,
        work_dir=args.work,
        workers=args.workers,
        retry_dropped=args.retry_dropped,
        restart=args.restart,
        overwrite=args.overwrite,
        split_seed=args.split_seed,
        progress=not args.no_progress,
        keep_work=args.keep_work,
    )
    if args.format == "ukbiobank":
        from ctrip.io.ukbiobank import import_ukbiobank

        report = import_ukbiobank(
            args.showcase,
            args.bulk,
            args.out,
            settings,
            masks_dir=args.masks,
            limit=args.limit,
            **common,
        )
    else:
        from ctrip.io.generic import import_generic

        categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
        report = import_generic(
            args.root, args.out, settings, table_csv=args.table, categorical=categorical,
            source=args.source, **common,
        )  # fmt: skip
    return report
