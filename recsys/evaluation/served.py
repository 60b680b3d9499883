"""What the build serves each test request, read back from Redis through the store and ranked by
``recsys.serving``, the code the API runs: the report measures what users would get."""

from dataclasses import dataclass
from typing import Final

import numpy as np

from recsys.evaluation.baselines import pad_rows
from recsys.evaluation.protocol import HeldOutRequests
from recsys.features import RequestContext
from recsys.serving import ServingModel, rank, stage1_order
from recsys.store.codec import decode_user_state
from recsys.store.connect import SyncStore
from recsys.store.keys import Keys
from recsys.store.user_store import read_states
from recsys.user_state import UserState

BATCH: Final = 256  # requests read and ranked together


@dataclass(frozen=True)
class Served:
    two_stage: np.ndarray  # [U, k] padded
    stage1: np.ndarray  # [U, k] padded: candidates in stored order
    candidates: list[np.ndarray]
    flags: list[np.ndarray]
    sample_states: list[UserState]  # as read from Redis, for the requests in ``sample``
    sample_contexts: list[RequestContext]


def served_answers(
    client: SyncStore,
    keys: Keys,
    model: ServingModel,
    req: HeldOutRequests,
    k: int,
    sample: np.ndarray | None = None,
) -> Served:
    """Two-stage and stage-1 top-k, and the candidates, per request, read back from Redis; the
    states of the request positions in ``sample`` are kept too (drift reads their features)."""
    keep = np.zeros(len(req.users), dtype=bool)
    if sample is not None:
        keep[sample] = True
    two_stage: list[np.ndarray] = []
    first: list[np.ndarray] = []
    candidates: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    kept_states: list[UserState] = []
    kept_contexts: list[RequestContext] = []
    for start in range(0, len(req.users), BATCH):
        user_keys = req.user_keys[start : start + BATCH]
        contexts = req.contexts[start : start + BATCH]
        states = []
        for u, blob in zip(
            user_keys, read_states(client, keys, model.version, user_keys), strict=True
        ):
            if blob is None:
                raise RuntimeError(f"build {model.version} has no state for user {u}")
            states.append(decode_user_state(blob))
        ranked = rank(model, states, contexts, k)
        two_stage.extend(r.item_idx for r in ranked)
        first.extend(stage1_order(s, k).item_idx for s in states)
        candidates.extend(s.cand_item for s in states)
        flags.extend(s.cand_sources for s in states)
        for j in np.flatnonzero(keep[start : start + BATCH]):
            kept_states.append(states[j])
            kept_contexts.append(contexts[j])
    return Served(
        pad_rows(two_stage, k), pad_rows(first, k), candidates, flags, kept_states, kept_contexts
    )
