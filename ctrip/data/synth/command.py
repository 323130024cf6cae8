"""`ctrip cohort synth`: write a simulated cohort."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ctrip.data.synth.sizes import SynthSizes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="number of subjects")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--out", required=True, help="cohort folder to create")
    parser.add_argument("--profile", choices=("smoke", "default", "paper"), default="default",
                        help="array sizes (smoke 32 px / 100 Hz, default 64 px / 250 Hz, paper 224 px / 500 Hz)")  # fmt: skip
    parser.add_argument(
        "--image-size", type=int, help="localizer side in pixels (overrides the profile)"
    )
    parser.add_argument("--cmr-size", type=int, help="cine side in pixels (overrides the profile)")
    parser.add_argument("--ecg-hz", type=float, help="ECG sampling rate (overrides the profile)")
    parser.add_argument(
        "--ecg-seconds", type=float, help="ECG length in seconds (overrides the profile)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (result is identical)"
    )
    parser.add_argument("--chunk-size", type=int, default=128, help="subjects per vectorized chunk")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing cohort folder"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctrip.data.cohort import CohortError
    from ctrip.data.synth.generate import synthesize_cohort

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
    try:
        path = synthesize_cohort(
            args.out, args.n, args.seed, sizes, workers=args.workers,
            progress=not args.no_progress, chunk_size=args.chunk_size, overwrite=args.overwrite,
        )  # fmt: skip
    except FileExistsError:
        print(f"error: {args.out} already exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    except (CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} simulated subjects to {path}")
    return 0
