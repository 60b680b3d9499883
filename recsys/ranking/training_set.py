"""Ranker training set: requests built as of the label cut, labelled by the events after it.

Each request is one user: candidates from a stage 1 fitted on history only, the user's history
as the Redis state would hold it, and the context (time, device) of the user's first label event,
which is when the recommendation would have been asked for. Requests whose candidates contain
no label item teach LambdaRank nothing and are dropped.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.candidates.ann import ItemIndex
from recsys.candidates.generate import generate_candidates
from recsys.config import Settings
from recsys.events_index import IndexedEvents
from recsys.features import RequestContext, build_features
from recsys.history import UserHistory
from recsys.items import ItemTable
from recsys.mf import Factors
from recsys.ranking.ranker import TrainingSet
from recsys.store.codec import UserState, decode_user_state, encode_user_state


@dataclass(frozen=True)
class LabelRequests:
    users: np.ndarray  # int32 [G] dense user indices
    context: list[RequestContext]
    label_offsets: np.ndarray  # int64 [G+1]
    label_items: np.ndarray  # int32 [L]


def label_requests(labels: IndexedEvents, max_groups: int, seed: int) -> LabelRequests:
    """One request per labelled user, at the time and on the device of their first label event."""
    order = np.lexsort((labels.ts, labels.user))
    user, item = labels.user[order], labels.item[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(starts))[:max_groups])
    starts, ends = starts[pick], ends[pick]
    first = order[starts]
    label_items = np.concatenate([item[s:e] for s, e in zip(starts, ends, strict=True)])
    return LabelRequests(
        users=user[starts].astype(np.int32),
        context=[
            RequestContext(ts=int(t), device=int(d))
            for t, d in zip(labels.ts[first], labels.device[first], strict=True)
        ],
        label_offsets=np.r_[0, np.cumsum(ends - starts)].astype(np.int64),
        label_items=label_items.astype(np.int32),
    )


def as_served(state: UserState) -> UserState:
    """The state exactly as the API will read it back from Redis (quantised the same way)."""
    return decode_user_state(encode_user_state(state))


def build_training_set(
    requests: LabelRequests,
    factors: Factors,
    seen: sp.csr_matrix,
    history: UserHistory,
    items: ItemTable,
    index: ItemIndex,
    settings: Settings,
) -> TrainingSet:
    position = {int(u): j for j, u in enumerate(requests.users)}
    rng = np.random.default_rng(settings.ranker.seed)
    n_neg = settings.ranker.negatives_per_request
    features: list[np.ndarray] = []
    relevance: list[np.ndarray] = []
    sizes: list[int] = []
    for states, contexts, labels in _batches(
        requests, factors, seen, history, items, index, settings, position
    ):
        x = build_features(states, contexts, items)
        start = 0
        for state, label in zip(states, labels, strict=True):
            n = len(state.cand_item)
            rel = np.isin(state.cand_item, label).astype(np.int32)
            if rel.any():
                keep = sample_negatives(rel, n_neg, rng)
                features.append(x[start : start + n][keep])
                relevance.append(rel[keep])
                sizes.append(len(keep))
            start += n
    if not sizes:
        return TrainingSet(
            np.empty((0, 0), np.float32), np.empty(0, np.int32), np.empty(0, np.int64)
        )
    return TrainingSet(
        features=np.concatenate(features),
        relevance=np.concatenate(relevance),
        group_sizes=np.asarray(sizes, dtype=np.int64),
    )


def sample_negatives(
    relevance: np.ndarray, n_negatives: int, rng: np.random.Generator
) -> np.ndarray:
    """Row positions to keep: every label, and up to ``n_negatives`` others, in candidate order."""
    neg = np.flatnonzero(relevance == 0)
    if len(neg) > n_negatives:
        neg = rng.choice(neg, n_negatives, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(relevance > 0), neg]))


def _batches(
    requests: LabelRequests,
    factors: Factors,
    seen: sp.csr_matrix,
    history: UserHistory,
    items: ItemTable,
    index: ItemIndex,
    settings: Settings,
    position: dict[int, int],
) -> Iterator[tuple[list[UserState], list[RequestContext], list[np.ndarray]]]:
    cands = generate_candidates(
        requests.users,
        factors.user,
        factors.item,
        seen,
        index,
        items.popular,
        settings.candidates,
        settings.ann.batch_size,
    )
    for batch in cands:
        states, contexts, labels = [], [], []
        for j, u in enumerate(batch.users):
            g = position[int(u)]
            cand_item, cand_score, cand_sources = batch.row(j)
            states.append(
                as_served(
                    history.state(
                        int(u), cand_item, cand_score, cand_sources, settings.candidates.history_len
                    )
                )
            )
            contexts.append(requests.context[g])
            labels.append(
                requests.label_items[requests.label_offsets[g] : requests.label_offsets[g + 1]]
            )
        yield states, contexts, labels
