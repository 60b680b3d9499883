"""Ranking metrics of top-k recommendation lists, with binary relevance.

Inputs, shared by every metric:

* ``recommended`` is an integer array ``[n_users, K]`` of item indices ranked best first. Rows
  with fewer than ``K`` items are padded with ``-1`` (any negative value is padding and never
  counts). Only the first ``min(k, K)`` columns are scored: when ``K < k`` the missing positions
  count as misses, they are not an error.
* ``relevant[u]`` is an integer array of the items relevant to user ``u`` (binary relevance; a
  repeated item counts once). ``|rel_u|`` below is the number of distinct relevant items.
* An item that appears more than once in a row counts only at its first (best) rank; later
  copies are misses. A recommender cannot earn credit twice for the same item.

Per-user definitions, with ``hit(u, r) = 1`` when the item at 1-based rank ``r`` of user ``u``
is relevant (and is its first occurrence in the row), else ``0``:

* ``NDCG@k = DCG@k / IDCG@k`` where ``DCG@k = sum_{r=1..min(k,K)} hit(u, r) / log2(r + 1)`` and
  ``IDCG@k = sum_{r=1..min(|rel_u|, k)} 1 / log2(r + 1)``. The ideal list has ``k`` positions
  even when the recommender returned fewer (``K < k``), so a short list is penalised.
* ``HitRate@k = 1`` if ``sum_r hit(u, r) > 0`` else ``0``.
* ``Recall@k = sum_r hit(u, r) / |rel_u|`` (the denominator is not capped at ``k``).
* ``MRR@k = 1 / r*`` where ``r*`` is the rank of the first hit within the top ``k``, else ``0``.

A user with no relevant items has no defined value for any of these metrics: every per-user
function returns ``nan`` for that user, and :func:`summarize` (a ``nanmean``) leaves them out of
the average, so all four metrics average over the same users.

* ``Coverage@k = |{items in any user's top k}| / n_items`` (padding excluded), one number for
  the whole population.
* ``PopPct@k``: the mean popularity percentile of the items in a user's top k (padding
  excluded), ``nan`` for an empty list. An item's percentile is its mid-rank among all catalogue
  items by training events, scaled to ``[0, 1]``: ``(rank - 1) / (n_items - 1)`` with ties
  sharing their average rank, so the most watched item is 1, never-watched items share the
  bottom, and the catalogue averages exactly 0.5. Comparing it with the same number for the
  held-out items (what users really watched next) gives the popularity bias of a recommender.

Everything is vectorised: the hits are found by encoding each ``(user, item)`` pair as the
integer ``user * n + item`` and binary-searching the sorted relevant pairs, so 100k users x
k=100 take well under a second and no Python loop runs per recommended item.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Hits",
    "catalogue_coverage",
    "hit_rate_at_k",
    "mean_popularity_percentile",
    "mrr_at_k",
    "ndcg_at_k",
    "popularity_percentile",
    "ranking_metrics_at_k",
    "recall_at_k",
    "summarize",
]

IntArray = npt.NDArray[np.integer[Any]]
FloatArray = npt.NDArray[np.float64]


def _top_k(recommended: npt.ArrayLike, k: int) -> npt.NDArray[np.int64]:
    """Validate ``recommended`` and keep its first ``min(k, K)`` columns as int64."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D [n_users, K], got shape {rec.shape}")
    if rec.size and rec.dtype.kind not in "iu":
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    return rec[:, : int(k)].astype(np.int64, copy=False)


