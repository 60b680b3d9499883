"""Hold-out splits for offline evaluation.

Both protocols only ever hold out events that happen after what is kept for training (per user for
leave-last-out, globally for temporal), so a model trained on ``train`` never sees the future it is
scored on.
"""

from dataclasses import dataclass
from typing import Final

import polars as pl

from recsys.columns import Columns
from recsys.errors import DataError

LEAVE_LAST_OUT: Final = "leave-last-out"
TEMPORAL: Final = "temporal"
PROTOCOLS: Final = (LEAVE_LAST_OUT, TEMPORAL)

_ROW: Final = "__split_row_nr"  # original row order, the tie-breaker between equal timestamps


@dataclass(frozen=True)
class Split:
    """Train and held-out test events, both in the normalised interactions schema."""

    train: pl.DataFrame
    test: pl.DataFrame
    protocol: str
    cut_ts: int | None
    """The global cut for ``temporal`` (train < cut_ts <= test); None for leave-last-out."""


def leave_last_out(interactions: pl.DataFrame) -> Split:
    """Hold out each user's last event; users with a single event stay whole in train.

    The last event is the one with the greatest timestamp; among equal timestamps, the later row.
    Both outputs keep the input's row order.
    """
    numbered = interactions.with_row_index(_ROW)
    last = numbered.group_by(Columns.user).agg(
        pl.col(_ROW).filter(pl.col(Columns.timestamp) == pl.col(Columns.timestamp).max()).max(),
        pl.len().alias("n_events"),
    )
    held_out = last.filter(pl.col("n_events") >= 2).select(_ROW)
    is_test = pl.col(_ROW).is_in(held_out[_ROW].implode())
    return Split(
        train=numbered.filter(~is_test).drop(_ROW),
        test=numbered.filter(is_test).drop(_ROW),
        protocol=LEAVE_LAST_OUT,
        cut_ts=None,
    )


def temporal_split(interactions: pl.DataFrame, test_frac: float = 0.1) -> Split:
    """Cut everyone at one moment, as a nightly build would be: train < cut_ts <= test.

    ``cut_ts`` is the timestamp quantile at ``1 - test_frac``, rounded up to an observed timestamp
    (so ``test_frac=0.1`` over distinct timestamps holds out 10%). The test set then keeps only what
    a model could be scored on: users with at least one train event, items new to that user.
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be strictly between 0 and 1, got {test_frac}")
    if interactions.is_empty():
        raise DataError("interactions", "cannot split: no events")
    cut_ts = int(
        interactions.select(
            pl.col(Columns.timestamp).quantile(1.0 - test_frac, interpolation="higher")
        ).item()
    )
    before = pl.col(Columns.timestamp) < cut_ts
    train = interactions.filter(before)
    if train.is_empty():
        raise DataError(
            "interactions",
            f"cannot split temporally at {cut_ts}: no event is earlier, train would be empty",
        )
    seen = train.select(Columns.user, Columns.item).unique()
    test = (
        interactions.filter(~before)
        .join(
            train.select(Columns.user).unique(), on=Columns.user, how="semi", maintain_order="left"
        )
        .join(seen, on=[Columns.user, Columns.item], how="anti", maintain_order="left")
    )
    return Split(train=train, test=test, protocol=TEMPORAL, cut_ts=cut_ts)
