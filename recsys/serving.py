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
from recsys.features import RequestContext, build_features
from recsys.inspection.records import DriftReference
from recsys.items import ItemTable
from recsys.ranking.ranker import Ranker
from recsys.store.events import WatchEvent
from recsys.user_state import UserState, fold_events


@dataclass(frozen=True)
class ServingModel:
    """Everything of one build that lives in the API process's memory."""

    version: str
    items: ItemTable
    ranker: Ranker
    history_len: int
    drift_reference: DriftReference | None = None
    """What live drift is measured against (None for builds from before it was saved)."""

    @classmethod
    def load(cls, artifacts_root: Path, version: str) -> "ServingModel":
        path = artifacts_root / version
        manifest = read_manifest(path)
        return cls(
            version=version,
            items=ItemTable.load(path),
            ranker=Ranker.load(path / RANKER_FILE),
            history_len=manifest.history_len,
            drift_reference=manifest.inspection.drift_reference if manifest.inspection else None,
        )


@dataclass(frozen=True)
class Ranked:
    item_idx: np.ndarray  # int32 [<= k]
    scores: np.ndarray  # float32 [<= k]


def apply_events(state: UserState, events: Sequence[WatchEvent], model: ServingModel) -> UserState:
    """Fold real-time events into a stored state: watched items leave the candidates and join
    the history, so a watch changes the very next answer."""
    if not events:
        return state
    items = model.items
    return fold_events(
        state,
        np.array([items.index_of(e.item_id) for e in events], dtype=np.int32),
        np.array([e.timestamp for e in events], dtype=np.int64),
        np.array([items.device_code(e.device) for e in events], dtype=np.uint8),
        np.array([np.nan if e.completion is None else e.completion for e in events], np.float32),
        model.history_len,
    )


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
        out.append(Ranked(s.cand_item[best], part[best]))
        start += n
    if times is not None:
        times.total_s = time.perf_counter() - started
    return out


def stage1_order(state: UserState, k: int) -> Ranked:
    """Stage-1 order (candidates are stored best first): the answer when ranking can't run."""
    return Ranked(state.cand_item[:k], state.cand_score[:k])


def popular(model: ServingModel, k: int, exclude: Sequence[WatchEvent] = ()) -> Ranked:
    """Most popular items (recent first), minus anything the caller has just watched."""
    pool = model.items.popular[: k + len(exclude)]
    if exclude:
        seen = np.array([model.items.index_of(e.item_id) for e in exclude], dtype=np.int32)
        pool = pool[~np.isin(pool, seen)]
    pool = pool[:k]
    return Ranked(pool, model.items.pop_recent[pool])
