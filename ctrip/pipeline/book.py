"""Build the Jupyter Book from a finished pipeline: executed notebooks, figures, generated includes.

The chapters in `book/` are hand-written prose. The tables and readings of the results chapter
are published by the notebooks that compute them and pasted by key (```{glued} key```,
`book/_ext/glued.py`); the other generated parts come from `book/executed/_includes/*.md`,
written here from the results tables and provenance records.
Executed notebooks are copied to `book/executed/` (numbered in run order, picked up by the
`_toc.yml` glob) and MathJax must already be vendored in `book/_vendor/` by the set-up step (offline build).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from ctrip.pipeline.ablations import ablation_pages
from ctrip.pipeline.cache import PipelineError, run_folder
from ctrip.pipeline.mathjax import MathJaxError, require_mathjax
from ctrip.pipeline.plan import Run
from ctrip.pipeline.provenance_pages import write_pages


def _write(path: Path, data: str | bytes) -> None:
    """Write only when the content changes, so Sphinx rebuilds only the pages that changed."""
    data = data.encode() if isinstance(data, str) else data
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def show_parameters_that_ran(book: nbformat.NotebookNode) -> None:
    """In the book's copy, the parameters cell shows the values the run used: papermill's
    injected cell replaces the notebook's defaults (which name another profile's paths)."""
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in book.cells]
    injected = next((i for i, t in enumerate(tags) if "injected-parameters" in t), None)
    defaults = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    if injected is None or defaults is None:
        return
    body = book.cells[injected].source.replace("# Parameters\n", "", 1)
    book.cells[defaults].source = "# Parameters of this run (set by the pipeline)\n" + body
    del book.cells[injected]


def run_title(run: Run) -> str:
    """Which run an executed notebook is, in words: "Stage III, L+E+T", "Stage I, tabular Tp",
    "Stage II, L_E_T", or the run's name for a notebook run once."""
    p = run.parameters
    if run.step == "stage1":
        variant = f" {p['tabular_variant']}" if p["modality"] == "tabular" else ""
        return f"Stage I, {p['modality']}{variant}"
    if run.step == "stage2":
        return f"Stage II, {run.name.removeprefix('stage2_')}"
    if run.step == "stage3" and "method" in p:  # (the reference baselines share the step)
        return f"Stage III, {p['method']}"
    return run.name


