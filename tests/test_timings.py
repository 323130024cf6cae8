"""Run timings: the runner records each run's wall and CPU seconds (the CPU of its own kernel,
also with several kernels at once), and `ctrip.pipeline.timings` tables them with the plan's
critical path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrip.pipeline.plan import Run
from ctrip.pipeline.runner import run_plan
from ctrip.pipeline.timings import critical_path, plan_summary, run_timings, timings_markdown
from tests.test_pipeline import notebooks, write_notebook  # noqa: F401

# cohort -> a -> c, cohort -> b -> c, cohort -> d; e was never run.
FAKE = {"cohort": 10.0, "a": 100.0, "b": 50.0, "c": 150.0, "d": 200.0}
STARTED = {"cohort": "12:00:00", "a": "12:00:10", "b": "12:00:10", "c": "12:01:50",
           "d": "12:00:10"}  # fmt: skip


def fake_plan() -> list[Run]:
    return [
        Run("cohort", None, {}, step="cohort"),
        Run("a", "a.ipynb", {}, needs=["cohort"], step="stage1"),
        Run("b", "b.ipynb", {}, needs=["cohort"], step="stage1"),
        Run("d", "d.ipynb", {}, needs=["cohort"], step="stage3"),
        Run("c", "c.ipynb", {}, needs=["cohort", "a", "b"], step="analysis"),
        Run("e", "e.ipynb", {}, needs=["cohort", "d"], step="analysis"),
    ]


@pytest.fixture
def fake_results(tmp_path: Path) -> Path:
    for name, seconds in FAKE.items():
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        record = {"key": name, "hashes": {"outputs_sha256": {}}, "seconds": seconds,
                  "started": f"2026-01-01T{STARTED[name]}+00:00", "threads": 1,
                  "cpu_seconds": None if name == "b" else seconds / 2}  # fmt: skip
        (folder / "provenance.json").write_text(json.dumps(record))
    return tmp_path


def test_critical_path_is_the_longest_chain_of_wall_time():
    plan = fake_plan()
    assert critical_path(plan, FAKE) == ["cohort", "a", "c"]  # 260 s against 210 via d
    assert critical_path(plan, {**FAKE, "e": 61.0}) == ["cohort", "d", "e"]  # 271 s
    assert critical_path(plan, {**FAKE, "b": 101.0}) == ["cohort", "b", "c"]
    assert critical_path([], {}) == []


def test_timings_table_and_markdown(fake_results):
    plan = fake_plan()
    table = run_timings(plan, fake_results)
    assert list(table["run"]) == ["cohort", "a", "b", "d", "c"]  # e has no record
    assert table.set_index("run")["critical"].to_dict() == {
        "cohort": True, "a": True, "b": False, "d": False, "c": True}  # fmt: skip
    assert table.set_index("run").loc["a", "cpu_per_wall"] == pytest.approx(0.5)
    summary = plan_summary(plan, table)
    assert summary["critical_s"] == 260.0 and summary["wall_s"] == 510.0
    assert summary["span_s"] == 260.0  # 12:00:00 to c's end at 12:04:20
    assert summary["cpu_s"] == pytest.approx(230.0)  # b's CPU not recorded
    # 0-10 s: cohort; 10-60: a, b, d; 60-110: a, d; 110-210: c, d; 210-260: c
    assert summary["concurrency"] == {1: 60.0, 2: 150.0, 3: 50.0}
    text = timings_markdown(plan, fake_results)
    assert "| a | 12:00:10 | 100.0 | 50.0 | 0.50 | yes |" in text
    assert "| b | 12:00:10 | 50.0 | not recorded |  |  |" in text
    assert "Critical path (260 s): cohort -> a -> c" in text
    assert (
        "5 runs; first start to last end 260 s; wall seconds summed over runs 510 s (1.96 runs "
        "at once on average); CPU 230 s. Seconds with k runs going: 1: 60, 2: 150, 3: 50." in text
    )


@pytest.mark.slow
def test_each_run_records_the_cpu_of_its_own_kernel(tmp_path, notebooks, tiny_cohort):  # noqa: F811
    write_notebook(notebooks / "burn.ipynb", "out_dir = ''\nseconds = 0.0",
                   "import time\nt0 = time.process_time()\n"
                   "while time.process_time() - t0 < seconds:\n    sum(range(10000))")  # fmt: skip
    write_notebook(notebooks / "sleep.ipynb", "out_dir = ''\nseconds = 0.0",
                   "import time\ntime.sleep(seconds)")  # fmt: skip
    plan = [Run("cohort", None, {"cohort": {"path": str(tiny_cohort)}}),
            Run("burn", "burn.ipynb", {"seconds": 3.0}, needs=["cohort"]),
            Run("sleep", "sleep.ipynb", {"seconds": 3.0}, needs=["cohort"])]  # fmt: skip
    results = tmp_path / "results"
    run_plan(plan, results, notebooks_dir=notebooks, jobs=2, progress=False, log=lambda _: None)
    table = run_timings(plan, results).set_index("run")
    assert table.loc["burn", "cpu_s"] >= 3.0
    assert table.loc["sleep", "wall_s"] >= 3.0
    # the two kernels ran side by side: the burn is counted in its own run only
    assert table.loc["sleep", "cpu_s"] < table.loc["burn", "cpu_s"] - 2.5
    assert table.loc["cohort", "cpu_s"] >= 0.0
