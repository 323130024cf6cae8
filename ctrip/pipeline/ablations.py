"""Ablations: a change of settings run against a base results folder, and its page in the book.

`ctrip run --ablation NAME --set key=value ...` (or a profile's `ablations: {NAME: [key=value,
...]}`, run after the profile's plan) keeps its results in `<base>/ablations/NAME/`. Its plan is
its page (`notebooks/ablation.ipynb`) and the Stage I-III runs the page reads. Every run whose key
is the key of an up-to-date run of the base is reused: its folder is a link to the base's run
(`runs/<name> -> ../../../runs/<name>`), never a copy; only the runs the change reaches execute.
The page compares, for each Stage III method the change reaches, the ablation's test
predictions with the base's on the same subjects and seeds (`ctrip.analysis.ablation`).
`ablation_pages` hands the executed pages, and a summary page over all ablations, to the book.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ctrip.pipeline.cache import run_folder, run_keys, run_status
from ctrip.pipeline.plan import STEPS, Run, methods_for_cohort

ABLATIONS_DIR = "ablations"
PAGE_RUN = "ablation"  # the run (and notebook) of an ablation's page
DIFFERENCES_FILE = "ablation_differences.csv"
SUMMARY_FILE = "ablation_summary.csv"  # its one row of the summary table
# The page's run folder, <base>/ablations/NAME/runs/ablation/, sees the base four folders up.
BASE_FROM_PAGE = "../../../.."
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_TRAINING = ("cohort", "stage1", "stage2", "stage3")


def ablation_folder(base: Path, name: str) -> Path:
    """Where ablation `name` of the base results folder `base` keeps its results."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"--ablation {name!r}: a name of letters, digits, _ and - (e.g. t007)")
    return Path(base) / ABLATIONS_DIR / name


def changed_settings(base: dict[str, Any], ablation: dict[str, Any]) -> dict[str, list[Any]]:
    """The dotted keys whose value differs, each with [base value, ablation value]."""

    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(tree, dict) and tree:
            return {
                k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()
            }
        return {prefix[:-1]: tree}

    def effective(settings: dict[str, Any]) -> dict[str, Any]:
        # a method's setting left to `method_defaults` is the default's value, not null
        defaults = settings.get("method_defaults") or {}
        methods = {m: {**defaults, **(spec or {})} for m, spec in settings["methods"].items()}
        return {**settings, "methods": methods}

    a, b = flat(effective(base)), flat(effective(ablation))
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


@dataclass
class Ablation:
    """An ablation ready to run: its folder, its plan (training runs and page) and the two
    settings trees it compares."""

    name: str
    folder: Path
    plan: list[Run]
    settings: dict[str, Any]
    base_settings: dict[str, Any]


def prepare_ablation(
    name: str,
    profile: str | Path,
    base_overrides: list[str],
    changes: list[str],
    cohort: str | Path | None,
    base: Path,
    notebooks_dir: Path,
) -> Ablation:
    """Ablation `name` of the base results folder `base`: the base's settings (`profile`,
    `base_overrides`, `cohort`) with `changes` (`--set` values) on top."""
    from ctrip.config import load_settings
    from ctrip.pipeline.plan import build_plan

    folder = ablation_folder(base, name)
    if not changes:
        raise ValueError(f"--ablation {name}: no change; give it with --set key=value")
    base_settings = load_settings(profile, base_overrides, cohort=cohort)
    settings = load_settings(profile, [*base_overrides, *changes], cohort=cohort)
    plan = ablation_plan(name, build_plan(base_settings), build_plan(settings), base_settings,
                         settings, notebooks_dir)  # fmt: skip
    return Ablation(name, folder, plan, settings, base_settings)


def ablation_plan(
    name: str,
    base_plan: list[Run],
    plan: list[Run],
    base_settings: dict[str, Any],
    settings: dict[str, Any],
    notebooks_dir: Path,
) -> list[Run]:
    """The training runs of `plan` (the ablation's settings) and its page, which compares each
    Stage III run whose key differs from the base's with the base's run of that name."""
    base_keys, keys = run_keys(base_plan, notebooks_dir), run_keys(plan, notebooks_dir)
    methods, _ = methods_for_cohort(settings)
    # the cohort and the Stage I-III training runs (not the reference baselines)
    training = [
        r for r in plan if r.step in _TRAINING and (r.step != "stage3" or "method" in r.parameters)
    ]
    stage3 = {r.parameters["method"]: r.name for r in training if r.step == "stage3"}
    reached = {m: run for m, run in stage3.items() if keys[run] != base_keys.get(run)}
    if not reached:
        raise ValueError(
            f"--ablation {name}: the change ({', '.join(changed_settings(base_settings, settings)) or 'none'}) "
            "reaches no Stage III run, whose predictions an ablation compares"
        )
    missing = sorted(run for run in reached.values() if run not in base_keys)
    if missing:
        raise ValueError(
            f"--ablation {name}: the base plan has no run {missing[0]} to compare with"
        )
    table2 = settings["table2"]
    page = Run(
        PAGE_RUN,
        settings["notebooks"]["ablation"],
        {
            "name": name,
            "changed": changed_settings(base_settings, settings),
            "labels": {m: methods[m].get("label", m) for m in reached},
            "base_dir": BASE_FROM_PAGE,
            "base_stage3": dict(reached),
            "base_keys": {run: base_keys[run] for run in reached.values()},
            "cps": list(table2["cps"]),
            "fraction": float(table2["fraction"]),
            "n_bootstrap": int(table2["n_bootstrap"]),
            "bootstrap_seed": int(table2["bootstrap_seed"]),
        },
        inputs={"stage3": dict(reached), "runs": {r.name: r.name for r in training}},
        step="analysis",
    )
    page.needs = ["cohort", *(r.name for r in training if r.name != "cohort")]
    page.threads = training[0].threads
    return sorted([*training, page], key=lambda r: STEPS.index(r.step))


