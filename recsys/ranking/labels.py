"""Where the ranker's labels come from, and the guarantee that features never see them.

The ranker learns from requests whose features are computed from ``history`` only and whose
labels are the events in ``labels``. Two ways to cut:

- temporal: one global cut; labels are every event at or after it (a production log: this is
  what tomorrow looks like to today's model).
- last-event: each user's last events are the labels (logs where users arrive in short bursts,
  like MovieLens, where a global cut leaves a few dozen users with both history and labels: on
  ml-latest-small the last 10% of time holds 74 users, 27 of them with earlier events). Each
  label event is a request of its own, asked after the user's earlier label events
  (``recsys.ranking.training_set.next_event_requests``): the question the API answers after
  every watch, since it folds posted events into the history before ranking.
"""

from dataclasses import dataclass
from typing import Literal

import polars as pl

from recsys.columns import Columns
from recsys.config import RankerConfig
from recsys.data.split import leave_last_out, scoreable


@dataclass(frozen=True)
class LabelSplit:
    history: pl.DataFrame
    labels: pl.DataFrame  # label events of users that also have history, unseen items only
    mode: Literal["temporal", "last-event"]
    cut_ts: int | None  # global cut (temporal), None for per-user cuts


def temporal_labels(
    interactions: pl.DataFrame, label_window_frac: float, cut_ts: int | None = None
) -> LabelSplit:
    """Labels are every event at or after ``cut_ts`` (default: the last ``label_window_frac``)."""
    cut = (
        int(interactions[Columns.timestamp].quantile(1.0 - label_window_frac, "higher") or 0)
        if cut_ts is None
        else cut_ts
    )
    history = interactions.filter(pl.col(Columns.timestamp) < cut)
    labels = interactions.filter(pl.col(Columns.timestamp) >= cut)
    return LabelSplit(history, scoreable(labels, history), "temporal", cut)


def last_event_labels(interactions: pl.DataFrame, per_user: int = 1) -> LabelSplit:
    """Each user's last ``per_user`` events are labels (users keep at least one history event);
    with one, exactly ``leave_last_out``. Among equal timestamps the later row is later."""
    if per_user == 1:
        split = leave_last_out(interactions)
        return LabelSplit(split.train, scoreable(split.test, split.train), "last-event", None)
    row, from_end = "__label_row", "__from_end"
    numbered = (
        interactions.with_row_index(row)
        .sort([Columns.user, Columns.timestamp, row])
        .with_columns(
            # 1 for the user's last event, 2 for the one before, ...
            (pl.len() - pl.int_range(pl.len())).over(Columns.user).alias(from_end)
        )
        .sort(row)
    )
    n = pl.len().over(Columns.user)
    is_label = (pl.col(from_end) <= per_user) & (pl.col(from_end) < n)
    history = numbered.filter(~is_label).drop(row, from_end)
    labels = numbered.filter(is_label).drop(row, from_end)
    return LabelSplit(history, scoreable(labels, history), "last-event", None)


def split_for_labels(interactions: pl.DataFrame, cfg: RankerConfig) -> LabelSplit:
    last_events = cfg.labels_per_user
    if cfg.label_split == "last-event":
        return last_event_labels(interactions, last_events)
    temporal = temporal_labels(interactions, cfg.label_window_frac)
    if cfg.label_split == "temporal":
        return temporal
    n_users = temporal.labels[Columns.user].n_unique()
    return (
        temporal if n_users >= cfg.min_label_users else last_event_labels(interactions, last_events)
    )
