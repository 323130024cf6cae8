"""Execute a plan: papermill in dependency order, cached by key, atomic run folders, provenance.

A run's key hashes its notebook, its parameters, the `ctrip` source (the pipeline package
itself excluded: it does not change what a notebook computes) and the keys of the runs it reads.
A run whose folder `runs/<name>/provenance.json` holds the same key is up to date. Work happens in
`runs/.tmp-<name>/` and is renamed into place only when the notebook finished, so an interrupted
or failed run never counts as done; a failed notebook is kept as `failed/<name>.ipynb`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ctrip.data.cohort import sha256_of
from ctrip.pipeline.plan import Run

REPO_DIR = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
KERNEL_NAME = "ctrip"
PACKAGES = ("ctrip", "torch", "lightning", "numpy", "pandas", "scipy", "scikit-learn",
            "umap-learn", "captum", "papermill", "jupyter-book", "matplotlib")  # fmt: skip


class PipelineError(RuntimeError):
    """A run failed; the message names the run, the notebook, the cell and the error."""


@dataclass
class RunOutcome:
    name: str
    status: str  # "executed" | "up to date"
    seconds: float
    key: str


def source_hash(package_dir: Path = REPO_DIR / "ctrip") -> str:
    """sha256 over the `ctrip` sources that notebooks use (everything but ctrip/pipeline/)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if rel.parts[0] == "pipeline" or path.suffix not in (".py", ".yaml", ".json"):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_keys(plan: list[Run], notebooks_dir: Path, src_hash: str) -> dict[str, str]:
    """The cache key of every run (plan order guarantees inputs are keyed first)."""
    keys: dict[str, str] = {}
    for run in plan:
        if run.notebook is None:
            cohort = run.parameters["cohort"]
            nb_hash = (
                sha256_of(Path(cohort["path"]) / "manifest.yaml") if cohort.get("path") else ""
            )
        else:
            path = notebooks_dir / run.notebook
            if not path.exists():
                raise PipelineError(f"run {run.name}: notebook {path} does not exist")
            nb_hash = sha256_of(path)
        record = {"notebook": nb_hash, "parameters": run.parameters, "source": src_hash,
                  "inputs": {n: keys[n] for n in run.needs}}  # fmt: skip
        keys[run.name] = hashlib.sha256(_canonical(record).encode()).hexdigest()
    return keys


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


def load_provenance(run_dir: Path) -> dict | None:
    path = run_dir / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_folder(results_dir: Path, name: str) -> Path:
    return results_dir / "runs" / name


def cohort_path(results_dir: Path, plan: list[Run]) -> Path:
    """The cohort a plan works on: an existing one (`cohort.path`) or the synthesized one."""
    cohort = next(r for r in plan if r.name == "cohort").parameters["cohort"]
    return (
        Path(cohort["path"]).resolve()
        if cohort.get("path")
        else run_folder(results_dir, "cohort") / "cohort"
    )


def _resolve_inputs(inputs: Any, results_dir: Path) -> Any:
    if isinstance(inputs, dict):
        return {k: _resolve_inputs(v, results_dir) for k, v in inputs.items()}
    if isinstance(inputs, list):
        return [_resolve_inputs(v, results_dir) for v in inputs]
    return str(run_folder(results_dir, inputs)) if isinstance(inputs, str) else inputs


def notebook_parameters(
    run: Run, notebook: Path, results_dir: Path, out_dir: Path, plan: list[Run]
) -> dict[str, Any]:
    """What papermill injects: the hashed parameters plus the locations of inputs and outputs
    (`results_dir` is the run folder too, for notebooks that name it so)."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    locations = {"cohort_path": str(cohort_path(results_dir, plan)), "out_dir": str(out_dir),
                 "results_dir": str(out_dir)}  # fmt: skip
    return {
        **run.parameters,
        **_resolve_inputs(run.inputs, results_dir),
        **{k: v for k, v in locations.items() if k in declared},
    }


def _synthesize(run: Run, out_dir: Path) -> None:
    from ctrip.data.synth import SynthSizes, synthesize_cohort

    spec = run.parameters["cohort"]
    if spec.get("path"):
        from ctrip.data.cohort import Cohort

        Cohort.open(spec["path"], verify_checksums=True)  # a cohort brought by the user
        return
    sizes = SynthSizes.for_profile(spec.get("sizes", "default"))
    synthesize_cohort(out_dir / "cohort", int(spec["n_subjects"]), seed=int(spec["seed"]), sizes=sizes,
                      workers=int(spec.get("workers", 1)), progress=True)  # fmt: skip


def _quiet_kernel_manager(stderr: Any) -> type:
    """A kernel manager whose kernel process writes its own stderr (ipykernel's start-up
    warnings, not the notebook's output) to `stderr` instead of the terminal."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": stderr})

        _launch_kernel = _async_launch_kernel

    return RunKernelManager


def _execute_notebook(run: Run, notebooks_dir: Path, results_dir: Path, out_dir: Path,
                      plan: list[Run], kernel_name: str, progress: bool) -> None:  # fmt: skip
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / f"{run.name}.ipynb"
    params = notebook_parameters(run, notebooks_dir / run.notebook, results_dir, out_dir, plan)
    kernel_log = results_dir / "logs" / f"{run.name}.kernel.log"
    kernel_log.parent.mkdir(exist_ok=True)
    try:
        with open(kernel_log, "wb") as stderr:
            papermill.execute_notebook(str(notebooks_dir / run.notebook), str(output), parameters=params,
                                       kernel_name=kernel_name, progress_bar=progress, log_output=False,
                                       request_save_on_cell_execute=False,
                                       kernel_manager_class=_quiet_kernel_manager(stderr))  # fmt: skip
    except PapermillExecutionError as err:
        failed = results_dir / "failed" / f"{run.name}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            shutil.copyfile(output, failed)
        first_line = err.source.strip().splitlines()[0] if err.source.strip() else ""
        raise PipelineError(
            f"run {run.name}: notebook {run.notebook} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}, starting {first_line!r}): {err.ename}: {err.evalue}\n"
            f"the executed notebook with the traceback is {failed}; completed runs are kept"
        ) from None


def _output_hashes(out_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(out_dir)): sha256_of(p) for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name != "provenance.json"}  # fmt: skip


