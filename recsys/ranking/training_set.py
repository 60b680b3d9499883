"""Ranker training set: requests built as of the label cut, labelled by the events after it.

A request is built from candidates of a stage 1 fitted on history only and the user's history
as the Redis state would hold it. With a temporal split each labelled user is one request, at
the time and on the device of their first label event; with last-event labels each label event
is one request, asked after the user's earlier label events (folded in as the API folds in
posted events). Requests whose candidates contain no label item teach LambdaRank nothing and
are dropped.

Cold-like requests join them: a share of users is left out of that stage 1 and asked after each
of their first few events, with the state the API makes for a user its build never saw
(``hold_out_cold_users``, ``cold_like_requests``; issue 14). Without them the ranker had seen
only users with long histories and fitted ALS vectors.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.candidates.model import CandidateModel, fit_candidate_model
from recsys.columns import Columns
from recsys.config import RankerConfig, Settings
from recsys.events_index import IndexedEvents, index_events
from recsys.features import RequestContext, build_features
from recsys.feedback import positives
from recsys.ids import IdIndex
from recsys.progress import StageTimer
from recsys.ranking.labels import LabelSplit
from recsys.ranking.ranker import TrainingSet
from recsys.serving import ColdStartModel, cold_state
from recsys.store.codec import as_served
from recsys.user_state import UserState, fold_events

FEATURE_CHUNK = 1024  # requests whose features are built at once (~70 MB at 500 candidates)


@dataclass(frozen=True)
class TrainingWindow:
    """What the ranker learns from: the label split, and stage 1 fitted on its history side
    alone, with users indexed from that history. Evaluation's drift section reads it again."""

    labels: LabelSplit
    users: IdIndex
    item_ids: IdIndex
    candidate_model: CandidateModel


@dataclass(frozen=True)
class EarlierEvents:
    """Per request, events after the history's end and before the request (a user's earlier
    label events), folded into the state as the API folds in posted events."""

    offsets: np.ndarray  # int64 [G+1]
    item: np.ndarray  # int32 [P]
    ts: np.ndarray  # int64 [P]
    device: np.ndarray  # uint8 [P]
    completion: np.ndarray  # float32 [P]
    positive: np.ndarray  # bool [P] a watch or click; a skip or dislike only leaves candidates


