"""Physiological plausibility of a cohort: a documented table of ranges, with units.

Every tabular field and cardiac phenotype has two ranges:
- outside the *possible* range a value cannot be a measurement of an adult in these units
  (an ejection fraction above 100 %, a negative volume, a height of 1.75 "cm" that was metres):
  the cohort is refused with an error naming the file, subject and field;
- outside the *plausible* range a value is possible but rare enough to deserve a look (a
  severely dilated ventricle, an ECG rate below 50 Hz): the cohort is accepted with a warning
  that counts the subjects and names the first one.

Where published reference ranges exist the plausible bounds sit well outside them, so that
disease is not flagged: for the CMR phenotypes, the healthy 95% ranges of the UK Biobank
reference (Petersen et al. 2017, J Cardiovasc Magn Reson 19:18: e.g. women LVEF 51-70 %,
LVEDV 88-161 mL, RVEF 47-68 %) and the adult normal values collected by Kawel-Boehm et al.
2020 (J Cardiovasc Magn Reson 22:87); for the QT interval, the AHA/ACCF/HRS recommendations
of Rautaharju et al. 2009 (part IV, Circulation 119:e241). The possible
bounds are physical limits (percentages in 0-100, non-negative volumes and durations) or
beyond any recorded adult (heights over 272 cm). The exact widths are our choice.

Arrays are checked for scale: images are floating point in [0, 1] (as preprocessing writes
them); ECGs are millivolts (a cohort whose signals are all below 0.05 mV peak to peak holds
volts, one above 50 mV holds microvolts); the ECG sampling rate is a positive number of Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctrip.data.schema import CP_UNITS


@dataclass(frozen=True)
class Range:
    """Possible (error outside) and plausible (warning outside) bounds of one field, in `unit`."""

    unit: str
    possible: tuple[float, float]
    plausible: tuple[float, float]
    hint: str = ""  # what a value below the possible range usually means


# fmt: off
_VOLUME = (0.0, 1500.0)
_PERCENT = (0.0, 100.0)
CP_RANGES: dict[str, Range] = {
    "LVEDV": Range("mL", _VOLUME, (40.0, 400.0)),
    "LVESV": Range("mL", _VOLUME, (8.0, 320.0)),
    "LVSV": Range("mL", _VOLUME, (15.0, 220.0)),
    "LVEF": Range("%", _PERCENT, (10.0, 85.0), "a fraction (0-1) instead of a percentage?"),
    "LVCO": Range("L/min", (0.0, 50.0), (1.5, 15.0)),
    "LVM": Range("g", (0.0, 2000.0), (30.0, 400.0)),
    "RVEDV": Range("mL", _VOLUME, (40.0, 450.0)),
    "RVESV": Range("mL", _VOLUME, (8.0, 350.0)),
    "RVSV": Range("mL", _VOLUME, (15.0, 220.0)),
    "RVEF": Range("%", _PERCENT, (15.0, 85.0), "a fraction (0-1) instead of a percentage?"),
    "LAVmax": Range("mL", _VOLUME, (15.0, 250.0)),
    "LAVmin": Range("mL", _VOLUME, (3.0, 220.0)),
    "LASV": Range("mL", _VOLUME, (3.0, 130.0)),
    "LAEF": Range("%", _PERCENT, (5.0, 90.0), "a fraction (0-1) instead of a percentage?"),
    "RAVmax": Range("mL", _VOLUME, (15.0, 300.0)),
    "RAVmin": Range("mL", _VOLUME, (3.0, 260.0)),
    "RASV": Range("mL", _VOLUME, (3.0, 130.0)),
    "RAEF": Range("%", _PERCENT, (5.0, 90.0), "a fraction (0-1) instead of a percentage?"),
}
TABLE_RANGES: dict[str, Range] = {
    "age": Range("years", (0.0, 130.0), (18.0, 100.0)),
    "height": Range("cm", (50.0, 272.0), (130.0, 215.0), "metres instead of centimetres?"),
    "weight": Range("kg", (2.0, 650.0), (35.0, 250.0), "grams or pounds?"),
    "bmi": Range("kg/m2", (5.0, 250.0), (13.0, 70.0)),
    "bsa": Range("m2", (0.1, 5.0), (1.1, 3.2)),
    "sbp": Range("mmHg", (30.0, 350.0), (70.0, 250.0), "kPa instead of mmHg?"),
    "dbp": Range("mmHg", (10.0, 250.0), (35.0, 150.0), "kPa instead of mmHg?"),
    "heart_rate": Range("bpm", (10.0, 350.0), (30.0, 200.0), "Hz instead of beats per minute?"),
    "basal_metabolic_rate": Range("kJ/day", (500.0, 40000.0), (2500.0, 20000.0)),
    "ventricular_rate": Range("bpm", (10.0, 350.0), (30.0, 200.0)),
    "p_duration": Range("ms", (0.0, 1000.0), (40.0, 200.0), "seconds instead of ms?"),
    "qrs_duration": Range("ms", (0.0, 1000.0), (50.0, 200.0), "seconds instead of ms?"),
    "pq_interval": Range("ms", (0.0, 2000.0), (80.0, 400.0), "seconds instead of ms?"),
    "rr_interval": Range("ms", (100.0, 6000.0), (300.0, 2000.0), "seconds instead of ms?"),
    "qt_interval": Range("ms", (0.0, 2000.0), (250.0, 650.0), "seconds instead of ms?"),
    "qtc": Range("ms", (0.0, 2000.0), (300.0, 600.0), "seconds instead of ms?"),
    **CP_RANGES,
}
# fmt: on
assert all(CP_RANGES[cp].unit == unit for cp, unit in CP_UNITS.items())

ECG_RATE_HZ = Range("Hz", (0.0, 100_000.0), (50.0, 20_000.0))
ECG_MV_FLAT = 0.05  # peak to peak, mV: below this for every subject, the signals are volts
ECG_MV_MAX = 50.0  # |mV|: above this, the signals are microvolts (or not an ECG)
IMAGE_TOLERANCE = 1e-3  # images are in [0, 1] up to float rounding
MIN_PER_SPLIT = 1  # every split needs subjects: training, early stopping and testing
FEW_PER_SPLIT = 10  # fewer than this in a split: metrics are too noisy to read


@dataclass(frozen=True)
class Implausible:
    """A problem found in a column: the first offending row and how many rows share it."""

    field: str
    row: int
    count: int
    message: str


def check_column(name: str, values: pd.Series) -> tuple[Implausible | None, Implausible | None]:
    """(impossible, implausible) findings for table column `name`; None where none.

    Missing values are not judged here (the cohort format decides where they are allowed).
    """
    spec = TABLE_RANGES.get(name)
    if spec is None:
        return None, None
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(numbers)
    found = []
    for bounds, word in ((spec.possible, "possible"), (spec.plausible, "plausible")):
        low, high = bounds
        outside = present & ((numbers < low) | (numbers > high))
        if not outside.any():
            found.append(None)
            continue
        row = int(np.flatnonzero(outside)[0])
        hint = f" ({spec.hint})" if spec.hint and numbers[row] < low else ""
        found.append(
            Implausible(
                field=name,
                row=row,
                count=int(outside.sum()),
                message=f"{numbers[row]:g} {spec.unit} is outside the {word} range "
                f"{low:g}-{high:g} {spec.unit}{hint}",
            )
        )
    return found[0], found[1]


def check_ecg_rate(rate: object) -> tuple[str | None, str | None]:
    """(error, warning) about a manifest's ECG sampling rate."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not np.isfinite(rate):
        return f"sampling_rate_hz {rate!r} is not a number of Hz", None
    low, high = ECG_RATE_HZ.possible
    if not low < rate <= high:
        return (
            f"sampling_rate_hz {rate:g} is outside the possible range ({low:g}, {high:g}] Hz",
            None,
        )
    low, high = ECG_RATE_HZ.plausible
    if not low <= rate <= high:
        return None, (
            f"sampling_rate_hz {rate:g} is outside the plausible range {low:g}-{high:g} Hz "
            "(the QRS complex needs about 100 Hz or more)"
        )
    return None, None
