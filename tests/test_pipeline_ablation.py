"""Ablations: what each run's key covers, the ablation's plan and reuse of the base's runs, and
the paired differences of its page."""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pandas as pd
import pytest

from ctrip.analysis.ablation import ablation_differences, ablation_reading, ablation_summary
from ctrip.cli import main
from ctrip.config import load_settings
from ctrip.data.schema import CP_NAMES
from ctrip.pipeline.ablations import (
    ablation_folder,
    ablation_status,
    changed_settings,
    link_base_runs,
    prepare_ablation,
)
from ctrip.pipeline.cache import run_folder, run_keys
from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.runner import NOTEBOOKS_DIR, REPO_DIR

SCRATCH = ("stage3_L_sup", "stage3_E_sup", "stage3_T_sup", "stage3_CMR_sup")


def keys(*overrides: str, cohort=None) -> dict[str, str]:
    return run_keys(
        build_plan(load_settings("smoke", list(overrides), cohort=cohort)), NOTEBOOKS_DIR
    )


def test_a_masking_setting_reaches_stage1_and_what_reads_it_not_scratch_runs():
    base = keys()
    for change in ("models.localizer.mask_ratio=0.5", "models.localizer.decoder_dim=8"):
        changed = keys(change)
        assert changed["stage1_localizer"] != base["stage1_localizer"], change
        assert changed["stage2_L_E"] != base["stage2_L_E"]  # reads the Stage I encoder
        assert changed["stage3_L_MAE"] != base["stage3_L_MAE"]
        for run in SCRATCH:  # trained from scratch: never masks, has no decoder
            assert changed[run] == base[run], (change, run)
        assert changed["stage1_ecg"] == base["stage1_ecg"]
        assert changed["reference_baselines"] == base["reference_baselines"]


def test_a_setting_a_scratch_run_reads_gives_it_a_new_key():
    base, changed = keys(), keys("stage3.lr_encoder_scratch=0.0003")
    assert changed["stage3_L_sup"] != base["stage3_L_sup"]
    assert changed["stage1_localizer"] == base["stage1_localizer"]
    assert changed["stage2_L_E"] == base["stage2_L_E"]
    localizer = build_plan(load_settings("smoke"))
    config = next(r for r in localizer if r.name == "stage3_L_sup").parameters["config"]
    assert "mask_ratio" not in config["models"]["localizer"]
    assert not {"stage1", "stage2"} & set(config)


def test_the_two_spellings_of_a_cohort_give_one_key(tiny_cohort, monkeypatch):
    monkeypatch.chdir(tiny_cohort.parent)
    by_option = keys(cohort=tiny_cohort)
    by_set = keys(f"cohort.path={tiny_cohort.name}")  # relative, as a user types it
    assert by_option == by_set
    # the simulation's sizes are not read from a cohort that exists
    assert keys("cohort.n_subjects=400", cohort=tiny_cohort) == by_option


def test_changed_settings_lists_each_dotted_key_that_differs():
    base = load_settings("smoke")
    ablation = load_settings(
        "smoke", ["stage2.temperatures.localizer-ecg=0.07", "sweep.seeds=[0,1]"]
    )
    assert changed_settings(base, ablation) == {
        "config.stage2.temperatures.localizer-ecg": [0.1, 0.07],
        "sweep.seeds": [[0], [0, 1]],
    }


def test_the_ablation_plan_is_the_training_runs_and_its_page(tmp_path):
    ablation = prepare_ablation("t007", "smoke", [], ["stage2.temperatures.localizer-ecg=0.07"],
                                None, tmp_path, NOTEBOOKS_DIR)  # fmt: skip
    assert ablation.folder == tmp_path / "ablations" / "t007"
    names = [r.name for r in ablation.plan]
    assert names[-1] == "ablation" and "table2" not in names and "umaps" not in names
    page = ablation.plan[-1]
    assert page.parameters["labels"] == {
        "L+E": "L+E",
        "L+E+Tp": "L+E+Tp",
        "L+E+T": "L+E+T (C-TRIP)",
    }
    assert page.parameters["changed"] == {"config.stage2.temperatures.localizer-ecg": [0.1, 0.07]}
    assert set(page.needs) == set(names[:-1])


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("t007", ["table2.n_bootstrap=5"], "reaches no Stage III run"),
        ("t 007", ["stage2.lr=1e-4"], "a name of letters"),
        ("t007", [], "no change"),
    ],
)
def test_an_ablation_that_cannot_be_compared_is_refused(tmp_path, name, changes, message):
    with pytest.raises(ValueError, match=message):
        prepare_ablation(name, "smoke", [], changes, None, tmp_path, NOTEBOOKS_DIR)


