"""Per-user candidate lists: ALS through the item index, seen items removed, popular quota.

Every candidate's stage-1 score is the exact ALS inner product, whichever source found it, so the
score means the same thing for every row the ranker sees, and stage-1 order is score order.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.candidates.ann import ItemIndex
from recsys.candidates.sources import Source
from recsys.config import CandidateConfig


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates of a batch of users, flattened: rows of user ``j`` are offsets[j]:offsets[j+1]."""

    users: np.ndarray  # int32 [B] dense user indices
    offsets: np.ndarray  # int64 [B+1]
    items: np.ndarray  # int32 [N]
    scores: np.ndarray  # float32 [N]
    sources: np.ndarray  # uint8 [N]

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, e = self.offsets[j], self.offsets[j + 1]
        return self.items[s:e], self.scores[s:e], self.sources[s:e]


def _merge_one(
    ann_ids: np.ndarray,
    seen: np.ndarray,
    popular: np.ndarray,
    per_user: int,
    popular_quota: int,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS first (up to per_user - quota), then unseen popular items, then more ALS to fill."""
    ann_ids = ann_ids[ann_ids >= 0]
    ann_ids = ann_ids[~np.isin(ann_ids, seen, assume_unique=False)]
    pop = popular[~np.isin(popular, seen)]
    als_take = ann_ids[: max(per_user - popular_quota, 0)]
    pop_new = pop[~np.isin(pop, als_take)][: per_user - len(als_take)]
    chosen = np.concatenate([als_take, pop_new])
    if len(chosen) < per_user:
        rest = ann_ids[len(als_take) :]
        rest = rest[~np.isin(rest, pop_new)]
        chosen = np.concatenate([chosen, rest[: per_user - len(chosen)]])
    sources = np.where(np.isin(chosen, ann_ids), Source.ALS, 0) | np.where(
        np.isin(chosen, pop[: max(popular_quota, 1) * 4]), Source.POPULAR, 0
    )
    return chosen.astype(np.int32), sources.astype(np.uint8)


def generate_candidates(
    users: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen: sp.csr_matrix,
    index: ItemIndex,
    popular: np.ndarray,
    cfg: CandidateConfig,
    batch_size: int,
) -> Iterator[CandidateBatch]:
    """Yield candidate batches for ``users`` (dense indices into ``user_factors`` and ``seen``).

    Users are searched in batches sorted by how much they have seen, so each batch over-fetches
    only as much as its heaviest user needs to still have ``per_user`` unseen items.
    """
    n_items = item_factors.shape[0]
    seen_counts = np.diff(seen.indptr)[users]
    order = np.argsort(seen_counts, kind="stable")
    pop_pool = popular[: cfg.popular_quota * 4 + 1000]
    for start in range(0, len(users), batch_size):
        batch_users = users[order[start : start + batch_size]]
        fetch = min(
            n_items, cfg.per_user + int(seen_counts[order[start : start + batch_size]].max())
        )
        ann = index.search(user_factors[batch_users], fetch)
        offsets = [0]
        items: list[np.ndarray] = []
        sources: list[np.ndarray] = []
        for j, u in enumerate(batch_users):
            user_seen = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
            chosen, src = _merge_one(ann[j], user_seen, pop_pool, cfg.per_user, cfg.popular_quota)
            items.append(chosen)
            sources.append(src)
            offsets.append(offsets[-1] + len(chosen))
        flat_items = np.concatenate(items) if items else np.empty(0, np.int32)
        flat_sources = np.concatenate(sources) if sources else np.empty(0, np.uint8)
        owner = np.repeat(batch_users, np.diff(offsets))
        scores = np.einsum("nd,nd->n", item_factors[flat_items], user_factors[owner])
        offs = np.asarray(offsets, dtype=np.int64)
        # stage-1 order: by exact score, within each user
        sorted_items, sorted_scores, sorted_sources = _sort_within(
            offs, flat_items, scores, flat_sources
        )
        yield CandidateBatch(
            users=batch_users.astype(np.int32),
            offsets=offs,
            items=sorted_items,
            scores=sorted_scores.astype(np.float32),
            sources=sorted_sources,
        )


def _sort_within(
    offsets: np.ndarray, items: np.ndarray, scores: np.ndarray, sources: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    group = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((-scores, group))
    return items[order], scores[order], sources[order]
