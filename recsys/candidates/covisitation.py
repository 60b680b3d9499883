"""Item-to-item weights from the order of events: what people watch next, and what they watch
close together.

For every user's time-ordered events, each event is paired with the next ``window`` events of the
same user that follow within ``max_gap_s``. A pair (a then b) weighs
``position_decay ** (lag - 1) * 0.5 ** (age / half_life)``: the nearer b follows a, and the more
recent b is, the more it counts (the co-visitation matrices of the winning Kaggle OTTO
solutions weigh pairs by time and recency the same way). Two tables come out, each the top
``neighbours`` items per item:

- ``transitions`` (directed, a -> b): the decayed weight of b following a, divided by all of
  a's outgoing weight, so a value is the estimated probability that b comes next (a Markov
  chain's row, kept to its largest entries);
- ``covisits`` (undirected): how many times a and b were watched within the window of each
  other, in either order; a plain count, so one watch pair is worth 1.

Repeat views (a then a) are not pairs. Weights are summed as integers (units of 2**-20), so
the tables do not depend on the order polars happens to sum in, nor on how users are numbered:
floating-point sums would, in their last bits, and features must match bit for bit wherever the
same events are given.

Cost is linear in the events, with memory bounded by a partition. The events are sorted by (user,
time) once, and their positions grouped by partition of their item (``item % partitions``) in one
stable pass. A partition then gathers its pairs straight from its positions: position ``p`` pairs
with ``p + lag`` (and ``p - lag`` for the undirected counts) when both are the same user's events
within the gap. So each event is read ``2 * window`` times in all, whatever the number of
partitions, and the polars aggregation holds one partition's pairs. (The first version filtered
lag-shifted copies of all events once per partition: partitions x events.)
``bench/sequence_scale.py`` measures time and memory.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recsys.candidates.neighbours import ItemNeighbours

if TYPE_CHECKING:  # recsys.config imports the candidate sources, which use this module
    from recsys.config import SequenceConfig

_U, _I, _T, _W = "u", "i", "t", "w"
_SRC, _DST, _VAL = "src", "dst", "val"
_UNIT = 2.0**20  # weight quantum: sums of whole units are exact in any order


@dataclass(frozen=True)
class CovisitParams:
    """How pairs are formed and weighed (``recsys.config.SequenceConfig`` holds the defaults)."""

    window: int  # next events of the same user paired with each event
    max_gap_s: int  # ... at most this long after it
    position_decay: float  # weight of the k-th next event: position_decay ** (k - 1)
    half_life_days: float  # a pair this old (its later event, before as_of_ts) weighs half
    neighbours: int  # kept per item
    partitions: int = 1  # source items processed in this many groups (memory / time trade)

    @classmethod
    def from_config(cls, cfg: "SequenceConfig", n_events: int) -> "CovisitParams":
        """The settings' values, with one partition per ``events_per_partition`` events."""
        return cls(
            window=cfg.window,
            max_gap_s=int(cfg.max_gap_days * 86400),
            position_decay=cfg.position_decay,
            half_life_days=cfg.half_life_days,
            neighbours=cfg.neighbours,
            partitions=max(1, -(-n_events // cfg.events_per_partition)),
        )


@dataclass(frozen=True)
class SequenceTables:
    transitions: ItemNeighbours  # directed: sims = P(next = b | a), best first
    covisits: ItemNeighbours  # undirected: sims = co-visit count, largest first


@dataclass(frozen=True)
class _SortedEvents:
    """Events in (user, time) order as arrays, and their positions grouped by partition."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    ts: np.ndarray  # int64
    weight: np.ndarray  # float64, recency weight
    by_partition: np.ndarray  # positions, partition 0's first, each partition's in time order
    bounds: np.ndarray  # partition k's positions: by_partition[bounds[k]:bounds[k + 1]]


def _sorted_events(
    user: np.ndarray,
    item: np.ndarray,
    ts: np.ndarray,
    as_of_ts: int,
    half_life_days: float,
    partitions: int,
) -> _SortedEvents:
    """Events in (user, time) order with each one's recency weight. Among equal timestamps the
    input order is kept (stable sort), so ties follow the log's row order."""
    frame = pl.DataFrame(
        {
            _U: user.astype(np.int32, copy=False),
            _I: item.astype(np.int32, copy=False),
            _T: ts.astype(np.int64, copy=False),
        }
    ).sort([_U, _T], maintain_order=True)
    age_days = (as_of_ts - pl.col(_T)).clip(lower_bound=0) / 86400.0
    frame = frame.with_columns((0.5 ** (age_days / half_life_days)).alias(_W))
    items = frame[_I].to_numpy()
    part = items % partitions
    # numpy sorts 16-bit keys stably by radix: one linear pass
    key = part.astype(np.uint16) if partitions <= 2**16 else part
    return _SortedEvents(
        user=frame[_U].to_numpy(),
        item=items,
        ts=frame[_T].to_numpy(),
        weight=frame[_W].to_numpy(),
        by_partition=np.argsort(key, kind="stable"),
        bounds=np.r_[0, np.cumsum(np.bincount(part, minlength=partitions))],
    )


def _pairs(
    events: _SortedEvents, params: CovisitParams, positions: np.ndarray, forward: bool
) -> pl.LazyFrame:
    """Pairs (src, dst) whose src is the event at one of ``positions``, dst within ``window``
    events of src: after it (``forward``, with the pair's weight) or before it (the other half
    of the undirected counts)."""
    frames = []
    n = len(events.item)
    for lag in range(1, params.window + 1):
        src = positions[positions < n - lag] if forward else positions[positions >= lag]
        dst = src + lag if forward else src - lag
        gap = events.ts[dst] - events.ts[src] if forward else events.ts[src] - events.ts[dst]
        ok = (
            (events.user[dst] == events.user[src])
            & (gap <= params.max_gap_s)
            & (events.item[dst] != events.item[src])
        )
        src, dst = src[ok], dst[ok]
        frame = pl.DataFrame({_SRC: events.item[src], _DST: events.item[dst]})
        if forward:
            scale = params.position_decay ** (lag - 1) * _UNIT
            weight = pl.Series(_W, events.weight[dst]) * scale
            frame = frame.with_columns(weight.round().cast(pl.Int64))
        frames.append(frame.lazy())
    return pl.concat(frames)


def _top_n(scores: pl.LazyFrame, n: int) -> pl.DataFrame:
    """The ``n`` largest ``val`` per ``src``; ties by the smaller ``dst`` (deterministic)."""
    return (
        scores.sort([_SRC, _VAL, _DST], descending=[False, True, False])
        .group_by(_SRC, maintain_order=True)
        .head(n)
        .collect()
    )


def _scatter(rows: pl.DataFrame, n_items: int, n: int) -> ItemNeighbours:
    """Top-n rows (src, dst, val; src-sorted, best first) into [n_items, n] arrays."""
    ids = np.full((n_items, n), -1, dtype=np.int32)
    sims = np.full((n_items, n), -np.inf, dtype=np.float32)
    if rows.height:
        src = rows[_SRC].to_numpy()
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        pos = np.arange(len(src)) - np.repeat(starts, np.diff(np.r_[starts, len(src)]))
        ids[src, pos] = rows[_DST].to_numpy()
        sims[src, pos] = rows[_VAL].to_numpy()
    return ItemNeighbours(ids=ids, sims=sims)


def sequence_tables(
    user: np.ndarray,
    item: np.ndarray,
    ts: np.ndarray,
    n_items: int,
    as_of_ts: int,
    params: CovisitParams,
) -> SequenceTables:
    """Both tables from events given as parallel arrays (dense user and item indices)."""
    events = _sorted_events(user, item, ts, as_of_ts, params.half_life_days, params.partitions)
    directed, undirected = [], []
    for part in range(params.partitions):
        positions = events.by_partition[events.bounds[part] : events.bounds[part + 1]]
        forward = _pairs(events, params, positions, forward=True)
        probabilities = (
            forward.group_by(_SRC, _DST)
            .agg(pl.col(_W).sum())
            .with_columns((pl.col(_W) / pl.col(_W).sum().over(_SRC)).alias(_VAL))
            .filter(pl.col(_W) > 0)
            .select(_SRC, _DST, pl.col(_VAL).cast(pl.Float32))
        )
        directed.append(_top_n(probabilities, params.neighbours))
        both = pl.concat([forward.drop(_W), _pairs(events, params, positions, forward=False)])
        counts = both.group_by(_SRC, _DST).agg(pl.len().cast(pl.Float32).alias(_VAL))
        undirected.append(_top_n(counts, params.neighbours))
    n = params.neighbours

    def table(parts: list[pl.DataFrame]) -> ItemNeighbours:
        rows = pl.concat(parts).sort(_SRC, maintain_order=True) if parts else pl.DataFrame()
        return _scatter(rows, n_items, n)

    return SequenceTables(transitions=table(directed), covisits=table(undirected))
