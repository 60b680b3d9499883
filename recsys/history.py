"""Per-user event history as flat arrays sorted by (user, time): the source of the recent history
the offline job seeds into Redis and the training set reads."""

from dataclasses import dataclass

import numpy as np

from recsys.user_state import UserState


@dataclass(frozen=True)
class UserHistory:
    offsets: np.ndarray  # int64 [n_users + 1]
    item: np.ndarray  # int32 [E]
    ts: np.ndarray  # int64 [E]
    device: np.ndarray  # uint8 [E] device code
    completion: np.ndarray  # float32 [E], nan = unknown

    @classmethod
    def from_events(
        cls,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        ts: np.ndarray,
        device: np.ndarray,
        completion: np.ndarray,
        n_users: int,
    ) -> "UserHistory":
        order = np.lexsort((ts, user_idx))
        counts = np.bincount(user_idx, minlength=n_users)
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            offsets=offsets,
            item=item_idx[order].astype(np.int32),
            ts=ts[order].astype(np.int64),
            device=device[order].astype(np.uint8),
            completion=completion[order].astype(np.float32),
        )

    def take(self, users: np.ndarray) -> "UserHistory":
        """The histories of ``users`` alone, in that order: ``users[j]`` becomes user ``j``."""
        starts = self.offsets[users]
        counts = self.offsets[users + 1] - starts
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return UserHistory(
            offsets=offsets,
            item=self.item[rows],
            ts=self.ts[rows],
            device=self.device[rows],
            completion=self.completion[rows],
        )

    def n_events(self, user: int) -> int:
        return int(self.offsets[user + 1] - self.offsets[user])

    def state(
        self,
        user: int,
        cand_item: np.ndarray,
        cand_score: np.ndarray,
        cand_sources: np.ndarray,
        history_len: int,
    ) -> UserState:
        """The user's state as the offline job stores it: candidates + last ``history_len``
        events."""
        end = int(self.offsets[user + 1])
        start = max(int(self.offsets[user]), end - history_len)
        return UserState(
            cand_item=cand_item,
            cand_score=cand_score,
            cand_sources=cand_sources,
            hist_item=self.item[start:end],
            hist_ts=self.ts[start:end],
            hist_device=self.device[start:end],
            hist_completion=self.completion[start:end],
            n_events=self.n_events(user),
        )
