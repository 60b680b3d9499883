"""What the offline job knows about one user as of its build, and what a request starts from.

Both stages read this one type: stage 1 produces it (candidates best first, with their stage-1
scores and the bit flags of the sources that found them, plus the user's recent history), the
codec stores it in Redis, and stage 2 turns it into features. It depends on nothing else of
the project, so the two-stage logic does not depend on how it is stored.
"""

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class UserState:
    """One user's candidates and recent history, as of a build."""

    cand_item: np.ndarray  # int32 [n] item index into the build's item table, best first
    cand_score: np.ndarray  # float32 [n] stage-1 score
    cand_sources: np.ndarray  # uint16 [n] OR of the flags of the sources that found the item
    hist_item: np.ndarray  # int32 [h], oldest first
    hist_ts: np.ndarray  # int64 [h]
    hist_device: np.ndarray  # uint8 [h] device code (recsys.devices)
    hist_completion: np.ndarray  # float32 [h], nan = unknown
    n_events: int


def fold_events(
    state: UserState,
    item: np.ndarray,
    ts: np.ndarray,
    device: np.ndarray,
    completion: np.ndarray,
    history_len: int,
    positive: np.ndarray | None = None,
) -> UserState:
    """``state`` after events that came later (arrays, oldest first; ``item`` in build indices,
    -1 for an item the build does not know): every event's item leaves the candidates, so a
    watch, a skip or a dislike changes the very next answer; positive events (``positive``, a
    bool mask; None: all of them) newer than the stored history also join it, as the next
    build's ALS and features will count them (issue 15). The API folds posted events in with
    it, and the ranker's training set folds in each request's earlier label events the same
    way. Negative events, and events older than the stored history, only leave the candidates."""
    if not len(item):
        return state
    newer = ts > (state.hist_ts[-1] if len(state.hist_ts) else -1)
    if positive is not None:
        newer &= positive
    keep = ~np.isin(state.cand_item, item)
    return replace(
        state,
        cand_item=state.cand_item[keep],
        cand_score=state.cand_score[keep],
        cand_sources=state.cand_sources[keep],
        hist_item=np.concatenate([state.hist_item, item[newer]])[-history_len:],
        hist_ts=np.concatenate([state.hist_ts, ts[newer]])[-history_len:],
        hist_device=np.concatenate([state.hist_device, device[newer]])[-history_len:],
        hist_completion=np.concatenate([state.hist_completion, completion[newer]])[-history_len:],
        n_events=state.n_events + int(newer.sum()),
    )
