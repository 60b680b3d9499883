"""What is held out and what is asked: the protocol's splits, what a build of a split may read,
and one request per test user with the items they went on to watch.

Every protocol only holds out events after what a build trains on (``recsys.data.split``), so a
build never reads the future it is scored on. Options of a run live here too, since the protocol
(how many folds, how many resamples) is what they describe.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.data.dataset import Dataset
from recsys.data.split import Split, leave_last_out, temporal_split, walk_forward
from recsys.evaluation.records import Window
from recsys.features import RequestContext
from recsys.feedback import positives
from recsys.ids import IdIndex
from recsys.items import ItemTable

Protocol = Literal["leave-last-out", "temporal", "walk-forward"]


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation run computes beyond the metrics, and how hard it tries."""

    folds: int = 3
    """Walk-forward: number of folds, the last ending at the last event."""
    fold_days: int = 30
    """Walk-forward: length of each test window."""
    resamples: int = 1000
    """Bootstrap resamples of the test users, for every interval."""
    permutations: int = 10_000
    """Sign-flip resamples of each paired comparison's p-value (resolution ~1/permutations)."""
    seed: int = 0
    drift_requests: int = 1000
    """Requests per side whose candidates' features are compared for drift; 0 turns drift off."""


DEFAULT_OPTIONS: Final = EvalOptions()


def protocol_splits(
    interactions: pl.DataFrame, protocol: Protocol, options: EvalOptions = DEFAULT_OPTIONS
) -> list[Split]:
    """One split per build to score: one for leave-last-out and temporal, one per fold."""
    if protocol == "walk-forward":
        return walk_forward(interactions, options.folds, options.fold_days)
    return [split_for_protocol(interactions, protocol)]


def split_for_protocol(interactions: pl.DataFrame, protocol: Protocol) -> Split:
    """The single split of leave-last-out or temporal (walk-forward has several)."""
    if protocol == "leave-last-out":
        return leave_last_out(interactions)
    if protocol == "temporal":
        return temporal_split(interactions)
    raise ValueError(f"{protocol} has one split per fold: use protocol_splits")


def train_dataset(dataset: Dataset, split: Split) -> Dataset:
    """What a build of this split may read: its training events and the catalogue."""
    return Dataset(interactions=split.train, items=dataset.items)


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_window(split: Split) -> Window:
    """When training stops and what the test holds, for the report."""
    return Window(
        train_events=split.train.height,
        test_events=split.test.height,
        train_until=_iso(split.cut_ts),
        test_until=_iso(split.test_end_ts),
    )


@dataclass(frozen=True)
class HeldOutRequests:
    """One request per test user who has training history."""

    users: np.ndarray  # int32 dense user index in the build
    user_keys: list[str]
    contexts: list[RequestContext]
    relevant: list[np.ndarray]  # item indices per user


def held_out_requests(test: pl.DataFrame, users: IdIndex, items: ItemTable) -> HeldOutRequests:
    """One request per test user with train history (``users``: the build's), at the time and
    device of their first held-out event; relevant items are all of their held-out items that
    they watched or clicked (a held-out skip or dislike is not something to recommend)."""
    test = positives(test).sort(Columns.timestamp, maintain_order=True)
    dense = users.lookup(test[Columns.user])
    test = test.with_columns(pl.Series("_u", dense)).filter(pl.col("_u") >= 0)
    grouped = test.group_by("_u", maintain_order=True).agg(
        pl.col(Columns.item), pl.col(Columns.timestamp).first(), pl.col(Columns.device).first()
    )
    keys = users.keys()
    return HeldOutRequests(
        users=grouped["_u"].to_numpy().astype(np.int32),
        user_keys=[keys[u] for u in grouped["_u"].to_list()],
        contexts=[
            RequestContext(ts=int(t), device=items.device_code(d))
            for t, d in zip(grouped[Columns.timestamp], grouped[Columns.device], strict=True)
        ],
        relevant=[
            np.array([items.index_of(i) for i in its], dtype=np.int32)
            for its in grouped[Columns.item].to_list()
        ],
    )
