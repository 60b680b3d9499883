"""Interactions as numpy arrays of dense indices: the form every numeric stage works on."""

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.devices import device_codes
from recsys.feedback import positive_mask
from recsys.ids import IdIndex


@dataclass(frozen=True)
class IndexedEvents:
    user: np.ndarray  # int32 [E]
    item: np.ndarray  # int32 [E]
    ts: np.ndarray  # int64 [E]
    weight: np.ndarray  # float32 [E]
    device: np.ndarray  # uint8 [E] code in the build's device vocabulary
    completion: np.ndarray  # float32 [E], nan = unknown
    positive: np.ndarray  # bool [E] a watch or click (recsys.feedback), not a skip or dislike

    def __len__(self) -> int:
        return len(self.user)

    @property
    def all_positive(self) -> bool:
        return bool(self.positive.all())

    def only_positive(self) -> "IndexedEvents":
        """The positive events: what ALS, the item table and users' histories are made of."""
        if self.all_positive:
            return self
        keep = self.positive
        return IndexedEvents(
            user=self.user[keep],
            item=self.item[keep],
            ts=self.ts[keep],
            weight=self.weight[keep],
            device=self.device[keep],
            completion=self.completion[keep],
            positive=keep[keep],
        )


def index_events(
    events: pl.DataFrame, users: IdIndex, items: IdIndex, devices: list[str]
) -> IndexedEvents:
    return IndexedEvents(
        user=users.lookup(events[Columns.user]),
        item=items.lookup(events[Columns.item]),
        ts=events[Columns.timestamp].to_numpy().astype(np.int64),
        weight=events[Columns.weight].to_numpy().astype(np.float32),
        device=device_codes(events[Columns.device], devices).astype(np.uint8),
        completion=events[Columns.completion].cast(pl.Float32).fill_null(np.nan).to_numpy(),
        positive=positive_mask(events).to_numpy(),
    )
