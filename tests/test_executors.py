"""`ctrip run --executor submitit-local | slurm`: each run one job, submitted once the runs it
reads are done; the results equal the local executor's; a killed job is re-run with its
dependants only; Ctrl-C cancels what was submitted; `ctrip status` lists runs and jobs; with a
fake SLURM on PATH, one sbatch per run with the profile's resources, nothing done or in flight
submitted again.

The plan is the reduced one of tests/test_pipeline.py (real notebooks executed by papermill in
each job's process); the smoke plan's byte-identity and killed job are in
tests/test_smoke_executors.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ctrip.cli import main
from ctrip.config import load_settings
from ctrip.pipeline.cache import PipelineError
from ctrip.pipeline.executors import job_parameters, read_jobs
from ctrip.pipeline.plan import Run
from ctrip.pipeline.runner import RunInterrupted, run_plan
from tests.test_pipeline import executed, notebooks, write_notebook  # noqa: F401

pytestmark = pytest.mark.slow

RESOURCES = {k: {"gpus": 0, "cpus": 1, "mem_gb": 2, "time_min": 10, "partition": ""}
             for k in ("stage1", "stage2", "stage3", "analysis")}  # fmt: skip
SETTINGS = {"profile": "test", "resources": RESOURCES}


def quiet(_: str) -> None:
    pass


def job_plan(cohort: Path, hold: Path | None = None) -> list[Run]:
    """cohort -> a -> b -> e; c beside them. b waits while the file `hold` exists."""
    return [
        Run("cohort", None, {"cohort": {"path": str(cohort)}}),
        Run("a", "write.ipynb", {"x": 1}, needs=["cohort"]),
        Run(
            "b",
            "slow.ipynb",
            {"y": 10, "hold": str(hold or "")},
            inputs={"source": "a"},
            needs=["cohort", "a"],
        ),  # fmt: skip
        Run("c", "write.ipynb", {"x": 5}, needs=["cohort"]),
        Run("e", "add.ipynb", {"y": 100}, inputs={"source": "b"}, needs=["cohort", "b"]),
    ]


@pytest.fixture
def job_notebooks(notebooks: Path) -> Path:  # noqa: F811
    write_notebook(notebooks / "slow.ipynb", "out_dir = ''\nsource = ''\ny = 0\nhold = ''",
                   "import time\nfrom pathlib import Path\n"
                   "while hold and Path(hold).exists():\n    time.sleep(0.1)\n"
                   "v = int(Path(source, 'value.txt').read_text())\n"
                   "Path(out_dir, 'value.txt').write_text(str(v + y))")  # fmt: skip
    return notebooks


def output_hashes(results: Path) -> dict[str, dict[str, str]]:
    """Every run's recorded sha256 of its outputs (the executed notebook aside: it records
    the times of its cells)."""
    out = {}
    for run in sorted((results / "runs").glob("[!.]*")):
        hashes = json.loads((run / "provenance.json").read_text())["hashes"]["outputs_sha256"]
        out[run.name] = {f: h for f, h in hashes.items() if not f.endswith(".ipynb")}
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, the deepest first (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    below = [int(c) for c in children.read_text().split()] if children.exists() else []
    return [p for child in below for p in process_tree(child)] + [pid]


def wait_for(condition, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


def test_submitit_local_runs_jobs_in_order_with_the_local_results(tmp_path, job_notebooks,
                                                                   tiny_cohort):  # fmt: skip
    local, jobs = tmp_path / "local", tmp_path / "jobs"
    run_plan(job_plan(tiny_cohort), local, notebooks_dir=job_notebooks, settings=SETTINGS,
             progress=False, log=quiet)  # fmt: skip
    log: list[str] = []
    outcomes = run_plan(job_plan(tiny_cohort), jobs, notebooks_dir=job_notebooks,
                        settings=SETTINGS, progress=False, log=log.append,
                        executor="submitit-local", jobs=1)  # fmt: skip
    assert executed(outcomes) == {"cohort", "a", "b", "c", "e"}
    assert output_hashes(jobs) == output_hashes(local)
    assert (jobs / "runs" / "e" / "value.txt").read_text() == "111"
    recorded = read_jobs(jobs)
    ids = {recorded[n]["job_id"] for n in recorded}
    assert len(ids) == 5 and str(os.getpid()) not in ids  # five processes, none of them this one
    assert all(Path(recorded[n]["log"]).exists() for n in recorded)

    def line(text: str) -> int:
        return next(i for i, x in enumerate(log) if text in x)

    for run, reads in (("a", "cohort"), ("b", "a"), ("e", "b")):
        assert line(f"{reads}: done") < line(f"] {run} ") < line(f"{run}: done")

    submitted = [i for i, x in enumerate(log) if "submitted as job" in x]
    for i in submitted:  # --jobs 1: each job once the one before it is done
        assert sum("submitted as job" in x for x in log[:i]) == sum(
            ": done (job" in x for x in log[:i]
        )
    assert main(["status", str(jobs)]) == 0
    # a second invocation submits nothing
    again = run_plan(job_plan(tiny_cohort), jobs, notebooks_dir=job_notebooks, settings=SETTINGS,
                     progress=False, log=quiet, executor="submitit-local")  # fmt: skip
    assert executed(again) == set() and read_jobs(jobs) == recorded


def test_a_killed_job_is_rerun_with_its_dependants_only(tmp_path, job_notebooks, tiny_cohort,
                                                        capsys):  # fmt: skip
    results, hold = tmp_path / "results", tmp_path / "hold"
    hold.touch()
    plan = job_plan(tiny_cohort, hold)

    def kill_b() -> None:  # the job and every process under it, as SLURM ends a job
        wait_for(lambda: "b" in read_jobs(results))
        for pid in process_tree(int(read_jobs(results)["b"]["job_id"])):
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_b)
    killer.start()
    with pytest.raises(PipelineError) as failure:
        run_plan(plan, results, notebooks_dir=job_notebooks, settings=SETTINGS, progress=False,
                 log=quiet, executor="submitit-local", jobs=2)  # fmt: skip
    killer.join()
    job = read_jobs(results)["b"]
    assert f"run b: job {job['job_id']} failed" in str(failure.value)
    assert f"log: {job['log']}" in str(failure.value)
    assert main(["status", str(results)]) == 0
    status = capsys.readouterr().out
    assert f"b                        failed   job {job['job_id']}" in status
    assert (
        "a                        done" in status and "e                        not run" in status
    )

    hold.unlink()  # b's key is unchanged: the kill, not its parameters, made it fail
    again = run_plan(plan, results, notebooks_dir=job_notebooks, settings=SETTINGS,
                     progress=False, log=quiet, executor="submitit-local", jobs=2)  # fmt: skip
    assert executed(again) == {"b", "e"}
    assert (results / "runs" / "e" / "value.txt").read_text() == "111"


def test_ctrl_c_cancels_the_submitted_jobs_and_says_which(tmp_path, job_notebooks, tiny_cohort,
                                                          capsys):  # fmt: skip
    results, hold = tmp_path / "results", tmp_path / "hold"
    hold.touch()

    def interrupt() -> None:
        wait_for(lambda: "b" in read_jobs(results))
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    with pytest.raises(RunInterrupted) as stopped:
        run_plan(job_plan(tiny_cohort, hold), results, notebooks_dir=job_notebooks,
                 settings=SETTINGS, progress=False, log=quiet, executor="submitit-local")  # fmt: skip
    thread.join()
    pid = int(read_jobs(results)["b"]["job_id"])
    assert f"cancelled b (job {pid})" in str(stopped.value)
    wait_for(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0,
             timeout=30)  # fmt: skip
    assert not (results / "runs" / "b").exists()  # never published
    assert main(["status", str(results)]) == 0
    assert "b                        failed" in capsys.readouterr().out


# ---------------------------------------------------------------------------- a fake SLURM

FAKE_SBATCH = """\
#!{python}
# Records the submission, then runs the job script detached, as SLURM would.
import os, pathlib, re, subprocess, sys
state = pathlib.Path(os.environ["FAKE_SLURM"])
script = pathlib.Path(sys.argv[-1]).read_text()
ids = sorted(int(p.stem) for p in state.glob("*.state"))
job_id = str((ids[-1] if ids else 100) + 1)
name = re.search(r"--job-name=(\\S+)", script).group(1)
runs = pathlib.Path(os.environ["FAKE_SLURM_RESULTS"]) / "runs"  # published runs
done = sorted("ctrip-" + p.name for p in runs.glob("[!.]*")) if runs.is_dir() else []
with open(state / "submissions.log", "a") as log:
    log.write(f"{{job_id}} {{name}} done-before={{','.join(done)}}\\n")
