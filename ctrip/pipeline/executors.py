"""`ctrip run --executor submitit-local|slurm`: each run of a plan as one job through submitit.

The submitting process keeps the results folder's lock and submits a run once every run it
reads is published (done), then waits for it. It does not hand SLURM `afterok` dependencies:
waiting is the same code path for submitit's local executor (which has no dependencies) and
for SLURM, a failed or cancelled run never leaves its dependants stuck in the queue as
"DependencyNeverSatisfied", and "done" stays what it is for `--executor local`: outputs
published with their provenance (a job that exited 0 without publishing is a failure).

Each job executes its run exactly as the local executor does (`runner._execute_run`: a
temporary folder, provenance, the atomic rename, then the copies to the results folder). Job
ids and logs are recorded in `<results>/jobs.json`; `ctrip status RESULTS` reads it. A re-run of
the same command resubmits only what is not done and adopts a job of the same key that is
still queued or running. Ctrl-C cancels the jobs this process submitted (and says which).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctrip.pipeline.cache import PipelineError, load_provenance, run_folder
from ctrip.pipeline.plan import Run

EXECUTORS = ("local", "submitit-local", "slurm")
RESOURCE_KINDS = ("stage1", "stage2", "stage3", "analysis")
JOBS_FILE = "jobs.json"
# sacct / squeue states, as `ctrip status` reports them.
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def resource_kind(run: Run) -> str:
    """The `resources:` section a run's job takes: its stage, or "analysis" for the rest."""
    return run.step if run.step in RESOURCE_KINDS else "analysis"


def job_parameters(resources: dict[str, Any], run: Run) -> dict[str, Any]:
    """submitit's parameters of the job of `run` from the profile's `resources.<kind>`."""
    r = resources[resource_kind(run)]
    params = {"name": f"ctrip-{run.name}", "timeout_min": int(r["time_min"]),
              "cpus_per_task": int(r["cpus"]), "gpus_per_node": int(r["gpus"]),
              "mem_gb": float(r["mem_gb"]), "tasks_per_node": 1, "nodes": 1}  # fmt: skip
    if r.get("partition"):
        params["slurm_partition"] = str(r["partition"])
    return params


def job_name(run: Run, key: str) -> str:
    """The scheduler's name of the job of `run` at `key` ("ctrip-<run>-<key prefix>")."""
    return f"ctrip-{run.name}-{key[:12]}"


def execute_job(run: Run, plan: list[Run], results_dir: Path, notebooks_dir: Path,
                kernel_name: str, record: dict[str, Any]) -> float:  # fmt: skip
    """What a job executes: one run, as the local executor would (in the job's process).

    A kernel that dies before its first reply is started again (twice at most): kernels of
    separate processes pick their TCP ports independently, and two starting at once on one
    node can pick the same one. Nothing of the notebook has run then."""
    from ctrip.pipeline.runner import Interruption, _execute_run

    attempts = 3
    while True:
        attempts -= 1
        try:
            return _execute_run(run, plan, results_dir, notebooks_dir, kernel_name, False,
                                record, Interruption())  # fmt: skip
        except RuntimeError as err:
            if "Kernel died before replying to kernel_info" not in str(err) or not attempts:
                raise
            print(f"run {run.name}: the kernel died at start-up ({err}); starting it again",
                  file=sys.stderr, flush=True)  # fmt: skip


# ---------------------------------------------------------------------------- job records


def _read_record(results_dir: Path) -> dict[str, Any]:
    """`<results>/jobs.json`: {"plan": [run names], "jobs": {run: job}}."""
    path = Path(results_dir) / JOBS_FILE
    if not path.exists():
        return {"plan": [], "jobs": {}}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("jobs"), dict):
            raise ValueError("no `jobs` section")
    except (OSError, ValueError, AttributeError) as err:
        raise PipelineError(
            f"{path}: not a job record ({err}); delete it to start afresh"
        ) from None
    return record


def read_jobs(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The recorded job of each run submitted into `results_dir`, by run name."""
    return _read_record(results_dir)["jobs"]


def write_jobs(results_dir: Path, plan: list[str], jobs: dict[str, dict[str, Any]]) -> None:
    path = Path(results_dir) / JOBS_FILE
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"plan": plan, "jobs": jobs}, indent=2))
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scheduler_state(job: dict[str, Any]) -> str:
    """The scheduler's state of a recorded job: PENDING, RUNNING, COMPLETED, FAILED, ... or
    UNKNOWN (a local job's process is gone and left no result)."""
    if job.get("job_id") is None:  # the submitter stopped between recording and sbatch's answer
        return "UNKNOWN"
    if job["executor"] == "slurm":
        for command in (["sacct", "-n", "-X", "-P", "-o", "State", "-j", job["job_id"]],
                        ["squeue", "-h", "-o", "%T", "-j", job["job_id"]]):  # fmt: skip
            try:
                out = subprocess.run(command, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            words = out.stdout.split()
            if out.returncode == 0 and words:
                return words[0].upper().rstrip("+")  # "CANCELLED by 123" -> CANCELLED
        return "UNKNOWN"
    if _pid_alive(int(job["job_id"])):
        return "RUNNING"
    result = Path(job["folder"]) / f"{job['job_id']}_0_result.pkl"
    if not result.exists():
        return "UNKNOWN"
    import cloudpickle

    outcome, _ = cloudpickle.loads(result.read_bytes())
    return "COMPLETED" if outcome == "success" else "FAILED"


def run_states(results_dir: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """For each run of the results folder (`names`, or every run with a folder or a job):
    done / queued / running / failed / not run, its job id and log (`ctrip status`)."""
    results_dir = Path(results_dir)
    record = _read_record(results_dir)
    jobs = record["jobs"]
    if names is None:  # the last submitted plan's runs, then any other run folder
        folders = sorted(p.name for p in (results_dir / "runs").glob("[!.]*") if p.is_dir())
        names = record["plan"] + [n for n in folders + sorted(jobs) if n not in record["plan"]]
        names = list(dict.fromkeys(names))
    rows = []
    for name in names:
        job = jobs.get(name)
        provenance = load_provenance(run_folder(results_dir, name))
        published = provenance is not None and (job is None or provenance["key"] == job["key"])
        if published:
            state = "done"
        elif job is None:
            state = "not run"
        else:
            raw = scheduler_state(job)
            state = "queued" if raw in QUEUED else "running" if raw in RUNNING else "failed"
        rows.append({"run": name, "state": state, "job_id": (job or {}).get("job_id") or "-",
                     "log": (job or {}).get("log", "-")})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------- submission


class JobSubmitter:
    """Submits runs through submitit and tracks the jobs of this invocation."""

    def __init__(self, executor: str, results_dir: Path, resources: dict[str, Any],
                 plan: list[str]) -> None:  # fmt: skip
        if executor not in EXECUTORS[1:]:
            raise ValueError(f"--executor {executor!r}: expected one of {list(EXECUTORS)}")
        if executor == "slurm" and shutil.which("sbatch") is None:
            raise PipelineError(
                "--executor slurm: no `sbatch` on PATH (run it on a SLURM login node)"
            )
        self.executor, self.results_dir, self.resources = executor, results_dir, resources
        self.jobs, self.plan = read_jobs(results_dir), plan
        write_jobs(results_dir, plan, self.jobs)
        self.handles: dict[str, Any] = {}  # run name -> submitit job submitted here
        self.adopted: set[str] = set()  # runs whose job an earlier invocation submitted

    def in_flight(self, run: Run, key: str) -> bool:
        """An earlier invocation's job for this run and key is still queued or running (one whose
        submitter stopped before it recorded the job id is found by its job name)."""
        job = self.jobs.get(run.name)
        if job is None or job["key"] != key or job["executor"] != self.executor:
            return False
        if job.get("job_id") is None:
            found = self._queued_by_name(job.get("name", ""))
            if found is None:
                return False
            job["job_id"] = found
            write_jobs(self.results_dir, self.plan, self.jobs)
        state = scheduler_state(job)
        if state in QUEUED | RUNNING:
            self.adopted.add(run.name)
            return True
        return False

    def _queued_by_name(self, name: str) -> str | None:
        """The id of a queued or running SLURM job named `name`, if the scheduler has one."""
        if self.executor != "slurm" or not name:
            return None
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i %T", "--name", name],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        for line in out.stdout.splitlines() if out.returncode == 0 else []:
            job_id, _, state = line.partition(" ")
            if state.strip().upper() in QUEUED | RUNNING:
                return job_id.strip()
        return None

    def submit(self, run: Run, key: str, call: Callable[..., Any], *args: Any) -> dict[str, Any]:
        import submitit

        folder = self.results_dir / "jobs" / run.name
        cluster = "slurm" if self.executor == "slurm" else "local"
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        # the run's key in its job name: a submitter that stops between sbatch and recording the
        # job id leaves a record that a re-run completes from the queue, never a second job
        parameters = {**job_parameters(self.resources, run), "name": job_name(run, key)}
        executor.update_parameters(**parameters)
        job = {"job_id": None, "executor": self.executor, "key": key, "name": parameters["name"],
               "folder": str(folder), "log": "-",
               "submitted": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        self.jobs[run.name] = job
        write_jobs(self.results_dir, self.plan, self.jobs)
        handle = executor.submit(call, *args)
        self.handles[run.name] = handle
        job.update(job_id=str(handle.job_id), log=str(handle.paths.stderr))
        write_jobs(self.results_dir, self.plan, self.jobs)
        return job

    def finished(self, name: str) -> bool:
        if name in self.handles:
            return bool(self.handles[name].done())
        return scheduler_state(self.jobs[name]) not in QUEUED | RUNNING

    def error(self, name: str) -> str | None:
        """Why the job of `name` failed (its exception's message: a failed notebook names its
        cell), or None when it ended without one."""
        job = self.jobs[name]
        result = Path(job["folder"]) / f"{job['job_id']}_0_result.pkl"
        if not result.exists():
            return f"it ended without a result ({scheduler_state(job)})"
        import cloudpickle

        outcome, value = cloudpickle.loads(result.read_bytes())
        if outcome == "success":
            return None
        # submitit keeps the job's traceback: the exception's message follows its last frame
        lines = [line for line in str(value).strip().splitlines() if line.strip()]
        frames = [i for i, line in enumerate(lines) if line.startswith(" ")]
        message = " ".join(lines[frames[-1] + 1 :] if frames else lines[-1:]) or "it failed"
        kind, _, text = message.partition(": ")
        return text if kind.endswith("PipelineError") else message

    def cancel_submitted(self) -> list[str]:
        """Cancel the jobs this invocation submitted that have not finished; their names."""
        cancelled = []
        for name, handle in self.handles.items():
            if not handle.done():
                handle.cancel(check=False)
                cancelled.append(f"{name} (job {handle.job_id})")
        if self.executor == "submitit-local":  # reap the local jobs as they stop (no zombies)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(h.done() for h in self.handles.values()):
                time.sleep(0.2)
        return cancelled


def wait_for_jobs(
    plan: list[Run],
    results_dir: Path,
    stale: set[str],
    keys: dict[str, str],
    submitter: JobSubmitter,
    start: Callable[[Run], None],
    publish_up_to_date: Callable[[Run], None],
    interrupted: Callable[[], bool],
    log: Callable[[str], None],
    poll_s: float = 2.0,
    max_running: int | None = None,
) -> dict[str, str]:
    """Submit each stale run once the runs it reads are done (at most `max_running` jobs at
    once; None: no limit, the scheduler's queue decides), wait for its job, and return
    {run: "executed" | "up to date"}; raise the first failure (naming the job's log) once the
    jobs going have ended, or `RunInterrupted` after cancelling on Ctrl-C."""
    from ctrip.pipeline.cache import run_status
    from ctrip.pipeline.runner import RunInterrupted

    done: dict[str, str] = {}
    pending, running, failures = list(plan), set(), []
    while pending or running:
        if interrupted():
            cancelled = submitter.cancel_submitted()
            adopted = sorted(submitter.adopted & running)
            raise RunInterrupted(
                f"interrupted (Ctrl-C): cancelled {', '.join(cancelled) or 'no job'}"
                + (f"; still running from an earlier invocation: {', '.join(adopted)} "
                   f"(scancel them by the job ids in {results_dir / JOBS_FILE})" if adopted else "")
                + "; a re-run of the same command resumes"
            )  # fmt: skip
        for run in [r for r in pending if all(n in done for n in r.needs)]:
            if failures or (max_running is not None and len(running) >= max_running):
                break
            pending.remove(run)
            if run.name not in stale:
                publish_up_to_date(run)
                done[run.name] = "up to date"
            elif submitter.in_flight(run, keys[run.name]):
                job = submitter.jobs[run.name]
                log(f"{run.name}: job {job['job_id']} of an earlier invocation is still queued "
                    "or running; waiting for it (not submitted again)")  # fmt: skip
                running.add(run.name)
            else:
                start(run)
                running.add(run.name)
        for name in sorted(running):
            if not submitter.finished(name):
                continue
            running.discard(name)
            job = submitter.jobs[name]
            status = run_status(run_folder(results_dir, name), keys[name])
            if status == "up to date":
                done[name] = "executed"
                log(f"{name}: done (job {job['job_id']})")
                continue
            why = submitter.error(name) or f"it ended but the run is not published ({status})"
            failures.append(f"run {name}: job {job['job_id']} failed: {why}; log: {job['log']}")
            log(f"{name}: FAILED (job {job['job_id']}, log {job['log']})")
        if failures and not running:
            break
        if running and not any(submitter.finished(n) for n in running):  # nothing to do yet
            time.sleep(poll_s)
        elif not running and pending and not any(all(n in done for n in r.needs) for r in pending):
            break
    if failures:
        raise PipelineError("; ".join(failures) + "; completed runs are kept")
    return done
