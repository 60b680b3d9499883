"""From a user's stored state to a ranked answer: the request path, minus HTTP and Redis I/O.

The API calls it for one user per request; evaluation calls it for batches of users. Both get the
same answers because this is the only code that turns candidates into recommendations.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.artifacts import RANKER_FILE, read_manifest
from recsys.candidates.ann import ExactIndex
from recsys.candidates.generate import ActiveSource, candidates_of
from recsys.candidates.model import build_sources
from recsys.candidates.neighbours import NeighbourTables
from recsys.candidates.source import SourceInputs, UserBatch
from recsys.config import CandidateConfig
from recsys.features import RequestContext, build_features
from recsys.inspection.records import DriftReference
from recsys.items import ItemTable
from recsys.mf import FoldIn
from recsys.ranking.ranker import Ranker
from recsys.store.codec import as_served
from recsys.store.events import WatchEvent
from recsys.user_state import UserState, fold_events


@dataclass(frozen=True)
class ServingModel:
    """Everything of one build that lives in the API process's memory."""

    version: str
    items: ItemTable
    ranker: Ranker
    history_len: int
    candidates: CandidateConfig  # the build's candidate settings
    sources: list[ActiveSource]  # the build's sources, built again: candidates of new users
    fold_in: FoldIn  # factor vectors of new users
    drift_reference: DriftReference | None = None
    """What live drift is measured against (None for builds from before it was saved)."""

    @classmethod
    def load(cls, artifacts_root: Path, version: str) -> "ServingModel":
        path = artifacts_root / version
        manifest = read_manifest(path)
        ranker = Ranker.load(path / RANKER_FILE)
        items = ItemTable.load(path)
        candidates = CandidateConfig.model_validate(manifest.config["candidates"])
        # ALS searches exactly here, whatever the build's index: one user at a time, and
        # without building an HNSW graph in every worker
        inputs = SourceInputs(
            items, NeighbourTables.load(path), ExactIndex(items.factors), candidates
        )
        return cls(
            version=version,
            items=items,
            ranker=ranker,
            history_len=manifest.history_len,
            candidates=candidates,
            sources=build_sources(inputs),
            fold_in=FoldIn.load(path),
            drift_reference=manifest.inspection.drift_reference if manifest.inspection else None,
        )


@dataclass(frozen=True)
class Ranked:
    item_idx: np.ndarray  # int32 [<= k]
    scores: np.ndarray  # float32 [<= k]
    positions: np.ndarray | None = None
    """Each item's position among the state's candidates (its stage-1 rank, 0 = first); None
    for items that are not candidates (popular items of a fallback)."""


def event_items(events: Sequence[WatchEvent], model: ServingModel) -> np.ndarray:
    """Build indices of the events' items (-1: an item this build does not know)."""
    return np.array([model.items.index_of(e.item_id) for e in events], dtype=np.int32)


def apply_events(state: UserState, events: Sequence[WatchEvent], model: ServingModel) -> UserState:
    """Fold real-time events into a stored state: every event's item leaves the candidates, so a
    watch, a skip or a dislike changes the very next answer; positive events (watches, clicks)
    also join the history, as the next build's ALS and features will count them."""
    if not events:
        return state
    items = model.items
    return fold_events(
        state,
        event_items(events, model),
        np.array([e.timestamp for e in events], dtype=np.int64),
        np.array([items.device_code(e.device) for e in events], dtype=np.uint8),
        np.array([np.nan if e.completion is None else e.completion for e in events], np.float32),
        model.history_len,
        positive=np.array([e.positive for e in events], dtype=bool),
    )


def cold_start_state(model: ServingModel, events: Sequence[WatchEvent]) -> UserState | None:
    """A state for a user the build never saw, from the events they posted (``cold_state``).
    None when no positive event names an item of this build (nothing to start from: the answer
    is popular items)."""
    items = model.items
    return cold_state(
        ColdStartModel(items, model.fold_in, model.sources, model.candidates, model.history_len),
        event_items(events, model),
        np.array([e.timestamp for e in events], dtype=np.int64),
        np.array([items.device_code(e.device) for e in events], dtype=np.uint8),
        np.array([np.nan if e.completion is None else e.completion for e in events], np.float32),
        np.array([e.positive for e in events], dtype=bool),
    )


@dataclass(frozen=True)
class ColdStartModel:
    """What answering a user the build never saw needs of a stage 1: the API passes its serving
    model's parts, the ranker's training set those of the stage 1 it learns from."""

    items: ItemTable
    fold_in: FoldIn
    sources: Sequence[ActiveSource]
    candidates: CandidateConfig
    history_len: int


