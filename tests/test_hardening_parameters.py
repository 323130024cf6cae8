"""Every setting and every notebook parameter checked before any work (issue 29, items 5 and 7;
issue 28, point 6: the notebooks' kernel and defaults)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from ctrip.config import (
    CHOICES,
    NOTEBOOK_PARAMETERS,
    RANGES,
    RUN_DEFAULTS,
    TYPES,
    UMAP_METRICS,
    SettingsError,
    _match,
    available_profiles,
    check_parameters,
    load_settings,
    make_config,
    run_config,
    typed_defaults,
)
from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.runner import REPO_DIR

NOTEBOOKS = sorted((REPO_DIR / "notebooks").glob("*.ipynb"))


def parameters_cell(path: Path) -> tuple[nbformat.NotebookNode, int]:
    book = nbformat.read(path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in book.cells]
    return book, next(i for i, t in enumerate(tags) if "parameters" in t)


def defaults_of(path: Path) -> dict:
    """A notebook's parameters as its parameters cell sets them."""
    book, index = parameters_cell(path)
    names: dict = {}
    exec(book.cells[index].source, names)
    del names["__builtins__"]
    return names


# ---------------------------------------------------------------------- settings (item 7)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("table2.n_boostrap=5", r"^table2\.n_boostrap: unknown key; did you mean table2\.n_bootstrap\?$"),
        ("methods.L_sup.froze=true", r"^methods\.L_sup\.froze: unknown key; did you mean methods\.L_sup\.frozen\?"),
        ("screening.level=7", r"^screening\.level: 7 is outside \(0, 1\)$"),
        ("screening.level=1.0", r"^screening\.level: 1\.0 is outside \(0, 1\)$"),
        ("screening.n_bootstrap=-5", r"^screening\.n_bootstrap: -5 is outside \(0, inf\]$"),
        ("reference_baselines.epochs=-2", r"^reference_baselines\.epochs: -2 is outside"),
        ("reference_baselines.lr=0", r"^reference_baselines\.lr: 0 is outside"),
        ("reference_baselines.standard_cnn_seeds=[-1]", r"^reference_baselines\.standard_cnn_seeds\.0: -1 is outside"),
        ("reference_baselines.standard_cnn_seeds=[0.5]", r"^reference_baselines\.standard_cnn_seeds\.0: 0\.5 is a number, expected int"),
        ("reference_baselines.standard_cnn_seeds=[3]", r"^reference_baselines\.standard_cnn_seeds: \[3\] needs .* sweep\.seeds \[0\] to hold each"),
        ("reference_baselines.standard_cnn_epochs=0", r"^reference_baselines\.standard_cnn_epochs: 0 is outside"),
        ("figures.umap.metric=banana", r"^figures\.umap\.metric: 'banana' is not one of \['euclidean'"),
        ("figures.umap.split=training", r"^figures\.umap\.split: 'training' is not one of"),
        ("figures.attention.seed=-1", r"^figures\.attention\.seed: -1 is outside \[0, inf\]$"),
        ("resources.stage3.gpus=-1", r"^resources\.stage3\.gpus: -1 is outside \[0, inf\]$"),
        ("resources.stage4.gpus=1", r"^resources\.stage4: unknown key; did you mean"),
        ("resources.analysis.time_min=0", r"^resources\.analysis\.time_min: 0 is outside"),
        ("screening.flags=[reduced_lvef, nope]", r"^screening\.flags: \['nope'\] are not screening flags"),
        ("screening.coverage_methods=[L_nope]", r"^screening\.coverage_methods: \['L_nope'\] are not methods"),
        ("figures.attention.target_cp=EF", r"^figures\.attention\.target_cp: \['EF'\] are not CP names"),
        ("methods.L_sup.frozen='False'", r"^methods\.L_sup\.frozen: 'False' is a str, expected bool \(strings"),
        ("methods.L_sup.encoder=stage9", r"^methods\.L_sup\.encoder: 'stage9' is not one of"),
        ("methods.L+E.pairs=[[localizer, heart]]", r"^methods\.L\+E\.pairs\.0\.1: 'heart' is not one of"),
        ("method_defaults.tabular_variant=X", r"^method_defaults\.tabular_variant: 'X' is not one of"),
        ("methods.L_sup.label=3", r"^methods\.L_sup\.label: 3 is a int, expected str$"),
        ("stage2.lr_encoder=abc", r"^config\.stage2\.lr_encoder: 'abc' is a str, expected int or float or null$"),
        ("models.localizer.stem=cnn", r"^config\.models\.localizer\.stem: 'cnn' is not one of"),
        ("trainer.precision=12", r"^config\.trainer\.precision: 12 is a int, expected str$"),
        ("trainer.accelerator=abacus", r"^config\.trainer\.accelerator: 'abacus' is not one of"),
        ("cohort.seed=-1", r"^cohort\.seed: -1 is outside \[0, inf\]$"),
        ("cohort.sizes.localizer_field=belly", r"^cohort\.sizes\.localizer_field: 'belly' is not one of"),
        ("cohort.sizes.image_sise=32", r"^cohort\.sizes\.image_sise: unknown key; did you mean cohort\.sizes\.image_size\?"),
        ("notebooks.table3=t3.ipynb", r"^notebooks\.table3: unknown key; did you mean notebooks\.table2\?"),
        ("table2.bootstrap_seed=-3", r"^table2\.bootstrap_seed: -3 is outside"),
    ],
)  # fmt: skip
def test_every_settings_key_is_checked_naming_it(override, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("smoke", [override])


def test_a_bad_key_in_a_profile_file_is_refused_before_any_work(tmp_path):
    smoke = yaml.safe_load((REPO_DIR / "ctrip" / "profiles" / "smoke.yaml").read_text())
    for section, bad, message in (
        ("screening", {"n_bootsrap": 10}, r"screening\.n_bootsrap: unknown key; did you mean"),
        ("config", {"stage1": {"max_epoch": 2}}, r"config\.stage1\.max_epoch: unknown key"),
        ("cohort", {"sizes": {"image_size": -32}}, r"cohort\.sizes\.image_size: -32 is outside"),
        ("tables", {"n": 1}, r"tables: unknown key; did you mean table2\?"),
    ):
        profile = tmp_path / f"bad_{section}.yaml"
        profile.write_text(yaml.safe_dump({**smoke, section: bad}))
        with pytest.raises(SettingsError, match=f"^{re.escape(str(profile))}: {message}"):
            load_settings(profile)


@pytest.mark.parametrize("profile", available_profiles())
def test_every_profile_validates_and_plans(profile):
    assert build_plan(load_settings(profile))


def test_every_number_has_a_range_and_every_null_a_type():
    """The schema is complete: a number without a range, or a null default without its types,
    would let any value through."""
    leaves: list[tuple[str, object]] = []

    def walk(key: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}.{k}" if key else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{key}.{i}", v)
        else:
            leaves.append((key, value))

    walk("", {**typed_defaults(), "run": RUN_DEFAULTS})
    for profile in available_profiles():
        walk("", yaml.safe_load((REPO_DIR / "ctrip" / "profiles" / f"{profile}.yaml").read_text()))
    numbers = [k for k, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert len(numbers) > 60
    assert [k for k in numbers if _match(RANGES, k) is None] == []
    assert [k for k, v in leaves if v is None and _match(TYPES, k) is None] == []


def test_choices_and_keys_are_what_the_code_accepts():
    import dataclasses
    import typing

    import umap.distances
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR

    from ctrip.data.synth.localizer import FIELDS
    from ctrip.data.synth.sizes import SynthSizes

    assert set(UMAP_METRICS) <= set(umap.distances.named_distances)
    assert set(_match(CHOICES, "config.trainer.precision")) <= set(
        typing.get_args(_PRECISION_INPUT_STR)
    )
    assert _match(CHOICES, "cohort.sizes.localizer_field") == FIELDS
    assert set(typed_defaults()["cohort"]["sizes"]) == {
        f.name for f in dataclasses.fields(SynthSizes)
    }


def test_good_values_still_pass():
    settings = load_settings(
        "smoke",
        ["screening.level=0.8", "figures.umap.metric=euclidean", "stage2.temperatures.x-y=0.2",
         "methods.L_sup.frozen=true", "table2.n_bootstrap=0", "cohort.sizes.localizer_field=thorax"],
    )  # fmt: skip
    assert settings["screening"]["level"] == 0.8 and settings["methods"]["L_sup"]["frozen"] is True


# ---------------------------------------------------------------------- notebooks (item 5)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_each_notebook(path):
    """`papermill --help-notebook` (and its parameter inspection) sees every parameter: a
    second `=` on a line, even in a comment, makes papermill skip it with a warning."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    seen = {p.name for p in _infer_parameters(load_notebook_node(str(path)))}
    assert seen == set(defaults_of(path)) - {"__builtins__"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_checks_its_parameters_right_after_them(path):
    book, index = parameters_cell(path)
    names = defaults_of(path)
    assert set(names) == set(NOTEBOOK_PARAMETERS[path.stem])
    check = book.cells[index + 1]
    assert check.cell_type == "code" and "check_parameters" in check.source
    assert f'check_parameters("{path.stem}", globals())' in check.source
    checked = check_parameters(path.name, names)  # the defaults pass
    assert set(checked) == set(names)


BAD_PARAMETERS = [
    ("stage1_pretrain", "modality", "heart", r"modality: 'heart' is not one of"),
    ("stage1_pretrain", "seed", -1, r"seed: -1 is outside \[0, inf\]"),
    ("stage1_pretrain", "config", {"stage1": {"lrr": 1}}, r"config\.stage1\.lrr: unknown key; did you mean config\.stage1\.lr\?"),
    ("stage1_pretrain", "profile", "nosuch", r"profile: profile 'nosuch' not found"),
    ("stage2_align", "pairs", [["localizer", "ekg"]], r"pairs\.0\.1: 'ekg' is not one of"),
    ("stage2_align", "pairs", [["ecg", "cmr"]], r"pairs: pair \('ecg', 'cmr'\)"),
    ("stage2_align", "encoders", ["a"], r"encoders: \['a'\] is a list, expected a section"),
    ("stage3_finetune", "frozen", "False", r"frozen: 'False' is a str, expected bool"),
    ("stage3_finetune", "seeds", 0, r"seeds: 0 is a int, expected list"),
    ("stage3_finetune", "fractions", "1.0", r"fractions: '1\.0' is a str, expected list"),
    ("stage3_finetune", "fractions", [1.5], r"fractions\.0: 1\.5 is outside \(0, 1\]"),
    ("stage3_finetune", "encoder", "stage4", r"encoder: 'stage4' is not one of"),
    ("stage3_finetune", "config", {"stage3": {"lr_head": -1.0}}, r"config\.stage3\.lr_head: -1\.0 is outside"),
    ("stage3_finetune", "init", 3, r"init: 3 is a int, expected str or null"),
    ("table2", "n_bootstrap", -1, r"n_bootstrap: -1 is outside \[0, inf\]"),
    ("table2", "cps", ["LVEF", "EF"], r"cps: \['EF'\] are not CP names"),
    ("table2", "simulated", "True", r"simulated: 'True' is a str, expected bool"),
    ("table2", "modalities", {"L_sup": "xray"}, r"modalities\.L_sup: 'xray' is not one of"),
    ("fraction_curves", "n_bootstrap", -2, r"n_bootstrap: -2 is outside"),
    ("reference_baselines", "epochs", -2, r"epochs: -2 is outside \(0, inf\]"),
    ("reference_baselines", "modalities", ["ecg", "mri"], r"modalities\.1: 'mri' is not one of"),
    ("screening", "level", 7, r"level: 7 is outside \(0, 1\)"),
    ("screening", "flags", ["nope"], r"flags: \['nope'\] are not screening flags"),
    ("attention_maps", "target_cp", "EF", r"target_cp: \['EF'\] are not CP names"),
    ("attention_maps", "ig_steps", 0, r"ig_steps: 0 is outside"),
    ("umaps", "metric", "banana", r"metric: 'banana' is not one of"),
    ("umaps", "n_neighbors", 1, r"n_neighbors: 1 is outside \[2, inf\]"),
    ("data_card", "ceiling_reference_subjects", 0, r"ceiling_reference_subjects: 0 is outside"),
    ("data_card", "ceiling_neural", "no", r"ceiling_neural: 'no' is a str, expected bool or null"),
]  # fmt: skip


@pytest.mark.parametrize(("notebook", "name", "value", "message"), BAD_PARAMETERS)
def test_a_bad_notebook_parameter_is_refused_naming_it(notebook, name, value, message):
    parameters = {**defaults_of(REPO_DIR / "notebooks" / f"{notebook}.ipynb"), name: value}
    pattern = rf"^notebooks/{notebook}\.ipynb: parameter {message}"
    with pytest.raises(SettingsError, match=pattern) as err:
        check_parameters(notebook, parameters)
    assert "\n" not in str(err.value)


def test_check_parameters_coerces_and_resolves_the_profile():
    parameters = {**defaults_of(REPO_DIR / "notebooks" / "stage3_finetune.ipynb"),
                  "fractions": [1], "In": [], "_": None}  # fmt: skip
    checked = check_parameters("stage3_finetune.ipynb", parameters)
    assert checked["fractions"] == [1.0] and isinstance(checked["fractions"][0], float)
    assert "In" not in checked  # only the notebook's own parameters come back
    assert checked["config"] == run_config(make_config("smoke"), "stage3", ["localizer"])
    given = run_config(make_config("default"), "stage3", ["localizer"])
    assert check_parameters("stage3_finetune", {**parameters, "config": given})["config"] == given
    with pytest.raises(SettingsError, match=r"^nope\.ipynb: not a pipeline notebook"):
        check_parameters("nope.ipynb", parameters)
    del parameters["frozen"]
    with pytest.raises(SettingsError, match=r"parameter frozen: missing"):
        check_parameters("stage3_finetune", parameters)


def test_the_plan_passes_what_the_notebooks_accept():
    """Every run of every profile's plan passes its notebook's check as the plan fills it."""
    from ctrip.pipeline.runner import notebook_parameters

    for profile in available_profiles():
        plan = build_plan(load_settings(profile))
        for run in plan:
            if run.notebook is None:
                continue
            notebook = REPO_DIR / "notebooks" / run.notebook
            given = notebook_parameters(run, notebook, Path("/tmp/results"), plan)
            parameters = {**defaults_of(notebook), **given}
            checked = check_parameters(run.notebook, parameters)
            assert checked.get("config", None) == given.get("config", None), run.name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("frozen", "False", "frozen: 'False' is a str"), ("seeds", 0, "seeds: 0 is a int")],
)
def test_papermill_stops_on_a_bad_parameter_before_training(tmp_path, name, value, message):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = tmp_path / "out.ipynb"
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(REPO_DIR / "notebooks" / "stage3_finetune.ipynb"), str(output),
            parameters={name: value, "out_dir": str(tmp_path)}, kernel_name="ctrip",
            progress_bar=False, cwd=str(tmp_path),
        )  # fmt: skip
    assert err.value.ename == "SettingsError"
    assert re.search(rf"stage3_finetune\.ipynb: parameter {message}", err.value.evalue)
    executed = nbformat.read(output, as_version=4)
    failed = next(i for i, c in enumerate(executed.cells) if c.get("outputs") and any(
        o.get("output_type") == "error" for o in c.outputs))  # fmt: skip
    assert "check_parameters" in executed.cells[failed].source  # the cell right after them
    assert [p.name for p in tmp_path.iterdir()] == ["out.ipynb"]  # nothing trained or written


# ---------------------------------------------------------------------- issue 28, point 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_runs_in_the_ctrip_kernel_with_one_profile_by_default(path):
    book = nbformat.read(path, as_version=4)
    assert book.metadata["kernelspec"]["name"] == "ctrip"
    names = defaults_of(path)
    # an ablation's page reads no cohort, but the base results folder of one profile
    cohort_path = names.get("cohort_path") or f"{names['base_dir']}/runs/cohort/cohort"
    cohort = re.fullmatch(r"results/(\w+)/runs/cohort/cohort", cohort_path)
    assert cohort, cohort_path
    assert names.get("profile", cohort[1]) == cohort[1]  # config=None is that profile's
    assert cohort[1] == "smoke"  # one profile for every notebook
