"""What the offline job knows about one user as of its build, and what a request starts from.

Both stages read this one type: stage 1 produces it (candidates best first, with their stage-1
scores and the bit flags of the sources that found them, plus the user's recent history), the
codec stores it in Redis, and stage 2 turns it into features. It depends on nothing else of
the project, so the two-stage logic does not depend on how it is stored.
"""

from dataclasses import dataclass

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
