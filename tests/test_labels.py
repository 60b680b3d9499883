"""Ranker labels from each user's last N events: one request per event, asked after the earlier
ones, folded in as the API folds in posted events (issue 14)."""

from dataclasses import replace

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
from recsys.feedback import EVENT_TYPE_DTYPE
from recsys.ids import IdIndex
from recsys.ranking.labels import last_event_labels
from recsys.ranking.training_set import fit_on_history, labelled_requests, request_states
from tests.conftest import small_settings


def test_last_n_events_are_labels_and_one_history_event_stays() -> None:
    df = pl.DataFrame(
        {
            Columns.user: [1, 2, 1, 1, 1, 2, 3],
            Columns.item: [1, 5, 2, 3, 4, 6, 7],
            Columns.timestamp: [1, 5, 2, 2, 3, 4, 9],
        }
    )
    split = last_event_labels(df, 2)
    # user 1: the last two (item 3 is the later row of a tie); user 2 keeps one history event;
    # user 3 has a single event, so no label
    assert split.labels[Columns.item].to_list() == [5, 3, 4]
    assert sorted(split.history[Columns.item].to_list()) == [1, 2, 6, 7]
    one = last_event_labels(df, 1)
    assert one.labels[Columns.item].to_list() == [5, 4]


def test_each_request_is_asked_after_the_earlier_label_events() -> None:
    data = generate_synthetic(n_users=150, n_items=80, seed=6, events_per_user=15)
    settings = small_settings(None, ranker={"labels_per_user": 3})
    split = last_event_labels(data.interactions, 3)
    devices = device_vocabulary(data.interactions)
    window = fit_on_history(split, data.items, IdIndex(data.items[Columns.item]), devices, settings)
    requests = labelled_requests(window, devices, 10_000, 0)
    assert len(requests.users) == split.labels.height  # one request per label event
    assert np.bincount(np.bincount(requests.users)).nonzero()[0].max() == 3
    assert requests.earlier is not None
    checked = 0
    for states, contexts, groups in request_states(requests, window.candidate_model, settings):
        for state, ctx, g in zip(states, contexts, groups, strict=True):
            s, e = requests.earlier.offsets[g], requests.earlier.offsets[g + 1]
            earlier = requests.earlier.item[s:e]
            # the earlier label events are the end of the history, and no longer candidates
            assert state.hist_item[len(state.hist_item) - len(earlier) :].tolist() == list(earlier)
            assert not np.isin(earlier, state.cand_item).any()
            assert ctx.ts >= (requests.earlier.ts[e - 1] if e > s else 0)
            checked += e > s
    assert checked > 100


def test_a_skip_among_the_labels_asks_nothing_and_only_leaves_the_candidates() -> None:
    """Issue 15 on issue 14's replay: a skipped label event is no request of its own (its only
    label would be negative), and as an earlier event it takes its item out of the later
    requests' candidates without joining their history."""
    data = generate_synthetic(n_users=150, n_items=80, seed=6, events_per_user=15)
    settings = small_settings(None, ranker={"labels_per_user": 3})
    split = last_event_labels(data.interactions, 3)
    skipped = pl.int_range(pl.len()) % 3 == 1  # the middle label event of most users
    labels = split.labels.with_columns(
        pl.when(skipped)
        .then(pl.lit("skip", dtype=EVENT_TYPE_DTYPE))
        .otherwise(pl.col(Columns.event_type))
        .alias(Columns.event_type)
    )
    split = replace(split, labels=labels)
    n_skips = int(labels.select(skipped.sum()).item())
    devices = device_vocabulary(data.interactions)
    window = fit_on_history(split, data.items, IdIndex(data.items[Columns.item]), devices, settings)
    requests = labelled_requests(window, devices, 10_000, 0)
    assert n_skips > 50 and len(requests.users) == labels.height - n_skips
    assert (requests.label_grades > 0).all()
    assert requests.earlier is not None and not requests.earlier.positive.all()
    checked = 0
    for states, _, groups in request_states(requests, window.candidate_model, settings):
        for state, g in zip(states, groups, strict=True):
            s, e = requests.earlier.offsets[g], requests.earlier.offsets[g + 1]
            earlier = requests.earlier.item[s:e]
            liked = earlier[requests.earlier.positive[s:e]]
            disliked = earlier[~requests.earlier.positive[s:e]]
            assert not np.isin(earlier, state.cand_item).any()
            tail = state.hist_item[len(state.hist_item) - len(liked) :] if len(liked) else []
            assert list(tail) == list(liked)
            if len(disliked):
                assert not np.isin(disliked, state.hist_item[-len(earlier) :]).any()
                checked += 1
    assert checked > 50
