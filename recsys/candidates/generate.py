"""Per-user candidate lists: every source searched for a batch of users at once, merged.

Every candidate's stage-1 score is its ALS inner product, whichever source found it (as the
index returned it for ALS hits, computed for items only other sources found), so the score
means the same thing on every row the ranker sees, and stage-1 order is score order.
"""

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.candidates.merge import SourceList, merge
from recsys.candidates.source import CandidateSource, SourceSpec, UserBatch
from recsys.config import CandidateConfig
from recsys.history import UserHistory


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates of a batch of users, flattened: rows of user ``j`` are offsets[j]:offsets[j+1],
    best stage-1 score first."""

    users: np.ndarray  # int32 [B] dense user indices
    offsets: np.ndarray  # int64 [B+1]
    items: np.ndarray  # int32 [N]
    scores: np.ndarray  # float32 [N]
    sources: np.ndarray  # uint16 [N]

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, e = self.offsets[j], self.offsets[j + 1]
        return self.items[s:e], self.scores[s:e], self.sources[s:e]


@dataclass(frozen=True)
class ActiveSource:
    """A declared source, built from one stage-1 fit, with its configured quota."""

    spec: SourceSpec
    source: CandidateSource
    quota: int

    def width(self, per_user: int) -> int:
        """Unseen items it offers each user: its quota, or every slot when it fills the rest."""
        return per_user if self.spec.fills_rest else self.quota


def recent_items(history: UserHistory, users: np.ndarray, n: int) -> np.ndarray:
    """Last ``n`` watched items per user [B, n], oldest first, -1 padded on the left."""
    ends = history.offsets[users + 1]
    idx = ends[:, None] - n + np.arange(n)[None, :]
    valid = idx >= history.offsets[users][:, None]
    return np.where(valid, history.item[np.clip(idx, 0, max(len(history.item) - 1, 0))], -1)


def seen_keys(seen: sp.csr_matrix, users: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted ``row * n_items + item`` of what each user of the batch has seen."""
    sub = seen[users]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    return np.sort(rows * n_items + sub.indices.astype(np.int64))


@dataclass
class SearchTimes:
    """Seconds spent in the sources and in the merge, summed over the batches timed with it."""

    search_s: float = 0.0
    merge_s: float = 0.0


def search_batches(users: np.ndarray, seen: sp.csr_matrix, batch_size: int) -> list[np.ndarray]:
    """``users`` cut into the batches their candidates are searched in.

    Users are sorted by how much they have seen, so each batch over-fetches only as much as its
    heaviest user needs to still have enough unseen items. A user's candidates therefore depend
    on its batch (the over-fetch depth and HNSW's beam follow the batch's heaviest user), so
    these batches are the unit of work everywhere: one process walks them in order, a sharded
    build hands whole batches to its shards, and both store the same bytes for every user.
    """
    seen_counts = np.diff(seen.indptr)[users]
    order = np.argsort(seen_counts, kind="stable")
    return [users[order[start : start + batch_size]] for start in range(0, len(users), batch_size)]


def batch_candidates(
    batch_users: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen: sp.csr_matrix,
    history: UserHistory,
    sources: Sequence[ActiveSource],
    cfg: CandidateConfig,
    times: SearchTimes | None = None,
) -> CandidateBatch:
    """Candidates of one search batch (dense user indices into ``user_factors`` and ``seen``)."""
    batch_users = batch_users.astype(np.int64)
    batch = UserBatch(
        users=batch_users,
        factors=user_factors[batch_users],
        recent=recent_items(history, batch_users, cfg.recent_items),
        # over-fetch is capped so one very heavy user cannot make a whole batch search deep;
        # users past 2 x per_user seen items may get fewer than per_user candidates
        max_seen=min(int(np.diff(seen.indptr)[batch_users].max()), 2 * cfg.per_user),
    )
    seen_of_batch = seen_keys(seen, batch_users, item_factors.shape[0])
    return candidates_of(batch, sources, seen_of_batch, item_factors, cfg, times)


def candidates_of(
    batch: UserBatch,
    sources: Sequence[ActiveSource],
    seen: np.ndarray,
    item_factors: np.ndarray,
    cfg: CandidateConfig,
    times: SearchTimes | None = None,
) -> CandidateBatch:
    """Every source searched for ``batch``, merged, each candidate scored by ``batch.factors``
    (``seen``: sorted ``row * n_items + item`` keys of what each user of the batch has seen).
    The build calls it for batches of its users, the API for one user it never saw."""
    started = time.perf_counter()
    n_items = item_factors.shape[0]
    lists = []
    for s in sources:  # in priority order; build_sources leaves out those with no slot
        width = s.width(cfg.per_user)
        found, scores = s.source.scored(batch, width)
        lists.append(SourceList(found, s.spec.flag, s.quota, width, scores))
    searched = time.perf_counter()
    merged = merge(lists, seen, n_items, cfg.per_user)
    owner = np.repeat(np.arange(len(batch.users)), np.diff(merged.offsets))
    scores = merged.scores
    unknown = np.flatnonzero(np.isnan(scores))  # found only by non-ALS sources
    scores[unknown] = np.einsum(
        "nd,nd->n", item_factors[merged.items[unknown]], batch.factors[owner[unknown]]
    )
    by_score = np.lexsort((-scores, owner))
    if times is not None:
        times.search_s += searched - started
        times.merge_s += time.perf_counter() - searched
    return CandidateBatch(
        users=batch.users.astype(np.int32),
        offsets=merged.offsets,
        items=merged.items[by_score],
        scores=scores[by_score],
        sources=merged.flags[by_score],
    )


def generate_candidates(
    users: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen: sp.csr_matrix,
    history: UserHistory,
    sources: Sequence[ActiveSource],
    cfg: CandidateConfig,
    batch_size: int,
) -> Iterator[CandidateBatch]:
    """Yield candidate batches for ``users`` (dense indices into ``user_factors`` and ``seen``),
    batch by batch of ``search_batches``."""
    for batch_users in search_batches(users, seen, batch_size):
        yield batch_candidates(batch_users, user_factors, item_factors, seen, history, sources, cfg)
