"""Ranker training set: requests built as of the label cut, labelled by the events after it.

Each request is one user: candidates from a stage 1 fitted on history only, the user's history
as the Redis state would hold it, and the context (time, device) of the user's first label event,
which is when the recommendation would have been asked for. Requests whose candidates contain
no label item teach LambdaRank nothing and are dropped.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.candidates.model import CandidateModel, fit_candidate_model
from recsys.columns import Columns
from recsys.config import Settings
from recsys.events_index import IndexedEvents, index_events
from recsys.features import RequestContext, build_features
from recsys.ids import IdIndex
from recsys.progress import StageTimer
from recsys.ranking.labels import LabelSplit
from recsys.ranking.ranker import TrainingSet
from recsys.store.codec import decode_user_state, encode_user_state
from recsys.user_state import UserState


@dataclass(frozen=True)
class TrainingWindow:
    """What the ranker learns from: the label split, and stage 1 fitted on its history side
    alone, with users indexed from that history. Evaluation's drift section reads it again."""

    labels: LabelSplit
    users: IdIndex
    item_ids: IdIndex
    candidate_model: CandidateModel


@dataclass(frozen=True)
class LabelRequests:
    users: np.ndarray  # int32 [G] dense user indices
    context: list[RequestContext]
    label_offsets: np.ndarray  # int64 [G+1]
    label_items: np.ndarray  # int32 [L]
    label_grades: np.ndarray  # int32 [L] grade of each label item: 1..3, NEGATIVE_GRADE (a skip)

    def labels_of(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.label_offsets[g], self.label_offsets[g + 1]
        return self.label_items[s:e], self.label_grades[s:e]


def relevance_grades(weight: np.ndarray, completion: np.ndarray) -> np.ndarray:
    """1 for a watch, 2 for a good one, 3 for a great one.

    Quality is the completion where known (finished titles are great), else the weight relative
    to the largest weight (a rating), else every watch is equally good."""
    span = float(weight.max()) if len(weight) else 0.0
    by_weight = weight / span if span > 0 and weight.min() != weight.max() else np.ones_like(weight)
    quality = np.where(np.isfinite(completion), completion, by_weight)
    return (1 + (quality >= 0.5) + (quality >= 0.9)).astype(np.int32)


NEGATIVE_GRADE = -1
"""A label event that says "not this" (a skip, a dislike: recsys.feedback). Its candidate is
kept in the training set as a negative (relevance 0) rather than left to negative sampling."""


def label_grades(labels: IndexedEvents) -> np.ndarray:
    """Relevance grade of each label event: 1..3 for a positive event, NEGATIVE_GRADE else."""
    grades = relevance_grades(labels.weight, labels.completion)
    return np.where(labels.positive, grades, NEGATIVE_GRADE).astype(np.int32)


def label_requests(labels: IndexedEvents, max_groups: int, seed: int) -> LabelRequests:
    """One request per labelled user, at the time and on the device of their first label event."""
    order = np.lexsort((labels.ts, labels.user))
    user, item = labels.user[order], labels.item[order]
    grade = label_grades(labels)[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(starts))[:max_groups])
    starts, ends = starts[pick], ends[pick]
    first = order[starts]
    rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    return LabelRequests(
        users=user[starts].astype(np.int32),
        context=[
            RequestContext(ts=int(t), device=int(d))
            for t, d in zip(labels.ts[first], labels.device[first], strict=True)
        ],
        label_offsets=np.r_[0, np.cumsum(ends - starts)].astype(np.int64),
        label_items=item[rows].astype(np.int32),
        label_grades=grade[rows],
    )


def as_served(state: UserState) -> UserState:
    """The state exactly as the API will read it back from Redis (quantised the same way)."""
    return decode_user_state(encode_user_state(state))


