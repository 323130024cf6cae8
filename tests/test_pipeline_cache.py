"""The runner's soundness: each key covers the code a run imports (and nothing else), outputs
are checked, the results folder is locked, settings are checked before any work, and a run's
numbers do not depend on --jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ctrip.cli import main
from ctrip.config import SettingsError, load_settings, make_config, run_config
from ctrip.pipeline.cache import (
    REPO_DIR,
    PipelineError,
    code_closure,
    code_hash,
    notebook_imports,
    results_lock,
    run_keys,
)
from ctrip.pipeline.plan import Run, build_plan, methods_for_cohort
from ctrip.pipeline.runner import NOTEBOOKS_DIR, plan_status, run_plan
from tests.factories import TABULAR_VARIANTS, tiny_arrays, tiny_table
from tests.test_pipeline import executed, notebooks, tiny_plan, write_notebook  # noqa: F401


def quiet(_: str) -> None:
    pass


def test_key_covers_the_analysis_package_and_only_imported_code(tmp_path):
    table2 = code_closure(notebook_imports(NOTEBOOKS_DIR / "table2.ipynb"))
    names = {str(p.relative_to(REPO_DIR)) for p in table2}
    assert {"ctrip/analysis/report.py", "ctrip/analysis/metrics.py"} <= names  # lazy import too
    stage1 = {str(p.relative_to(REPO_DIR)) for p in code_closure(
        notebook_imports(NOTEBOOKS_DIR / "stage1_pretrain.ipynb"))}  # fmt: skip
    assert "ctrip/stages/train.py" in stage1 and "ctrip/stages/checkpoint.py" in stage1
    # Stage I draws its own evidence (loss curves, reconstructions) but not the result tables
    assert "ctrip/analysis/training.py" in stage1
    assert not {"ctrip/analysis/report.py", "ctrip/analysis/metrics.py"} & stage1
    assert "ctrip/pipeline/runner.py" not in stage1  # orchestration is not what a run reads

    root = tmp_path / "src"
    (root / "ctrip").mkdir(parents=True)
    (root / "ctrip" / "__init__.py").write_text("")
    (root / "ctrip" / "a.py").write_text("def f():\n    from ctrip import b\n    return b.X\n")
    (root / "ctrip" / "b.py").write_text("X = 1\n")
    (root / "ctrip" / "c.py").write_text("Y = 1\n")
    before = code_hash({"ctrip.a"}, root)
    (root / "ctrip" / "c.py").write_text("Y = 2\n")
    assert code_hash({"ctrip.a"}, root) == before  # not imported: no effect
    (root / "ctrip" / "b.py").write_text("X = 2\n")
    assert code_hash({"ctrip.a"}, root) != before  # a lazy import is still an import


def test_a_parameter_changes_only_the_runs_that_read_it():
    base = {r.name: r for r in build_plan(load_settings("smoke"))}
    changed = {r.name: r for r in build_plan(load_settings("smoke", ["stage2.temperatures.localizer-ecg=0.07"]))}  # fmt: skip
    assert changed["stage2_L_T"].parameters == base["stage2_L_T"].parameters  # no L-E pair
    assert changed["stage2_L_E"].parameters != base["stage2_L_E"].parameters
    stage2 = changed["stage2_L_E"].parameters["config"]
    assert set(stage2["stage2"]["temperatures"]) == {"localizer-ecg"}
    assert set(stage2["models"]) == {"localizer", "ecg"}
    # the notebook receives the run's whole configuration: what trains and what is stored
    expected = run_config(make_config("smoke"), "stage2", ["localizer"], [["localizer", "ecg"]])
    assert base["stage2_L_E"].parameters["config"] == expected
    assert stage2["stage2"]["temperatures"]["localizer-ecg"] == 0.07
    e_sup = base["stage3_E_sup"].parameters["config"]
    assert "augment" not in e_sup  # the localizer's warps: not for an ECG run
    assert e_sup["stage3"]["augment_ecg"] is True  # the ECG's time shift (smoke profile)


def test_missing_or_changed_outputs_are_not_up_to_date(tmp_path, notebooks, tiny_cohort):  # noqa: F811
    results = tmp_path / "results"
    plan = tiny_plan(tiny_cohort)
    run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    record = json.loads((results / "runs" / "a" / "provenance.json").read_text())
    assert "value.txt" in record["hashes"]["outputs_sha256"] and record["threads"] == 1
    assert set(plan_status(plan, results, notebooks).values()) == {"up to date"}

    (results / "runs" / "a" / "value.txt").unlink()
    status = plan_status(plan, results, notebooks)
    assert status["a"] == "to run (output value.txt is missing)"
    assert status["b"].startswith("to run (it reads a")
    assert executed(
        run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    ) == {"a", "b"}

    (results / "runs" / "c" / "value.txt").write_text("9")  # same size, other content
    assert (
        plan_status(plan, results, notebooks)["c"] == "to run (output value.txt changed (sha256))"
    )
    # a run folder holding only its provenance (what a crashed concurrent run once left)
    for path in (results / "runs" / "cohort").iterdir():
        if path.name != "provenance.json":
            path.unlink()
    assert plan_status(plan, results, notebooks)["cohort"].startswith("to run (output")
    assert executed(run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)) == {
        "cohort", "a", "b", "c"}  # fmt: skip
    assert (results / "runs" / "c" / "value.txt").read_text() == "5"


def test_results_folder_is_locked_and_temporary_folders_are_per_process(
    tmp_path,
    notebooks,  # noqa: F811
    tiny_cohort,
):
    results = tmp_path / "results"
    stale = results / "runs" / ".tmp-a-999999"
    with results_lock(results):  # another `ctrip run` holds the folder, working in `stale`
        stale.mkdir(parents=True)
        with pytest.raises(PipelineError, match=r"in use by another ctrip run \(pid \d+"):
            run_plan(tiny_plan(tiny_cohort), results, notebooks_dir=notebooks, progress=False, log=quiet)  # fmt: skip
        assert stale.exists()
    assert not (results / "runs" / "a").exists()
    run_plan(tiny_plan(tiny_cohort), results, notebooks_dir=notebooks, progress=False, log=quiet)
    assert not stale.exists()  # left by a dead process: removed under the lock
    notebook = nbformat.read(results / "runs" / "a" / "a.ipynb", as_version=4)
    assert notebook.metadata["papermill"]["input_path"] == "notebooks/write.ipynb"
    assert str(tmp_path) not in (results / "runs" / "b" / "b.ipynb").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stage3.lr_head=abc", r"config\.stage3\.lr_head: 'abc' is a str, expected int or float"),
        ("sweep.fractions=[2.0]", r"sweep\.fractions\.0: 2\.0 is outside \(0, 1\]"),
        ("sweep.seeds=[0, -1]", r"sweep\.seeds\.1: -1 is outside \[0, inf\]"),
        ("trainer.threads=0", r"config\.trainer\.threads: 0 is outside"),
        ("methods.L_sup.frozen=maybe", r"methods\.L_sup\.frozen: 'maybe' is a str, expected bool"),
        ("table2.fraction=0.3", r"table2\.fraction: 0\.3 is not one of sweep\.fractions"),
        ("table2.cps=[LVEF, EF]", r"table2\.cps: \['EF'\] are not CP names"),
        ("table2.loa_cps=[RVEF, LVX]", r"table2\.loa_cps: \['LVX'\] are not CP names"),
        ("table2.yardstick_cps=[EDV]", r"table2\.yardstick_cps: \['EDV'\] are not CP names"),
        ("stage1.max_epochs=2.5", r"config\.stage1\.max_epochs: 2\.5 is a number, expected int"),
        ("models.localizer.pool=max", r"config\.models\.localizer\.pool: 'max' is not one of"),
        ("stage2.temperatures.localizer-ecg=-1", r"temperatures\.localizer-ecg: -1 is outside"),
    ],
)
def test_set_values_are_checked_before_any_work(override, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("smoke", [override])


def test_a_bad_set_value_fails_in_the_command_before_any_work(tmp_path, capsys):
    results = tmp_path / "results"
    args = ["run", "--profile", "smoke", "--results", str(results), "--set", "stage3.lr_head=abc"]
    assert main(args) == 2
    assert "config.stage3.lr_head" in capsys.readouterr().err and not results.exists()


def cohort_without(path: Path, drop: str) -> Path:
    from ctrip.data.cohort import write_cohort

    arrays = {k: v for k, v in tiny_arrays(40).items() if k != drop}
    variants = {"T": TABULAR_VARIANTS["T"]}
    return write_cohort(path, tiny_table(40), arrays, source="imported", tabular_variants=variants,
                        ecg_sampling_rate_hz=20.0)  # fmt: skip


def test_a_cohort_without_cmr_plans_without_cmr_sup(tmp_path):
    cohort = cohort_without(tmp_path / "cohort", "cmr")
    settings = load_settings("smoke", cohort=cohort)
    methods, left_out = methods_for_cohort(settings)
    assert left_out == {"CMR_sup": "the cohort has no cmr",
                        "L+E+Tp": "the cohort has no tabular variant Tp"}  # fmt: skip
    plan = {r.name: r for r in build_plan(settings)}
    assert "stage3_CMR_sup" not in plan and "stage3_L_E_T" in plan
    assert plan["data_card"].parameters == {"simulated": False}
    assert plan["table2"].parameters["simulated"] is False
    assert "CMR_sup" not in plan["table2"].parameters["methods"]
    from ctrip.pipeline.provenance_pages import cohort_markdown, run_facts_markdown

    text = run_facts_markdown(settings) + cohort_markdown(settings)  # the book says so
    assert "CMR_sup (the cohort has no cmr)" in text and "oracle ceilings" in text
    assert "an imported cohort, `cohort` (source: imported)" in text and "simulated by" not in text


def stage3_plan(cohort: Path, seed_run: str) -> list[Run]:
    config = make_config("smoke", {"models": {"localizer": {"patch_size": 8}},
                                   "stage3": {"max_epochs": 1, "batch_size": 8},
                                   "trainer": {"accelerator": "cpu", "threads": 2}})  # fmt: skip
    params = {"method": "L_sup", "modality": "localizer", "encoder": "scratch", "tabular_variant": "T",
              "frozen": False, "fractions": [1.0], "seeds": [0],
              "config": run_config(config, "stage3", ["localizer"])}  # fmt: skip
    return [
        Run("cohort", None, {"cohort": {"path": str(cohort)}}, step="cohort"),
        Run(
            "stage3_L_sup",
            "stage3_finetune.ipynb",
            params,
            inputs={"init": None},
            needs=["cohort"],
            step="stage3",
            threads=2,
        ),  # fmt: skip
        Run(seed_run, "threads.ipynb", {}, needs=["cohort"], threads=2),
    ]


@pytest.mark.slow
def test_jobs_do_not_change_the_numbers(tmp_path, tiny_cohort):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOKS_DIR / "stage3_finetune.ipynb", folder)
    write_notebook(folder / "threads.ipynb", "out_dir = ''",
                   "import torch\nfrom pathlib import Path\n"
                   "Path(out_dir, 'threads.txt').write_text(str(torch.get_num_threads()))")  # fmt: skip
    out = {}
    for jobs in (1, 2):
        results = tmp_path / f"jobs{jobs}"
        plan = stage3_plan(tiny_cohort, "threads")
        run_plan(plan, results, notebooks_dir=folder, jobs=jobs, progress=False, log=quiet)
        out[jobs] = results
        assert (results / "runs" / "threads" / "threads.txt").read_text() == "2"
    assert run_keys(stage3_plan(tiny_cohort, "threads"), folder)  # the same plan, the same keys
    a, b = (
        pd.read_parquet(out[j] / "runs" / "stage3_L_sup" / "predictions.parquet") for j in (1, 2)
    )
    pd.testing.assert_frame_equal(a, b, check_exact=True)
