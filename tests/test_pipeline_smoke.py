"""The smoke profile end to end: every notebook through papermill, Table 2 and the figures, the
Jupyter Book with -W, a cached second run, and a command-line override that re-runs exactly the
runs that depend on it, and the profile's ablation with its page (about three minutes on two
cores, the shared smoke run, `smoke_run` in conftest.py, included)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from ctrip.analysis.tables import ci
from ctrip.cli import main
from ctrip.config import load_settings
from ctrip.pipeline.book import build_book
from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.runner import REPO_DIR
from tests.test_pipeline_ablation import check_ablation_page

pytestmark = pytest.mark.slow


def book_source(root: Path) -> Path:
    """A copy of the book's sources (chapters, config, vendored MathJax if present) in `root`."""
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_DIR / name, root / name)
    shutil.copytree(
        REPO_DIR / "book", root / "book", ignore=shutil.ignore_patterns("executed", "_build")
    )
    return root


def executed_runs(output: str) -> set[str]:
    return set(re.findall(r"\] (\S+)\s+done in", output))


def test_smoke_profile_end_to_end(smoke_run, tmp_path, capsys):
    settings, shared, out = smoke_run
    plan = build_plan(settings)
    # the profile's ablation (methods.L_MAE.frozen) trains only stage3_L_MAE and its page
    assert executed_runs(out) == {r.name for r in plan} | {"ablation"}
    assert re.search(r"ablation l_mae_frozen: 2 executed, \d+ reused from the base", out)
    check_ablation_page(shared, "l_mae_frozen", {"stage3_L_MAE"})
    results = tmp_path / "results"  # the shared run's folder stays as it is; this test changes it
    shutil.copytree(shared, results, symlinks=True)

    table = pd.read_csv(results / "table2.csv")
    assert list(table["method"]) == [
        "CMR_sup",
        "L_sup",
        "E_sup",
        "T_sup",
        "L+T",
        "L+E",
        "L+E+Tp",
        "L+E+T",
    ]
    numbers = table[[f"{cp}_{m}" for cp in ("LVEF", "LVM", "RVEF", "RVEDV")
                     for m in ("md", "md_ci_low", "md_ci_high", "loa_low", "loa_high")]]  # fmt: skip
    assert np.isfinite(numbers.to_numpy()).all()
    assert (
        len(pd.read_csv(results / "table2_cp18.csv").query("fraction == 1.0")) == 9 * 18
    )  # with the control
    curves = pd.read_csv(results / "pearson_vs_fraction.csv")
    references = {"ref_localizer", "ref_cmr", "ref_ecg", "ref_tabular", "mean"}
    assert set(curves["fraction"]) == {0.5, 1.0}
    # Table 2 keeps the paper's rows; the control (L_MAE) joins the curves and comparisons
    assert (
        set(curves["method"]) == set(table["method"]) | {"L_MAE"} | references
    )  # dashed in Fig. 3
    assert len(pd.read_csv(results / "yardstick.csv")) == len(references)
    assert set(pd.read_csv(results / "paired_differences.csv")["method"]) == set(
        table["method"]
    ) - {"L_sup"} | {"L_MAE"}
    loa = pd.read_csv(results / "loa_differences.csv")  # Table 3c: every row against the mean
    assert set(loa["method"]) == set(table["method"]) | {"L_MAE"}
    assert set(loa["baseline"]) == {"mean"}
    assert set(loa["cp"]) == {"LVEF", "RVEF"} and np.isfinite(loa["loa_width"]).all()
    gaps = pd.read_csv(results / "yardstick_differences.csv")
    assert {"LVEDV", "LVM", "RVEDV"} <= set(gaps["cp"])  # the sizes the yardstick target names
    # Table 3d: the localizer rows and the cheap CNN against the standard CNN (smoke: seed 0)
    standard = pd.read_csv(results / "standard_cnn.csv")
    localizer_rows = {"L_sup", "L+T", "L+E", "L+E+Tp", "L+E+T", "L_MAE", "ref_localizer"}
    assert set(standard["method"]) == localizer_rows and set(standard["fraction"]) == {1.0}
    assert set(standard["baseline"]) == {"standard_localizer"} and np.isfinite(standard["r"]).all()
    control = pd.read_csv(results / "control_differences.csv")
    assert set(control["method"]) == {"L+T", "L+E", "L+E+Tp", "L+E+T"}
    assert set(control["baseline"]) == {"L_MAE"} and np.isfinite(control["ci_low"]).all()
    assert len(pd.read_csv(results / "coverage.csv")) and len(
        pd.read_csv(results / "screening.csv")
    )
    for figure in ("fig2a_attention.png", "fig2b_umap.png", "fig3_pearson_vs_fraction.png"):
        assert (results / "figures" / figure).stat().st_size > 10_000, figure

    # Executed notebooks name no machine-specific or temporary folder.
    for notebook in (shared / "runs").glob("*/*.ipynb"):
        text = notebook.read_text()
        assert str(shared.parent) not in text and ".tmp-" not in text, notebook
        assert str(REPO_DIR) not in text, notebook

    root = book_source(tmp_path / "src")
    html = build_book(root, results, plan, settings)  # a smoke book: its own folder
    assert html == root / "_build" / "smoke" / "_build" / "html"
    assert not (root / "book" / "executed").exists() and not (root / "_build" / "html").exists()
    page = (html / "book" / "results.html").read_text()
    assert "Table 2." in page and "Fig. 3." in page and "L+E+T (C-TRIP)" in page
    assert "Table 4b." in page and "L_MAE (Stage I only)" in page
    assert "Table 3c." in page and "have narrower limits than the training mean" in page
    assert "Table 3d." in page and "r standard CNN" in page
    # the chapter pastes what table2.ipynb published from its table, under the caption's number
    # alone (no running number of Sphinx's), and the notebook's page shows the same table
    row = table[table["method"] == "L+E+T"].iloc[0]
    assert ci(row["LVM_r"], row["LVM_r_ci_low"], row["LVM_r_ci_high"], 3) in page
    assert "caption-number" not in page
    notebook_page = (html / "book" / "executed" / "table2.html").read_text()
    assert "Table 2." in notebook_page and "Table 4b." in notebook_page
    assert "against L_sup with all training labels" in (html / "book" / "intro.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in (html / "book" / "method.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    # every run's notebook but the cohort's, and the ablation's page
    assert len(list((html / "book" / "executed").glob("*.html"))) == len(plan)
    ablation_page = (html / "book" / "executed" / "ablation_l_mae_frozen.html").read_text()
    assert "Ablation l_mae_frozen" in ablation_page and "methods.L_MAE.frozen" in ablation_page
    provenance = (html / "book" / "provenance.html").read_text()
    assert "stage3_L_E_T" in provenance and "Critical path (" in provenance

    # Nothing changed: nothing runs.
    assert main(["run", "--profile", "smoke", "--results", str(results), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert executed_runs(out) == set() and "0 executed" in out

    # One Stage III parameter: exactly its run and the runs that read it.
    override = ["--set", "methods.L_sup.frozen=true"]
    assert (
        main(["run", "--profile", "smoke", "--results", str(results), "--no-progress", *override])
        == 0
    )
    assert executed_runs(capsys.readouterr().out) == {
        "stage3_L_sup",
        "table2",
        "fraction_curves",
        "attention_maps",
        "screening",
        "ablation",  # the ablation's page reads every training run, stage3_L_sup too
    }
    notebook = nbformat.read(results / "runs" / "stage3_L_sup" / "stage3_L_sup.ipynb", as_version=4)
    injected = next(
        c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert "frozen = True" in injected.source

    # The book of the override says what ran, and its reproduce page's commands, run as printed
    # from the repository root, remake its numbers: the whole chain is up to date under them, and
    # one notebook remade on its own writes the tables its run recorded.
    settings = load_settings("smoke", override[1:])
    html = build_book(root, results, build_plan(settings), settings)
    for page in ("intro", "results", "screening"):
        text = (html / "book" / f"{page}.html").read_text()
        assert "only show that the pipeline runs" in text and "profile <code" in text, page
    source = root / "_build" / "smoke" / "source" / "book" / "executed"
    reproduce = (source / "_includes" / "reproduce.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", reproduce, flags=re.S)
    everything = blocks[0].strip()
    assert "--set methods.L_sup.frozen=true" in everything and '"$RESULTS"' in everything
    env = {**os.environ, "RESULTS": str(results)}
    done = subprocess.run(["bash", "-c", everything + " --dry-run"], cwd=REPO_DIR, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    base = [line.split(None, 1)[1] for line in lines if not line.startswith((" ", "ablation "))]
    assert len(base) == len(build_plan(settings)) and set(base) == {"up to date"}
    # the profile's declared ablation, listed after the plan: nothing of it is to run either
    assert any(line.startswith("ablation l_mae_frozen") for line in lines)
    assert not any(line.startswith(" ") and " to run" in line for line in lines)
    screening = next(b for b in blocks if "notebooks/screening.ipynb" in b)
    done = subprocess.run(["bash", "-c", screening], cwd=REPO_DIR, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    remade = results / "runs" / "remake-screening"
    for name in ("coverage.csv", "screening.csv", "abnormal_counts.csv"):
        assert (remade / name).read_bytes() == (results / "runs" / "screening" / name).read_bytes()
    shutil.rmtree(remade)
