"""benchmarks/gpu_check.py: without a GPU it says so and makes a CPU dry pass of every stage of
the paper profile (exit 0); a stage that fails is reported while the others still run (exit 1)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_dry_pass_of_every_stage_exits_0():
    done = subprocess.run([sys.executable, str(SCRIPT), "--small", "--cpu", "--steps", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no GPU found" in done.stdout or "GPU:" in done.stdout
    assert "all 9 stages ok on cpu" in done.stdout
    for name in ("stage1 localizer", "stage1 cmr", "stage1 ecg", "stage1 tabular",
                 "stage2 localizer+ecg+tabular", "stage3 localizer", "stage3 tabular"):  # fmt: skip
        assert any(line.startswith(name) and " ok " in line for line in done.stdout.splitlines())


def test_one_failing_stage_is_reported_and_the_others_run(monkeypatch, capsys):
    gpu_check = load_gpu_check(monkeypatch)
    real_build = gpu_check.build

    def build(stage, what, config, cohort):
        if stage == "stage1":
            raise RuntimeError("simulated out of memory")
        return real_build(stage, what, config, cohort)

    monkeypatch.setattr(gpu_check, "build", build)
    code = gpu_check.main(["--small", "--cpu", "--steps", "2", "--only", "stage1 tabular",
                           "stage3 tabular"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "stage1 tabular                   FAILED RuntimeError: simulated out of memory" in out
    assert any(line.startswith("stage3 tabular") and " ok " in line for line in out.splitlines())
    assert "FAILED: 1 of 2 stages (stage1 tabular)" in out


def test_a_non_finite_loss_fails_its_stage(monkeypatch, capsys):
    gpu_check = load_gpu_check(monkeypatch)
    real_step = gpu_check.step_loss
    monkeypatch.setattr(gpu_check, "step_loss", lambda m, b: real_step(m, b) * float("nan"))
    code = gpu_check.main(["--small", "--cpu", "--steps", "2", "--only", "stage3 tabular"])
    assert code == 1
    assert "loss not finite" in capsys.readouterr().out


def test_an_unknown_stage_is_one_line_and_exit_2(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_gpu_check(monkeypatch).main(["--only", "stage4 tabular"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--only: unknown stage(s) ['stage4 tabular']" in err and "Traceback" not in err
