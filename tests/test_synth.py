"""The synthetic cohort simulator: identities, published means, determinism, shapes, validity."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctrip.data.cohort import Cohort
from ctrip.data.schema import CP_NAMES
from ctrip.data.synth import (
    SynthSizes,
    card,
    generate_subjects,
    sample_population,
    synthesize_cohort,
)
from ctrip.data.synth.oracle import oracle_ceiling

SMOKE = SynthSizes.for_profile("smoke")


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return sample_population(seed=3, indices=range(4000))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    path = synthesize_cohort(tmp_path_factory.mktemp("c") / "cohort", 240, 5, SMOKE, progress=False)
    return Cohort.open(path)


def test_identities_exact(population):
    p = population
    assert np.array_equal(p["LVSV"], p["LVEDV"] - p["LVESV"])
    assert np.array_equal(p["LVEF"], 100.0 * p["LVSV"] / p["LVEDV"])
    assert np.array_equal(p["LVCO"], p["LVSV"] * p["lat_heart_rate"] / 1000.0)
    for chamber, hi, lo in (
        ("RV", "RVEDV", "RVESV"),
        ("LA", "LAVmax", "LAVmin"),
        ("RA", "RAVmax", "RAVmin"),
    ):
        sv = p[f"{chamber}SV"]
        assert np.array_equal(sv, p[hi] - p[lo])
        assert np.array_equal(p[f"{chamber}EF"], 100.0 * sv / p[hi])
    assert (p[CP_NAMES] > 0).all().all()


def test_sex_specific_means_in_published_ranges(population):
    """Petersen et al. 2017 (JCMR 19:18) means, within a margin for the unhealthy UKB share."""
    means = population.groupby("sex")[CP_NAMES].mean()
    lvmi = (population["LVM"] / population["bsa"]).groupby(population["sex"]).mean()
    assert 59 <= means.loc["female", "LVEF"] <= 63 and 56 <= means.loc["male", "LVEF"] <= 60
    assert 39 <= lvmi["female"] <= 46 and 50 <= lvmi["male"] <= 57
    assert 70 <= means.loc["female", "LVSV"] <= 82 and 89 <= means.loc["male", "LVSV"] <= 103
    assert 88 <= means.loc["female", "LVEDV"] <= 161 and 31 <= means.loc["female", "LVESV"] <= 68
    assert 85 <= means.loc["female", "RVEDV"] <= 166 and 47 <= means.loc["female", "RVEF"] <= 68
    assert (
        means.loc["male", ["LVEDV", "RVEDV", "LVM"]]
        > means.loc["female", ["LVEDV", "RVEDV", "LVM"]]
    ).all()
    assert abs((population["sex"] == "male").mean() - 0.48) < 0.03
    assert abs(population["bmi"].mean() - 27.5) < 0.4 and abs(population["bmi"].std() - 4.4) < 0.5


def test_published_correlations(population):
    corr = population[CP_NAMES].corr()
    assert corr.loc["LVSV", "RVSV"] > 0.85
    assert 0.75 < corr.loc["LVEDV", "RVEDV"] < 0.92
    assert 0.45 < corr.loc["LVM", "LVEDV"] < 0.75
    assert -0.45 < corr.loc["LVEF", "LVEDV"] < -0.05
    assert 0.25 < corr.loc["LAVmax", "LVEDV"] < 0.55
    young, old = population["age"] < 58, population["age"] > 70
    assert population.loc[young, "LVEDV"].mean() > population.loc[old, "LVEDV"].mean()


def test_deterministic_and_chunk_independent():
    whole, arrays, lat = generate_subjects(9, range(40), SMOKE)  # crosses a render block (32)
    parts = [generate_subjects(9, r, SMOKE) for r in (range(0, 2), range(2, 7), range(7, 40))]
    pd.testing.assert_frame_equal(whole, pd.concat([p[0] for p in parts], ignore_index=True))
    pd.testing.assert_frame_equal(lat, pd.concat([p[2] for p in parts], ignore_index=True))
    for name, values in arrays.items():
        assert np.array_equal(values, np.concatenate([p[1][name] for p in parts]))
    again = generate_subjects(9, range(40), SMOKE)
    assert all(np.array_equal(arrays[k], again[1][k]) for k in arrays)
    other = generate_subjects(10, range(40), SMOKE)
    assert not np.array_equal(arrays["ecg"], other[1]["ecg"])


def test_parallel_cohort_equals_serial(tmp_path):
    serial = synthesize_cohort(tmp_path / "a", 12, 4, SMOKE, progress=False, chunk_size=12)
    chunked = synthesize_cohort(
        tmp_path / "b", 12, 4, SMOKE, progress=False, chunk_size=5, workers=2
    )
    for name in (
        "localizer.npy",
        "cmr.npy",
        "ecg.npy",
        "localizer_heart.npy",
        "subjects.parquet",
        "latents.parquet",
        "manifest.yaml",
    ):
        assert (serial / name).read_bytes() == (chunked / name).read_bytes(), name


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_shapes_and_dtypes(profile):
    sizes = SynthSizes.for_profile(profile)
    table, arrays, latents = generate_subjects(0, range(1), sizes)
    assert arrays["localizer"].shape == (1, 3, sizes.image_size, sizes.image_size)
    assert arrays["cmr"].shape == (1, 3, sizes.cmr_size, sizes.cmr_size)
    assert arrays["ecg"].shape == (1, 12, sizes.ecg_samples)
    heart = arrays.pop("localizer_heart")
    assert heart.shape == arrays["localizer"].shape and heart.dtype == bool
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays.values())
    assert 0.0 <= arrays["localizer"].min() and arrays["localizer"].max() <= 1.0
    assert len(table) == len(latents) == 1
    assert {"paper": (224, 5000), "smoke": (32, 1000), "default": (64, 2500)}[profile] == (
        sizes.image_size, sizes.ecg_samples)  # fmt: skip


def test_tables_without_signals():
    table, arrays, latents = generate_subjects(0, range(3), SMOKE, modalities=())
    assert arrays == {} and len(table) == len(latents) == 3
    assert table["qrs_duration"].isna().all() and table[CP_NAMES].notna().all().all()


def test_cohort_validates_with_variants_and_latents(cohort):
    assert cohort.modalities == ("localizer", "cmr", "ecg", "tabular")
    assert cohort.masks == ("localizer_heart",)
    assert cohort.mask("localizer_heart").shape == cohort.array("localizer").shape
    assert cohort.ecg_sampling_rate_hz == SMOKE.ecg_sampling_rate_hz
    t, tp = cohort.tabular_spec("T"), cohort.tabular_spec("Tp")
    assert not t.leaking and not set(t.columns) & set(CP_NAMES)
    assert tp.leaking and set(CP_NAMES) <= set(tp.numerical)
    assert set(t.columns) < set(tp.columns)
    table = cohort.table
    assert table[CP_NAMES].notna().all().all()
    assert table[t.numerical].isna().any().any()  # realistic missingness
    assert set(table["split"]) == {"train", "val", "test"}
    latents = cohort.extra("latents")
    assert list(latents["id"]) == list(table["id"])
    assert {"loc_phase", "cmr_lv_area_ed", "ecg_qrs_dur", "tab_age"} <= set(latents.columns)


def test_measured_intervals_agree_with_generating_parameters(cohort):
    table, lat = cohort.table, cohort.extra("latents")
    ok = table["rr_interval"].notna()
    rel = np.abs(table.loc[ok, "ventricular_rate"] / lat.loc[ok, "ecg_hr"] - 1)
    assert rel.median() < 0.03 and rel.quantile(0.95) < 0.1  # RSA and jitter move the mean rate
    for measured, true in (
        ("qrs_duration", "ecg_qrs_dur"),
        ("qt_interval", "ecg_qt"),
        ("pq_interval", "ecg_pr"),
    ):
        ok = table[measured].notna()
        assert np.corrcoef(table.loc[ok, measured], lat.loc[ok, true])[0, 1] > 0.4, measured


def test_modalities_carry_their_kind_of_information(cohort):
    oracle = oracle_ceiling(cohort, n_reference=1500, neural=False)
    oracle = oracle.set_index(["modality", "cp"])["pearson_r"]
    assert oracle["cmr", "LVEF"] > 0.8  # cine sees ED and ES
    assert oracle["localizer", "LVM"] > 0.8 and oracle["localizer", "LVEDV"] > 0.7
    assert oracle["localizer", "LVEF"] < oracle["cmr", "LVEF"] - 0.2  # static localizer: weak EF
    assert oracle["tabular", "LVEF"] < 0.5


def test_larger_hearts_look_larger(cohort):
    table, lat = cohort.table, cohort.extra("latents")
    r = np.corrcoef(table["LVEDV"], lat["cmr_lv_area_ed"])[0, 1]
    assert r > 0.8
    cine = cohort.array("cmr")
    bright = (np.asarray(cine[:, 0]) > 0.7).mean(axis=(1, 2))  # blood pool share at ED
    assert np.corrcoef(bright, table["LVEDV"] + table["RVEDV"])[0, 1] > 0.6
    assert (np.asarray(cine[:, 0]) > 0.7).mean() > (
        np.asarray(cine[:, 1]) > 0.7
    ).mean()  # ES smaller


def test_command_writes_cohort(tmp_path):
    from ctrip.data.synth import command

    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(
        [
            "--n",
            "6",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "c"),
            "--profile",
            "smoke",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert Cohort.open(tmp_path / "c").n == 6
    assert args.func(args) == 2  # exists: clear error, exit code 2
    bad = parser.parse_args(
        ["--n", "2", "--out", str(tmp_path / "d"), "--profile", "smoke", "--no-progress"]
    )
    assert bad.func(bad) == 2


def test_every_assumption_has_a_row_in_the_data_chapter():
    """Each ASSUMED(key) marker of the simulator is a row of book/data.md's assumptions table;
    a bare ASSUMED is not allowed."""
    root = Path(__file__).resolve().parents[1]
    chapter = (root / "book" / "data.md").read_text()
    rows = set(re.findall(r"^\| ([a-z0-9-]+) \|", chapter, flags=re.M))
    keys, bare = set(), []
    for path in sorted((root / "ctrip" / "data" / "synth").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = re.findall(r"ASSUMED\(([a-z0-9-]+)\)", line)
            keys.update(found)
            if line.count("ASSUMED") - line.count('"ASSUMED"') > len(found):  # quoted: prose
                bare.append(f"{path.name}:{number}")
    assert not bare, f"ASSUMED without a key: {bare}"
    assert keys and keys <= rows, f"no row in book/data.md for {sorted(keys - rows)}"
    assert "DESIGN" not in chapter


def test_physiology_report_cmr_rows_within_tolerance(population):
    report = card.physiology_report(population)
    assert len(report) == 11 and report["source"].str.startswith("Petersen et al. 2017").all()
    assert report["within"].all(), report.loc[~report["within"]]
    assert not any("DESIGN" in s for s in report["source"])


def _warning_lines_are_one_line_each(err: str, cohort: Path) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("warning: ")]
    assert "PlausibilityWarning" not in err and "writer.finish" not in err, err
    assert all(line.startswith(f"warning: {cohort}: ") for line in said), said
    return said


def test_synthesis_warnings_print_one_line_each_naming_the_cohort(tmp_path, capsys):
    from ctrip.cli import main

    out = tmp_path / "c"
    assert main(["cohort", "synth", "--n", "12", "--profile", "smoke", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    said = _warning_lines_are_one_line_each(capsys.readouterr().err, out)
    # 12 subjects leave 8 / 2 / 2 per split: one warning per split, each on its own line
    assert sum("field split: only" in line for line in said) == 3


def test_the_pipeline_cohort_step_prints_its_warnings_one_line_each(tmp_path, capsys):
    from types import SimpleNamespace

    from ctrip.pipeline.runner import _synthesize

    spec = {"n_subjects": 12, "seed": 0, "sizes": SMOKE.to_dict(), "workers": 1}
    work, published = tmp_path / ".tmp-cohort-1", tmp_path / "cohort"
    work.mkdir()
    _synthesize(SimpleNamespace(parameters={"cohort": spec}), work, published)
    # named as published, never by the temporary folder it is made in
    said = _warning_lines_are_one_line_each(capsys.readouterr().err, published / "cohort")
    assert sum("field split: only" in line for line in said) == 3
