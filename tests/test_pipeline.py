"""The pipeline runner on throwaway notebooks: caching, dependents, overrides, failures,
provenance; plan expansion from the real experiments file and profiles; the report tables."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from ctrip.analysis import report
from ctrip.config import SettingsError, load_settings, parse_override
from ctrip.data.schema import CP_NAMES
from ctrip.pipeline.outputs import load_outputs, save_outputs
from ctrip.pipeline.plan import Run, build_plan, dependents
from ctrip.pipeline.runner import PipelineError, run_plan


def write_notebook(path: Path, parameters: str, body: str) -> None:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "ctrip", "display_name": "ctrip", "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    book.cells = [
        nbformat.v4.new_markdown_cell("# A test notebook"),
        params,
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(book, path)


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "write.ipynb", "out_dir = ''\nx = 0",
                   "from pathlib import Path\nPath(out_dir, 'value.txt').write_text(str(x))")  # fmt: skip
    write_notebook(folder / "add.ipynb", "out_dir = ''\nsource = ''\ny = 0",
                   "from pathlib import Path\nv = int(Path(source, 'value.txt').read_text())\n"
                   "Path(out_dir, 'value.txt').write_text(str(v + y))")  # fmt: skip
    write_notebook(folder / "fail.ipynb", "out_dir = ''",
                   "from pathlib import Path\nPath(out_dir, 'partial.txt').write_text('half')\n"
                   "raise ValueError('the simulated failure')")  # fmt: skip
    return folder


def tiny_plan(cohort: Path, x: int = 1, y: int = 10, z: int = 5, fail: bool = False) -> list[Run]:
    runs = [
        Run("cohort", None, {"cohort": {"path": str(cohort)}}),
        Run("a", "write.ipynb", {"x": x}, needs=["cohort"]),
        Run("b", "add.ipynb", {"y": y}, inputs={"source": "a"}, needs=["cohort", "a"]),
        Run("c", "write.ipynb", {"x": z}, needs=["cohort"]),
    ]
    if fail:
        runs.append(Run("d", "fail.ipynb", {}, inputs={"after": "b"}, needs=["cohort", "b"]))
    return runs


def executed(outcomes) -> set[str]:
    return {o.name for o in outcomes if o.status == "executed"}


def test_cache_skips_up_to_date_and_reruns_exactly_the_dependents(tmp_path, notebooks, tiny_cohort):
    results = tmp_path / "results"
    log: list[str] = []
    first = run_plan(tiny_plan(tiny_cohort), results, notebooks_dir=notebooks, jobs=2, progress=False,
                     log=log.append)  # fmt: skip
    assert executed(first) == {"cohort", "a", "b", "c"}
    assert (results / "runs" / "b" / "value.txt").read_text() == "11"
    assert any("up to date" not in line and "[ 3/4] b" in line for line in log)

    assert (
        executed(
            run_plan(
                tiny_plan(tiny_cohort),
                results,
                notebooks_dir=notebooks,
                progress=False,
                log=log.append,
            )
        )
        == set()
    )

    changed = run_plan(tiny_plan(tiny_cohort, x=2), results, notebooks_dir=notebooks, jobs=2, progress=False,
                       log=log.append)  # fmt: skip
    assert executed(changed) == {"a", "b"}  # c does not read a
    assert (results / "runs" / "b" / "value.txt").read_text() == "12"

    record = json.loads((results / "runs" / "b" / "provenance.json").read_text())
    assert record["parameters"] == {"y": 10}
    assert record["inputs"].keys() == {"cohort", "a"}
    assert set(record["hashes"]) == {"notebook_sha256", "ctrip_code_sha256", "outputs_sha256"}
    assert "value.txt" in record["hashes"]["outputs_sha256"]
    assert record["packages"]["torch"] and record["seconds"] > 0 and "commit" in record["git"]
    injected = nbformat.read(results / "runs" / "b" / "b.ipynb", as_version=4)
    assert any(
        "injected-parameters" in c.metadata.get("tags", []) and "y = 10" in c.source
        for c in injected.cells
    )


def test_failing_notebook_names_cell_and_error_and_keeps_completed_runs(
    tmp_path, notebooks, tiny_cohort
):
    results = tmp_path / "results"
    with pytest.raises(PipelineError) as err:
        run_plan(
            tiny_plan(tiny_cohort, fail=True),
            results,
            notebooks_dir=notebooks,
            progress=False,
            log=lambda s: None,
        )
    message = str(err.value)
    assert "run d" in message and "fail.ipynb" in message and "cell 3" in message
    assert "ValueError: the simulated failure" in message
    assert not (results / "runs" / "d").exists()  # never marked done
    assert not list((results / "runs").glob(".tmp-*"))
    assert (results / "failed" / "d.ipynb").exists()
    assert (results / "runs" / "b" / "provenance.json").exists()  # completed work is kept
    again = run_plan(
        tiny_plan(tiny_cohort), results, notebooks_dir=notebooks, progress=False, log=lambda s: None
    )
    assert executed(again) == set()


def test_missing_notebook_is_a_clear_error(tmp_path, notebooks, tiny_cohort):
    plan = [
        Run("cohort", None, {"cohort": {"path": str(tiny_cohort)}}),
        Run("x", "nope.ipynb", {}, needs=["cohort"]),
    ]
    with pytest.raises(PipelineError, match="nope.ipynb does not exist"):
        run_plan(plan, tmp_path / "r", notebooks_dir=notebooks, progress=False, log=lambda s: None)


def test_plan_has_every_table2_method_and_dependencies_in_order():
    plan = build_plan(load_settings("smoke"))
    names = [r.name for r in plan]
    stage3 = [n for n in names if n.startswith("stage3_")]
    assert stage3 == [
        f"stage3_{m}"
        for m in ("CMR_sup", "L_sup", "E_sup", "T_sup", "L_T", "L_E", "L_E_Tp", "L_E_T", "L_MAE")
    ]
    for i, run in enumerate(plan):
        assert all(names.index(n) < i for n in run.needs), run.name
    assert dependents(plan, "stage3_L_sup") == {
        "table2",
        "fraction_curves",
        "attention_maps",
        "screening",
    }
    assert set(plan[[r.name for r in plan].index("table2")].needs) >= {"reference_baselines",
                                                                     "data_card"}  # fmt: skip
    assert dependents(plan, "stage1_tabular_Tp") == {
        "stage2_L_E_Tp",
        "stage3_L_E_Tp",
        "table2",
        "fraction_curves",
        "screening",
        "umaps",  # Table 5 reads every Stage II run
    }
    by_name = {r.name: r for r in plan}
    assert by_name["stage2_L_E_Tp"].parameters["tabular_variant"] == "Tp"
    assert by_name["stage2_L_E_T"].inputs == {"encoders": {"localizer": "stage1_localizer", "ecg": "stage1_ecg",
                                                           "tabular": "stage1_tabular_T"}}  # fmt: skip
    assert by_name["stage3_L_sup"].inputs == {"init": None}
    # the control: the Stage I encoder fine-tuned; compared with, but not a row of, Table 2
    assert by_name["stage3_L_MAE"].inputs == {"init": "stage1_localizer"}
    assert by_name["stage3_L_MAE"].parameters["encoder"] == "stage1"
    table2 = by_name["table2"].parameters
    assert table2["controls"] == ["L_MAE"] and table2["control"] == "L_MAE"
    assert table2["aligned"] == ["L+T", "L+E", "L+E+Tp", "L+E+T"]
    assert (
        "L_MAE" in table2["methods"] and "L_MAE" not in by_name["screening"].parameters["methods"]
    )
    assert by_name["fraction_curves"].parameters["methods"]["L_MAE"] == "L_MAE (Stage I only)"
    none = {r.name: r for r in build_plan(load_settings("smoke", ['table2.control=""']))}
    assert none["table2"].parameters["control"] == ""
    with pytest.raises(SettingsError, match="table2.control: 'L_nope' is not one of the methods"):
        load_settings("smoke", ["table2.control=L_nope"])


def test_overrides_change_only_the_runs_they_concern():
    base = {r.name: r.parameters for r in build_plan(load_settings("smoke"))}
    for override, changed in [
        ("methods.L_sup.frozen=true", {"stage3_L_sup"}),
        ("stage3.lr_head=0.01", {n for n in base if n.startswith("stage3_")}),
        # only the Stage II runs with a localizer-ECG pair read that temperature
        ("stage2.temperatures.localizer-ecg=0.07", {"stage2_L_E", "stage2_L_E_Tp", "stage2_L_E_T"}),
        ("table2.n_bootstrap=10", {"table2"}),
    ]:
        plan = {r.name: r.parameters for r in build_plan(load_settings("smoke", [override]))}
        assert {n for n in base if plan[n] != base[n]} == changed, override
    assert parse_override("sweep.seeds=[0, 1]") == ("sweep.seeds", [0, 1])
    assert parse_override("stage3.lr_head=0.1") == ("config.stage3.lr_head", 0.1)
    with pytest.raises(SettingsError, match="unknown section 'nosuch'"):
        load_settings("smoke", ["nosuch.key=1"])
    with pytest.raises(SettingsError, match="unknown config key"):
        load_settings("smoke", ["stage3.no_such_key=1"])
    with pytest.raises(FileNotFoundError, match="profile 'nope' not found"):
        load_settings("nope")


def test_profiles_are_parameter_sets_of_one_plan():
    # (the paper profile splits its Stage III sweep: tests/test_split_sweep.py)
    unsplit = ["sweep.split=false"]
    plans = {p: build_plan(load_settings(p, unsplit)) for p in ("smoke", "default", "paper")}
    assert len({tuple(r.name for r in plan) for plan in plans.values()}) == 1
    paper = {r.name: r for r in plans["paper"]}
    assert paper["stage1_localizer"].parameters["config"]["models"]["localizer"]["dim"] == 768
    assert paper["stage1_localizer"].parameters["config"]["stage1"]["max_epochs"] == 400


def test_outputs_round_trip_relative_paths(tmp_path):
    tmp = tmp_path / ".tmp-run"
    (tmp / "sub").mkdir(parents=True)
    save_outputs(
        tmp, checkpoint=tmp / "sub" / "model.pt", checkpoints={"1/0": tmp / "a.pt"}, modality="ecg"
    )
    tmp.rename(tmp_path / "run")
    out = load_outputs(tmp_path / "run")
    assert out["checkpoint"] == tmp_path / "run" / "sub" / "model.pt"
    assert out["checkpoints"]["1/0"] == tmp_path / "run" / "a.pt" and out["modality"] == "ecg"


def fake_predictions(method: str, noise: float, seeds=(0, 1), fractions=(0.5, 1.0)) -> pd.DataFrame:
    rng = np.random.default_rng(len(method))
    frames = []
    for fraction in fractions:
        for seed in seeds:
            ref = rng.normal(100, 10, size=(30, len(CP_NAMES)))
            pred = ref + rng.normal(1.0, noise / fraction, size=ref.shape)
            df = pd.DataFrame(
                {"id": [f"s{i}" for i in range(30)], "split": ["test"] * 25 + ["val"] * 5}
            )
            for j, cp in enumerate(CP_NAMES):
                df[f"{cp}_pred"], df[f"{cp}_ref"] = pred[:, j], ref[:, j]
            frames.append(df.assign(method=method, fraction=fraction, seed=seed))
    return pd.concat(frames, ignore_index=True)


def test_report_tables_from_predictions():
    predictions = {"good": fake_predictions("good", 1.0), "bad": fake_predictions("bad", 8.0)}
    per_seed = report.per_seed_metrics(predictions, CP_NAMES, fraction=1.0)
    assert len(per_seed) == 2 * 2 * 18 and (per_seed["n"] == 25).all()
    summary = report.summarize_seeds(per_seed)
    table = report.table2(summary, {"good": "Good", "bad": "Bad"}, ["LVEF", "LVM"])
    assert list(table["label"]) == ["Good", "Bad"] and table["n_seeds"].tolist() == [2, 2]
    width = table["LVM_loa_high"] - table["LVM_loa_low"]
    assert width[0] < width[1] and np.isfinite(table.select_dtypes("number").to_numpy()).all()
    assert table.loc[0, "LVM_md_ci_low"] < table.loc[0, "LVM_md"] < table.loc[0, "LVM_md_ci_high"]
    curves = report.pearson_vs_fraction(
        report.per_seed_metrics(predictions, ["LVM"], fraction=None)
    )
    good = curves[curves["method"] == "good"].set_index("fraction")["r"]
    assert good[1.0] > good[0.5]
    with pytest.raises(ValueError, match="no test predictions at fraction 0.1"):
        report.per_seed_metrics(predictions, fraction=0.1)


def test_interpret_rollout_and_attributions():
    from ctrip.analysis.interpret import attention_rollout, rollout_maps, slice_attributions
    from ctrip.models import build_encoder

    # One block whose every token attends to patch 2 only: rollout (residual 0) puts all on patch 2.
    attn = torch.zeros(1, 2, 5, 5)
    attn[..., 3] = 1.0
    rollout = attention_rollout([attn], residual=0.0)
    assert torch.allclose(rollout, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    assert torch.allclose(attention_rollout([attn, attn]).sum(dim=-1), torch.ones(1))

    torch.manual_seed(0)
    spec = {"tokenizer": {"kind": "image", "image_size": [16, 16], "patch_size": 8, "dim": 16, "in_chans": 3},
            "depth": 1, "heads": 2, "mlp_ratio": 2.0}  # fmt: skip
    encoder = build_encoder(spec)
    images = torch.rand(2, 3, 16, 16)
    maps = rollout_maps(encoder, images)
    assert maps.shape == (2, 16, 16) and maps.min() >= 0 and maps.max() <= 1

    class OnlySlice1(torch.nn.Module):  # the prediction depends on slice 1 only
        def forward(self, x):
            return x[:, 1].flatten(1).sum(dim=1, keepdim=True)

    attributions = slice_attributions(OnlySlice1(), images, target=0, n_steps=4)
    assert attributions.shape == images.shape
    assert (
        attributions[:, 0].max() == 0
        and attributions[:, 2].max() == 0
        and attributions[:, 1].max() == 1
    )


def test_profile_cohort_sizes_agree_with_the_simulator_command():
    from ctrip.config import load_profile
    from ctrip.data.synth import SynthSizes

    for profile in ("smoke", "default", "paper"):
        sizes = load_profile(profile)["cohort"]["sizes"]
        assert SynthSizes(**sizes) == SynthSizes.for_profile(profile), profile


def test_the_long_independent_run_starts_as_soon_as_the_cohort_is_there():
    """The reference baselines need only the cohort: they start before the stage chain, so
    that they overlap it instead of leaving a core idle at the end."""
    from ctrip.pipeline.runner import ready_runs

    plan = build_plan(load_settings("smoke"))
    pending = [r for r in plan if r.name != "cohort"]
    first = [r.name for r in ready_runs(pending, {"cohort"})]
    assert first[0] == "reference_baselines"
    assert set(first) == {"reference_baselines", "data_card", "stage1_localizer", "stage1_ecg",
                          "stage1_tabular_T", "stage1_tabular_Tp", "stage3_CMR_sup", "stage3_L_sup",
                          "stage3_E_sup", "stage3_T_sup"}  # fmt: skip
    assert [r.name for r in ready_runs(pending, set())] == []
    # the Stage I-only control waits on no Stage II run: it goes first once its encoder is there
    later = [r.name for r in ready_runs(pending, {"cohort", "stage1_localizer"})]
    assert set(later[:2]) == {"reference_baselines", "stage3_L_MAE"}