(state / f"{{job_id}}.sbatch").write_text(script)
(state / f"{{job_id}}.state").write_text(f"RUNNING {{name}}")
runner = f'''
bash {{state / (job_id + ".sbatch")}} && s=COMPLETED || s=FAILED
echo "$s {{name}}" > {{state / (job_id + ".state")}}
'''
env = {{**os.environ, "SLURM_JOB_ID": job_id, "SLURM_NTASKS": "1", "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_NODELIST": "localhost"}}
subprocess.Popen(["bash", "-c", runner], env=env, start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"Submitted batch job {{job_id}}")
"""
FAKE_SRUN = """\
#!{python}
# Drops srun's options and runs the command, its output where --output/--error say.
import os, sys
args, out, err = sys.argv[1:], None, None
while args[0].startswith("--"):
    option = args.pop(0)
    if option in ("--output", "--error"):
        path = args.pop(0).replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
        out, err = (path, err) if option == "--output" else (out, path)
for path, fd in ((out, 1), (err, 2)):
    if path:
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
os.execvp(args[0], args)
"""
FAKE_SACCT = """\
#!{python}
# sacct -j ID[,ID]: the states the fake sbatch wrote (-n: no header, State only).
import os, pathlib, sys
state = pathlib.Path(os.environ["FAKE_SLURM"])
ids = sys.argv[sys.argv.index("-j") + 1].split(",")
bare = "-n" in sys.argv
if not bare:
    print("JobID|State|NodeList")
