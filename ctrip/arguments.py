"""Command-line value types with a range, so a bad value is an argparse error naming the option
(`--ecg-hz 0`, `--chunk-size 0`) before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number_in(
    low: float, high: float = math.inf, *, integer: bool = False
) -> Callable[[str], float | int]:
    """An argparse `type` accepting numbers in [low, high] (whole numbers if `integer`)."""
    kind = "a whole number" if integer else "a number"
    bounds = f">= {low:g}" if math.isinf(high) else f"in {low:g}..{high:g}"

    def parse(text: str) -> float | int:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is not {bounds}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse
