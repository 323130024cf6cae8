"""Execute a plan: papermill in dependency order, cached by key (`ctrip.pipeline.cache`), atomic
run folders, provenance.

Work happens in `runs/.tmp-<name>-<pid>/` and is renamed into place only when the notebook
finished, so an interrupted or failed run never counts as done; a failed notebook is kept as
`failed/<name>.ipynb`. The results folder is locked while a plan runs. Notebooks execute with
their run folder as working directory and receive relative paths, with the thread count of
their parameters, so an executed notebook names no machine-specific or temporary folder and its
numbers do not depend on `--jobs`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ctrip.pipeline.cache import (
    REPO_DIR,
    PipelineError,
    _output_record,
    results_lock,
    run_folder,
    run_keys,
    run_records,
    run_status,
)
from ctrip.pipeline.plan import Run

NOTEBOOKS_DIR = REPO_DIR / "notebooks"
KERNEL_NAME = "ctrip"
PACKAGES = ("ctrip", "torch", "lightning", "numpy", "pandas", "scipy", "scikit-learn",
            "umap-learn", "captum", "papermill", "jupyter-book", "matplotlib")  # fmt: skip


class RunInterrupted(PipelineError):
    """Ctrl-C stopped a plan; the message names the runs it ended and counts those not started."""


class Interruption:
    """Ctrl-C (SIGINT) during a plan: no run starts any more, and the kernels of the runs going
    are ended, so those runs fail and are never published (their folders are temporary until
    they finish). A second Ctrl-C raises `KeyboardInterrupt` at once."""

    def __init__(self) -> None:
        self.requested = False
        self._kernels: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def kernel_started(self, run: str, process: subprocess.Popen) -> None:
        with self._lock:
            self._kernels[run] = process
            if self.requested:  # started while the Ctrl-C was handled
                process.terminate()

    def kernel_ended(self, run: str) -> None:
        with self._lock:
            self._kernels.pop(run, None)

    def request(self, *_: Any) -> None:
        """The SIGINT handler."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with self._lock:
            self.requested = True
            for process in self._kernels.values():
                process.terminate()  # a no-op for a kernel already reaped

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Handle SIGINT with `request` for the duration (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass
class RunOutcome:
    name: str
    status: str  # "executed" | "up to date"
    seconds: float
    key: str


def git_state(repo: Path = REPO_DIR) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Register the Jupyter kernel `name` for this interpreter if it is missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name in KernelSpecManager().find_kernel_specs():
        return
    cmd = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name]
    subprocess.run(cmd, check=True, capture_output=True)


def cohort_path(results_dir: Path, plan: list[Run]) -> Path:
    """The cohort a plan works on: an existing one (`cohort.path`) or the synthesized one."""
    cohort = next(r for r in plan if r.name == "cohort").parameters["cohort"]
    return (
        Path(cohort["path"]).resolve()
        if cohort.get("path")
        else run_folder(results_dir, "cohort") / "cohort"
    )


def _relative(path: Path, start: Path) -> str:
    """`path` relative to `start` when both lie in the results folder or the repository."""
    # not resolved: a run an ablation reuses is a link to the base's, and stays one
    path, start = Path(os.path.abspath(path)), Path(start).resolve()
    for root in (start.parents[1], REPO_DIR):
        if path.is_relative_to(root) and start.is_relative_to(root):
            return os.path.relpath(path, start)
    return str(path)


def _resolve_inputs(inputs: Any, results_dir: Path, here: Path) -> Any:
    if isinstance(inputs, dict):
        return {k: _resolve_inputs(v, results_dir, here) for k, v in inputs.items()}
    if isinstance(inputs, list):
        return [_resolve_inputs(v, results_dir, here) for v in inputs]
    if isinstance(inputs, str):
        return _relative(run_folder(results_dir, inputs), here)
    return inputs


def notebook_parameters(
    run: Run, notebook: Path, results_dir: Path, plan: list[Run]
) -> dict[str, Any]:
    """What papermill injects: the hashed parameters plus the locations of inputs and outputs,
    relative to the run's folder (the kernel's working directory): `out_dir` is ".", inputs are
    "../<run>"."""
    import papermill

    here = run_folder(results_dir, run.name)
    declared = set(papermill.inspect_notebook(str(notebook)))
    locations = {"cohort_path": _relative(cohort_path(results_dir, plan), here), "out_dir": "."}
    return {
        **run.parameters,
        **_resolve_inputs(run.inputs, results_dir, here),
        **{k: v for k, v in locations.items() if k in declared},
    }


def _synthesize(run: Run, out_dir: Path, final: Path | None = None) -> None:
    """The cohort run: simulate the profile's cohort into `out_dir` (published later as
    `final`, the folder its warnings name), or check the cohort the user brought."""
    from ctrip.data.cohort import Cohort, plausibility_warnings_printed
    from ctrip.data.synth import SynthSizes, synthesize_cohort

    spec = run.parameters["cohort"]
    if spec.get("path"):
        cohort = Cohort.validate(spec["path"])  # a cohort brought by the user: the full check
        for said in cohort.warnings:
            print(f"warning: {spec['path']}: {said}", file=sys.stderr)
        (out_dir / "cohort.json").write_text(json.dumps({"path": str(spec["path"])}))
        return
    sizes = SynthSizes(**spec["sizes"])
    with plausibility_warnings_printed((out_dir, final or out_dir)):
        synthesize_cohort(out_dir / "cohort", int(spec["n_subjects"]), seed=int(spec["seed"]),
                          sizes=sizes, workers=int(spec.get("workers", 1)), progress=True)  # fmt: skip


def kernel_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run's kernel: its thread count from its parameters, whatever
    `--jobs` is, so that floating-point reductions (and so the numbers) do not depend on it."""
    env = dict(os.environ if base is None else base)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(int(threads))
    # The runner reports each run's progress; bars inside an executed notebook would only be
    # frozen snapshots in the book.
    env["TQDM_DISABLE"] = "1"
    return env


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of a live process and of its children it has waited for
    (a kernel's data-loader workers), from Linux's /proc; None where there is no /proc. Per
    process, so exact with several kernels at once (the runner's RUSAGE_CHILDREN is not: it
    sums every child the runner has reaped, whichever run it belonged to)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after the command name: state is field 3, utime stime cutime cstime are fields 14-17
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _kernel_manager(
    stderr: Any, threads: int, cwd: Path, run: str, interruption: Interruption,
    usage: dict[str, float | None] | None = None,
) -> type:  # fmt: skip
    """A kernel manager whose kernel runs in `cwd` with `threads` CPU threads and writes its own
    stderr (ipykernel's start-up warnings, not the notebook's output) to `stderr`. (Papermill's
    own `cwd` changes the directory of this whole process: wrong with runs in parallel.) Just
    before the kernel is shut down, its CPU seconds go to `usage["cpu_seconds"]`."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw["env"] = kernel_environment(threads, kw.get("env"))
            kw["cwd"] = str(cwd)
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": stderr})
            interruption.kernel_started(run, self.provisioner.process)

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            process = getattr(self.provisioner, "process", None)
            if usage is not None and process is not None:
                usage["cpu_seconds"] = process_cpu_seconds(process.pid)
            await super()._async_shutdown_kernel(now=now, restart=restart)

        _launch_kernel = _async_launch_kernel
        shutdown_kernel = _async_shutdown_kernel

    return RunKernelManager


def _portable(notebook_file: Path, run: Run, replacements: dict[str, str]) -> None:
    """Make an executed notebook name no machine-specific or temporary folder: papermill's
    recorded paths become the repository's, and absolute paths in outputs become relative."""
    import nbformat

    book = nbformat.read(notebook_file, as_version=4)
    meta = book.metadata.get("papermill", {})
    meta["input_path"] = f"notebooks/{run.notebook}"
    meta["output_path"] = f"{run.name}.ipynb"

    def clean(text: str) -> str:
        for old, new in replacements.items():
            text = text.replace(old, new)
        return text

    for cell in book.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = clean(output["text"])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    output["data"][mime] = clean(value)
            if "traceback" in output:
                output["traceback"] = [clean(line) for line in output["traceback"]]
    nbformat.write(book, notebook_file)


def _execute_notebook(run: Run, notebooks_dir: Path, results_dir: Path, out_dir: Path,
                      plan: list[Run], kernel_name: str, progress: bool,
                      interruption: Interruption) -> float | None:  # fmt: skip
    """Execute the run's notebook in `out_dir`; the CPU seconds of its kernel (None: unknown)."""
    import sysconfig

    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / f"{run.name}.ipynb"
    params = notebook_parameters(run, notebooks_dir / run.notebook, results_dir, plan)
    kernel_log = results_dir / "logs" / f"{run.name}.kernel.log"
    kernel_log.parent.mkdir(exist_ok=True)
    final = run_folder(results_dir, run.name)
    replacements = {str(out_dir): str(final), str(results_dir) + "/": "",
                    str(REPO_DIR) + "/": "", sysconfig.get_paths()["purelib"]: "site-packages"}  # fmt: skip
    usage: dict[str, float | None] = {"cpu_seconds": None}
    try:
        with _writing(run, output), open(kernel_log, "wb") as stderr:
            papermill.execute_notebook(str(notebooks_dir / run.notebook), str(output), parameters=params,
                                       kernel_name=kernel_name, progress_bar=progress, log_output=False,
                                       request_save_on_cell_execute=False,
                                       kernel_manager_class=_kernel_manager(stderr, run.threads, out_dir, run.name, interruption, usage))  # fmt: skip
    except PapermillExecutionError as err:
        failed = results_dir / "failed" / f"{run.name}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            _portable(output, run, replacements)
            shutil.copyfile(output, failed)
        first_line = err.source.strip().splitlines()[0] if err.source.strip() else ""
        raise PipelineError(
            f"run {run.name}: notebook {run.notebook} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}, starting {first_line!r}): {err.ename}: {err.evalue}\n"
            f"the executed notebook with the traceback is {failed}; completed runs are kept"
        ) from None
    finally:
        interruption.kernel_ended(run.name)
    with _writing(run, output):
        _portable(output, run, replacements)
    return usage["cpu_seconds"]


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def _writing(run: Run, path: Path) -> Iterator[None]:
    """Name the run and the file in an operating-system error (a full disk, a permission)
    while the runner writes `path` for `run`."""
    try:
        yield
    except OSError as err:
        raise PipelineError(
            f"run {run.name}: cannot write {err.filename or path}: {err.strerror or err}"
        ) from None


def _publish(run: Run, run_dir: Path, results_dir: Path) -> None:
    """Copy a run's tables to the results folder and every PNG it made to results/figures/."""
    for item in run.publish:
        if item == "figures":
            (results_dir / "figures").mkdir(parents=True, exist_ok=True)
            for png in sorted(run_dir.rglob("*.png")):
                name = (
                    png.name if png.name.startswith(("fig", run.name)) else f"{run.name}_{png.name}"
                )
                with _writing(run, results_dir / "figures" / name):
                    shutil.copyfile(png, results_dir / "figures" / name)
        elif (run_dir / item).exists():
            with _writing(run, results_dir / item):
                shutil.copyfile(run_dir / item, results_dir / item)


def _execute_run(run: Run, plan: list[Run], results_dir: Path, notebooks_dir: Path, kernel_name: str,
                 progress: bool, record: dict[str, Any], interruption: Interruption) -> float:  # fmt: skip
    """Execute one run in `runs/.tmp-<name>-<pid>/`, write its provenance (with the sha256 of
    every output) and rename it into place."""
    tmp = results_dir / "runs" / f".tmp-{run.name}-{os.getpid()}"
    final = run_folder(results_dir, run.name)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, t0 = datetime.now(UTC), time.perf_counter()
    try:
        if run.notebook is None:
            # The cohort runs in this process, alone (every other run reads it): the CPU of
            # this process and of its synthesis workers is the run's.
            cpu0 = _own_cpu_seconds()
            _synthesize(run, tmp, final)
            cpu_seconds: float | None = _own_cpu_seconds() - cpu0
        else:
            cpu_seconds = _execute_notebook(
                run, notebooks_dir, results_dir, tmp, plan, kernel_name, progress, interruption
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    hashes, stats = _output_record(tmp)
    record = {**record, "started": started.isoformat(timespec="seconds"),
              "seconds": round(seconds, 2),
              "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 2),
              "outputs_stat": stats}  # fmt: skip
    record["hashes"] = {**record["hashes"], "outputs_sha256": hashes}
    with _writing(run, tmp / "provenance.json"):
        (tmp / "provenance.json").write_text(json.dumps(record, indent=2, default=str))
    old = results_dir / "runs" / f".old-{run.name}-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    with _writing(run, final):
        if final.exists() or final.is_symlink():
            final.rename(old)
        tmp.rename(final)
    if old.is_symlink():  # an ablation's link to the base's run: the base's run stays
        old.unlink()
    shutil.rmtree(old, ignore_errors=True)
    (results_dir / "failed" / f"{run.name}.ipynb").unlink(missing_ok=True)
    _publish(run, final, results_dir)
    return seconds


def run_plan(
    plan: list[Run],
    results_dir: Path,
    *,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    kernel_name: str = KERNEL_NAME,
    settings: dict | None = None,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: print(s, flush=True),
    verify: bool = False,
    executor: str = "local",
) -> list[RunOutcome]:
    """Bring every run of `plan` up to date under `results_dir`; return what was done.

    Up to `jobs` runs whose inputs are ready execute at once, each in its own kernel with the
    thread count of its parameters (`Run.threads`). On a failure no new run starts, the runs
    already going finish and are kept, and the first error is raised. The results folder is
    locked for the duration. `verify` hashes every recorded output (by default one with its
    recorded size and modification time is trusted unchanged). Ctrl-C starts no new run, ends the runs going (none is published)
    and raises `RunInterrupted` (see `Interruption`). `executor` "submitit-local" or "slurm"
    makes each run a job with the resources of `settings["resources"]`
    (`ctrip.pipeline.executors`); `jobs` caps the local jobs at once, not SLURM's.
    """
    results_dir, notebooks_dir = Path(results_dir).resolve(), Path(notebooks_dir)
    interruption = Interruption()
    with results_lock(results_dir), interruption.handling():
        return _run_locked(plan, results_dir, notebooks_dir, kernel_name, settings, jobs, progress,
                           log, interruption, verify, executor)  # fmt: skip


def ready_runs(pending: list[Run], done: Any) -> list[Run]:
    """The pending runs whose inputs are all `done`, in the order to start them: runs marked
    `early` first (long, they should overlap the stage chain), then plan order."""
    ready = [run for run in pending if all(n in done for n in run.needs)]
    return sorted(ready, key=lambda run: not run.early)


def _run_locked(plan: list[Run], results_dir: Path, notebooks_dir: Path, kernel_name: str,
                settings: dict | None, jobs: int, progress: bool, log: Callable[[str], None],
                interruption: Interruption, verify: bool,
                executor: str = "local") -> list[RunOutcome]:  # fmt: skip
    (results_dir / "runs").mkdir(parents=True, exist_ok=True)
    records = run_records(plan, notebooks_dir)
    keys = {name: r["key"] for name, r in records.items()}
    status = {
        r.name: run_status(run_folder(results_dir, r.name), keys[r.name], verify) for r in plan
    }
    stale = {name for name, s in status.items() if s != "up to date"}
    # A stale run makes every run that reads it stale (its input's key is unchanged when only
    # its outputs went missing).
    for run in plan:
        if stale.intersection(run.needs):
            stale.add(run.name)
    if any(r.notebook for r in plan if r.name in stale):
        ensure_kernel(kernel_name)
    common = {"profile": (settings or {}).get("profile"), "git": git_state(), "packages": package_versions(),
              "host": {"platform": platform.platform(), "cpus": os.cpu_count()}}  # fmt: skip
    log(
        f"ctrip run: {len(plan)} runs, {len(stale)} to execute ({jobs} at a time), results in {results_dir}"
    )
    index = {r.name: i for i, r in enumerate(plan, 1)}
    head = {r.name: f"[{index[r.name]:>2}/{len(plan)}] {r.name:<22}" for r in plan}
    outcomes: dict[str, RunOutcome] = {}
    t_all = time.perf_counter()

    def record(run: Run) -> dict[str, Any]:
        return {"name": run.name, "notebook": run.notebook, "key": keys[run.name], "parameters": run.parameters,
                "threads": run.threads, "inputs": {n: keys[n] for n in run.needs},
                "hashes": {"notebook_sha256": records[run.name]["notebook"] or None,
                           "ctrip_code_sha256": records[run.name]["code"]}, **common}  # fmt: skip

    def publish_up_to_date(run: Run) -> None:
        log(f"{head[run.name]} up to date ({keys[run.name][:10]})")
        _publish(run, run_folder(results_dir, run.name), results_dir)

    if executor != "local":
        from ctrip.pipeline.executors import JobSubmitter, execute_job, wait_for_jobs

        submitter = JobSubmitter(executor, results_dir, (settings or {}).get("resources", {}),
                                 [r.name for r in plan])  # fmt: skip

        def submit(run: Run) -> None:
            job = submitter.submit(run, keys[run.name], execute_job, run, plan, results_dir,
                                   notebooks_dir, kernel_name, record(run))  # fmt: skip
            log(f"{head[run.name]} submitted as job {job['job_id']} (log {job['log']})")

        states = wait_for_jobs(plan, results_dir, stale, keys, submitter, submit,
                               publish_up_to_date, lambda: interruption.requested, log,
                               max_running=jobs if executor == "submitit-local" else None)  # fmt: skip
        return _finish(plan, results_dir, settings,
                       {n: RunOutcome(n, s, 0.0, keys[n]) for n, s in states.items()})  # fmt: skip

    pending, running, failure, ended = list(plan), {}, None, []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            for run in ready_runs(pending, outcomes):
                if failure is not None or interruption.requested or len(running) >= jobs:
                    break
                pending.remove(run)
                if run.name not in stale:
                    publish_up_to_date(run)
                    outcomes[run.name] = RunOutcome(run.name, "up to date", 0.0, keys[run.name])
                    continue
                why = status[run.name].removeprefix("to run ")
                log(
                    f"{head[run.name]} running {run.notebook or 'cohort'} {why if why != 'to run' else ''}..."
                )
                future = pool.submit(_execute_run, run, plan, results_dir, notebooks_dir, kernel_name,
                                     progress and jobs == 1, record(run), interruption)  # fmt: skip
                running[future] = run
            if not running:
                if interruption.requested:
                    break
                if failure is None and any(all(n in outcomes for n in r.needs) for r in pending):
                    continue  # up-to-date runs unblocked others
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                try:
                    seconds = future.result()
                except BaseException as err:  # the first failure is raised after the others finish
                    if interruption.requested:
                        ended.append(run.name)
                        log(f"{head[run.name]} interrupted (not kept)")
                        continue
                    failure = failure or err
                    log(f"{head[run.name]} FAILED")
                    continue
                log(
                    f"{head[run.name]} done in {seconds:.1f} s (total {time.perf_counter() - t_all:.0f} s)"
                )
                outcomes[run.name] = RunOutcome(run.name, "executed", seconds, keys[run.name])
    if interruption.requested:
        unstarted = [r.name for r in pending if r.name in stale]
        named = ", ".join(unstarted[:3]) + (", ..." if len(unstarted) > 3 else "")
        raise RunInterrupted(
            f"interrupted (Ctrl-C): {', '.join(ended) or 'no run'} ended before finishing, "
            f"{len(unstarted)} not started ({named or 'none'}); a re-run of the same command "
            "resumes from there"
        )
    if failure is not None:
        raise failure
    return _finish(plan, results_dir, settings, outcomes)


def _finish(plan: list[Run], results_dir: Path, settings: dict | None,
            outcomes: dict[str, RunOutcome]) -> list[RunOutcome]:  # fmt: skip
    """A plan brought up to date: its settings recorded, its outcomes in plan order."""
    if settings is not None:
        (results_dir / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    return [outcomes[r.name] for r in plan]


def plan_status(
    plan: list[Run], results_dir: Path, notebooks_dir: Path = NOTEBOOKS_DIR, verify: bool = False
) -> dict[str, str]:
    """For each run: "up to date" or "to run (why)" (what `ctrip run --dry-run` prints); a run
    that reads a run to execute is to run too."""
    keys = run_keys(plan, Path(notebooks_dir))
    status = {
        r.name: run_status(run_folder(Path(results_dir), r.name), keys[r.name], verify)
        for r in plan
    }
    for run in plan:
        upstream = [n for n in run.needs if status[n] != "up to date"]
        if upstream and status[run.name] == "up to date":
            status[run.name] = f"to run (it reads {upstream[0]}, which is to run)"
    return status
