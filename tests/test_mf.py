"""Stage-1 matrix factorisation inputs: repeated events add up without overflowing."""

import numpy as np

from recsys.config import ALSConfig
from recsys.mf import fit_als, interaction_matrix

F32_MAX = float(np.finfo(np.float32).max)


def test_duplicate_large_weights_sum_without_overflow() -> None:
    """Issue 12: two events of weight 3e38 for one (user, item) summed to inf in float32, and
    ALS turned the inf into NaN factors for everyone."""
    rng = np.random.default_rng(0)
    users = np.concatenate([[0, 0], rng.integers(0, 40, 400)]).astype(np.int32)
    items = np.concatenate([[3, 3], rng.integers(0, 30, 400)]).astype(np.int32)
    weights = np.concatenate([[3e38, 3e38], np.ones(400)]).astype(np.float32)
    m = interaction_matrix(users, items, weights, 40, 30)
    assert m.dtype == np.float32
    assert np.isfinite(m.data).all()
    assert m[0, 3] == np.float32(F32_MAX)  # capped at float32's largest value, not inf
    factors = fit_als(m, ALSConfig(factors=8, iterations=3))
    assert np.isfinite(factors.user).all() and np.isfinite(factors.item).all()


def test_repeat_views_still_add_up() -> None:
    m = interaction_matrix(
        np.array([0, 0, 1], dtype=np.int32),
        np.array([2, 2, 0], dtype=np.int32),
        np.array([1.5, 2.0, 1.0], dtype=np.float32),
        2,
        3,
    )
    assert m[0, 2] == 3.5 and m[1, 0] == 1.0 and m.nnz == 2
