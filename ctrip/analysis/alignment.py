"""Whether Stage II aligned the modalities, measured rather than only pictured.

- Cross-modal retrieval: for each subject's query embedding (e.g. localizer), rank all test
  subjects' gallery embeddings (e.g. ECG) by cosine similarity; recall@k is the fraction whose
  own gallery embedding is among the top k. Chance is k / N.
- Participation ratio (effective dimensionality) of an embedding matrix:
  (sum of covariance eigenvalues)^2 / (sum of their squares); 1 for a collapsed (rank-1)
  embedding, d for an isotropic one in d dimensions (Gao et al. 2017, bioRxiv 214262;
  Recanatesi et al. 2019).
- Shared dimensionality of two modalities: the participation ratio of what one can predict of
  the other, from held-out canonical correlations (Hotelling 1936) of their generating
  quantities; the dimensionality an aligned embedding could use if it carried all they share.
- Paired bootstrap of the difference in Pearson r between two methods on the same subjects:
  `ctrip.analysis.metrics.paired_bootstrap` with statistic "r" does this; `paired_r_differences` runs it
  for every method against a baseline and every CP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ctrip.analysis.metrics import paired_bootstrap_frames
from ctrip.data.cohort import constant_value
from ctrip.data.schema import MODALITY_LABELS


def _matrix(x: Any, name: str) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(
            f"{name} must be a (subjects, features) matrix with >= 2 rows, got {m.shape}"
        )
    if not np.isfinite(m).all():
        raise ValueError(f"{name} holds NaN or inf")
    return m


def _unit_rows(m: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero rows; cosine is undefined")
    return m / norms


def retrieval_ranks(query: Any, gallery: Any) -> np.ndarray:
    """The rank (1 = best) of each subject's own gallery row among all gallery rows, by cosine
    similarity to its query row. Row i of `query` and of `gallery` are the same subject. Ties
    count against the match (a tie with another subject ranks the match below it)."""
    q, g = _matrix(query, "query"), _matrix(gallery, "gallery")
    if q.shape[0] != g.shape[0]:
        raise ValueError(f"query and gallery hold different subjects: {q.shape[0]} vs {g.shape[0]}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query and gallery embeddings differ in width ({q.shape[1]} vs {g.shape[1]}): "
            "retrieval needs the shared space (embed(..., projected=True))"
        )
    sim = _unit_rows(q, "query") @ _unit_rows(g, "gallery").T
    own = np.diag(sim)
    # subjects other than the true match with similarity >= the match's (float-safe ties)
    better = (sim >= own[:, None] - 1e-12).sum(axis=1) - 1
    return better + 1


def retrieval_recall(query: Any, gallery: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """recall@k of retrieving each subject's gallery row from its query row (cosine), with the
    chance level k / N of a random ranking, and the median rank."""
    ranks = retrieval_ranks(query, gallery)
    n = ranks.size
    out: dict[str, float] = {"n": n, "median_rank": float(np.median(ranks))}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out[f"recall@{k}"] = float((ranks <= k).mean())
        out[f"chance@{k}"] = min(k, n) / n
    return out


def participation_ratio(embeddings: Any) -> float:
    """Effective dimensionality (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues
    lambda of `embeddings` (subjects x features). NaN when every feature is constant."""
    x = _matrix(embeddings, "embeddings")
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    lam = s**2 / (x.shape[0] - 1)  # covariance eigenvalues (the nonzero ones)
    total = lam.sum()
    if total <= 0:
        return float("nan")
    return float(total**2 / (lam**2).sum())


def _by_id(ids: Any, features: Any, name: str) -> pd.DataFrame:
    ids = np.asarray(ids).ravel()
    f = _matrix(features, name)
    if ids.size != f.shape[0]:
        raise ValueError(f"{name}: {ids.size} ids for {f.shape[0]} embedding rows")
    if len(set(ids.tolist())) != ids.size:
        raise ValueError(f"{name}: duplicate subject ids")
    return pd.DataFrame({"row": np.arange(ids.size)}, index=pd.Index(ids, name="id"))


def alignment_table(
    embeddings: Mapping[str, tuple[Any, Any]],
    pairs: Sequence[tuple[str, str]] = (("localizer", "ecg"), ("localizer", "tabular")),
    ks: Sequence[int] = (1, 5, 10),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retrieval for each (query, gallery) modality pair on the subjects both hold, and the
    participation ratio of each modality. `embeddings` maps a modality to (ids, features), e.g.
    from `ctrip.stages.train.embed(stage2_checkpoint, cohort, modality, "test", projected=True)`
    (the shared space, where cosine similarity across modalities means something). Returns (retrieval, participation):
    retrieval rows query, gallery, n, recall@k, chance@k, median_rank; participation rows
    modality, n, dim, participation_ratio."""
    index = {m: _by_id(ids, f, m) for m, (ids, f) in embeddings.items()}
    retrieval = []
    for q, g in pairs:
        if q not in embeddings or g not in embeddings:
            raise KeyError(f"no embeddings for the pair {q} -> {g}; have {sorted(embeddings)}")
        shared = index[q].index.intersection(index[g].index, sort=False)
        if len(shared) < 2:
            raise ValueError(f"{q} and {g} share {len(shared)} subjects; retrieval needs >= 2")
        fq = np.asarray(embeddings[q][1], dtype=np.float64)[index[q].loc[shared, "row"]]
        fg = np.asarray(embeddings[g][1], dtype=np.float64)[index[g].loc[shared, "row"]]
        retrieval.append({"query": q, "gallery": g, **retrieval_recall(fq, fg, ks)})
    participation = [
        {"modality": m, "n": np.asarray(f).shape[0], "dim": np.asarray(f).shape[1],
         "participation_ratio": participation_ratio(f)}
        for m, (_, f) in embeddings.items()
    ]  # fmt: skip
    return pd.DataFrame(retrieval), pd.DataFrame(participation)


def participation_before_after(before: Mapping[str, Any], after: Mapping[str, Any]) -> pd.DataFrame:
    """Each modality's participation ratio in its own pre-trained feature space (`before`) and
    in the aligned space (`after`), both mapping a modality to its subjects x features matrix:
    whether few effective dimensions come from the alignment or were there before it. Rows
    modality, dim_before, before, dim_after, after."""
    missing = set(before) ^ set(after)
    if missing:
        raise KeyError(f"modalities on one side only: {sorted(missing)}")
    rows = []
    for m, f in before.items():
        f, g = _matrix(f, f"{m} before"), _matrix(after[m], f"{m} after")
        rows.append({"modality": m, "dim_before": f.shape[1], "before": participation_ratio(f),
                     "dim_after": g.shape[1], "after": participation_ratio(g)})  # fmt: skip
    return pd.DataFrame(rows)


def phenotype_participation(phenotypes: pd.DataFrame) -> dict[str, float]:
    """Participation ratio of the phenotypes themselves, each z-scored (that of their
    correlation matrix), over the subjects with every column present: how many effective
    dimensions an embedding that carried exactly these phenotypes, and nothing else, would use.
    Keys participation_ratio, n (subjects used), n_missing (left out for a missing value),
    n_constant (columns left out for holding one value)."""
    values = phenotypes.apply(pd.to_numeric, errors="coerce")
    complete = values.dropna()
    if len(complete) < 2:
        raise ValueError(
            f"phenotypes: {len(complete)} subject(s) with every one of {list(values.columns)} "
            "present; the participation ratio needs at least 2"
        )
    # A column with one value for every subject (to within rounding) spans no dimension and
    # cannot be z-scored: it is left out and counted (n_constant).
    constant = [c for c in complete.columns if constant_value(complete[c].to_numpy()) is not None]
    varying = complete.drop(columns=constant)
    if varying.shape[1] == 0:
        raise ValueError(f"phenotypes: every column is constant ({constant}); nothing to z-score")
    z = (varying - varying.mean()) / varying.std(ddof=1)
    return {"participation_ratio": participation_ratio(z.to_numpy()), "n": len(complete),
            "n_missing": len(values) - len(complete), "n_constant": len(constant)}  # fmt: skip


def _whitener(c: np.ndarray, ridge: float) -> np.ndarray:
    """C^(-1/2) of a covariance matrix, with `ridge` times its mean variance on the diagonal."""
    w, v = np.linalg.eigh(c + ridge * np.trace(c) / len(c) * np.eye(len(c)))
    return (v / np.sqrt(np.clip(w, 1e-12, None))) @ v.T


def held_out_canonical_correlations(
    x: Any, y: Any, seed: int = 0, ridge: float = 1e-3
) -> np.ndarray:
    """Canonical correlations of `x` and `y` (subjects x features each, the same subjects in the
    same rows) that hold on subjects they were not fitted on: the canonical directions come from
    a random half of the subjects, the correlations of those directions from the other half
    (negative ones count as 0). In-sample canonical correlations of many features are biased
    up by chance; these are not. Descending by the fitted correlation."""
    a, b = _matrix(x, "x"), _matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y hold different subjects: {a.shape[0]} vs {b.shape[0]} rows")
    fit = np.random.default_rng(seed).permutation(a.shape[0]) < a.shape[0] // 2
    if min(fit.sum(), (~fit).sum()) < 3:
        raise ValueError(f"{a.shape[0]} subjects: canonical correlations need at least 6")
    a, b = a[:, a[fit].std(axis=0) > 0], b[:, b[fit].std(axis=0) > 0]
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError("x or y has no column that varies")
    za = (a - a[fit].mean(axis=0)) / a[fit].std(axis=0)
    zb = (b - b[fit].mean(axis=0)) / b[fit].std(axis=0)
    n = int(fit.sum())
    wa = _whitener(za[fit].T @ za[fit] / (n - 1), ridge)
    wb = _whitener(zb[fit].T @ zb[fit] / (n - 1), ridge)
    u, _, vt = np.linalg.svd(wa @ (za[fit].T @ zb[fit] / (n - 1)) @ wb)
    k = min(a.shape[1], b.shape[1])
    pa, pb = za[~fit] @ wa @ u[:, :k], zb[~fit] @ wb @ vt.T[:, :k]
    pa, pb = pa - pa.mean(axis=0), pb - pb.mean(axis=0)
    denominator = np.sqrt((pa**2).sum(axis=0) * (pb**2).sum(axis=0))
    rho = np.divide((pa * pb).sum(axis=0), denominator, out=np.zeros(k), where=denominator > 0)
    return np.clip(rho, 0.0, 1.0)


def shared_dimensionality(x: Any, y: Any, seed: int = 0) -> dict[str, Any]:
    """How many effective dimensions two modalities share: the participation ratio of the
    squared held-out canonical correlations rho_i^2 (`held_out_canonical_correlations`), i.e. of
    the variances of what `x` predicts of `y`'s whitened canonical variates. k shared
    independent quantities, each known to both, give k; a quantity one side knows with noise
    counts less. With nothing shared the correlations are all near 0 and the ratio means
    nothing (NaN when they are exactly 0). Keys participation_ratio, correlations
    (descending by the fitted correlation), n."""
    rho = held_out_canonical_correlations(x, y, seed)
    w = rho**2
    ratio = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else float("nan")
    return {"participation_ratio": ratio, "correlations": rho.tolist(), "n": len(np.asarray(x))}


def paired_r_differences(
    predictions: Mapping[str, pd.DataFrame],
    baseline: str,
    cps: Sequence[str],
    split: str | None = "test",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """For every method other than `baseline` and every CP: Pearson r of the method and of the
    baseline on the same subjects, their difference (method - baseline) with a paired
    percentile bootstrap CI (the same subject resample for both) and a two-sided bootstrap p.
    `predictions` maps a method to its prediction frame (id, split, "<CP>_pred", "<CP>_ref")."""
    if baseline not in predictions:
        raise KeyError(f"baseline {baseline!r} has no predictions; have {sorted(predictions)}")
    rows = []
    for method, frame in predictions.items():
        if method == baseline:
            continue
        for cp in cps:
            res = paired_bootstrap_frames(
                frame, predictions[baseline], cp, "r", split, n_boot, seed
            )
            rows.append({"method": method, "baseline": baseline, "cp": cp, "r": res["a"],
                         "r_baseline": res["b"], "difference": res["difference"],
                         "ci_low": res["ci_low"], "ci_high": res["ci_high"], "p": res["p"],
                         "n": res["n"], "n_boot": n_boot})  # fmt: skip
    return pd.DataFrame(rows)


def unit_embeddings(features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each modality's rows scaled to unit length (the sphere on which contrastive training
    compares them by cosine) and zero-padded to the widest modality's width. Every encoder's own
    coordinates are kept: no per-modality PCA or standardization, which would turn every
    modality into the same centred cloud and so mix them by construction. Before alignment the
    coordinates of different encoders are unrelated, and distances across modalities are those
    of unrelated vectors."""
    rows = {m: _unit_rows(_matrix(f, m), m) for m, f in features.items()}
    width = max(f.shape[1] for f in rows.values())
    return {m: np.pad(f, ((0, 0), (0, width - f.shape[1]))) for m, f in rows.items()}


def modality_gap(a: Any, b: Any) -> dict[str, float]:
    """The modality gap of Liang et al. (NeurIPS 2022, "Mind the Gap"): the distance between the
    centroids of two modalities' embeddings, beside the spread within each (the root mean
    squared distance of its rows to its own centroid), and their ratio gap / (RMS of the two
    spreads). Above 1: the modalities sit apart as islands; near 0: in one cloud. Keys gap,
    spread_a, spread_b, gap_over_spread."""
    x, y = _matrix(a, "a"), _matrix(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b differ in width ({x.shape[1]} vs {y.shape[1]})")
    gap = float(np.linalg.norm(x.mean(axis=0) - y.mean(axis=0)))
    spread_a = float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))
    spread_b = float(np.sqrt(((y - y.mean(axis=0)) ** 2).sum(axis=1).mean()))
    within = np.sqrt((spread_a**2 + spread_b**2) / 2)
    return {"gap": gap, "spread_a": spread_a, "spread_b": spread_b,
            "gap_over_spread": gap / within if within > 0 else float("nan")}  # fmt: skip


def paired_distances(query: Any, gallery: Any, confidence: float = 0.95) -> dict[str, float]:
    """How much closer a subject's query embedding lies to its own gallery embedding than to
    the other subjects' (row i of both is subject i; Euclidean distance). Keys own (mean
    distance to its own row), others (mean distance to the other rows), ratio own / others,
    difference others - own averaged over subjects with its t confidence interval (ci_low,
    ci_high), closer (share of subjects whose own row is nearer than their average other), n.
    No correspondence between the modalities gives a ratio of 1 and a difference of 0."""
    from scipy import stats

    q, g = _matrix(query, "query"), _matrix(gallery, "gallery")
    if q.shape != g.shape:
        raise ValueError(f"query and gallery differ in shape: {q.shape} vs {g.shape}")
    n = q.shape[0]
    squared = (q**2).sum(axis=1)[:, None] + (g**2).sum(axis=1)[None, :] - 2 * q @ g.T
    distance = np.sqrt(np.clip(squared, 0.0, None))
    own = np.diag(distance)
    others = (distance.sum(axis=1) - own) / (n - 1)
    gain = others - own
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * gain.std(ddof=1) / np.sqrt(n)
    return {"own": float(own.mean()), "others": float(others.mean()),
            "ratio": float(own.mean() / others.mean()), "difference": float(gain.mean()),
            "ci_low": float(gain.mean() - half), "ci_high": float(gain.mean() + half),
            "closer": float((gain > 0).mean()), "n": n}  # fmt: skip


def centroids_removed(features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each modality's embeddings minus their own centroid: the modality gap taken out, so that
    what is left of the geometry is where subjects sit within each modality."""
    return {m: (x := _matrix(f, m)) - x.mean(axis=0) for m, f in features.items()}


