"""Cross-modal retrieval, participation ratio and paired r differences on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import hadamard

from ctrip.analysis.alignment import (
    alignment_table,
    held_out_canonical_correlations,
    paired_r_differences,
    participation_ratio,
    retrieval_ranks,
    retrieval_recall,
    shared_dimensionality,
)
from ctrip.analysis.metrics import paired_bootstrap, pearson


def at_angles(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_retrieval_ranks_by_hand():
    query = at_angles([0, 90, 180, 270])
    gallery = at_angles([10, 90, 200, 5]) * np.array(
        [[2.0], [0.5], [3.0], [1.0]]
    )  # cosine: scale-free
    # query 0 (0 deg): gallery 3 (5 deg) beats its own (10 deg) -> rank 2
    # query 1: exact match -> 1; query 2 (180): own at 200 (cos 20) beats all -> 1
    # query 3 (270): own at 5 deg (cos 265 = -0.087) loses to 200 deg (cos 70 = 0.34) -> 2
    assert retrieval_ranks(query, gallery).tolist() == [2, 1, 1, 2]
    rec = retrieval_recall(query, gallery, ks=(1, 2, 4))
    assert rec["recall@1"] == 0.5 and rec["recall@2"] == 1.0 and rec["recall@4"] == 1.0
    assert rec["chance@1"] == 0.25 and rec["chance@2"] == 0.5 and rec["median_rank"] == 1.5


def test_recall_on_a_constructed_permutation():
    eye = np.eye(6)
    perm = [0, 1, 2, 4, 5, 3]  # subjects 0-2 keep their own row, 3-5 are cycled
    rec = retrieval_recall(eye, eye[perm], ks=(1, 5, 6))
    # a cycled subject's own gallery row is orthogonal to its query, tied (0) with four others
    # and beaten by one: ties count against the match, so its rank is 6
    assert rec["recall@1"] == 0.5 and rec["recall@5"] == 0.5 and rec["recall@6"] == 1.0
    assert rec["chance@1"] == pytest.approx(1 / 6) and rec["chance@5"] == pytest.approx(5 / 6)
    assert retrieval_recall(eye, eye, ks=(1,))["recall@1"] == 1.0
    with pytest.raises(ValueError, match="different subjects"):
        retrieval_recall(eye, eye[:5])
    with pytest.raises(ValueError, match="shared space"):
        retrieval_recall(eye, eye[:, :5])
    with pytest.raises(ValueError, match="all-zero"):
        retrieval_recall(np.vstack([eye[:5], np.zeros(6)]), eye)


def test_participation_ratio_isotropic_rank1_and_by_hand():
    h = hadamard(8).astype(float)[:, 1:]  # 7 orthogonal zero-mean +-1 columns
    assert participation_ratio(h[:, :4]) == pytest.approx(4.0)  # isotropic in 4 dims
    t = h[:, 0]
    assert participation_ratio(np.outer(t, [1.0, -2.0, 0.5, 3.0])) == pytest.approx(1.0)
    # covariance eigenvalues in ratio 3 : 1 -> (3 + 1)^2 / (9 + 1) = 1.6
    x = np.stack([np.sqrt(3) * h[:, 0], h[:, 1]], axis=1)
    assert participation_ratio(x) == pytest.approx(1.6)
    # an offset does not matter (covariance), a rotation does not matter either
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    assert participation_ratio(h[:, :4] @ q + 5.0) == pytest.approx(4.0)
    assert np.isnan(participation_ratio(np.ones((5, 3))))


def test_alignment_table_matches_by_id():
    rng = np.random.default_rng(0)
    ids = np.array([f"S{i:02d}" for i in range(20)])
    loc = rng.normal(size=(20, 8))
    order = rng.permutation(20)
    ecg = (ids[order], loc[order] + 0.01 * rng.normal(size=(20, 8)))  # same subjects, shuffled
    tab = (ids[:15], rng.normal(size=(15, 8)))  # unrelated, 15 shared subjects
    retrieval, participation = alignment_table(
        {"localizer": (ids, loc), "ecg": ecg, "tabular": tab}, ks=(1, 10)
    )
    le = retrieval.set_index("gallery").loc["ecg"]
    assert le["n"] == 20 and le["recall@1"] == 1.0 and le["chance@10"] == 0.5
    lt = retrieval.set_index("gallery").loc["tabular"]
    assert lt["n"] == 15 and lt["chance@1"] == pytest.approx(1 / 15)
    assert list(participation["modality"]) == ["localizer", "ecg", "tabular"]
    assert (participation["participation_ratio"] > 1).all()
    with pytest.raises(ValueError, match="duplicate"):
        alignment_table({"localizer": (ids, loc), "ecg": (np.r_[ids[:19], ids[:1]], loc)})


def frame(ref: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"S{i}" for i in range(len(ref))], "split": "test",
                         "LVM_ref": ref, "LVM_pred": pred})  # fmt: skip


def test_paired_r_differences_reuses_the_paired_bootstrap():
    rng = np.random.default_rng(4)
    ref = rng.normal(100, 20, 200)
    good, poor = ref + rng.normal(0, 10, 200), ref + rng.normal(0, 30, 200)
    table = paired_r_differences(
        {"L_sup": frame(ref, poor), "C-TRIP": frame(ref, good)}, "L_sup", ["LVM"], n_boot=300
    )
    assert len(table) == 1
    row = table.iloc[0]
    assert row["method"] == "C-TRIP" and row["baseline"] == "L_sup"
    assert row["r"] == pytest.approx(pearson(good, ref)["r"])
    assert row["r_baseline"] == pytest.approx(pearson(poor, ref)["r"])
    assert row["difference"] == pytest.approx(row["r"] - row["r_baseline"])
    direct = paired_bootstrap(good, poor, ref, "r", n_boot=300, seed=0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((direct["ci_low"], direct["ci_high"]))
    assert row["ci_low"] > 0  # the better method's advantage is resolved
    with pytest.raises(KeyError):
        paired_r_differences({"C-TRIP": frame(ref, good)}, "L_sup", ["LVM"])


def test_participation_before_after_measures_each_side_in_its_own_space():
    from ctrip.analysis.alignment import participation_before_after

    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=64), [1.0, 2.0, -1.0])  # every subject on one line: PR 1
    spread = hadamard(64)[:, 1:5].astype(float)  # zero-mean orthogonal columns: PR 4
    table = participation_before_after({"ecg": line}, {"ecg": spread})
    row = table.iloc[0]
    assert (row["modality"], row["dim_before"], row["dim_after"]) == ("ecg", 3, 4)
    assert row["before"] == pytest.approx(1.0) and row["after"] == pytest.approx(4.0)
    with pytest.raises(KeyError, match="one side only"):
        participation_before_after({"ecg": line}, {"tabular": spread})


def test_phenotype_participation_z_scores_and_skips_missing_subjects():
    from ctrip.analysis.alignment import phenotype_participation

    h = hadamard(8).astype(float)[:, 1:]
    # uncorrelated columns on different scales: z-scored, they weigh alike (PR 3, not ~1)
    frame = pd.DataFrame({"LVM": 100 * h[:, 0], "LVEF": h[:, 1], "RVEDV": 0.01 * h[:, 2]})
    assert phenotype_participation(frame)["participation_ratio"] == pytest.approx(3.0)
    # a copy of a column adds no dimension of its own: eigenvalues 2, 1 -> 9 / 5
    frame["LVM_copy"] = 3 * frame["LVM"] + 1
    assert phenotype_participation(frame.drop(columns="RVEDV"))["participation_ratio"] == (
        pytest.approx(1.8)
    )
    gap = pd.concat([frame, pd.DataFrame({"LVM": [np.nan], "LVEF": [1.0]})], ignore_index=True)
    result = phenotype_participation(gap)
    assert (result["n"], result["n_missing"]) == (8, 1)
    # a constant column (a tiny test split's one LVEF) spans no dimension: left out, counted
    constant = phenotype_participation(frame.drop(columns="LVM_copy").assign(LVEF=1.0))
    assert constant["participation_ratio"] == pytest.approx(2.0) and constant["n_constant"] == 1
    with pytest.raises(ValueError, match="every column is constant"):
        phenotype_participation(frame.assign(LVM=1.0, LVEF=1.0, RVEDV=2.0, LVM_copy=3.0))
    with pytest.raises(ValueError, match="at least 2"):
        phenotype_participation(frame.iloc[:1])


def test_shared_dimensionality_counts_what_both_sides_know():
    rng = np.random.default_rng(0)
    n = 6000
    z = rng.normal(size=(n, 3))  # three shared quantities
    # x knows them through a mixing and with noise of SD 0, 1 and 2; y knows them exactly
    mixing = rng.normal(size=(3, 3))
    noisy = z + rng.normal(size=(n, 3)) * np.array([0.0, 1.0, 2.0])
    x = np.c_[noisy @ mixing, rng.normal(size=(n, 4))]
    y = np.c_[z[:, ::-1], rng.normal(size=(n, 5))]
    # canonical correlations 1 / sqrt(1 + sd^2): 1, 0.707, 0.447; squared 1, 0.5, 0.2
    rho = held_out_canonical_correlations(x, y, seed=1)
    assert rho.shape == (7,)
    assert np.allclose(rho[:3], [1.0, 0.5**0.5, 0.2**0.5], atol=0.03)
    assert rho[3:].max() < 0.06  # the unshared columns correlate by chance only
    result = shared_dimensionality(x, y, seed=1)
    assert result["participation_ratio"] == pytest.approx(1.7**2 / 1.29, abs=0.1)  # 2.24
    assert result["n"] == n
    exact = shared_dimensionality(np.c_[z, rng.normal(size=(n, 2))], z @ mixing)
    assert exact["participation_ratio"] == pytest.approx(3.0, abs=0.01)


def test_canonical_correlations_hold_out_their_fit():
    # many unrelated features: in-sample canonical correlations would be large by chance
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 40)), rng.normal(size=(200, 40))
    assert held_out_canonical_correlations(x, y).max() < 0.35
    with pytest.raises(ValueError, match="different subjects"):
        held_out_canonical_correlations(x, y[:100])
    with pytest.raises(ValueError, match="varies"):
        held_out_canonical_correlations(np.ones((50, 2)), y[:50])


def test_unit_embeddings_keep_each_encoders_coordinates():
    from ctrip.analysis.alignment import unit_embeddings

    unit = unit_embeddings({"localizer": [[3.0, 4.0], [0.0, 2.0]], "ecg": [[2.0], [-1.0]]})
    assert unit["localizer"].tolist() == [[0.6, 0.8], [0.0, 1.0]]
    assert unit["ecg"].tolist() == [[1.0, 0.0], [-1.0, 0.0]]  # padded to the widest, not PCA'd
    with pytest.raises(ValueError, match="all-zero"):
        unit_embeddings({"ecg": [[0.0, 0.0], [1.0, 0.0]]})


def test_modality_gap_by_hand():
    from ctrip.analysis.alignment import modality_gap

    # two clouds of +-1 around (0, 0) and (4, 0): centroids 4 apart, spread 1 within each
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    gap = modality_gap(a, a + [4.0, 0.0])
    assert gap["gap"] == pytest.approx(4.0)
    assert gap["spread_a"] == pytest.approx(1.0) and gap["spread_b"] == pytest.approx(1.0)
    assert gap["gap_over_spread"] == pytest.approx(4.0)
    # one cloud: no gap; a wider second cloud raises the RMS of the spreads
    assert modality_gap(a, a)["gap"] == pytest.approx(0.0)
    assert modality_gap(a, 3 * a + [4.0, 0.0])["gap_over_spread"] == pytest.approx(4 / np.sqrt(5))
    with pytest.raises(ValueError, match="width"):
        modality_gap(a, a[:, :1])


def test_paired_distances_by_hand_and_without_correspondence():
    from ctrip.analysis.alignment import paired_distances

    # three subjects on a line: each own row is at distance 0, the others at 1 and 2 (or 1, 1)
    q = np.array([[0.0], [1.0], [2.0]])
    d = paired_distances(q, q)
    assert d["own"] == 0.0 and d["others"] == pytest.approx((1.5 + 1.0 + 1.5) / 3)
    assert d["ratio"] == 0.0 and d["closer"] == 1.0 and d["n"] == 3
    assert d["difference"] == pytest.approx(4 / 3) and d["ci_low"] < 4 / 3 < d["ci_high"]
    # the gallery of unrelated subjects: own and others alike, the CI holds 0
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    none = paired_distances(x, y)
    assert none["ratio"] == pytest.approx(1.0, abs=0.03) and none["ci_low"] < 0 < none["ci_high"]
    with pytest.raises(ValueError, match="shape"):
        paired_distances(x, y[:10])


def test_alignment_geometry_separates_the_gap_from_the_correspondence():
    from ctrip.analysis.alignment import alignment_geometry, describe_alignment_geometry

    rng = np.random.default_rng(1)
    subjects = rng.normal(size=(200, 6))
    # after: the ECG is each subject's localizer moved by one offset (a modality gap) and noise;
    # before: unrelated
    offset = np.r_[6.0, np.zeros(5)]
    after = {"localizer": subjects + offset,
             "ecg": subjects - offset + 0.3 * rng.normal(size=(200, 6))}  # fmt: skip
    before = {"localizer": subjects, "ecg": rng.normal(size=(200, 6))}
    geometry = alignment_geometry({"before": before, "after": after}, [("localizer", "ecg")])
    b, a = geometry.set_index("when").loc["before"], geometry.set_index("when").loc["after"]
    assert a["gap_over_spread"] > 2 > b["gap_over_spread"]
    assert b["ci_low_centred"] < 0 < b["ci_high_centred"]  # no correspondence before
    assert a["ci_low_centred"] > 0 and a["closer_centred"] > 0.9
    # removing the centroids makes the correspondence plainer: own much nearer than others
    assert a["ratio_centred"] < a["ratio"] < 1
    text = describe_alignment_geometry(geometry)
    assert text.startswith("**localizer and ECG.** The modality gap")
    assert f"after alignment {a['gap']:.2f} apart" in text
    assert f"before alignment {b['own']:.2f} against {b['others']:.2f}" in text
    assert "no difference)" in text
    assert f"nearer for {100 * a['closer_centred']:.0f}% of subjects" in text
    with pytest.raises(KeyError, match="tabular"):
        alignment_geometry({"after": after}, [("localizer", "tabular")])


def test_fig2b_links_a_subjects_anchor_to_each_other_modality():
    import matplotlib

    matplotlib.use("Agg")
    from ctrip.analysis.figures import plot_umaps

    rng = np.random.default_rng(0)
    ids = [f"S{i}" for i in range(5)]
    frame = pd.DataFrame({"x": rng.normal(size=15), "y": rng.normal(size=15),
                          "modality": np.repeat(["localizer", "ecg", "tabular"], 5),
                          "id": ids * 3, "LVM": rng.uniform(60, 200, 15),
                          "sex": ["female", "male", "male", "female", "male"] * 3})  # fmt: skip
    fig = plot_umaps({"after alignment": frame}, linked=["S1", "S3"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # two subjects, each: localizer -> ECG and localizer -> tabular
    anchor = frame[(frame["id"] == "S1") & (frame["modality"] == "localizer")][["x", "y"]]
    tabular = frame[(frame["id"] == "S1") & (frame["modality"] == "tabular")][["x", "y"]]
    assert np.allclose(lines[1].get_xydata(), np.vstack([anchor, tabular]))
    assert len(plot_umaps({"after alignment": frame}).axes[0].get_lines()) == 0
