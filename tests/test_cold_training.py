"""The ranker also learns from cold-like requests: users left out of its stage 1, asked after
their first events with the state the API makes for a user it never saw (issue 14)."""

from pathlib import Path

import numpy as np
import polars as pl
import redis

from recsys.columns import Columns
from recsys.data.dataset import Dataset
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
from recsys.events_index import index_events
from recsys.feedback import is_positive
from recsys.ids import IdIndex
from recsys.pipeline import run_build
from recsys.ranking.labels import last_event_labels
from recsys.ranking.training_set import cold_like_requests, hold_out_cold_users
from recsys.serving import ServingModel, cold_start_state
from recsys.store.events import WatchEvent
from tests.conftest import small_settings


def test_cold_users_leave_the_split_whole_and_are_drawn_alike_for_any_id_type() -> None:
    data = generate_synthetic(n_users=200, n_items=80, seed=3, events_per_user=10)
    cfg = small_settings(None, ranker={"cold_start_users": 0.1}).ranker
    split = last_event_labels(data.interactions, 2)
    warm, cold = hold_out_cold_users(split, cfg)
    held = set(cold[Columns.user].unique().to_list())
    assert len(held) == round(0.1 * split.labels[Columns.user].n_unique()) == 20
    for part in (warm.history, warm.labels):
        assert not held & set(part[Columns.user].to_list())
    assert warm.history.height + warm.labels.height + cold.height == (
        split.history.height + split.labels.height
    )
    as_text = last_event_labels(
        data.interactions.with_columns(pl.col(Columns.user).cast(pl.String)), 2
    )
    _, cold_text = hold_out_cold_users(as_text, cfg)
    assert set(cold_text[Columns.user].unique().to_list()) == {str(u) for u in held}
    off = small_settings(None, ranker={"cold_start_users": 0.0}).ranker
    assert hold_out_cold_users(split, off)[1].height == 0


def test_cold_like_requests_are_the_states_the_api_makes(redis_url: str, tmp_path: Path) -> None:
    data = generate_synthetic(n_users=160, n_items=70, seed=6, events_per_user=12)
    users = data.interactions[Columns.user].unique().sort()
    left_out = users[:12].implode()
    known = data.interactions.filter(~pl.col(Columns.user).is_in(left_out))
    settings = small_settings(
        redis_url, ann={"kind": "exact"}, ranker={"cold_start_users": 0.1, "cold_start_events": 3}
    )
    build = run_build(
        Dataset(known, data.items), tmp_path, redis.Redis.from_url(redis_url), settings
    )
    model = ServingModel.load(tmp_path, build.version)  # what the API answers a new user with
    new = data.interactions.filter(pl.col(Columns.user).is_in(left_out))
    item_ids, devices = IdIndex(data.items[Columns.item]), device_vocabulary(data.interactions)
    checked = 0
    for _, rows in new.sort(Columns.timestamp).group_by(Columns.user, maintain_order=True):
        events = index_events(rows, IdIndex.from_values(rows[Columns.user]), item_ids, devices)
        log = rows.rows(named=True)
        for state, ctx, rel in cold_like_requests(events, build.candidate_model, settings):
            at = next(j for j, r in enumerate(log) if r[Columns.timestamp] == ctx.ts)
            watched_before = sum(is_positive(r[Columns.event_type]) for r in log[:at])
            assert 1 <= watched_before <= 3  # after the first 1, 2 or 3 watches
            posted = [
                WatchEvent(
                    r[Columns.item],
                    r[Columns.timestamp],
                    r[Columns.device],
                    r[Columns.completion],
                    type=r[Columns.event_type],
                )
                for r in log[:at]
            ]
            api_state = cold_start_state(model, posted)  # every event before, skips included
            assert api_state is not None
            for field in ("cand_item", "cand_score", "cand_sources", "hist_item", "hist_ts"):
                np.testing.assert_array_equal(getattr(state, field), getattr(api_state, field))
            assert api_state.n_events == state.n_events == watched_before
            assert rel[state.cand_item == model.items.index_of(log[at][Columns.item])] > 0
            assert (rel > 0).sum() == 1
            checked += 1
    assert checked > 12  # most left-out users' next items are among their candidates
