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
from ctrip.io.preprocess import DEFAULT_CROP_MM

if TYPE_CHECKING:
    from ctrip.io.importer import ImportReport


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="cohort folder to write")
    parser.add_argument(
        "--modalities", default="localizer,ecg",
        help="comma-separated array modalities each subject must have: localizer, cmr, ecg "
        "(default: localizer,ecg; the tabular data always comes from the table)",
    )  # fmt: skip
    parser.add_argument(
        "--image-size", type=number_in(8, 4096, integer=True), default=224,
        help="output image side (default 224)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-rate", type=number_in(50, 20000), default=500.0,
        help="ECG sampling rate, Hz (default 500)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-seconds", type=number_in(1, 600), default=10.0,
        help="ECG duration, s (default 10)",
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
        "--restart", action="store_true", help="discard the work folder and start afresh"
    )
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
        "generic", help="one folder per subject: DICOM, NIfTI, WFDB, XML + a CSV"
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
    return 0


def _import(args: argparse.Namespace) -> ImportReport:
    from ctrip.io.importer import ImportSettings, read_boxes, read_cmr_frames

    settings = ImportSettings(
        modalities=tuple(m.strip() for m in args.modalities.split(",") if m.strip()),
        image_size=args.image_size,
        ecg_sampling_rate_hz=args.ecg_rate,
        ecg_seconds=args.ecg_seconds,
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
