"""Merging source lists into one candidate list per user, vectorised over a batch of users.

Rules: seen items and blanks are dropped; each source offers its first ``width`` unseen items
(so a source flag means "in this source's top ``width`` for this user", whatever the batch);
each source fills up to its quota with items no earlier source took (sources in priority
order); remaining slots go to the leftovers in the same order (ALS first); an item found by
several sources keeps all their flags, and the score of its first finder.

Everything is row-wise work on one [users x all source columns] matrix: per-row sorts of a few
hundred entries and cumulative sums, no sort over the whole batch (4x faster than the lexsort
version on 200k users, measured in bench/).
"""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.source import FLAG_DTYPE


@dataclass(frozen=True)
class SourceList:
    items: np.ndarray  # [B, W] best first, -1 = blank
    flag: int  # the source's bit (SourceSpec.flag)
    quota: int
    width: int  # unseen items of each row this source offers (>= quota)
    scores: np.ndarray | None = None  # [B, W] stage-1 scores when the source knows them


@dataclass(frozen=True)
class Merged:
    offsets: np.ndarray  # int64 [B+1]
    items: np.ndarray  # int32 [N], each row in source-priority order
    flags: np.ndarray  # uint16 [N]
    scores: np.ndarray  # float32 [N], nan where no source knew the score


BITMAP_BYTES = 64 << 20


def is_seen(items: np.ndarray, seen_keys: np.ndarray, n_items: int) -> np.ndarray:
    """[B, W] mask of ``items`` that row b has seen; ``seen_keys`` are ``b * n_items + item``.

    A dense [rows x items] bitmap per chunk of rows makes this a gather (7x faster than a
    binary search of the keys at 20k items)."""
    out = np.zeros(items.shape, dtype=bool)
    if len(seen_keys) == 0:
        return out
    b = items.shape[0]
    chunk = max(1, BITMAP_BYTES // max(n_items, 1))
    seen_row, seen_item = np.divmod(seen_keys, n_items)
    bounds = np.searchsorted(seen_row, np.arange(0, b + chunk, chunk))
    for c, start in enumerate(range(0, b, chunk)):
        rows = slice(start, min(start + chunk, b))
        bitmap = np.zeros((rows.stop - rows.start, n_items), dtype=bool)
        lo, hi = bounds[c], bounds[c + 1]
        bitmap[seen_row[lo:hi] - start, seen_item[lo:hi]] = True
        block = items[rows]
        hit = np.take_along_axis(bitmap, np.clip(block, 0, n_items - 1), axis=1)
        out[rows] = hit & (block >= 0)
    return out


def first_occurrences(
    items: np.ndarray, valid: np.ndarray, flags: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: which valid entries are the first of their item (in column order), and the OR of
    the flags of all valid entries of that item, placed on the first one."""
    b, w = items.shape
    keyed = np.where(valid, items, np.iinfo(np.int64).max)
    order = np.argsort(keyed, axis=1, kind="stable")  # equal items stay in column order
    sorted_items = np.take_along_axis(keyed, order, axis=1)
    sorted_valid = np.take_along_axis(valid, order, axis=1)
    starts = np.ones((b, w), dtype=bool)
    starts[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    flat_start = starts.ravel()
    sorted_flags = np.take_along_axis(np.where(valid, flags, 0).astype(FLAG_DTYPE), order, axis=1)
    group_or = np.bitwise_or.reduceat(sorted_flags.ravel(), np.flatnonzero(flat_start))
    group_id = np.cumsum(flat_start) - 1
    first_sorted = starts & sorted_valid
    first = np.zeros((b, w), dtype=bool)
    np.put_along_axis(first, order, first_sorted, axis=1)
    all_flags = np.zeros((b, w), dtype=FLAG_DTYPE)
    np.put_along_axis(all_flags, order, group_or[group_id].reshape(b, w), axis=1)
    return first, np.where(first, all_flags, 0).astype(FLAG_DTYPE)


def merge(lists: list[SourceList], seen_keys: np.ndarray, n_items: int, per_user: int) -> Merged:
    items = np.concatenate([sl.items.astype(np.int64) for sl in lists], axis=1)
    scores = np.concatenate(
        [
            sl.scores.astype(np.float32)
            if sl.scores is not None
            else np.full(sl.items.shape, np.nan, np.float32)
            for sl in lists
        ],
        axis=1,
    )
    valid = (items >= 0) & ~is_seen(items, seen_keys, n_items)
    bounds = np.cumsum([0] + [sl.items.shape[1] for sl in lists])
    flags = np.zeros(items.shape, dtype=FLAG_DTYPE)
    for s, sl in enumerate(lists):  # a source offers only its first `width` unseen items
        block = slice(bounds[s], bounds[s + 1])
        valid[:, block] &= np.cumsum(valid[:, block], axis=1) <= sl.width
        flags[:, block] = sl.flag
    first, all_flags = first_occurrences(items, valid, flags)

    in_quota = np.zeros(items.shape, dtype=bool)
    for s, sl in enumerate(lists):
        block = slice(bounds[s], bounds[s + 1])
        in_quota[:, block] = first[:, block] & (np.cumsum(first[:, block], axis=1) <= sl.quota)
    taken = in_quota.sum(axis=1, keepdims=True)
    rest = first & ~in_quota
    chosen = in_quota | (rest & (np.cumsum(rest, axis=1) <= per_user - taken))
    chosen &= np.cumsum(chosen, axis=1) <= per_user  # quotas summing past per_user

    counts = chosen.sum(axis=1)
    return Merged(
        offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        items=items[chosen].astype(np.int32),
        flags=all_flags[chosen],
        scores=scores[chosen],
    )