@dataclass(frozen=True)
class LabelRequests:
    users: np.ndarray  # int32 [G] dense user indices (a user may ask more than once)
    context: list[RequestContext]
    label_offsets: np.ndarray  # int64 [G+1]
    label_items: np.ndarray  # int32 [L]
    label_grades: np.ndarray  # int32 [L] grade of each label item: 1..3, NEGATIVE_GRADE (a skip)
    earlier: EarlierEvents | None = None  # None: every request asked at the history's end

    def labels_of(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.label_offsets[g], self.label_offsets[g + 1]
        return self.label_items[s:e], self.label_grades[s:e]

    def fold_earlier(self, g: int, state: UserState, history_len: int) -> UserState:
        """Request ``g``'s state: ``state`` after the user's events that came before it."""
        if self.earlier is None:
            return state
        p = self.earlier
        s, e = p.offsets[g], p.offsets[g + 1]
        return fold_events(
            state,
            p.item[s:e],
            p.ts[s:e],
            p.device[s:e],
            p.completion[s:e],
            history_len,
            positive=p.positive[s:e],
        )


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


def next_event_requests(labels: IndexedEvents, max_groups: int, seed: int) -> LabelRequests:
    """One request per positive label event, at its time and on its device, with that event's
    item as the only label, asked after the same user's earlier label events
    (``EarlierEvents``): the question the API answers after each watch. A seeded sample of
    ``max_groups``. A skip or a dislike asks no question of its own (a request whose only label
    is negative teaches LambdaRank nothing), but as an earlier event it takes its item out of
    the later requests' candidates, as it does in the API (issue 15)."""
    order = np.lexsort((np.arange(len(labels.user)), labels.ts, labels.user))
    user, item, ts = labels.user[order], labels.item[order], labels.ts[order]
    device, completion = labels.device[order], labels.completion[order]
    positive = labels.positive[order]
    grade = label_grades(labels)[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    first_of_user = np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    rng = np.random.default_rng(seed)
    askable = np.flatnonzero(positive)  # every event when all are positive: the same draw
    pick = np.sort(askable[rng.permutation(len(askable))[:max_groups]])
    earlier = [np.arange(first_of_user[j], j) for j in pick]
    rows = np.concatenate(earlier) if earlier else np.empty(0, np.int64)
    return LabelRequests(
        users=user[pick].astype(np.int32),
        context=[
            RequestContext(ts=int(t), device=int(d))
            for t, d in zip(ts[pick], device[pick], strict=True)
        ],
        label_offsets=np.arange(len(pick) + 1, dtype=np.int64),
        label_items=item[pick].astype(np.int32),
        label_grades=grade[pick],
        earlier=EarlierEvents(
            offsets=np.r_[0, np.cumsum([len(x) for x in earlier])].astype(np.int64),
            item=item[rows].astype(np.int32),
            ts=ts[rows].astype(np.int64),
            device=device[rows].astype(np.uint8),
            completion=completion[rows].astype(np.float32),
            positive=positive[rows].astype(bool),
        ),
    )


def request_states(
    requests: LabelRequests, model: CandidateModel, settings: Settings
) -> Iterator[tuple[list[UserState], list[RequestContext], list[int]]]:
    """The offline side of the request path: (states, contexts, request positions) in batches,
    each state what Redis would hold for that user had this stage 1 been published."""
    positions: dict[int, list[int]] = {}
    for g, u in enumerate(requests.users.tolist()):
        positions.setdefault(u, []).append(g)
    users = np.array(list(positions), dtype=np.int32)
    history_len = settings.candidates.history_len
    for batch in model.candidates(users, settings):
        states, contexts, groups = [], [], []
        for j, u in enumerate(batch.users):
            served = as_served(model.history.state(int(u), *batch.row(j), history_len))
            for g in positions[int(u)]:
                states.append(requests.fold_earlier(g, served, history_len))
                contexts.append(requests.context[g])
                groups.append(g)
        yield states, contexts, groups


def build_training_set(
    requests: LabelRequests,
    model: CandidateModel,
    settings: Settings,
    cold: IndexedEvents | None = None,
) -> TrainingSet:
    """Features and relevance of the labelled requests, and of the cold-like requests of the
    ``cold`` users' events (``cold_like_requests``; users ``model`` never saw)."""
    rng = np.random.default_rng(settings.ranker.seed)
    n_neg = settings.ranker.negatives_per_request
    features: list[np.ndarray] = []
    relevance: list[np.ndarray] = []
    sizes: list[int] = []

    def add(labelled: list[tuple[UserState, RequestContext, np.ndarray]]) -> None:
        """Rows of requests with a label among their candidates (the only ones that teach
        anything), FEATURE_CHUNK requests at a time (a request's rows are the same in any
        batch), so memory stays bounded with several requests per user."""
        for at in range(0, len(labelled), FEATURE_CHUNK):
            chunk = labelled[at : at + FEATURE_CHUNK]
            x = build_features([c[0] for c in chunk], [c[1] for c in chunk], model.items)
            start = 0
            for state, _, rel in chunk:
                n = len(state.cand_item)
                keep = sample_negatives(rel, n_neg, rng)
                features.append(x[start : start + n][keep])
                relevance.append(np.maximum(rel[keep], 0))
                sizes.append(len(keep))
                start += n

    for states, contexts, groups in request_states(requests, model, settings):
        labelled = []
        for state, ctx, g in zip(states, contexts, groups, strict=True):
            rel = candidate_relevance(state.cand_item, *requests.labels_of(g))
            if (rel > 0).any():  # a request with only negative labels has nothing to rank above
                labelled.append((state, ctx, rel))
        add(labelled)
    if cold is not None:
        add(list(cold_like_requests(cold, model, settings)))
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
    would already be reading the future (even ALS's random initialisation would change). A
    share of users is left out of that stage 1 altogether, for cold-like requests
    (``hold_out_cold_users``)."""
    cfg = settings.ranker
    split, cold = hold_out_cold_users(split, cfg)
    with timer.stage("stage 1 on history"):
        window = fit_on_history(split, catalogue, item_ids, devices, settings)
    with timer.stage("training set"):
        requests = labelled_requests(window, devices, cfg.max_train_groups, cfg.seed)
        cold_events = None
        if cold.height:
            cold_events = index_events(
                cold, IdIndex.from_values(cold[Columns.user]), item_ids, devices
            )
        training = build_training_set(requests, window.candidate_model, settings, cold_events)
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
    if window.labels.mode == "last-event":
        return next_event_requests(labels, max_requests, seed)
    return label_requests(labels, max_requests, seed)


def hold_out_cold_users(split: LabelSplit, cfg: RankerConfig) -> tuple[LabelSplit, pl.DataFrame]:
    """(``split`` without a seeded share of its label users, those users' events).

    The ranker's warm requests come from users whose whole history stage 1 learnt from: their
    ALS vectors are fitted, their candidates come from long histories, ``user_events_log`` is
    large. A user the build never saw is asked after a few posted events, with a folded-in
    vector and candidates anchored on those events alone (``recsys.serving.cold_state``):
    feature values no warm request has. The users left out here are not in the training
    window's stage 1 at all (had it learnt from their events, their own next items would be in
    its factors and transition tables), so their requests are cold as the API's are."""
    n_label_users = split.labels[Columns.user].n_unique()
    n = min(round(cfg.cold_start_users * n_label_users), cfg.cold_start_max_users)
    events = pl.concat([split.history, split.labels], how="vertical_relaxed")
    if n < 1:
        return split, events.clear()
    positive = positives(events).group_by(Columns.user).len()
    label_users = split.labels[Columns.user].unique().implode()
    # drawn in the order of the ids' text, so the same users whether ids are numbers or strings
    eligible = (
        positive.filter((pl.col("len") >= 2) & pl.col(Columns.user).is_in(label_users))
        .sort(pl.col(Columns.user).cast(pl.String))
        .get_column(Columns.user)
    )
    if len(eligible) <= n:  # too few users to spare any: warm requests only
        return split, events.clear()
    rng = np.random.default_rng(cfg.seed)
    chosen = eligible.gather(np.sort(rng.permutation(len(eligible))[:n])).implode()
    held = pl.col(Columns.user).is_in(chosen)
    warm = LabelSplit(
        split.history.filter(~held), split.labels.filter(~held), split.mode, split.cut_ts
    )
    return warm, events.filter(held)


def cold_like_requests(
    events: IndexedEvents, model: CandidateModel, settings: Settings
) -> Iterator[tuple[UserState, RequestContext, np.ndarray]]:
    """(state, context, candidate relevance) of each cold-like request with its label among
    the candidates: for every user of ``events`` (users ``model`` never saw) and k = 1, 2, ...
    ``cold_start_events``, the request asked at the time and on the device of the user's
    (k + 1)-th positive event, after every event before it, that event the only label. The
    state is what the API makes for an unknown user from those events
    (``recsys.serving.cold_state``). Among equal timestamps the log's row order is kept."""
    cold_model = ColdStartModel(
        model.items,
        model.fold_in,
        model.sources,
        settings.candidates,
        settings.candidates.history_len,
    )
    order = np.lexsort((np.arange(len(events.user)), events.ts, events.user))
    user, item, ts = events.user[order], events.item[order], events.ts[order]
    device, completion = events.device[order], events.completion[order]
    positive = events.positive[order]
    grade = label_grades(events)[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    for s, e in zip(starts, ends, strict=True):
        asked = s + np.flatnonzero(positive[s:e])[1 : settings.ranker.cold_start_events + 1]
        for j in asked:
            if item[j] < 0:
                continue
            state = cold_state(
                cold_model, item[s:j], ts[s:j], device[s:j], completion[s:j], positive[s:j]
            )
            if state is None:
                continue
            rel = candidate_relevance(state.cand_item, item[j : j + 1], grade[j : j + 1])
            if (rel > 0).any():
                yield state, RequestContext(ts=int(ts[j]), device=int(device[j])), rel
