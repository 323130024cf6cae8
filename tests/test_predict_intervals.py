"""`ctrip predict` gives split-conformal intervals from the validation residuals a Stage III
checkpoint stores, at any level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctrip.data.schema import CP_NAMES
from ctrip.predict import conformal_intervals
from ctrip.stages.train import calibration_residuals


def _ckpt(n: int = 99) -> dict:
    residuals = {cp: list(np.arange(1, n + 1, dtype=float) * (1 if i % 2 else -1))
                 for i, cp in enumerate(CP_NAMES)}  # fmt: skip
    return {"calibration": {"split": "val", "residuals": residuals}}


def test_intervals_use_the_conformal_quantile_of_absolute_residuals():
    # |residuals| are 1..99: the 90% split-conformal quantile is the ceil(100 * 0.9) = 90th
    intervals = conformal_intervals(_ckpt(), 0.9, "model.pt")
    low, high = intervals.interval("LVM", 100.0)
    assert (low, high) == (10.0, 190.0)
    assert intervals.interval("LVEF", 60.0) == (-30.0, 150.0)
    low80, high80 = conformal_intervals(_ckpt(), 0.8, "model.pt").interval("LVM", 100.0)
    assert (low80, high80) == (20.0, 180.0)


def test_no_level_or_old_checkpoint_gives_no_intervals(capsys):
    assert conformal_intervals(_ckpt(), 0, "model.pt") is None
    assert conformal_intervals({}, 0.9, "old.pt") is None
    assert "no calibration residuals" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--level"):
        conformal_intervals(_ckpt(), 1.5, "model.pt")
    broken = _ckpt()
    del broken["calibration"]["residuals"]["LVM"]
    with pytest.raises(ValueError, match="calibration.residuals lacks"):
        conformal_intervals(broken, 0.9, "model.pt")


def test_calibration_residuals_come_from_the_validation_split_only():
    frame = pd.DataFrame({"split": ["val", "val", "test"]})
    for cp in CP_NAMES:
        frame[f"{cp}_pred"] = [2.0, 5.0, 100.0]
        frame[f"{cp}_ref"] = [1.0, 1.0, 0.0]
    stored = calibration_residuals(frame)
    assert stored["split"] == "val" and stored["residuals"]["LVM"] == [1.0, 4.0]
