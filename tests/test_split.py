"""Hold-out splits never put a test event before the train events it is scored against."""

import numpy as np
import polars as pl
import pytest

from recsys.columns import Columns
from recsys.data.split import LEAVE_LAST_OUT, TEMPORAL, leave_last_out, temporal_split
from recsys.errors import DataError


def events(users: list[int], items: list[int], timestamps: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {Columns.user: users, Columns.item: items, Columns.timestamp: timestamps},
        schema={Columns.user: pl.Int64, Columns.item: pl.Int64, Columns.timestamp: pl.Int64},
    ).with_columns(pl.int_range(pl.len()).alias("row"))


def random_log(seed: int, n: int = 2_000) -> pl.DataFrame:
    """Few timestamps over many events, so ties are common."""
    rng = np.random.default_rng(seed)
    return events(
        rng.integers(0, 150, n).tolist(),
        rng.integers(0, 60, n).tolist(),
        rng.integers(0, 300, n).tolist(),
    )


def test_leave_last_out_small() -> None:
    log = events(
        users=[1, 1, 1, 2, 3, 3, 3],
        items=[10, 11, 12, 10, 10, 11, 12],
        timestamps=[5, 9, 7, 1, 4, 4, 2],
    )
    split = leave_last_out(log)
    assert split.protocol == LEAVE_LAST_OUT and split.cut_ts is None
    # user 1: latest is ts 9; user 2: one event, stays in train; user 3: tie at 4, later row wins
    assert split.test["row"].to_list() == [1, 5]
    assert split.train["row"].to_list() == [0, 2, 3, 4, 6]
    assert split.train.columns == log.columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leave_last_out_properties(seed: int) -> None:
    log = random_log(seed)
    split = leave_last_out(log)
    assert split.train.height + split.test.height == log.height
    assert set(split.train["row"]) | set(split.test["row"]) == set(log["row"])

    counts = log.group_by(Columns.user).len()
    multi = counts.filter(pl.col("len") >= 2)[Columns.user]
    assert split.test[Columns.user].is_unique().all()
    assert set(split.test[Columns.user]) == set(multi)

    # no test event before (or tied with a later row of) any same-user train event
    joined = split.test.join(split.train, on=Columns.user, suffix="_train")
    before = joined.filter(
        (pl.col(Columns.timestamp) < pl.col(f"{Columns.timestamp}_train"))
        | (
            (pl.col(Columns.timestamp) == pl.col(f"{Columns.timestamp}_train"))
            & (pl.col("row") < pl.col("row_train"))
        )
    )
    assert before.is_empty()


def test_temporal_sizes_and_cut() -> None:
    log = events(users=[1] * 100, items=list(range(100)), timestamps=list(range(100)))
    split = temporal_split(log, test_frac=0.1)
    assert split.protocol == TEMPORAL
    assert split.cut_ts == 90
    assert split.train.height == 90 and split.test.height == 10
    assert split.test[Columns.timestamp].to_list() == list(range(90, 100))


def test_temporal_filters_test() -> None:
    log = events(
        users=[1, 1, 2, 1, 1, 3, 2],
        items=[10, 11, 10, 10, 12, 10, 11],
        timestamps=[1, 2, 3, 8, 9, 9, 10],
    )
    split = temporal_split(log, test_frac=0.5)
    assert split.cut_ts == 8
    assert split.train["row"].to_list() == [0, 1, 2]
    # row 3: user 1 already has item 10 in train; row 5: user 3 has no train event
    assert split.test["row"].to_list() == [4, 6]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("test_frac", [0.05, 0.2, 0.5])
def test_temporal_properties(seed: int, test_frac: float) -> None:
    log = random_log(seed)
    split = temporal_split(log, test_frac=test_frac)
    assert split.cut_ts is not None
    assert (split.train[Columns.timestamp] < split.cut_ts).all()
    assert (split.test[Columns.timestamp] >= split.cut_ts).all()
    assert split.train.height == (log[Columns.timestamp] < split.cut_ts).sum()
    held_out = (log[Columns.timestamp] >= split.cut_ts).sum() / log.height
    assert held_out == pytest.approx(test_frac, abs=0.02)
    assert set(split.test[Columns.user]) <= set(split.train[Columns.user])
    seen = split.train.select(Columns.user, Columns.item)
    assert split.test.join(seen, on=[Columns.user, Columns.item], how="semi").is_empty()


@pytest.mark.parametrize("test_frac", [0.0, 1.0, -0.1, 1.5])
def test_temporal_rejects_bad_fraction(test_frac: float) -> None:
    with pytest.raises(ValueError, match="test_frac"):
        temporal_split(random_log(0), test_frac=test_frac)


def test_temporal_needs_two_moments() -> None:
    with pytest.raises(DataError, match="train would be empty"):
        temporal_split(events([1, 2], [1, 2], [5, 5]))
    with pytest.raises(DataError, match="no events"):
        temporal_split(events([], [], []))
