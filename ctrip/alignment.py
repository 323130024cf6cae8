"""How well Stage II aligned the modalities: cross-modal retrieval and effective dimensionality.

- `retrieval_recall`: for each subject's embedding in one modality, is its own embedding in the
  other modality among the k most similar (cosine) of all subjects? Chance is k / N.
- `participation_ratio`: (sum of covariance eigenvalues)^2 / sum of their squares, the number of
  directions the embeddings really use (1 when they collapse onto a line, D when isotropic).
- `alignment_report`: both, with the learned temperatures, for a Stage II checkpoint on a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise ValueError("an embedding is all zeros: its direction (cosine) is undefined")
    return x / norms


def retrieval_recall(
    query: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Recall@k of retrieving row i of `gallery` from row i of `query` by cosine similarity.

    Ties with the true match count against it, so a collapsed (constant) embedding scores 0,
    never a lucky 1.
    """
    query, gallery = np.asarray(query), np.asarray(gallery)
    if query.ndim != 2 or query.shape != gallery.shape:
        raise ValueError(
            f"query and gallery must be (N, D) of the same subjects, got {query.shape} and "
            f"{gallery.shape}"
        )
    similarity = _unit_rows(query) @ _unit_rows(gallery).T
    true = np.diag(similarity)[:, None]
    rank = (similarity >= true).sum(axis=1) - 1  # other rows at least as similar as the match
    return {int(k): float((rank < k).mean()) for k in ks}


def participation_ratio(embeddings: np.ndarray, normalize: bool = True) -> float:
    """Effective dimensionality (sum lambda)^2 / sum lambda^2 of the embeddings' covariance.

    normalize: L2-normalize rows first (the space InfoNCE compares them in).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"participation ratio needs (N >= 2, D) embeddings, got {x.shape}")
    if normalize:
        x = _unit_rows(x)
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False).reshape(x.shape[1], -1)), 0, None)
    total = eig.sum()
    return float(total**2 / (eig**2).sum()) if total > 0 else 0.0


def alignment_report(
    checkpoint: str | Path,
    cohort_path: str | Path,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Retrieval (anchor -> each other modality of every pair), chance levels, temperatures and
    each modality's participation ratio, for a Stage II checkpoint on `split` (projected space).
    """
    from ctrip.stages.train import embed, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt["kind"] != "stage2":
        raise ValueError(f"{checkpoint}: a {ckpt['kind']} checkpoint; alignment needs Stage II")
    modalities = list(dict.fromkeys(m for pair in ckpt["pairs"] for m in pair))
    embedded = {}
    for m in modalities:
        ids, z = embed(checkpoint, cohort_path, m, split=split, projected=True)
        embedded[m] = (ids, z)
    n = len(embedded[modalities[0]][0])
    retrieval = {}
    for a, b in ckpt["pairs"]:
        if embedded[a][0] != embedded[b][0]:
            raise ValueError(f"{cohort_path}: {a} and {b} embeddings hold different subjects")
        retrieval[f"{a}-{b}"] = retrieval_recall(embedded[a][1], embedded[b][1], ks)
    return {
        "split": split,
        "n": n,
        "retrieval": retrieval,
        "chance": {int(k): min(1.0, k / n) for k in ks},
        "participation_ratio": {m: participation_ratio(z) for m, (_, z) in embedded.items()},
        "temperatures": dict(ckpt["temperatures"]),
    }
