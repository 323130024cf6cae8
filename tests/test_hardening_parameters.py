"""Every setting and every notebook parameter checked before any work (issue 29, items 5 and 7;
issue 28, point 6: the notebooks' kernel and defaults)."""

from __future__ import annotations

import pytest
import yaml

from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.runner import REPO_DIR
from ctrip.pipeline.settings import (
    CHOICES,
    RANGES,
    RUN_DEFAULTS,
    TYPES,
    UMAP_METRICS,
    SettingsError,
    _match,
    load_settings,
    typed_defaults,
)
from ctrip.stages.config import available_profiles

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
        ("figures.umap.metric=banana", r"^figures\.umap\.metric: 'banana' is not one of \['euclidean'"),
        ("figures.umap.split=training", r"^figures\.umap\.split: 'training' is not one of"),
        ("figures.attention.seed=-1", r"^figures\.attention\.seed: -1 is outside \[0, inf\]$"),
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
        ("tables", {"n": 1}, r"^tables: unknown key; did you mean table2\?"),
    ):
        profile = tmp_path / f"bad_{section}.yaml"
        profile.write_text(yaml.safe_dump({**smoke, section: bad}))
        with pytest.raises(SettingsError, match=message):
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
