"""ALS: the items with the largest inner product with the user's factors, through the item index
(exact FAISS search, or HNSW over MIPS-augmented factors on large catalogues: ``ann.py``)."""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.ann import ItemIndex
from recsys.candidates.source import SourceInputs, SourceSpec, UserBatch


@dataclass(frozen=True)
class AlsSource:
    index: ItemIndex

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        return self.scored(batch, width)[0]

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.index.search(batch.factors, width + batch.max_seen)


def build(inputs: SourceInputs) -> AlsSource:
    """ALS top items through the item index; fills the slots other sources leave."""
    return AlsSource(inputs.item_index)


# 340 + the other sources' quotas = 500, candidates.per_user's default
ALS = SourceSpec("als", bit=0, quota=340, build=build, fills_rest=True)
