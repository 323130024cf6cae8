"""Shared fixtures."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.factories import make_tiny_cohort


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Path:
    """A valid 40-subject cohort with every modality (16x16 images, 12 x 200 ECG)."""
    return make_tiny_cohort(tmp_path / "cohort")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """The smoke profile run once by `ctrip run` (its plan, then its declared ablation), shared
    by the end-to-end tests: its settings, its results folder and what the command printed.
    A test that changes the folder works on a copy (`shutil.copytree(..., symlinks=True)`)."""
    from ctrip.cli import main
    from ctrip.config import load_settings

    results = tmp_path_factory.mktemp("smoke_run") / "results"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", "--profile", "smoke", "--results", str(results), "--no-progress"])
    assert code == 0, printed.getvalue()[-3000:]
    return load_settings("smoke"), results, printed.getvalue()
