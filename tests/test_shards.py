"""Shard planning and the per-shard slices of the user side, without Redis or Ray: every batch
lands in exactly one shard, and a shard's slice holds exactly its users' rows."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.candidates.model import UserSide
from recsys.history import UserHistory
from recsys.shards import plan_shards


@pytest.mark.parametrize(
    ("n_batches", "per_shard"), [(1, 1), (16, 1), (16, 5), (7, 100), (245, 12)]
)
def test_every_batch_is_in_exactly_one_shard(n_batches: int, per_shard: int) -> None:
    plan = plan_shards(n_batches, per_shard)
    flat = sorted(b for shard in plan for b in shard)
    assert flat == list(range(n_batches))
    assert len(plan) == -(-n_batches // per_shard)
    assert max(len(s) for s in plan) - min(len(s) for s in plan) <= 1
    # dealt round-robin: light batches (first) and heavy ones (last) mix in every shard
    if len(plan) > 1 and n_batches >= 2 * len(plan):
        assert all(shard[0] < len(plan) <= shard[-1] for shard in plan)


def test_a_shard_plan_needs_at_least_one_batch_per_shard() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_shards(10, 0)


def test_a_user_side_slice_holds_exactly_the_users_rows() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 40
    counts = rng.integers(0, 8, n_users)
    user = np.repeat(np.arange(n_users), counts)
    item = rng.integers(0, n_items, len(user)).astype(np.int32)
    ts = rng.integers(0, 10**6, len(user))
    device = rng.integers(0, 3, len(user)).astype(np.uint8)
    completion = rng.random(len(user)).astype(np.float32)
    history = UserHistory.from_events(user, item, ts, device, completion, n_users)
    seen = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=(n_users, n_items))
    side = UserSide(rng.random((n_users, 4)).astype(np.float32), seen, history)

    users = np.array([7, 3, 49, 0, 3, 21])  # any order, even a repeat
    part = side.take(users)
    np.testing.assert_array_equal(part.factors, side.factors[users])
    assert (part.seen != side.seen[users]).nnz == 0
    for j, u in enumerate(users):
        a = slice(history.offsets[u], history.offsets[u + 1])
        b = slice(part.history.offsets[j], part.history.offsets[j + 1])
        for name in ("item", "ts", "device", "completion"):
            np.testing.assert_array_equal(getattr(part.history, name)[b], getattr(history, name)[a])
        assert part.history.n_events(j) == history.n_events(int(u))