def _relevant_pairs(
    relevant: Sequence[npt.ArrayLike], n_users: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Flatten ``relevant`` into (user, item) columns; the one pass over users that is needed."""
    if len(relevant) != n_users:
        raise ValueError(f"relevant has {len(relevant)} entries but recommended has {n_users} rows")
    arrays = [np.asarray(r).ravel() for r in relevant]
    for u, a in enumerate(arrays):
        # Empty arrays are accepted whatever their dtype: np.array([]) is float64.
        if a.size and a.dtype.kind not in "iu":
            raise ValueError(f"relevant[{u}] must hold integer item indices, got dtype {a.dtype}")
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=n_users)
    if not lengths.sum():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    items = np.concatenate([a.astype(np.int64, copy=False) for a in arrays if a.size])
    if items.min() < 0:
        raise ValueError("relevant items must be non-negative item indices")
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    return users, items


def _hits(
    recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The hit matrix ``[n_users, min(k, K)]`` and the distinct relevant count of each user.

    A cell is a hit when its item is relevant to the row's user and is the item's first
    occurrence in the row. Pairs are encoded as ``user * n + item`` (``n`` = largest item + 1),
    the relevant codes are sorted once and every recommended code is binary-searched; the
    duplicate rule is applied on the (few) hits only, via the first occurrence of each matched
    relevant pair in row-major order, which is rank order within a user.
    """
    rec = _top_k(recommended, k)
    n_users, width = rec.shape
    rel_users, rel_items = _relevant_pairs(relevant, n_users)

    pad = rec < 0
    max_item = max(
        int(rec.max(initial=-1)),
        int(rel_items.max(initial=-1)),
    )
    n = max(max_item + 1, 1)
    if n_users > np.iinfo(np.int64).max // n:
        raise ValueError("too many users x items to encode (user, item) pairs in int64")

    rel_codes = np.unique(rel_users * n + rel_items)  # sorted, distinct
    n_relevant = np.bincount(rel_codes // n, minlength=n_users).astype(np.int64)

    hits = np.zeros(n_users * width, dtype=bool)
    if rel_codes.size and hits.size:
        codes = np.arange(n_users, dtype=np.int64)[:, None] * n + rec
        codes[pad] = -1  # never matches: every relevant code is >= 0
        flat = codes.ravel()
        pos = np.searchsorted(rel_codes, flat)
        np.minimum(pos, rel_codes.size - 1, out=pos)
        matched = np.flatnonzero(rel_codes[pos] == flat)
        # First occurrence of each (user, item) pair; np.unique's index is the first one.
        _, first = np.unique(pos[matched], return_index=True)
        hits[matched[first]] = True
    return hits.reshape(n_users, width), n_relevant


def _discounts(length: int) -> FloatArray:
    """``1 / log2(r + 1)`` for ranks ``r = 1..length``."""
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


def _no_relevant_to_nan(values: FloatArray, n_relevant: npt.NDArray[np.int64]) -> FloatArray:
    values[n_relevant == 0] = np.nan
    return values


def _ndcg(hits: npt.NDArray[np.bool_], n_relevant: npt.NDArray[np.int64], k: int) -> FloatArray:
    dcg = hits.astype(np.float64) @ _discounts(hits.shape[1])
    ideal_cum = np.concatenate(([0.0], np.cumsum(_discounts(k))))
    idcg = ideal_cum[np.minimum(n_relevant, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, dcg / idcg, np.nan)


def _hit_rate(hits: npt.NDArray[np.bool_], n_relevant: npt.NDArray[np.int64]) -> FloatArray:
    return _no_relevant_to_nan(np.asarray(hits.any(axis=1), dtype=np.float64), n_relevant)


def _recall(hits: npt.NDArray[np.bool_], n_relevant: npt.NDArray[np.int64]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, hits.sum(axis=1) / n_relevant, np.nan)


def _mrr(hits: npt.NDArray[np.bool_], n_relevant: npt.NDArray[np.int64]) -> FloatArray:
    if hits.shape[1] == 0:
        return _no_relevant_to_nan(np.zeros(hits.shape[0], dtype=np.float64), n_relevant)
    first = hits.argmax(axis=1)  # 0 when no hit; masked below
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return _no_relevant_to_nan(rr, n_relevant)


def ndcg_at_k(recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int) -> FloatArray:
    """Per-user NDCG@k (binary gains, ``1 / log2(rank + 1)`` discount); ``nan`` if none relevant."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _ndcg(hits, n_relevant, int(k))


def hit_rate_at_k(
    recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int
) -> FloatArray:
    """Per-user 1.0 if any of the top k is relevant, else 0.0; ``nan`` without relevant items."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _hit_rate(hits, n_relevant)


def recall_at_k(
    recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int
) -> FloatArray:
    """Per-user hits in the top k / number of relevant items; ``nan`` without relevant items."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _recall(hits, n_relevant)


def mrr_at_k(recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int) -> FloatArray:
    """Per-user 1/rank of the first relevant item in the top k, else 0; ``nan`` without any."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _mrr(hits, n_relevant)


@dataclass(frozen=True)
class Hits:
    """One hit matrix at k, from which every per-user metric is read (for callers that report
    several of them: the matrix is the expensive part)."""

    hits: npt.NDArray[np.bool_]
    n_relevant: npt.NDArray[np.int64]
    k: int

    @classmethod
    def at_k(cls, recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int) -> "Hits":
        hits, n_relevant = _hits(recommended, relevant, k)
        return cls(hits, n_relevant, int(k))

    def ndcg(self) -> FloatArray:
        return _ndcg(self.hits, self.n_relevant, self.k)

    def hit_rate(self) -> FloatArray:
        return _hit_rate(self.hits, self.n_relevant)

    def recall(self) -> FloatArray:
        return _recall(self.hits, self.n_relevant)

    def mrr(self) -> FloatArray:
        return _mrr(self.hits, self.n_relevant)


def ranking_metrics_at_k(
    recommended: npt.ArrayLike, relevant: Sequence[npt.ArrayLike], k: int
) -> dict[str, FloatArray]:
    """All four per-user metrics from one hit matrix, for callers that report them together.

    Keys: ``ndcg``, ``hit_rate``, ``recall``, ``mrr``; values equal the single-metric functions.
    """
    h = Hits.at_k(recommended, relevant, k)
    return {"ndcg": h.ndcg(), "hit_rate": h.hit_rate(), "recall": h.recall(), "mrr": h.mrr()}


def catalogue_coverage(recommended: npt.ArrayLike, k: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top k (padding excluded).

    Items outside ``[0, n_items)`` raise ``ValueError``: they mean the recommender and the
    catalogue disagree, and silently counting or dropping them would hide that.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    items = _top_k(recommended, k).ravel()
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError(f"recommended item {int(items.max())} is outside [0, {n_items})")
    seen = np.zeros(int(n_items), dtype=bool)
    seen[items] = True
    return float(np.count_nonzero(seen)) / float(n_items)


def popularity_percentile(popularity: npt.ArrayLike) -> FloatArray:
    """Each item's popularity mid-rank in ``[0, 1]`` (see PopPct in the module docstring).

    ``popularity`` is any score monotone in the number of training events (counts, log counts):
    only the order matters, which makes the number comparable across datasets of any size.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.ndim != 1 or pop.size == 0:
        raise ValueError(f"popularity must be a non-empty 1-D array, got shape {pop.shape}")
    if pop.size == 1:
        return np.full(1, 0.5)
    order = np.argsort(pop, kind="stable")
    sorted_pop = pop[order]
    # mid-rank of each run of ties: the mean of its first and last 0-based positions
    starts = np.flatnonzero(np.r_[True, sorted_pop[1:] != sorted_pop[:-1]])
    ends = np.r_[starts[1:], pop.size] - 1
    run = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, pop.size]))
    ranks = np.empty(pop.size, dtype=np.float64)
    ranks[order] = (starts[run] + ends[run]) / 2.0
    return ranks / (pop.size - 1)


def mean_popularity_percentile(
    recommended: npt.ArrayLike, k: int, percentile: npt.ArrayLike
) -> FloatArray:
    """Per-user mean of ``percentile`` over the top k (padding excluded); ``nan`` if empty."""
    rec = _top_k(recommended, k)
    pct = np.asarray(percentile, dtype=np.float64)
    if rec.size and rec.max() >= pct.size:
        raise ValueError(f"recommended item {int(rec.max())} is outside [0, {pct.size})")
    valid = rec >= 0
    values = np.where(valid, pct[np.where(valid, rec, 0)], 0.0)
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, values.sum(axis=1) / counts, np.nan)


def summarize(values: npt.ArrayLike) -> float:
    """Mean over users, ignoring ``nan`` (users without relevant items); ``nan`` if none remain."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[~np.isnan(arr)]
    if finite.size == 0:
        return float("nan")
    return float(finite.mean())