def alignment_geometry(
    embeddings: Mapping[str, Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]] = (("localizer", "ecg"), ("localizer", "tabular")),
) -> pd.DataFrame:
    """The modality gap and the paired distances of each pair, for each set of embeddings
    (e.g. {"before": ..., "after": ...}, each mapping a modality to its subjects x features
    matrix, the same subjects in the same rows). The rows go through `unit_embeddings` first;
    the paired distances are measured as they are and with each modality's centroid removed
    (`centroids_removed`: the gap taken out). Rows: when, query, gallery, the keys of
    `modality_gap` and of `paired_distances`, and those of the latter with each centroid removed
    (suffix `_centred`)."""
    rows = []
    for when, features in embeddings.items():
        unit = unit_embeddings(features)
        centred = centroids_removed(unit)
        for q, g in pairs:
            if q not in unit or g not in unit:
                raise KeyError(
                    f"{when}: no embeddings for the pair {q} -> {g}; have {sorted(unit)}"
                )
            gap = modality_gap(unit[q], unit[g])
            row = {"when": when, "query": q, "gallery": g, **gap,
                   **paired_distances(unit[q], unit[g])}  # fmt: skip
            row.update({f"{k}_centred": v for k, v in paired_distances(centred[q], centred[g]).items()
                        if k != "n"})  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def describe_alignment_geometry(geometry: pd.DataFrame) -> str:
    """Generated sentences on `alignment_geometry`, one paragraph per pair: the modality gap
    over the spread within the modalities before and after alignment, and how much nearer a
    subject's own embedding lies than the other subjects' (difference with its confidence
    interval; one inside its CI is "no difference"), as measured and with the centroids
    removed."""

    def paired(row: pd.Series, suffix: str = "") -> str:
        low, high = row[f"ci_low{suffix}"], row[f"ci_high{suffix}"]
        text = (f"{row[f'own{suffix}']:.2f} against {row[f'others{suffix}']:.2f} (difference "
                f"{row[f'difference{suffix}']:.3f}, 95% CI [{low:.3f}, {high:.3f}]")  # fmt: skip
        if low <= 0 <= high:
            return text + "; no difference)"
        side = "nearer" if low > 0 else "farther"
        return text + f"; {side} for {100 * row[f'closer{suffix}']:.0f}% of subjects)"

    paragraphs = []
    for (q, g), part in geometry.groupby(["query", "gallery"], sort=False):
        gaps = "; ".join(
            f"{row['when']} alignment {row['gap']:.2f} apart, {row['gap_over_spread']:.2f} times "
            f"the spread within them ({row['spread_a']:.2f} and {row['spread_b']:.2f})"
            for _, row in part.iterrows()
        )
        distances = "; ".join(
            f"{row['when']} alignment {paired(row)}, and with each modality's centroid removed "
            f"{paired(row, '_centred')}"
            for _, row in part.iterrows()
        )
        q_name, g_name = (MODALITY_LABELS.get(m, m) for m in (q, g))
        paragraphs.append(
            f"**{q_name} and {g_name}.** The modality gap (the distance between the two "
            f"modalities' centroids on the unit sphere): {gaps}. The distance from a subject's "
            f"{q_name} embedding to its own {g_name} embedding, against the mean to the other "
            f"subjects': {distances}."
        )
    return "\n\n".join(paragraphs)
