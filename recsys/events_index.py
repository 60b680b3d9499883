"""Interactions as numpy arrays of dense indices: the form every numeric stage works on."""

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.devices import device_codes
from recsys.ids import IdIndex


@dataclass(frozen=True)
class IndexedEvents:
    user: np.ndarray  # int32 [E]
    item: np.ndarray  # int32 [E]
    ts: np.ndarray  # int64 [E]
    weight: np.ndarray  # float32 [E]
    device: np.ndarray  # uint8 [E] code in the build's device vocabulary
    completion: np.ndarray  # float32 [E], nan = unknown

    def __len__(self) -> int:
        return len(self.user)


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
    )
