"""Sequential source: what tends to come next after the user's last watches, from the order of
other users' events (the build's transition table, ``recsys.candidates.covisitation``).

An item's score is the sum over the user's recent watches of ``anchor_decay ** k * P(item | the
k-th last watch)``: a first-order Markov chain mixed over the recent history. Unlike the
item-to-item sources' best-of, a sum rewards items that several recent watches lead to.
"""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.item_to_item import top_unique_per_row
from recsys.candidates.neighbours import ItemNeighbours
from recsys.candidates.source import SourceInputs, SourceSpec, UserBatch


@dataclass(frozen=True)
class SequentialSource:
    transitions: ItemNeighbours  # sims = P(next = b | a), best first
    anchor_decay: float

    @property
    def neighbours(self) -> ItemNeighbours:
        """The item-to-item table this source proposes from, under the name the dashboard's
        item page reads (``recsys.inspection.tables.neighbour_tables``)."""
        return self.transitions

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        recent = batch.recent  # [B, L], oldest first
        b, n_recent = recent.shape
        weight = self.anchor_decay ** np.arange(n_recent - 1, -1, -1, dtype=np.float32)
        seeds = np.maximum(recent, 0)
        ids = np.where((recent >= 0)[:, :, None], self.transitions.ids[seeds], -1)  # [B, L, M]
        score = self.transitions.sims[seeds] * weight[None, :, None]
        summed_ids, summed = summed_per_row(ids.reshape(b, -1), score.reshape(b, -1))
        return top_unique_per_row(summed_ids, summed, width + batch.max_seen)

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.candidates(batch, width), None


def summed_per_row(ids: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, each id once, on its first column, with the sum of its scores (in column
    order, so the sum is the same wherever the row is computed); other copies become -1."""
    b, w = ids.shape
    valid = ids >= 0
    n = int(ids.max()) + 1 if valid.any() else 1
    key = np.where(valid, np.arange(b)[:, None] * n + ids, -1).ravel()
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    group = np.cumsum(first) - 1
    sums = np.bincount(group, weights=np.where(valid.ravel(), score.ravel(), 0.0)[order])
    out_score = np.full(b * w, -np.inf, dtype=np.float32)
    out_ids = np.full(b * w, -1, dtype=np.int64)
    keep = first & (sorted_key >= 0)
    out_score[order[keep]] = sums[group[keep]]
    out_ids[order[keep]] = ids.ravel()[order[keep]]
    return out_ids.reshape(b, w), out_score.reshape(b, w)


def build(inputs: SourceInputs) -> SequentialSource:
    """What followed the user's last watches in other users' histories (transition
    probabilities summed over the recent watches, the latest weighing most)."""
    return SequentialSource(inputs.items.transitions, inputs.config.sequence.anchor_decay)


SEQUENTIAL = SourceSpec("sequential", bit=5, quota=60, build=build)
