"""What the numbers promise across machines, checked by running the code under other CPU kernels.

OpenBLAS picks its kernels by CPU (OPENBLAS_CORETYPE overrides the choice), NumPy and PyTorch
dispatch their own SIMD code by CPU feature, and a matrix product's rounding depends on its
shape. The promise (README, "Same numbers on any machine"):
- the simulated cohort is bitwise the same whatever the chunk size, the worker count and the
  BLAS kernel (it makes no BLAS product), so on one CPU type every number after it is too;
- on a CPU with other vector instructions, emulated here by turning this machine's wider
  instruction sets off in NumPy, PyTorch, oneDNN, MKL and OpenBLAS, the cohort's arrays agree
  within ARRAY_ATOL, its table within TABLE_RTOL, and a short Stage III training's predictions
  within PREDICTION_ATOL (CP units: mL, g, %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORETYPES = ("Haswell", "Zen", "SkylakeX")
COHORT_FILES = ("localizer.npy", "cmr.npy", "ecg.npy", "localizer_heart.npy", "subjects.parquet",
                "latents.parquet", "manifest.yaml")  # fmt: skip
# Measured on an AMD EPYC with AVX-512, emulating an x86-64-v2 CPU (SSE4.2 only): arrays
# 7.9e-6 (values in [0, 1] and mV), table 5.8e-16 relative, predictions after two epochs 6.4e-4.
ARRAY_ATOL = 1e-4
TABLE_RTOL = 1e-10
PREDICTION_ATOL = 1e-2

SYNTH = """
import hashlib, json, sys
from pathlib import Path
from ctrip.data.synth.generate import synthesize_cohort
from ctrip.data.synth.sizes import SynthSizes
out, chunk, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
synthesize_cohort(out, 12, 4, SynthSizes.for_profile("smoke"), progress=False,
                  chunk_size=chunk, workers=workers)
print(json.dumps({n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in sys.argv[4:]}))
"""

STAGE3 = """
import sys
from pathlib import Path
from ctrip.config import make_config
from ctrip.stages.train import run_stage3
from tests.factories import make_tiny_cohort
root = Path(sys.argv[1])
cohort = make_tiny_cohort(root / "cohort", n=24)
config = make_config("smoke", {
    "models": {"localizer": {"patch_size": 8}}, "stage3": {"max_epochs": 2, "batch_size": 8},
    "trainer": {"enable_progress_bar": False, "accelerator": "cpu", "threads": 1}})
run_stage3(cohort, "localizer", None, config, root / "run").predictions.to_parquet(
    root / "predictions.parquet")
"""


def run_python(code: str, *args: object, env: dict[str, str] | None = None) -> str:
    """Run `code` in a fresh interpreter (CPU dispatch is chosen at import) with `env` added."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def older_cpu() -> dict[str, str]:
    """Environment that makes this machine compute like an x86-64-v2 CPU (SSE4.2, no AVX)."""
    from numpy._core._multiarray_umath import (
        __cpu_baseline__,
        __cpu_dispatch__,
        __cpu_features__,
    )

    wider = [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and f not in __cpu_baseline__]
    return {
        "NPY_DISABLE_CPU_FEATURES": " ".join(wider),
        "OPENBLAS_CORETYPE": "Nehalem",
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    }


@pytest.mark.slow
def test_cohort_is_bitwise_the_same_whatever_blas_kernel_chunks_and_workers(tmp_path):
    hashes = {}
    for coretype in CORETYPES:
        for chunk, workers in ((12, 1), (5, 2)):
            out = tmp_path / f"{coretype}-{chunk}-{workers}"
            printed = run_python(SYNTH, out, chunk, workers, *COHORT_FILES,
                                 env={"OPENBLAS_CORETYPE": coretype})  # fmt: skip
            hashes[coretype, chunk, workers] = json.loads(printed)
    reference = hashes["SkylakeX", 12, 1]
    for setting, got in hashes.items():
        differ = [name for name in COHORT_FILES if got[name] != reference[name]]
        assert not differ, f"{setting}: {differ} differ from SkylakeX, one chunk, one worker"


@pytest.mark.slow
def test_cohort_on_another_cpu_agrees_within_the_stated_tolerance(tmp_path):
    for name, env in (("native", {}), ("older", older_cpu())):
        run_python(SYNTH, tmp_path / name, 7, 1, *COHORT_FILES, env=env)
    native, older = tmp_path / "native", tmp_path / "older"
    for array in ("localizer", "cmr", "ecg"):
        a, b = (np.load(folder / f"{array}.npy") for folder in (native, older))
        np.testing.assert_allclose(a, b, rtol=0, atol=ARRAY_ATOL, err_msg=array)
    assert (np.load(native / "localizer_heart.npy") == np.load(older / "localizer_heart.npy")).all()
    for table in ("subjects", "latents"):
        a, b = (pd.read_parquet(folder / f"{table}.parquet") for folder in (native, older))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=TABLE_RTOL, atol=0)


@pytest.mark.slow
def test_training_on_another_cpu_agrees_within_the_stated_tolerance(tmp_path):
    predictions = {}
    for name, env in (("native", {}), ("again", {}), ("older", older_cpu())):
        run_python(STAGE3, tmp_path / name, env=env)
        predictions[name] = pd.read_parquet(tmp_path / name / "predictions.parquet")
    pd.testing.assert_frame_equal(predictions["native"], predictions["again"], check_exact=True)
    pd.testing.assert_frame_equal(predictions["native"], predictions["older"], check_exact=False,
                                  rtol=0, atol=PREDICTION_ATOL)  # fmt: skip
    # On a CPU with wider instructions the emulation must really change the kernels, or the
    # last check proves nothing.
    if not older_cpu()["NPY_DISABLE_CPU_FEATURES"]:
        return
    numbers = predictions["native"].select_dtypes("number").columns
    moved = (predictions["native"][numbers] - predictions["older"][numbers]).abs().to_numpy()
    assert moved.max() > 0, "the older-CPU settings changed no number: emulation not in effect"