def _publish(run: Run, run_dir: Path, results_dir: Path) -> None:
    """Copy a run's tables to the results folder and every PNG it made to results/figures/."""
    for item in run.publish:
        if item == "figures":
            (results_dir / "figures").mkdir(parents=True, exist_ok=True)
            for png in sorted(run_dir.rglob("*.png")):
                name = (
                    png.name if png.name.startswith(("fig", run.name)) else f"{run.name}_{png.name}"
                )
                shutil.copyfile(png, results_dir / "figures" / name)
        elif (run_dir / item).exists():
            shutil.copyfile(run_dir / item, results_dir / item)


def _execute_run(run: Run, plan: list[Run], results_dir: Path, notebooks_dir: Path, kernel_name: str,
                 progress: bool, record: dict[str, Any]) -> float:  # fmt: skip
    """Execute one run in `runs/.tmp-<name>/`, write its provenance and rename it into place."""
    tmp = results_dir / "runs" / f".tmp-{run.name}"
    final = run_folder(results_dir, run.name)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, t0 = datetime.now(UTC), time.perf_counter()
    try:
        if run.notebook is None:
            _synthesize(run, tmp)
        else:
            _execute_notebook(run, notebooks_dir, results_dir, tmp, plan, kernel_name, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    record = {
        **record,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
    }
    record["hashes"] = {**record["hashes"], "outputs_sha256": _output_hashes(tmp)}
    (tmp / "provenance.json").write_text(json.dumps(record, indent=2, default=str))
    old = results_dir / "runs" / f".old-{run.name}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
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
) -> list[RunOutcome]:
    """Bring every run of `plan` up to date under `results_dir`; return what was done.

    Up to `jobs` runs whose inputs are ready execute at once (each in its own kernel, with
    `OMP_NUM_THREADS` = cores / jobs unless set). On a failure no new run starts, the runs
    already going finish and are kept, and the first error is raised.
    """
    results_dir, notebooks_dir = Path(results_dir).resolve(), Path(notebooks_dir)
    (results_dir / "runs").mkdir(parents=True, exist_ok=True)
    src_hash = source_hash()
    keys = run_keys(plan, notebooks_dir, src_hash)
    stale = {
        r.name
        for r in plan
        if (load_provenance(run_folder(results_dir, r.name)) or {}).get("key") != keys[r.name]
    }
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
                "inputs": {n: keys[n] for n in run.needs},
                "hashes": {"notebook_sha256": sha256_of(notebooks_dir / run.notebook) if run.notebook else None,
                           "ctrip_source_sha256": src_hash}, **common}  # fmt: skip

    threads_env = jobs > 1 and "OMP_NUM_THREADS" not in os.environ
    if threads_env:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    pending, running, failure = list(plan), {}, None
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            while pending or running:
                for run in list(pending):
                    if failure is not None or len(running) >= jobs:
                        break
                    if not all(n in outcomes for n in run.needs):
                        continue
                    pending.remove(run)
                    if run.name not in stale:
                        log(f"{head[run.name]} up to date ({keys[run.name][:10]})")
                        _publish(run, run_folder(results_dir, run.name), results_dir)
                        outcomes[run.name] = RunOutcome(run.name, "up to date", 0.0, keys[run.name])
                        continue
                    log(f"{head[run.name]} running {run.notebook or 'cohort synthesis'} ...")
                    future = pool.submit(_execute_run, run, plan, results_dir, notebooks_dir, kernel_name,
                                         progress and jobs == 1, record(run))  # fmt: skip
                    running[future] = run
                if not running:
                    if failure is None and any(
                        all(n in outcomes for n in r.needs) for r in pending
                    ):
                        continue  # up-to-date runs unblocked others
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = running.pop(future)
                    try:
                        seconds = future.result()
                    except (
                        BaseException
                    ) as err:  # the first failure is raised after the others finish
                        failure = failure or err
                        log(f"{head[run.name]} FAILED")
                        continue
                    log(
                        f"{head[run.name]} done in {seconds:.1f} s (total {time.perf_counter() - t_all:.0f} s)"
                    )
                    outcomes[run.name] = RunOutcome(run.name, "executed", seconds, keys[run.name])
    finally:
        if threads_env:
            del os.environ["OMP_NUM_THREADS"]
    if failure is not None:
        raise failure
    if settings is not None:
        (results_dir / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    return [outcomes[r.name] for r in plan]


def plan_status(
    plan: list[Run], results_dir: Path, notebooks_dir: Path = NOTEBOOKS_DIR
) -> dict[str, str]:
    """For each run: "up to date" or "to run" (what `ctrip run --dry-run` prints)."""
    keys = run_keys(plan, Path(notebooks_dir), source_hash())
    return {r.name: "up to date" if (load_provenance(run_folder(Path(results_dir), r.name)) or {}).get("key")
            == keys[r.name] else "to run" for r in plan}  # fmt: skip
