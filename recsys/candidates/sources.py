"""Candidate sources. Each returns, for a batch of users, a matrix of item indices best first
(-1 = nothing), and is remembered on each candidate it found as a bit flag (a ranker feature)."""

from dataclasses import dataclass
from enum import IntFlag
from typing import Protocol

import numpy as np

from recsys.candidates.ann import ItemIndex
from recsys.candidates.neighbours import ItemNeighbours


class Source(IntFlag):
    ALS = 1
    POPULAR = 2
    ITEM_FACTORS = 4
    ITEM_CONTENT = 8
    FRESH = 16


SOURCE_NAMES: dict[Source, str] = {
    Source.ALS: "als",
    Source.POPULAR: "popular",
    Source.ITEM_FACTORS: "item_factors",
    Source.ITEM_CONTENT: "item_content",
    Source.FRESH: "fresh",
}


@dataclass(frozen=True)
class UserBatch:
    """What the sources may know about a batch of users."""

    users: np.ndarray  # int32 [B] dense user indices
    factors: np.ndarray  # float32 [B, d]
    recent: np.ndarray  # int32 [B, L] last watches, oldest first, -1 padded on the left
    max_seen: int  # most items any user of the batch has seen: how far to over-fetch


class CandidateSource(Protocol):
    @property
    def flag(self) -> Source:
        """The bit this source sets on the candidates it finds."""
        ...

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        """Item indices [B, <= width + batch.max_seen], best first, -1 padded."""
        ...

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Candidates and their stage-1 scores, when the source computes them anyway."""
        ...


@dataclass(frozen=True)
class AlsSource:
    index: ItemIndex
    flag: Source = Source.ALS

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        return self.scored(batch, width)[0]

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.index.search(batch.factors, width + batch.max_seen)


@dataclass(frozen=True)
class RankedListSource:
    """The same ranked list for everyone (popular now, fresh releases)."""

    items: np.ndarray  # int32, best first
    flag: Source

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        row = self.items[: width + batch.max_seen].astype(np.int64)
        return np.broadcast_to(row, (len(batch.users), len(row)))

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.candidates(batch, width), None


@dataclass(frozen=True)
class ItemToItemSource:
    """Neighbours of the user's recent watches, the latest watch weighing most."""

    neighbours: ItemNeighbours
    flag: Source
    recency_decay: float = 0.8

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        b, n_recent = batch.recent.shape
        m = self.neighbours.ids.shape[1]
        known = batch.recent >= 0
        seeds = np.where(known, batch.recent, 0)
        weight = self.recency_decay ** np.arange(n_recent - 1, -1, -1, dtype=np.float32)
        ids = self.neighbours.ids[seeds]  # [B, L, M]
        score = self.neighbours.sims[seeds] * weight[None, :, None]
        score[~known] = -np.inf
        ids = ids.reshape(b, n_recent * m)
        score = score.reshape(b, n_recent * m)
        score[ids < 0] = -np.inf
        return top_unique_per_row(ids, score, width + batch.max_seen)

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.candidates(batch, width), None


def top_unique_per_row(ids: np.ndarray, score: np.ndarray, width: int) -> np.ndarray:
    """Per row, distinct ids by their best score, best first; [B, width], -1 padded.

    Row-wise: sort each row by score, drop later copies of an id, keep the first ``width``."""
    b = ids.shape[0]
    score = np.where(ids >= 0, score, -np.inf)
    by_score = np.argsort(-score, axis=1, kind="stable")
    ids = np.take_along_axis(ids, by_score, axis=1).astype(np.int64)
    ok = np.isfinite(np.take_along_axis(score, by_score, axis=1))
    keyed = np.where(ok, ids, np.iinfo(np.int64).max)
    by_id = np.argsort(keyed, axis=1, kind="stable")  # copies stay in score order
    sorted_ids = np.take_along_axis(keyed, by_id, axis=1)
    later_copy = np.zeros(ids.shape, dtype=bool)
    later_copy[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    dup = np.zeros(ids.shape, dtype=bool)
    np.put_along_axis(dup, by_id, later_copy, axis=1)
    keep = ok & ~dup
    rank = np.cumsum(keep, axis=1) - 1
    keep &= rank < width
    out = np.full((b, width), -1, dtype=np.int64)
    rows = np.nonzero(keep)[0]
    out[rows, rank[keep]] = ids[keep]
    return out
