"""Merging source lists into one candidate list per user, vectorised over a batch of users.

Rules: seen items and blanks are dropped; each source offers its first ``width`` unseen items
(so a source flag means "in this source's top ``width`` for this user", whatever the batch);
each source fills up to its quota with items no
earlier source took (sources in priority order); remaining slots go to the leftovers in the same
order (ALS first); an item found by several sources keeps all their flags.
"""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.sources import Source


@dataclass(frozen=True)
class SourceList:
    items: np.ndarray  # [B, W] best first, -1 = blank
    flag: Source
    quota: int
    width: int  # unseen items of each row this source offers (>= quota)


@dataclass(frozen=True)
class Merged:
    offsets: np.ndarray  # int64 [B+1]
    items: np.ndarray  # int32 [N], rows in no particular order
    flags: np.ndarray  # uint8 [N]


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0, 1, 2... within runs of equal ``group`` values (``group`` must be sorted)."""
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    return np.arange(len(group)) - run_start


def merge(lists: list[SourceList], seen_keys: np.ndarray, n_items: int, per_user: int) -> Merged:
    """``seen_keys``: sorted int64 ``row * n_items + item`` of what each batch row has seen."""
    b = lists[0].items.shape[0]
    parts = []
    for priority, sl in enumerate(lists):
        w = sl.items.shape[1]
        parts.append(
            (
                np.repeat(np.arange(b, dtype=np.int64), w),
                sl.items.astype(np.int64).ravel(),
                np.full(b * w, priority, dtype=np.int64),
                np.tile(np.arange(w, dtype=np.int64), b),
            )
        )
    row, item, prio, pos = (np.concatenate(x) for x in zip(*parts, strict=True))
    key = row * n_items + item
    ok = item >= 0
    if len(seen_keys):
        ok &= ~np.isin(key, seen_keys)
    row, item, prio, pos, key = row[ok], item[ok], prio[ok], pos[ok], key[ok]
    if len(key) == 0:
        return Merged(np.zeros(b + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.uint8))
    # each source offers only its first `width` unseen items per row (rows are in position order)
    order = np.lexsort((pos, prio, row))
    row, item, prio, pos, key = row[order], item[order], prio[order], pos[order], key[order]
    width = np.array([sl.width for sl in lists], dtype=np.int64)
    offered = _rank_within(row * len(lists) + prio) < width[prio]
    row, item, prio, pos, key = (
        row[offered],
        item[offered],
        prio[offered],
        pos[offered],
        key[offered],
    )
    flag_of = np.array([sl.flag for sl in lists], dtype=np.uint8)[prio]

    # one entry per (row, item): the first in priority order, carrying every finder's flag
    order = np.lexsort((pos, prio, key))
    key, row, item, prio, pos, flag_of = (a[order] for a in (key, row, item, prio, pos, flag_of))
    first = np.r_[True, key[1:] != key[:-1]]
    starts = np.flatnonzero(first)
    flags = np.bitwise_or.reduceat(flag_of, starts) if len(starts) else flag_of[:0]
    row, item, prio, pos = row[first], item[first], prio[first], pos[first]

    # quotas, then leftovers, both in (priority, position) order within each row
    order = np.lexsort((pos, prio, row))
    row, item, prio, flags = row[order], item[order], prio[order], flags[order]
    quota = np.array([sl.quota for sl in lists], dtype=np.int64)
    in_quota = _rank_within(row * len(lists) + prio) < quota[prio]
    taken_quota = np.bincount(row[in_quota], minlength=b)
    rest = ~in_quota
    fill_rank = np.zeros(len(row), dtype=np.int64)
    fill_rank[rest] = _rank_within(row[rest])
    chosen = in_quota | (rest & (fill_rank < per_user - taken_quota[row]))
    # quotas summing past per_user: keep the first per_user chosen in priority order
    chosen_rank = np.full(len(row), per_user, dtype=np.int64)
    chosen_rank[chosen] = _rank_within(row[chosen])
    chosen &= chosen_rank < per_user

    row, item, flags = row[chosen], item[chosen], flags[chosen]
    counts = np.bincount(row, minlength=b)
    return Merged(
        offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        items=item.astype(np.int32),
        flags=flags.astype(np.uint8),
    )