def fake_run(folder, key: str) -> None:
    """A finished run's folder: one output and its provenance record."""
    folder.mkdir(parents=True)
    (folder / "out.txt").write_text(key)
    st = (folder / "out.txt").stat()
    from ctrip.data.cohort import sha256_of

    record = {"key": key, "hashes": {"outputs_sha256": {"out.txt": sha256_of(folder / "out.txt")}},
              "outputs_stat": {"out.txt": [st.st_size, st.st_mtime_ns]}}  # fmt: skip
    (folder / "provenance.json").write_text(json.dumps(record))


def test_runs_the_change_does_not_reach_are_links_to_the_base(tmp_path):
    base = tmp_path / "base"
    ablation = prepare_ablation("frozen", "smoke", [], ["methods.L_MAE.frozen=true"], None, base,
                                NOTEBOOKS_DIR)  # fmt: skip
    base_keys = keys()
    for name, key in base_keys.items():
        fake_run(run_folder(base, name), key)
    reused = link_base_runs(ablation.plan, base, ablation.folder, NOTEBOOKS_DIR)
    to_run = {"stage3_L_MAE", "ablation"}
    assert set(reused) == {r.name for r in ablation.plan} - to_run
    link = run_folder(ablation.folder, "stage1_localizer")
    assert link.is_symlink() and os.readlink(link) == "../../../runs/stage1_localizer"
    assert not run_folder(ablation.folder, "stage3_L_MAE").exists()
    status = ablation_status(ablation.plan, base, ablation.folder, NOTEBOOKS_DIR)
    assert {n for n, s in status.items() if s.startswith("to run")} == to_run
    assert status["cohort"].startswith("reused from the base")
    # a base run that changed since is no longer reused: its link goes
    record_file = run_folder(base, "stage1_localizer") / "provenance.json"
    record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "key": "another"}))
    reused = link_base_runs(ablation.plan, base, ablation.folder, NOTEBOOKS_DIR)
    assert "stage1_localizer" not in reused and not link.is_symlink()


def test_dry_run_of_an_ablation_lists_reused_runs(tmp_path, capsys):
    base = tmp_path / "base"
    for name, key in keys().items():
        fake_run(run_folder(base, name), key)
    argv = ["run", "--profile", "smoke", "--results", str(base), "--ablation", "frozen",
            "--set", "methods.L_MAE.frozen=true", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"ablation frozen (in {ablation_folder(base, 'frozen')})" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "to run" in lines["stage3_L_MAE"] and "to run" in lines["ablation"]
    assert "reused from the base" in lines["stage2_L_E_T"]
    assert "table2" not in lines  # the base's plan is not listed


def predictions(
    rng, ids, reference, noise: float, seeds=(0, 1), fractions=(0.5, 1.0)
) -> pd.DataFrame:
    rows = []
    for fraction in fractions:
        for seed in seeds:
            frame = {"id": ids, "split": "test", "fraction": fraction, "seed": seed}
            for cp in CP_NAMES:
                frame[f"{cp}_ref"] = reference[cp]
                frame[f"{cp}_pred"] = reference[cp] + rng.normal(0.5, noise, len(ids))
            rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True)


def test_paired_differences_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(60)]
    reference = {cp: rng.normal(50, 10, len(ids)) for cp in CP_NAMES}
    base = {"L+E": predictions(rng, ids, reference, 8.0)}
    better = {"L+E": predictions(rng, ids, reference, 2.0)}
    d = ablation_differences(base, better, ["LVEF", "LVM"], n_bootstrap=300, seed=1)
    assert set(d["metric"]) == {"r", "md"} and len(d) == 2 * 2 * 2
    for _, row in d.iterrows():
        a = better["L+E"][better["L+E"].fraction == row["fraction"]]
        b = base["L+E"][base["L+E"].fraction == row["fraction"]]

        def value(frame: pd.DataFrame, cp: str = row["cp"], metric: str = row["metric"]) -> float:
            per_seed = []
            for _, g in frame.groupby("seed"):
                pred, ref = g[f"{cp}_pred"].to_numpy(), g[f"{cp}_ref"].to_numpy()
                same = metric == "r"
                per_seed.append(np.corrcoef(pred, ref)[0, 1] if same else (pred - ref).mean())
            return float(np.mean(per_seed))

        assert row["ablation"] == pytest.approx(value(a)) and row["base"] == pytest.approx(value(b))
        assert row["difference"] == pytest.approx(value(a) - value(b))
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    r = d[d.metric == "r"]
    assert (r["ci_low"] > 0).all()  # far less noise: a higher r, outside its CI
    reading = ablation_reading(d, {"L+E": "L+E"}, "t007", 1.0)
    assert len(reading) == 1 and "LVEF r +" in reading[0]
    same = ablation_differences(base, base, ["LVEF"], n_bootstrap=100)
    assert (same["difference"] == 0).all()
    assert (
        "no difference in test r or MD on any of the 2" in ablation_reading(same, {}, "x", 1.0)[0]
    )
    summary = ablation_summary({"better": d, "same": same}, 1.0)
    assert list(summary["higher"]) == [int((d[d.fraction == 1.0]["ci_low"] > 0).sum()), 0]
    assert list(summary["no_difference"])[1] == 2