for i in ids:
    f = state / f"{{i}}.state"
    if f.exists():
        s = f.read_text().split()[0]
        print(s if bare else f"{{i}}|{{s}}|localhost")
"""
FAKE_SQUEUE = """\
#!{python}
# squeue -j ID: as sacct; squeue --name NAME -o "%i %T": the fake jobs of that name.
import os, pathlib, subprocess, sys
state = pathlib.Path(os.environ["FAKE_SLURM"])
if "--name" not in sys.argv:
    sys.exit(subprocess.run(["sacct", *sys.argv[1:]]).returncode)
name = sys.argv[sys.argv.index("--name") + 1]
for f in sorted(state.glob("*.state")):
    job_state, job_name = f.read_text().split()
    if job_name == name:
        print(f"{{f.stem}} {{job_state}}")
"""
FAKE_SCANCEL = '#!/bin/sh\necho "$@" >> "$FAKE_SLURM/scancel.log"\n'


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", FAKE_SACCT),
                       ("squeue", FAKE_SQUEUE), ("scancel", FAKE_SCANCEL)):  # fmt: skip
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    monkeypatch.setenv("FAKE_SLURM_RESULTS", str(tmp_path / "results"))
    return state


def submissions(state: Path) -> list[tuple[str, str, set[str]]]:
    rows = []
    for line in (state / "submissions.log").read_text().splitlines():
        job_id, name, done = line.split(" ")
        done_names = {
            n.removeprefix("ctrip-") for n in done.removeprefix("done-before=").split(",")
        }
        run = name.removeprefix("ctrip-").rsplit("-", 1)[0]  # "ctrip-<run>-<key prefix>"
        rows.append((job_id, run, done_names - {""}))
    return rows


def test_slurm_submits_one_job_per_run_after_its_inputs_and_never_twice(
    tmp_path, job_notebooks, tiny_cohort, fake_slurm
):
    results, hold = tmp_path / "results", tmp_path / "hold"
    hold.touch()
    resources = {**RESOURCES, "analysis": {"gpus": 1, "cpus": 3, "mem_gb": 5, "time_min": 7,
                                           "partition": "testq"}}  # fmt: skip
    settings = {"profile": "test", "resources": resources}
    plan = job_plan(tiny_cohort, hold)
    # A first submitter dies (a lost login session) while b's job runs: nothing cancels it.
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pickle, sys
        from ctrip.pipeline.runner import run_plan
        plan, settings = pickle.loads(bytes.fromhex(sys.argv[1]))
        run_plan(plan, {str(results)!r}, notebooks_dir={str(job_notebooks)!r}, settings=settings,
                 progress=False, executor="slurm")
        """), __import__("pickle").dumps((plan, settings)).hex()], env=os.environ.copy())  # fmt: skip
    # (once b's job is recorded: a submitter killed between sbatch and the record would leave a
    # job that no record names)
    wait_for(lambda: (fake_slurm / "submissions.log").exists()
             and "ctrip-b" in (fake_slurm / "submissions.log").read_text()
             and "b" in read_jobs(results))  # fmt: skip
    first.kill()
    first.wait()
    b_job = next(j for j, name, _ in submissions(fake_slurm) if name == "b")
    assert (fake_slurm / f"{b_job}.state").read_text().startswith("RUNNING")

    log: list[str] = []

    def release_b(line: str) -> None:  # once this invocation waits for b's job, let it finish
        log.append(line)
        if line.startswith("b:") or "] b " in line:  # (on a resubmission too: fail, not hang)
            hold.unlink(missing_ok=True)

    outcomes = run_plan(plan, results, notebooks_dir=job_notebooks, settings=settings,
                        progress=False, log=release_b, executor="slurm")  # fmt: skip
    assert any(f"job {b_job} of an earlier invocation is still queued or running" in x for x in log)
    names = [name for _, name, _ in submissions(fake_slurm)]
    assert sorted(names) == ["a", "b", "c", "cohort", "e"]  # one job per run, none twice
    reads = {r.name: set(r.needs) for r in plan}
    for _, name, done_before in submissions(fake_slurm):
        assert reads[name] <= done_before  # submitted once the runs it reads were done
    assert {o.name for o in outcomes if o.status != "up to date"} == {"b", "e"}
    assert (results / "runs" / "e" / "value.txt").read_text() == "111"
    script = (fake_slurm / f"{b_job}.sbatch").read_text()
    for line in ("--gpus-per-node=1", "--cpus-per-task=3", "--mem=5GB", "--time=7",
                 "--partition=testq", f"--job-name=ctrip-b-{read_jobs(results)['b']['key'][:12]}"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script

    # everything done: a third invocation submits nothing
    run_plan(plan, results, notebooks_dir=job_notebooks, settings=settings, progress=False,
             log=quiet, executor="slurm")  # fmt: skip
    assert len(submissions(fake_slurm)) == 5


def test_a_submitter_stopped_before_recording_a_job_id_never_submits_it_twice(
    tmp_path, job_notebooks, tiny_cohort, fake_slurm
):
    results, hold = tmp_path / "results", tmp_path / "hold"
    hold.touch()
    settings = {"profile": "test", "resources": RESOURCES}
    plan = job_plan(tiny_cohort, hold)
    # The first submitter dies right after sbatch accepted b's job, before recording its id.
    first = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, pickle, sys
        from ctrip.pipeline import executors
        from ctrip.pipeline.runner import run_plan
        write_jobs = executors.write_jobs
        def dies_once_b_has_an_id(results_dir, plan, jobs):
            if (jobs.get("b") or {{}}).get("job_id"):
                os._exit(3)
            write_jobs(results_dir, plan, jobs)
        executors.write_jobs = dies_once_b_has_an_id
        plan, settings = pickle.loads(bytes.fromhex(sys.argv[1]))
        run_plan(plan, {str(results)!r}, notebooks_dir={str(job_notebooks)!r}, settings=settings,
                 progress=False, executor="slurm")
        """), __import__("pickle").dumps((plan, settings)).hex()], env=os.environ.copy())  # fmt: skip
    assert first.returncode == 3
    assert read_jobs(results)["b"]["job_id"] is None  # the record names no job ...
    b_job = next(j for j, name, _ in submissions(fake_slurm) if name == "b")
    assert (fake_slurm / f"{b_job}.state").read_text().startswith("RUNNING")  # ... one runs

    def release_b(line: str) -> None:
        if line.startswith("b:") or "] b " in line:
            hold.unlink(missing_ok=True)

    run_plan(plan, results, notebooks_dir=job_notebooks, settings=settings, progress=False,
             log=release_b, executor="slurm")  # fmt: skip
    assert [name for _, name, _ in submissions(fake_slurm)].count("b") == 1  # found by its name
    assert read_jobs(results)["b"]["job_id"] == b_job
    assert (results / "runs" / "e" / "value.txt").read_text() == "111"


def test_resources_come_from_the_profile_and_set():
    settings = load_settings(
        "paper", ["resources.stage3.gpus=2", "resources.stage3.partition=a100"]
    )
    stage3 = Run("stage3_L_sup", "stage3_finetune.ipynb", {}, step="stage3")
    params = job_parameters(settings["resources"], stage3)
    assert params["gpus_per_node"] == 2 and params["slurm_partition"] == "a100"
    assert params["cpus_per_task"] == 10 and params["timeout_min"] == 2880
    table = Run("table2", "table2.ipynb", {})
    assert job_parameters(settings["resources"], table)["timeout_min"] == 480


def test_bad_executor_inputs_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main(["run", "--profile", "smoke", "--results", str(tmp_path / "r"),
                 "--executor", "slurm"]) == 1  # fmt: skip
    assert "--executor slurm: no `sbatch` on PATH" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "not a results folder of `ctrip run`" in err and "Traceback" not in err
    (tmp_path / "r" / "runs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "r" / "jobs.json").write_text("{truncated")
    assert main(["status", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "jobs.json: not a job record" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--executor", "pbs"])


def test_a_failed_notebook_names_its_cell_and_the_job_log(tmp_path, job_notebooks, tiny_cohort):
    results = tmp_path / "results"
    plan = [*job_plan(tiny_cohort), Run("d", "fail.ipynb", {}, needs=["cohort", "a"])]
    with pytest.raises(PipelineError) as failure:
        run_plan(plan, results, notebooks_dir=job_notebooks, settings=SETTINGS, progress=False,
                 log=quiet, executor="submitit-local")  # fmt: skip
    job = read_jobs(results)["d"]
    message = str(failure.value)
    assert (
        f"run d: job {job['job_id']} failed: run d: notebook fail.ipynb failed in cell 3" in message
    )
    assert "ValueError: the simulated failure" in message and f"log: {job['log']}" in message
    assert "simulated failure" in Path(job["log"]).read_text()
    # as with --executor local: no new run starts; the jobs going finish and are kept
    assert all((results / "runs" / name).is_dir() for name in read_jobs(results) if name != "d")