def request_states(
    requests: LabelRequests, model: CandidateModel, settings: Settings
) -> Iterator[tuple[list[UserState], list[RequestContext], list[int]]]:
    """The offline side of the request path: (states, contexts, request positions) in batches,
    each state what Redis would hold for that user had this stage 1 been published."""
    position = {int(u): g for g, u in enumerate(requests.users)}
    for batch in model.candidates(requests.users, settings):
        states, contexts, groups = [], [], []
        for j, u in enumerate(batch.users):
            state = model.history.state(int(u), *batch.row(j), settings.candidates.history_len)
            states.append(as_served(state))
            g = position[int(u)]
            contexts.append(requests.context[g])
            groups.append(g)
        yield states, contexts, groups


def build_training_set(
    requests: LabelRequests, model: CandidateModel, settings: Settings
) -> TrainingSet:
    rng = np.random.default_rng(settings.ranker.seed)
    n_neg = settings.ranker.negatives_per_request
    features: list[np.ndarray] = []
    relevance: list[np.ndarray] = []
    sizes: list[int] = []
    for states, contexts, groups in request_states(requests, model, settings):
        x = build_features(states, contexts, model.items)
        start = 0
        for state, g in zip(states, groups, strict=True):
            n = len(state.cand_item)
            rel = candidate_relevance(state.cand_item, *requests.labels_of(g))
            if (rel > 0).any():
                keep = sample_negatives(rel, n_neg, rng)
                features.append(x[start : start + n][keep])
                relevance.append(np.maximum(rel[keep], 0))
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


def candidate_relevance(
    candidates: np.ndarray, label_items: np.ndarray, label_grades: np.ndarray
) -> np.ndarray:
    """Grade of each candidate: its best label grade (a watch after a skip is a watch), 0 if it
    is not a label, NEGATIVE_GRADE if its only labels are negative."""
    rel = np.zeros(len(candidates), dtype=np.int32)
    order = np.argsort(label_grades, kind="stable")  # later (higher) grades overwrite lower
    pos = {int(i): int(gr) for i, gr in zip(label_items[order], label_grades[order], strict=True)}
    for j, c in enumerate(candidates.tolist()):
        rel[j] = pos.get(c, 0)
    return rel


def sample_negatives(
    relevance: np.ndarray, n_negatives: int, rng: np.random.Generator
) -> np.ndarray:
    """Row positions to keep: every label (positive or negative), and up to ``n_negatives``
    others, in candidate order."""
    neg = np.flatnonzero(relevance == 0)
    if len(neg) > n_negatives:
        neg = rng.choice(neg, n_negatives, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(relevance != 0), neg]))


def training_data(
    split: LabelSplit,
    catalogue: pl.DataFrame,
    item_ids: IdIndex,
    devices: list[str],
    settings: Settings,
    timer: StageTimer,
) -> tuple[LabelRequests, TrainingSet, TrainingWindow]:
    """Stage 1 fitted on the history side of ``split`` only, then the labelled requests.

    Users are indexed from the history alone: a stage 1 that knew who arrives after the cut
    would already be reading the future (even ALS's random initialisation would change)."""
    with timer.stage("stage 1 on history"):
        window = fit_on_history(split, catalogue, item_ids, devices, settings)
    with timer.stage("training set"):
        cfg = settings.ranker
        requests = labelled_requests(window, devices, cfg.max_train_groups, cfg.seed)
        training = build_training_set(requests, window.candidate_model, settings)
    return requests, training, window


def fit_on_history(
    split: LabelSplit,
    catalogue: pl.DataFrame,
    item_ids: IdIndex,
    devices: list[str],
    settings: Settings,
) -> TrainingWindow:
    """Users indexed from the history alone, and stage 1 fitted on it."""
    users = IdIndex.from_values(split.history[Columns.user])
    hist = index_events(split.history, users, item_ids, devices)
    model = fit_candidate_model(hist, split.history, len(users), catalogue, devices, settings)
    return TrainingWindow(split, users, item_ids, model)


def labelled_requests(
    window: TrainingWindow, devices: list[str], max_requests: int, seed: int
) -> LabelRequests:
    """The labelled requests: a seeded sample of at most ``max_requests`` users (the same seed
    draws the same permutation, so a smaller sample is the start of a larger one)."""
    labels = index_events(window.labels.labels, window.users, window.item_ids, devices)
    return label_requests(labels, max_requests, seed)
