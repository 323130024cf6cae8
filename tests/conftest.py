"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_tiny_cohort


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Path:
    """A valid 40-subject cohort with every modality (16x16 images, 12 x 200 ECG)."""
    return make_tiny_cohort(tmp_path / "cohort")
