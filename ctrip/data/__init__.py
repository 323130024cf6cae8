"""Cohort data: the on-disk format, validation, splits, datasets and the synthetic simulator."""

from ctrip.data.cohort import Cohort, CohortError, CohortWriter, TabularSpec, write_cohort
from ctrip.data.splits import assign_splits, nested_fractions

__all__ = [
    "Cohort",
    "CohortError",
    "CohortWriter",
    "TabularSpec",
    "assign_splits",
    "nested_fractions",
    "write_cohort",
]
