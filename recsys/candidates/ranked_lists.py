"""Sources that offer everyone the same ranked list: what is popular now, and fresh releases."""

from dataclasses import dataclass

import numpy as np

from recsys.candidates.source import SourceInputs, SourceSpec, UserBatch
from recsys.items import ItemTable


@dataclass(frozen=True)
class RankedListSource:
    """The same ranked list for everyone."""

    items: np.ndarray  # int32, best first

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        row = self.items[: width + batch.max_seen].astype(np.int64)
        return np.broadcast_to(row, (len(batch.users), len(row)))

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.candidates(batch, width), None


def fresh_items(items: ItemTable, days: int) -> np.ndarray:
    """Items released in the ``days`` before the build, most watched recently first."""
    age_s = items.as_of_ts - items.release_ts
    fresh = np.flatnonzero((age_s >= 0) & (age_s <= days * 86400))
    return fresh[np.lexsort((-items.pop_all[fresh], -items.pop_recent[fresh]))].astype(np.int32)


def build_popular(inputs: SourceInputs) -> RankedListSource:
    """Most watched in the last 7 days."""
    return RankedListSource(inputs.items.popular)


def build_fresh(inputs: SourceInputs) -> RankedListSource:
    """Recent releases, most watched first."""
    return RankedListSource(fresh_items(inputs.items, inputs.config.fresh_days))


POPULAR = SourceSpec("popular", bit=1, quota=25, build=build_popular)
FRESH = SourceSpec("fresh", bit=4, quota=15, build=build_fresh)