def _copy_executed(plan: list[Run], results_dir: Path, executed: Path) -> dict[str, str]:
    """Executed notebooks into `executed/<run>.ipynb` (the name a chapter pastes from), their
    title naming the run; returns run -> document, in plan order."""
    order = {}
    for run in (r for r in plan if r.notebook):
        source = run_folder(results_dir, run.name) / f"{run.name}.ipynb"
        if not source.exists():
            raise PipelineError(
                f"run {run.name}: executed notebook {source} is missing; run the pipeline first"
            )
        book = nbformat.read(source, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "markdown" and cell.source.startswith("# "):
                title, _, rest = cell.source.partition("\n")
                if run_title(run) not in title:
                    cell.source = f"{title} ({run_title(run)})\n{rest}"
                break
        show_parameters_that_ran(book)
        _write(executed / f"{run.name}.ipynb", nbformat.writes(book))
        order[run.name] = f"executed/{run.name}"
    return order


def write_toc(source: Path, order: dict[str, str]) -> Path:
    """The book's table of contents: `_toc.yml`'s chapters, then the executed notebooks in the
    order the plan ran them (written beside them; `jupyter-book build --toc` reads it)."""
    toc = yaml.safe_load((source / "_toc.yml").read_text())
    for part in toc["parts"]:
        if any("glob" in c for c in part.get("chapters", [])):
            part["chapters"] = [{"file": f"book/{doc}"} for doc in order.values()]
    path = source / "book" / "executed" / "_toc.yml"
    _write(path, yaml.safe_dump(toc, sort_keys=False))
    return path


BOOK_FILES = ".ctrip-book.json"  # in a book's output folder: the files the build wrote there


def book_output_folder(root: Path, settings: dict, output: Path | None) -> Path | None:
    """Where a book is built: `output`, `root/_build/<profile>` for a profile other than the
    default, or None for the default book (built in place in `root`)."""
    if output is None and settings["profile"] != "default":
        output = Path(root) / "_build" / settings["profile"]
    return None if output is None else Path(output).resolve()


def _made_files(folder: Path) -> set[str]:
    """The files a book build wrote in `folder` (its record), empty when there is none."""
    try:
        record = json.loads((folder / BOOK_FILES).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    files = record.get("files") if isinstance(record, dict) else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _own_files(folder: Path) -> list[str]:
    """The files in a book's output folder outside jupyter-book's own `_build/` (which it
    manages), relative to the folder."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if not p.is_dir() and p.relative_to(folder).parts[0] != "_build" and p.name != BOOK_FILES
    )


def check_book_output(folder: Path, unrecorded_ok: bool = False) -> None:
    """Refuse to build into `folder` when it holds files a book build did not write (the build
    replaces `source/book`): a missing or empty folder, or one a build made, is fine.
    `unrecorded_ok` accepts a folder without a record (the default `_build/<profile>`, made
    before builds kept one)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; choose another --book-output")
    if not (folder / BOOK_FILES).exists() and (unrecorded_ok or not any(folder.iterdir())):
        return
    foreign = sorted(set(_own_files(folder)) - _made_files(folder))
    if not (folder / BOOK_FILES).exists():
        foreign = foreign or sorted(p.name for p in folder.iterdir())
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ValueError(
            f"{folder}: holds files the book build did not make ({shown}); refusing to replace "
            "its sources: choose another --book-output, or move those files away"
        )


def record_book_files(folder: Path) -> None:
    """Record every file now in `folder` (outside `_build/`) as written by the book build."""
    record = {"made_by": "ctrip run --book", "files": _own_files(folder)}
    _write(folder / BOOK_FILES, json.dumps(record, indent=1))


def book_sources(root: Path, target: Path) -> Path:
    """A copy of the book's sources (config, table of contents, chapters, vendored MathJax) in
    `target`, without executed notebooks: the source of a book that is not the default one."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copyfile(root / name, target / name)
    shutil.rmtree(target / "book", ignore_errors=True)
    shutil.copytree(root / "book", target / "book",
                    ignore=shutil.ignore_patterns("executed", "_build"))  # fmt: skip
    return target


def _copy_published(results_dir: Path, executed: Path) -> set[Path]:
    """The figures and the downloadable tables (every published CSV, and the attention run's
    heart share) into `executed/figures` and `executed/tables`; returns the files written."""
    written = set()
    files = [*(results_dir / "figures").glob("*.png"), *results_dir.glob("*.csv")]
    heart_share = run_folder(results_dir, "attention_maps") / "heart_share.csv"
    for path in [*files, *([heart_share] if heart_share.exists() else [])]:
        target = executed / ("figures" if path.suffix == ".png" else "tables") / path.name
        _write(target, path.read_bytes())
        written.add(target)
    return written


def build_book(
    root: Path, results_dir: Path, plan: list[Run], settings: dict, output: Path | None = None
) -> Path:
    """Assemble the executed notebooks and generated includes and run `jupyter-book build -W`.

    The default profile's book is built in place (`root/book/executed/`, `root/_build/html`).
    Any other profile, or an explicit `output`, gets its own copy of the sources in
    `<output>/source` (default output: `root/_build/<profile>`) and its html in
    `<output>/_build/html`, so a smoke or paper build never replaces the default book.
    """
    root, results_dir = Path(root).resolve(), Path(results_dir).resolve()
    try:
        require_mathjax(root / "book" / "_vendor")
    except MathJaxError as err:
        raise PipelineError(str(err)) from None
    default_folder = output is None
    output = book_output_folder(root, settings, output)
    if output is not None:
        check_book_output(output, unrecorded_ok=default_folder)
    try:
        source = root if output is None else book_sources(root, output / "source")
        executed = source / "book" / "executed"
        (executed / "figures").mkdir(parents=True, exist_ok=True)
        order = _copy_executed(plan, results_dir, executed)
        published = _copy_published(results_dir, executed)
        write_pages(plan, results_dir, settings, executed / "_includes", order, _write)
        # the base's ablations, a page each, after the plan's notebooks (ctrip.pipeline.ablations)
        order.update({page: f"executed/{page}" for page in ablation_pages(results_dir, executed)})
        toc = write_toc(source, order)
        keep = {executed / f"{run}.ipynb" for run in order} | published
        for stale in [*executed.glob("*.ipynb"), *(executed / "figures").glob("*.png"),
                      *(executed / "tables").glob("*.csv")]:  # fmt: skip
            if stale not in keep:  # from an earlier plan (e.g. a method since removed)
                stale.unlink()
    finally:  # what was written, even by a build that failed, is the build's to replace
        if output is not None and output.exists():
            record_book_files(output)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source), "-W",
           "--keep-going", "--toc", str(toc)]  # fmt: skip
    if output is not None:
        cmd += ["--path-output", str(Path(output).resolve())]
    print(f"building the book: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"jupyter-book build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return (Path(output).resolve() if output else root) / "_build" / "html"
