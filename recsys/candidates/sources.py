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


@dataclass(frozen=True)
class AlsSource:
    index: ItemIndex
    flag: Source = Source.ALS

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        return self.index.search(batch.factors, width + batch.max_seen)


@dataclass(frozen=True)
class RankedListSource:
    """The same ranked list for everyone (popular now, fresh releases)."""

    items: np.ndarray  # int32, best first
    flag: Source

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        row = self.items[: width + batch.max_seen].astype(np.int64)
        return np.broadcast_to(row, (len(batch.users), len(row)))


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


def top_unique_per_row(ids: np.ndarray, score: np.ndarray, width: int) -> np.ndarray:
    """Per row, distinct ids by their best score, best first; [B, width], -1 padded."""
    b, w = ids.shape
    rows = np.repeat(np.arange(b), w)
    flat_ids, flat_score = ids.ravel(), score.ravel()
    ok = np.isfinite(flat_score)
    rows, flat_ids, flat_score = rows[ok], flat_ids[ok], flat_score[ok]
    order = np.lexsort((-flat_score, flat_ids, rows))  # best score first within (row, id)
    rows, flat_ids, flat_score = rows[order], flat_ids[order], flat_score[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (flat_ids[1:] != flat_ids[:-1])]
    rows, flat_ids, flat_score = rows[first], flat_ids[first], flat_score[first]
    order = np.lexsort((-flat_score, rows))
    rows, flat_ids = rows[order], flat_ids[order]
    starts = np.searchsorted(rows, np.arange(b))
    pos = np.arange(len(rows)) - starts[rows]
    keep = pos < width
    out = np.full((b, width), -1, dtype=np.int64)
    out[rows[keep], pos[keep]] = flat_ids[keep]
    return out
