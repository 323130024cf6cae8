"""When is a run up to date: its key, its recorded outputs, and the lock of a results folder.

A run's key hashes exactly what it reads: its notebook, the `ctrip` modules it imports (the
closure of its import statements, lazy ones included, so the analysis package counts for the
Table 2 and figure runs and an unrelated module does not), its parameters, its kernel's thread
count and the keys of the runs it reads. A run is up to date when `runs/<name>/provenance.json`
holds the same key and every output it recorded is still there, unchanged: an output with its
recorded size and modification time is trusted; one whose size or modification time moved is
hashed and compared with its recorded sha256; `verify` (`ctrip run --verify`) hashes them all. One `ctrip run` at a time holds a results folder (`.lock`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctrip.data.cohort import sha256_of
from ctrip.folder_lock import folder_lock
from ctrip.pipeline.plan import Run

REPO_DIR = Path(__file__).resolve().parents[2]


class PipelineError(RuntimeError):
    """A run failed; the message names the run, the notebook, the cell and the error."""


def _module_file(module: str, root: Path) -> Path | None:
    """The source file of a `ctrip` module under `root` (the folder holding `ctrip/`)."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """`ctrip` modules named by the import statements of `source` (anywhere in it, lazy ones
    included); `from ctrip.x import y` names ctrip.x and ctrip.x.y (which may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parent = parts if is_package else parts[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "ctrip" or n.startswith("ctrip.")}


def code_closure(modules: set[str], root: Path = REPO_DIR) -> list[Path]:
    """Every `ctrip` source file that importing `modules` runs: the modules, their packages'
    `__init__.py`, and recursively what they import."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        path = _module_file(name, root)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += _imports(path.read_text(), name, path.name == "__init__.py")
    return sorted(seen)


def notebook_imports(notebook: Path) -> set[str]:
    """The `ctrip` modules a notebook's code cells import."""
    import nbformat

    book = nbformat.read(notebook, as_version=4)
    source = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return _imports("\n".join(lines), "__notebook__", False)


# What the runner itself runs for a run without a notebook (the cohort: synthesis or a check).
COHORT_MODULES = {"ctrip.data.synth", "ctrip.data.cohort"}


def code_hash(modules: set[str], root: Path = REPO_DIR) -> str:
    """sha256 over the source files of `code_closure(modules)`, with their paths."""
    digest = hashlib.sha256()
    for path in code_closure(modules, root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_records(plan: list[Run], notebooks_dir: Path) -> dict[str, dict[str, Any]]:
    """What each run's key hashes (plan order guarantees inputs are keyed first)."""
    records: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}
    code_cache: dict[frozenset[str], str] = {}
    for run in plan:
        if run.notebook is None:
            cohort = run.parameters["cohort"]
            manifest = Path(cohort["path"]) / "manifest.yaml" if cohort.get("path") else None
            nb_hash = sha256_of(manifest) if manifest else ""
            modules = COHORT_MODULES
        else:
            path = notebooks_dir / run.notebook
            if not path.exists():
                raise PipelineError(f"run {run.name}: notebook {path} does not exist")
            nb_hash, modules = sha256_of(path), notebook_imports(path)
        frozen = frozenset(modules)
        if frozen not in code_cache:
            code_cache[frozen] = code_hash(set(modules))
        record = {"notebook": nb_hash, "code": code_cache[frozen], "parameters": run.parameters,
                  "threads": run.threads, "inputs": {n: keys[n] for n in run.needs}}  # fmt: skip
        keys[run.name] = hashlib.sha256(_canonical(record).encode()).hexdigest()
        records[run.name] = {**record, "key": keys[run.name]}
    return records


def run_keys(plan: list[Run], notebooks_dir: Path) -> dict[str, str]:
    """The cache key of every run."""
    return {name: r["key"] for name, r in run_records(plan, notebooks_dir).items()}


def _well_formed(record: Any) -> bool:
    """Whether a parsed provenance record has the shape the runner reads: a key, the sha256 of
    every output and, optionally, their [size, mtime_ns]."""
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return False
    hashes = record.get("hashes")
    outputs = hashes.get("outputs_sha256") if isinstance(hashes, dict) else None
    stats = record.get("outputs_stat", {})
    return (
        isinstance(outputs, dict)
        and all(isinstance(v, str) for v in outputs.values())
        and isinstance(stats, dict)
        and all(
            isinstance(v, list) and len(v) == 2 and all(type(n) is int for n in v)
            for v in stats.values()
        )
    )


def load_provenance(run_dir: Path) -> dict | None:
    """A run's provenance record; None when it is missing or damaged (not JSON, or not of the
    shape the runner reads: the run is then not up to date)."""
    path = run_dir / "provenance.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    return record if _well_formed(record) else None


def run_folder(results_dir: Path, name: str) -> Path:
    return results_dir / "runs" / name


def _output_files(out_dir: Path) -> list[Path]:
    return [p for p in sorted(out_dir.rglob("*")) if p.is_file() and p.name != "provenance.json"]


def _output_record(out_dir: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """sha256 and [size, mtime_ns] of every file a run left in its folder."""
    hashes, stats = {}, {}
    for path in _output_files(out_dir):
        rel, st = str(path.relative_to(out_dir)), path.stat()
        hashes[rel], stats[rel] = sha256_of(path), [st.st_size, st.st_mtime_ns]
    return hashes, stats


def outputs_problem(run_dir: Path, record: dict[str, Any], verify: bool = False) -> str | None:
    """Why a run's recorded outputs are not all there unchanged (None when they are). A file
    with its recorded size and modification time is trusted unchanged unless `verify`; any
    other is hashed."""
    hashes = (record.get("hashes") or {}).get("outputs_sha256")
    if not hashes:
        return "its provenance records no outputs"
    stats = record.get("outputs_stat") or {}
    for rel, digest in hashes.items():
        path = run_dir / rel
        if not path.is_file():
            return f"output {rel} is missing"
        st = path.stat()
        if rel in stats and stats[rel][0] != st.st_size:
            return f"output {rel} changed (size)"
        trusted = not verify and stats.get(rel) == [st.st_size, st.st_mtime_ns]
        if not trusted and sha256_of(path) != digest:
            return f"output {rel} changed (sha256)"
    return None


def run_status(run_dir: Path, key: str, verify: bool = False) -> str:
    """ "up to date", or "to run" with the reason (`verify`: hash every output)."""
    record = load_provenance(run_dir)
    if record is None:
        if (run_dir / "provenance.json").exists():
            return "to run (its provenance record is damaged)"
        return "to run (never run)" if not run_dir.exists() else "to run (no provenance record)"
    if record.get("key") != key:
        return "to run (its notebook, code, parameters or inputs changed)"
    problem = outputs_problem(run_dir, record, verify)
    return f"to run ({problem})" if problem else "up to date"


@contextmanager
def results_lock(results_dir: Path) -> Iterator[None]:
    """Hold `results_dir/.lock` for one `ctrip run`; a second one is refused with a message
    naming the holder. Temporary run folders left by an earlier, dead process are removed."""

    def busy(holder: str) -> PipelineError:
        return PipelineError(
            f"results folder {results_dir} is in use by another ctrip run ({holder}); "
            "wait for it to finish or use another --results folder"
        )

    with folder_lock(results_dir / ".lock", busy):
        for stale in (results_dir / "runs").glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in (results_dir / "runs").glob(".old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield
