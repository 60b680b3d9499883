"""Item-to-item sources: the nearest neighbours of the user's last watches, the latest watch
weighing most. Two notions of near: ALS factor cosine (what co-watching says) and metadata
cosine (genres and title words: what the catalogue says, which also reaches unwatched items)."""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.neighbours import ItemNeighbours
from recsys.candidates.source import SourceInputs, SourceSpec, UserBatch


@dataclass(frozen=True)
class ItemToItemSource:
    """Neighbours of the user's recent watches, the latest watch weighing most."""

    neighbours: ItemNeighbours
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


def build_by_factors(inputs: SourceInputs) -> ItemToItemSource:
    """Nearest items (factor cosine) to the user's recent watches."""
    return ItemToItemSource(inputs.neighbours.factors)


def build_by_content(inputs: SourceInputs) -> ItemToItemSource:
    """Nearest items by metadata (genres, title words) to recent watches."""
    return ItemToItemSource(inputs.neighbours.content)


ITEM_FACTORS = SourceSpec("item_factors", bit=2, quota=40, build=build_by_factors)
ITEM_CONTENT = SourceSpec("item_content", bit=3, quota=20, build=build_by_content)
