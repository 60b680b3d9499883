"""Hold-out splits for offline evaluation.

Every protocol only ever holds out events that happen after what is kept for training (per user
for leave-last-out, globally for temporal and for each walk-forward fold), so a model trained on
``train`` never sees the future it is scored on.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import polars as pl

from recsys.columns import Columns
from recsys.errors import DataError

LEAVE_LAST_OUT: Final = "leave-last-out"
TEMPORAL: Final = "temporal"
WALK_FORWARD: Final = "walk-forward"
PROTOCOLS: Final = (LEAVE_LAST_OUT, TEMPORAL, WALK_FORWARD)

DAY_S: Final = 86_400
_ROW: Final = "__split_row_nr"  # original row order, the tie-breaker between equal timestamps


@dataclass(frozen=True)
class Split:
    """Train and held-out test events, both in the normalised interactions schema."""

    train: pl.DataFrame
    test: pl.DataFrame
    protocol: str
    cut_ts: int | None
    """The global cut for ``temporal`` and walk-forward (train < cut_ts <= test); None for
    leave-last-out."""
    test_end_ts: int | None = None
    """Walk-forward: the test window's exclusive end (test < test_end_ts); None otherwise."""
    fold: int | None = None
    """Walk-forward: the fold's position, 0 for the oldest; None otherwise."""


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


def scoreable(test: pl.DataFrame, train: pl.DataFrame) -> pl.DataFrame:
    """The test events a model trained on ``train`` can be scored on: users it knows, items new
    to them (a served answer never repeats a watched item, so those could only count as misses)."""
    users = train.select(Columns.user).unique()
    seen = train.select(Columns.user, Columns.item).unique()
    return test.join(users, on=Columns.user, how="semi", maintain_order="left").join(
        seen, on=[Columns.user, Columns.item], how="anti", maintain_order="left"
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
    test = scoreable(interactions.filter(~before), train)
    return Split(train=train, test=test, protocol=TEMPORAL, cut_ts=cut_ts)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def walk_forward(interactions: pl.DataFrame, n_folds: int = 3, fold_days: int = 30) -> list[Split]:
    """Production offline evaluation: ``n_folds`` consecutive windows of ``fold_days`` at the end
    of the log; fold ``i`` trains on every event before its window and tests on the window.

    The last window ends just after the last event. Each fold's test keeps what its model can be
    scored on (see :func:`scoreable`). A fold without training events or without a scoreable test
    event is an error that names it, rather than a fold silently dropped from the mean.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    if fold_days < 1:
        raise ValueError(f"fold_days must be at least 1, got {fold_days}")
    if interactions.is_empty():
        raise DataError("interactions", "cannot split: no events")
    ts = pl.col(Columns.timestamp)
    first_ts, last_ts = interactions.select(ts.min().alias("first"), ts.max().alias("last")).row(0)
    end_ts = int(last_ts) + 1
    fold_s = fold_days * DAY_S
    folds = []
    for fold in range(n_folds):
        cut_ts = end_ts - (n_folds - fold) * fold_s
        test_end_ts = cut_ts + fold_s
        where = f"walk-forward fold {fold + 1}/{n_folds} [{_day(cut_ts)}, {_day(test_end_ts)})"
        train = interactions.filter(ts < cut_ts)
        if train.is_empty():
            raise DataError(
                "interactions",
                f"{where}: no event before it (the log starts {_day(int(first_ts))}); "
                "use fewer or shorter folds",
            )
        test = scoreable(interactions.filter((ts >= cut_ts) & (ts < test_end_ts)), train)
        if test.is_empty():
            raise DataError(
                "interactions", f"{where}: no event of a user with earlier history to score"
            )
        folds.append(Split(train, test, WALK_FORWARD, cut_ts, test_end_ts=test_end_ts, fold=fold))
    return folds