def reusable_runs(plan: list[Run], base: Path, ablation: Path, notebooks_dir: Path) -> set[str]:
    """The runs of an ablation's plan not up to date in its own folder whose key is that of an
    up-to-date run of the base: they are reused from the base."""
    keys = run_keys(plan, notebooks_dir)
    reusable = set()
    for run in plan:
        own = run_folder(ablation, run.name)
        if not own.is_symlink() and run_status(own, keys[run.name]) == "up to date":
            continue
        if run_status(run_folder(base, run.name), keys[run.name]) == "up to date":
            reusable.add(run.name)
    return reusable


def link_base_runs(plan: list[Run], base: Path, ablation: Path, notebooks_dir: Path) -> list[str]:
    """Make each reusable run's folder in the ablation a relative link to the base's run (and
    remove links that no longer match); return the runs linked."""
    runs = ablation / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for run in plan:
        if run_folder(ablation, run.name).is_symlink():
            run_folder(ablation, run.name).unlink()
    reused = reusable_runs(plan, base, ablation, notebooks_dir)
    for name in sorted(reused):
        folder = run_folder(ablation, name)
        if folder.exists():  # the ablation's own, stale run
            shutil.rmtree(folder)
        target = os.path.relpath(run_folder(base, name), runs)
        folder.symlink_to(target, target_is_directory=True)
    return sorted(reused)


def ablation_status(
    plan: list[Run], base: Path, ablation: Path, notebooks_dir: Path
) -> dict[str, str]:
    """For each run of an ablation's plan: "reused from the base", "up to date" or "to run
    (why)" (what `ctrip run --ablation NAME --dry-run` prints)."""
    keys = run_keys(plan, notebooks_dir)
    reused = reusable_runs(plan, base, ablation, notebooks_dir)
    status = {}
    for run in plan:
        if run.name in reused:
            status[run.name] = f"reused from the base ({keys[run.name][:10]})"
        else:
            status[run.name] = run_status(run_folder(ablation, run.name), keys[run.name])
        upstream = [n for n in run.needs if status[n].startswith("to run")]
        if upstream and not status[run.name].startswith("to run"):
            status[run.name] = f"to run (it reads {upstream[0]}, which is to run)"
    return status


def ablation_pages(results_dir: Path, executed: Path) -> list[str]:
    """Copy the executed page of every ablation of `results_dir` into `executed/` as
    `ablation_<name>.ipynb`, with a summary page `ablation_summary.ipynb` of their one-row
    summaries when there are several; return their document names (relative to `executed/`),
    the summary first."""
    from ctrip.pipeline.book import show_parameters_that_ran  # book.py calls this function

    for stale in executed.glob("ablation_*.ipynb"):
        stale.unlink()
    pages, rows = [], []
    for folder in sorted((Path(results_dir) / ABLATIONS_DIR).glob("*/runs")):
        page = folder / PAGE_RUN
        if not (page / f"{PAGE_RUN}.ipynb").is_file():
            continue
        name = folder.parent.name
        book = nbformat.read(page / f"{PAGE_RUN}.ipynb", as_version=4)
        show_parameters_that_ran(book)
        title = book.cells[0]
        title.source = title.source.replace("# Ablation", f"# Ablation {name}", 1)
        nbformat.write(book, executed / f"ablation_{name}.ipynb")
        pages.append(f"ablation_{name}")
        rows.append(pd.read_csv(page / SUMMARY_FILE))
    if len(pages) > 1:
        table = pd.concat(rows, ignore_index=True)
        summary = nbformat.v4.new_notebook()
        summary.cells = [
            nbformat.v4.new_markdown_cell(
                "# Ablations: summary\n\nEach ablation of this results folder against its base "
                "at the Table 2 fraction: the methods it reaches, its comparisons of test r and "
                "MD (method x metric x CP), and how many show a difference up or down (a 95% "
                "paired bootstrap CI that excludes 0). Each ablation's page gives them all."
            ),
            nbformat.v4.new_markdown_cell(table.to_markdown(index=False)),
        ]
        nbformat.write(summary, executed / "ablation_summary.ipynb")
        pages.insert(0, "ablation_summary")
    return pages
