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
