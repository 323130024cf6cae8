"""`ctrip cohort synth`: write a simulated cohort."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ctrip.arguments import number_in
from ctrip.data.synth.sizes import SynthSizes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n", type=number_in(1, integer=True), required=True,
        help="number of subjects (at least 3: one per split)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=number_in(0, 2**63 - 1, integer=True), default=0,
        help="random seed (same seed, same bytes)",
    )  # fmt: skip
    parser.add_argument("--out", required=True,
                        help="cohort folder to create (one writer at a time: `.<name>.lock` beside it)")  # fmt: skip
    parser.add_argument("--profile", choices=("smoke", "default", "paper"), default="default",
                        help="array sizes (smoke 32 px / 100 Hz, default 64 px / 250 Hz, paper 224 px / 500 Hz)")  # fmt: skip
    parser.add_argument(
        "--image-size", type=number_in(8, 1024, integer=True),
        help="localizer side in pixels, 8-1024 (overrides the profile)",
    )  # fmt: skip
    parser.add_argument(
        "--cmr-size", type=number_in(8, 1024, integer=True),
        help="cine side in pixels, 8-1024 (overrides the profile)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-hz", type=number_in(50, 5000),
        help="ECG sampling rate, 50-5000 Hz (overrides the profile)",
    )  # fmt: skip
    parser.add_argument(
        "--ecg-seconds", type=number_in(3, 600),
        help="ECG length, 3-600 s (overrides the profile)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=number_in(1, 256, integer=True), default=1,
        help="worker processes (result is identical)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-size", type=number_in(1, integer=True), default=128,
        help="subjects per vectorized chunk",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing cohort folder"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.data.cohort import CohortError, plausibility_warnings_printed
    from ctrip.data.synth.generate import synthesize_cohort
    from ctrip.folder_lock import folder_lock

    sizes = SynthSizes.for_profile(args.profile)
    overrides = {
        "image_size": args.image_size, "cmr_size": args.cmr_size,
        "ecg_sampling_rate_hz": args.ecg_hz, "ecg_seconds": args.ecg_seconds,
    }  # fmt: skip
    sizes = dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    if (
        min(sizes.image_size, sizes.cmr_size) < 8
        or sizes.ecg_samples < 3 * sizes.ecg_sampling_rate_hz
    ):
        print(f"error: sizes too small to simulate: {sizes}", file=sys.stderr)
        return 2
    out = Path(args.out)
    target = out.resolve()

    def busy(holder: str) -> CohortError:
        return CohortError(
            f"is being written by another ctrip cohort synth ({holder}); wait for it to finish "
            "or choose another --out folder",
            file=out,
        )

    try:
        # one writer per cohort folder; the lock lies beside it, as the folder is replaced
        with (
            folder_lock(target.parent / f".{target.name}.lock", busy),
            plausibility_warnings_printed(),
        ):
            path = synthesize_cohort(
                args.out, args.n, args.seed, sizes, workers=args.workers,
                progress=not args.no_progress, chunk_size=args.chunk_size,
                overwrite=args.overwrite,
            )  # fmt: skip
    except FileExistsError:
        print(f"error: {args.out} already exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    except (CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} simulated subjects to {path}")
    return 0
