"""Baselines answer like the served system: best first, never an item the user has seen,
``-1`` where nothing unseen is left."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.config import ALSConfig
from recsys.evaluation.baselines import als_top_k, item_knn_top_k, popularity_top_k


def _seen() -> sp.csr_matrix:
    """6 users x 8 items; user 0 has seen 6 of the 8, so a top-5 has only 2 unseen to give."""
    rng = np.random.default_rng(0)
    dense = (rng.random((6, 8)) < 0.4).astype(np.float32)
    dense[0] = [1, 1, 1, 0, 1, 1, 0, 1]
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("baseline", ["als", "item-knn", "popularity"])
def test_no_seen_item_comes_back_and_short_rows_are_padded(baseline: str) -> None:
    seen, users, k = _seen(), np.arange(6), 5
    if baseline == "als":
        top = als_top_k(seen, users, k, ALSConfig(factors=4, iterations=3))
    elif baseline == "item-knn":
        top = item_knn_top_k(seen, users, k)
    else:
        top = popularity_top_k(seen, np.asarray(seen.sum(axis=0)).ravel(), users, k)
    assert top.shape == (6, k)
    for u in users:
        row = top[u][top[u] >= 0]
        assert not set(row) & set(seen[u].indices), (u, top[u])
        assert len(set(row)) == len(row)
    assert sorted(top[0][:2]) == [3, 6] and list(top[0][2:]) == [-1, -1, -1]