def check_ablation_page(base, name: str, reached: set[str]) -> None:
    """An ablation run on `base` (the smoke test runs the smoke profile's): every training run
    but those of `reached` is a link to the base's, and its page's differences are those
    computed here, directly, from the two folders' predictions."""
    folder = ablation_folder(base, name)
    runs = {p.name: p for p in (folder / "runs").iterdir() if not p.name.startswith(".")}
    assert {n for n, p in runs.items() if not p.is_symlink()} == reached | {"ablation"}
    for n, p in runs.items():
        if p.is_symlink():
            assert p.resolve() == (base / "runs" / n).resolve(), n
    page = pd.read_csv(folder / "runs" / "ablation" / "ablation_differences.csv")
    assert set(page["method"]) == {r.removeprefix("stage3_") for r in reached}
    for _, row in page.iterrows():
        run = f"stage3_{row['method']}"
        values = []
        for results in (base, folder):
            frame = pd.read_parquet(results / "runs" / run / "predictions.parquet")
            frame = frame[(frame.split == "test") & np.isclose(frame.fraction, row["fraction"])]
            per_seed = []
            for _, g in frame.groupby("seed"):
                pred = g[f"{row['cp']}_pred"].to_numpy(float)
                ref = g[f"{row['cp']}_ref"].to_numpy(float)
                metric = (
                    np.corrcoef(pred, ref)[0, 1] if row["metric"] == "r" else (pred - ref).mean()
                )
                per_seed.append(metric)
            values.append(float(np.mean(per_seed)))
        assert row["base"] == pytest.approx(values[0], abs=1e-9)
        assert row["ablation"] == pytest.approx(values[1], abs=1e-9)
        assert row["difference"] == pytest.approx(values[1] - values[0], abs=1e-9)
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]


def test_the_readme_example_runs_only_what_the_temperature_reaches(tmp_path, capsys):
    readme = (REPO_DIR / "README.md").read_text()
    section = readme[readme.index("### Ablations") :].split("\n### ", 1)[0]
    command = next(line for line in section.splitlines() if line.endswith("--dry-run"))
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/ctrip"
    base = tmp_path / "base"
    default = run_keys(build_plan(load_settings("default")), NOTEBOOKS_DIR)
    for name, key in default.items():
        fake_run(run_folder(base, name), key)
    assert main([*argv[1:], "--results", str(base)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    to_run = {line.split()[0] for line in lines if "to run" in line}
    assert to_run == {"stage2_L_E", "stage2_L_E_Tp", "stage2_L_E_T", "stage3_L_E",
                      "stage3_L_E_Tp", "stage3_L_E_T", "ablation"}  # fmt: skip
    assert all("reused from the base" in line for line in lines if "to run" not in line)


def test_the_book_gets_a_page_per_ablation_and_one_summary(tmp_path):
    import nbformat

    from ctrip.pipeline.ablations import ablation_pages

    results, executed = tmp_path / "results", tmp_path / "executed"
    executed.mkdir()
    (executed / "ablation_gone.ipynb").write_text("{}")  # from an earlier build
    for name, higher in (("t007", 2), ("frozen", 0)):
        page = ablation_folder(results, name) / "runs" / "ablation"
        page.mkdir(parents=True)
        book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Ablation\n\ntext")])
        nbformat.write(book, page / "ablation.ipynb")
        row = {"ablation": name, "methods": "L+E", "comparisons": 8, "higher": higher, "lower": 1,
               "no_difference": 7 - higher}  # fmt: skip
        pd.DataFrame([row]).to_csv(page / "ablation_summary.csv", index=False)
    assert ablation_pages(results, executed) == [
        "ablation_summary", "ablation_frozen", "ablation_t007"
    ]  # fmt: skip
    assert not (executed / "ablation_gone.ipynb").exists()
    title = nbformat.read(executed / "ablation_t007.ipynb", as_version=4).cells[0].source
    assert title.startswith("# Ablation t007\n")
    summary = nbformat.read(executed / "ablation_summary.ipynb", as_version=4).cells[1].source
    assert "| t007 " in summary and "| frozen " in summary
    only = tmp_path / "only"
    (only / "ablations").mkdir(parents=True)
    assert ablation_pages(only, executed) == [] and not list(executed.glob("ablation_*"))