def cold_state(
    model: ColdStartModel,
    item: np.ndarray,
    ts: np.ndarray,
    device: np.ndarray,
    completion: np.ndarray,
    positive: np.ndarray,
) -> UserState | None:
    """A state for a user the build never saw, from their events (arrays, oldest first; ``item``
    in build indices, -1 for an item the build does not know): an ALS vector folded in from
    those events (``FoldIn``), and candidates from the build's own sources and merge, the
    item-to-item and sequential sources anchored on those events, so that the ranker reads
    every feature as it does for known users. None when no positive event names an item of
    the build.

    Only positive events anchor it (the fold-in, the recent items): a skip or a dislike is not
    taste (issue 15), but every event's item, negative ones included, is kept out of the
    candidates. The API calls it for a cold user's request, and the ranker's training set for
    cold-like requests (``recsys.ranking.training_set``), so both read the same states."""
    items = model.items
    watched = item[(item >= 0) & positive]
    if not len(watched):
        return None
    n_recent = model.candidates.recent_items
    recent = np.full((1, n_recent), -1, dtype=np.int64)
    last = watched[-n_recent:]
    recent[0, n_recent - len(last) :] = last
    seen = np.unique(item[item >= 0]).astype(np.int64)  # keys of row 0: the item indices
    factors = model.fold_in.user_vector(items.factors, watched)[None, :]
    batch = UserBatch(np.zeros(1, np.int64), factors, recent, max_seen=len(seen))
    found = candidates_of(batch, model.sources, seen, items.factors, model.candidates)
    no_history = UserState(
        cand_item=found.items,
        cand_score=found.scores,
        cand_sources=found.sources,
        hist_item=np.empty(0, np.int32),
        hist_ts=np.empty(0, np.int64),
        hist_device=np.empty(0, np.uint8),
        hist_completion=np.empty(0, np.float32),
        n_events=0,
    )
    # quantised as a stored state is, since the ranker learnt from stored states
    return fold_events(
        as_served(no_history), item, ts, device, completion, model.history_len, positive=positive
    )


def leave_out(ranked: Ranked, items: np.ndarray, k: int) -> Ranked:
    """The first ``k`` of ``ranked`` that are not in ``items``: a request's ``exclude`` applied
    to an answer ranked ``k + len(items)`` deep, so the rest keep the order (and the scores)
    they have without the exclusion."""
    if not len(items):
        return ranked
    keep = np.flatnonzero(~np.isin(ranked.item_idx, items))[:k]
    positions = None if ranked.positions is None else ranked.positions[keep]
    return Ranked(ranked.item_idx[keep], ranked.scores[keep], positions)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first (ties keep the earlier, stage-1 position)."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@dataclass
class RankTimes:
    """Where a ``rank`` call spent its time, for the API's per-stage metrics."""

    features_s: float = 0.0
    model_s: float = 0.0
    total_s: float = 0.0  # features, model and top-k selection


def rank(
    model: ServingModel,
    states: Sequence[UserState],
    contexts: Sequence[RequestContext],
    k: int,
    times: RankTimes | None = None,
    keep_inputs: list[tuple[np.ndarray, np.ndarray]] | None = None,
    num_threads: int = 1,
) -> list[Ranked]:
    """Two-stage answers: every candidate scored by the ranker, the top k kept.

    ``times``, when given, receives the time spent on features and on the model;
    ``keep_inputs`` receives the call's (feature matrix, scores), e.g. for live drift. The API
    predicts with one thread (it scales with processes); an offline batch may use more."""
    if not states:
        return []
    started = time.perf_counter()
    features = build_features(states, contexts, model.items)
    built = time.perf_counter()
    scores = model.ranker.score(features, num_threads)
    if keep_inputs is not None:
        keep_inputs.append((features, scores))
    if times is not None:
        times.features_s = built - started
        times.model_s = time.perf_counter() - built
    out, start = [], 0
    for s in states:
        n = len(s.cand_item)
        part = scores[start : start + n]
        best = top_k(part, k)
        out.append(Ranked(s.cand_item[best], part[best], best))
        start += n
    if times is not None:
        times.total_s = time.perf_counter() - started
    return out


def stage1_order(state: UserState, k: int) -> Ranked:
    """Stage-1 order (candidates are stored best first): the answer when ranking can't run."""
    n = min(k, len(state.cand_item))
    return Ranked(state.cand_item[:k], state.cand_score[:k], np.arange(n, dtype=np.int64))


def popular(model: ServingModel, k: int, exclude: np.ndarray | None = None) -> Ranked:
    """Most popular items (recent first), minus ``exclude`` (item indices: what the user has
    just watched, skipped or disliked, and what the request leaves out)."""
    n_excluded = 0 if exclude is None else len(exclude)
    pool = model.items.popular[: k + n_excluded]
    if exclude is not None and n_excluded:
        pool = pool[~np.isin(pool, exclude)]
    pool = pool[:k]
    return Ranked(pool, model.items.pop_recent[pool])
