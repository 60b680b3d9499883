"""Ranker labels from each user's last N events: one request per event, asked after the earlier
ones, folded in as the API folds in posted events (issue 14)."""

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
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
