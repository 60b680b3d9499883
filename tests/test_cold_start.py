"""The cold-start harness: held-out users fed through the API after their first events."""

from pathlib import Path

import polars as pl
import redis

from eval.cold_start import hold_out_users, measure
from recsys.columns import Columns
from recsys.data.synth import generate_synthetic
from tests.conftest import small_settings


def test_held_out_users_are_absent_from_training_and_ordered_in_time() -> None:
    data = generate_synthetic(n_users=120, n_items=60, seed=2, events_per_user=12)
    train, users = hold_out_users(data.interactions, 0.25, 4, seed=1)
    assert len(users) == 30
    held = {u.user_id for u in users}
    assert not held & set(train[Columns.user].cast(pl.String).to_list())
    assert train.height + sum(len(u.events) for u in users) == data.interactions.height
    for u in users:
        ts = [e["timestamp"] for e in u.events]
        assert len(ts) >= 4 and ts == sorted(ts)


def test_cold_users_are_ranked_through_the_api(redis_url: str, tmp_path: Path) -> None:
    data = generate_synthetic(n_users=250, n_items=100, seed=4, events_per_user=15)
    # deadlines no busy test machine can miss: this is about what is answered, not how fast
    settings = small_settings(
        redis_url, ann={"kind": "exact"}, serve={"deadline_ms": 10_000, "redis_timeout_ms": 5_000}
    )
    out = measure(data, settings, tmp_path, fraction=0.2, ns=[1, 3], seed=0)
    assert out["held_out_users"] == 50
    for n in ("1", "3"):
        row = out["by_events"][n]
        assert row["users"] == 50
        assert row["fallbacks"] == {"None": 50}  # every one ranked, none given popular items
        for name in ("ranked", "popular_now", "popular_all_time"):
            assert 0.0 <= row[name]["ndcg@10"] <= row[name]["hr@10"] <= 1.0
    # under a key prefix of its own, all of it removed: a configured Redis is left as it was
    with redis.Redis.from_url(redis_url) as client:
        assert not client.keys(f"{settings.key_prefix}*")
