"""Retrieval recall and participation ratio against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from ctrip.alignment import participation_ratio, retrieval_recall


def test_retrieval_recall_by_hand():
    gallery = np.eye(4)
    assert retrieval_recall(gallery, gallery, ks=(1, 4)) == {1: 1.0, 4: 1.0}
    # query 0 points at gallery 1 first, then its own row 0: rank 1
    query = np.array([[0.6, 0.8, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.2, 1]])
    # ranks: 1, 0, 0, 0 (row 3: cos with its own row 0.98 > cos with row 2 0.196)
    assert retrieval_recall(query, gallery, ks=(1, 2)) == {1: 0.75, 2: 1.0}
    # scale does not matter (cosine), a reversed pairing fails at k=1
    assert retrieval_recall(5 * gallery, gallery[::-1], ks=(1,))[1] == 0.0
    # a collapsed embedding: every row ties with the true match, counted as a miss
    same = np.ones((5, 3))
    assert retrieval_recall(same, same, ks=(1, 4, 5)) == {1: 0.0, 4: 0.0, 5: 1.0}
    with pytest.raises(ValueError, match="same subjects"):
        retrieval_recall(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="zeros"):
        retrieval_recall(np.zeros((2, 2)), np.ones((2, 2)))


def test_participation_ratio_by_hand():
    rng = np.random.default_rng(0)
    # covariance eigenvalues (4, 1, 0): PR = 25 / 17
    x = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0]])
    cov_eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert participation_ratio(x, normalize=False) == pytest.approx(
        cov_eig.sum() ** 2 / (cov_eig**2).sum()
    )
    assert participation_ratio(x, normalize=False) == pytest.approx(
        (8 / 3 + 2 / 3) ** 2 / ((8 / 3) ** 2 + (2 / 3) ** 2)
    )
    line = rng.normal(size=(200, 1)) * rng.normal(size=(1, 16))  # rank one
    assert participation_ratio(line, normalize=False) == pytest.approx(1.0)
    iso = rng.normal(size=(20000, 8))
    assert participation_ratio(iso) == pytest.approx(8.0, rel=0.02)
    with pytest.raises(ValueError):
        participation_ratio(np.ones((1, 3)))
