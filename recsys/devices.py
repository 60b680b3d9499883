"""The device vocabulary of a build: device names as small integer codes (0 = unknown).

Codes are what the codec stores per history event (one byte) and what the ranker's ``device``
feature holds; the vocabulary travels with the build's item table, so the API codes a request's
device the way the build coded its events.
"""

import numpy as np
import polars as pl

from recsys.columns import UNKNOWN_DEVICE, Columns

MAX_DEVICES = 255  # codes are stored as uint8


def device_vocabulary(events: pl.DataFrame) -> list[str]:
    """Code 0 is 'unknown'; the rest by frequency so the vocabulary is stable across builds."""
    seen = events[Columns.device].value_counts(sort=True)[Columns.device].to_list()
    return [UNKNOWN_DEVICE, *[d for d in seen if d != UNKNOWN_DEVICE][: MAX_DEVICES - 1]]


def device_codes(device: pl.Series, devices: list[str]) -> np.ndarray:
    """Each value's code in ``devices`` (int32); devices outside the vocabulary get 0."""
    mapping = pl.DataFrame({"d": devices, "code": np.arange(len(devices), dtype=np.int32)})
    return (
        pl.DataFrame({"d": device})
        .join(mapping, on="d", how="left", maintain_order="left")["code"]
        .fill_null(0)
        .to_numpy()
    )
