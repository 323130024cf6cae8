"""The smoke plan three ways, against one `--executor local` run (`smoke_run`, conftest.py):
split into one Stage III run per fraction and seed, the tables and figures read the same
predictions and checkpoints and publish the same bytes; through `--executor submitit-local`,
every run a separate process in dependency order, a job killed mid-run is re-run with its
dependants only and the results folder is byte-identical (every recorded output sha256) to the
local run's.

Beside the shared local run, two smoke plans of its own, most of them real training: about
four minutes on two cores (`make test-e2e --durations`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from ctrip.analysis import report
from ctrip.config import load_settings
from ctrip.pipeline.cache import PipelineError
from ctrip.pipeline.executors import read_jobs
from ctrip.pipeline.plan import build_plan, dependents, slug
from ctrip.pipeline.runner import run_plan

pytestmark = pytest.mark.slow


def quiet(_: str) -> None:
    pass


def executed(outcomes) -> set[str]:
    return {o.name for o in outcomes if o.status == "executed"}


def provenance(results: Path, run: str) -> dict:
    return json.loads((results / "runs" / run / "provenance.json").read_text())


def output_hashes(results: Path, runs: list[str]) -> dict[str, dict[str, str]]:
    """Each run's recorded sha256 of its outputs (the executed notebook aside: it records the
    times of its cells)."""
    return {run: {f: h for f, h in provenance(results, run)["hashes"]["outputs_sha256"].items()
                  if not f.endswith(".ipynb")} for run in runs}  # fmt: skip


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (every thread's children), the deepest first (Linux /proc)."""
    below = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            below += [int(c) for c in children.read_text().split()]
        except OSError:
            pass
    return [p for child in below for p in process_tree(child)] + [pid]


def signal_tree(pid: int, sig: int) -> None:
    for p in process_tree(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def wait_for(condition, timeout: float) -> None:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


def test_a_split_sweep_gives_the_same_predictions_tables_and_figures(smoke_run, tmp_path):
    settings, local, _ = smoke_run  # the shared local run (conftest.py); only read here
    split_settings = load_settings("smoke", ["sweep.split=true"])
    plan, split_plan = build_plan(settings), build_plan(split_settings)
    results = tmp_path / "split"
    shutil.copytree(local, results, symlinks=True)
    outcomes = run_plan(split_plan, results, settings=split_settings, jobs=2, progress=False,
                        log=quiet)  # fmt: skip

    fractions, seeds = settings["sweep"]["fractions"], settings["sweep"]["seeds"]
    sweeps = {
        method: [f"stage3_{slug(method)}_fraction{f:g}_seed{s}" for f in fractions for s in seeds]
        for method in settings["methods"]
    }
    readers = {"table2", "fraction_curves", "screening", "attention_maps"}
    # one run per fraction and seed, and what reads them; Stages I and II are reused
    assert executed(outcomes) == {n for names in sweeps.values() for n in names} | readers
    assert {r.name for r in split_plan} - {r.name for r in plan} == executed(outcomes) - readers
    table2 = next(r for r in split_plan if r.name == "table2")
    assert table2.inputs["stage3"]["L_sup"] == sweeps["L_sup"]

    for method, names in sweeps.items():
        one_run = local / "runs" / f"stage3_{slug(method)}"
        pd.testing.assert_frame_equal(
            report.load_predictions([results / "runs" / n for n in names]),
            report.load_predictions(one_run),
            check_exact=True,
        )
        swept = provenance(local, one_run.name)["hashes"]["outputs_sha256"]
        for name, (f, s) in zip(names, [(f, s) for f in fractions for s in seeds], strict=True):
            own = provenance(results, name)["hashes"]["outputs_sha256"]
            checkpoints = {k: v for k, v in own.items() if k.endswith(".pt")}
            assert checkpoints and all(swept[k] == v for k, v in checkpoints.items())
            assert all(k.startswith(f"fraction{f:g}_seed{s}/") for k in checkpoints)
    for name in ("table2.csv", "pearson_vs_fraction.csv", "screening.csv", "coverage.csv"):
        assert (results / name).read_bytes() == (local / name).read_bytes(), name
    assert output_hashes(results, sorted(readers)) == output_hashes(local, sorted(readers))


def test_submitit_local_matches_local_and_a_killed_job_reruns_with_its_dependants_only(
    smoke_run, tmp_path
):
    settings, local, _ = smoke_run
    plan = build_plan(settings)
    names = [r.name for r in plan]
    results = tmp_path / "jobs"
    target = f"stage3_{slug(settings['figures']['attention']['method'])}"
    downstream = dependents(plan, target)
    assert {"table2", "attention_maps"} <= downstream
    others = set(names) - downstream - {target}
    killed: list[int] = []

    def kill_mid_run() -> None:
        """Stop the target's job once it runs; kill it (job and kernel, as SLURM ends a job)
        once every run that does not read it has been submitted."""
        wait_for(lambda: target in read_jobs(results), timeout=1800)
        pid = int(read_jobs(results)[target]["job_id"])
        signal_tree(pid, signal.SIGSTOP)
        wait_for(lambda: others <= set(read_jobs(results)), timeout=1800)
        killed.append(pid)
        signal_tree(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    with pytest.raises(PipelineError) as failure:
        run_plan(plan, results, settings=settings, jobs=2, progress=False, log=quiet,
                 executor="submitit-local")  # fmt: skip
    killer.join()
    assert killed and f"run {target}: job {killed[0]} failed" in str(failure.value)
    assert not (results / "runs" / target).exists()
    assert all((results / "runs" / n / "provenance.json").exists() for n in others)

    again = run_plan(plan, results, settings=settings, jobs=2, progress=False, log=quiet,
                     executor="submitit-local")  # fmt: skip
    assert executed(again) == {target} | downstream

    jobs = read_jobs(results)
    pids = {jobs[n]["job_id"] for n in names}
    assert len(pids) == len(names) and str(os.getpid()) not in pids  # one process per run
    assert jobs[target]["job_id"] != str(killed[0])
    for run in plan:  # in dependency order: each run started once the runs it reads had ended
        started = datetime.fromisoformat(provenance(results, run.name)["started"])
        for need in run.needs:
            before = provenance(results, need)
            ended = datetime.fromisoformat(before["started"]).timestamp() + before["seconds"]
            assert started.timestamp() >= ended - 1.0, f"{run.name} started before {need} ended"
    assert output_hashes(results, names) == output_hashes(local, names)
