"""A split Stage III sweep (`sweep.split`): one run per fraction and seed, in the paper profile;
the default profile keeps one run per method; the notebooks that read Stage III take a method's
list of run folders as they take its one folder. (The numbers of a split and an unsplit smoke
plan are compared in tests/test_smoke_executors.py.)"""

from __future__ import annotations

import pandas as pd
import pytest

from ctrip.analysis import report
from ctrip.config import SettingsError, check_parameters, load_settings
from ctrip.pipeline.outputs import save_outputs, stage3_checkpoint
from ctrip.pipeline.plan import build_plan, slug
from ctrip.pipeline.runner import REPO_DIR
from tests.test_hardening_parameters import defaults_of

READERS = ("table2", "fraction_curves", "screening", "attention_maps")


def test_the_paper_profile_splits_each_method_into_one_run_per_fraction_and_seed():
    settings = load_settings("paper")
    assert settings["sweep"]["split"] is True
    plan = {run.name: run for run in build_plan(settings)}
    fractions, seeds = settings["sweep"]["fractions"], settings["sweep"]["seeds"]
    for method in settings["methods"]:
        names = [f"stage3_{slug(method)}_fraction{f:g}_seed{s}" for f in fractions for s in seeds]
        assert [(plan[n].parameters["fractions"], plan[n].parameters["seeds"]) for n in names] == [
            ([f], [s]) for f in fractions for s in seeds
        ]
        assert f"stage3_{slug(method)}" not in plan
        for reader in ("table2", "fraction_curves", "screening"):
            assert plan[reader].inputs["stage3"][method] == names
            assert set(names) <= set(plan[reader].needs)
    assert len([n for n in plan if n.startswith("stage3_")]) == 9 * len(settings["methods"])


@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_the_default_profiles_keep_one_stage3_run_per_method(profile):
    settings = load_settings(profile)
    assert settings["sweep"]["split"] is False
    plan = {run.name: run for run in build_plan(settings)}
    for method in settings["methods"]:
        run = plan[f"stage3_{slug(method)}"]
        assert run.parameters["fractions"] == settings["sweep"]["fractions"]
        assert run.parameters["seeds"] == settings["sweep"]["seeds"]
        assert plan["table2"].inputs["stage3"][method] == run.name


@pytest.mark.parametrize("notebook", READERS)
def test_the_readers_take_a_folder_or_a_list_of_folders_per_method(notebook):
    parameters = defaults_of(REPO_DIR / "notebooks" / f"{notebook}.ipynb")
    for value in ("runs/stage3_L_sup", ["runs/a", "runs/b"]):
        checked = check_parameters(notebook, {**parameters, "stage3": {"L_sup": value}})
        assert checked["stage3"] == {"L_sup": value}
    with pytest.raises(
        SettingsError, match=r"parameter stage3\.L_sup: 3 is a int, expected str or list"
    ):
        check_parameters(notebook, {**parameters, "stage3": {"L_sup": 3}})


def _stage3_folder(root, name, fraction, seed):
    folder = root / name
    sub = folder / f"fraction{fraction:g}_seed{seed}"
    sub.mkdir(parents=True)
    (sub / "stage3-localizer.pt").write_bytes(b"x")
    frame = pd.DataFrame({"id": ["s1", "s2"], "split": ["test", "val"], "fraction": fraction,
                          "seed": seed, "LVM_pred": [1.0, 2.0]})  # fmt: skip
    frame.to_parquet(folder / "predictions.parquet")
    key = f"{fraction:g}/{seed}"
    save_outputs(folder, checkpoints={key: sub / "stage3-localizer.pt"},
                 checkpoint=sub / "stage3-localizer.pt", predictions=folder / "predictions.parquet")  # fmt: skip
    return folder, frame


def test_predictions_and_checkpoint_of_a_split_sweep(tmp_path):
    runs = [_stage3_folder(tmp_path, f"r{i}", f, s)
            for i, (f, s) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)])]  # fmt: skip
    folders = [folder for folder, _ in runs]
    together = report.load_predictions(folders)
    expected = pd.concat([frame for _, frame in runs], ignore_index=True)
    pd.testing.assert_frame_equal(together, expected, check_exact=True)
    pd.testing.assert_frame_equal(report.load_predictions(folders[0]), runs[0][1])
    # as one run of the sweep records it: the largest fraction, the first seed
    assert stage3_checkpoint(folders) == folders[2] / "fraction1_seed0" / "stage3-localizer.pt"
    assert (
        stage3_checkpoint(str(folders[1]))
        == folders[1] / "fraction0.5_seed1" / "stage3-localizer.pt"
    )
    with pytest.raises(FileNotFoundError, match=r"gone/predictions\.parquet: no Stage III"):
        report.load_predictions([folders[0], tmp_path / "gone"])
