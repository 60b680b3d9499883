"""Hold-out splits never put a test event before the train events it is scored against, and a
walk-forward fold reads nothing after its window."""

import itertools

import numpy as np
import polars as pl
import pytest

from recsys.columns import Columns
from recsys.data.split import (
    LEAVE_LAST_OUT,
    TEMPORAL,
    WALK_FORWARD,
    leave_last_out,
    temporal_split,
    walk_forward,
)
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


# --------------------------------------------------------------------------- walk-forward

DAY = 86_400


def daily_log(seed: int, days: int = 100, n: int = 3_000) -> pl.DataFrame:
    """Events spread over ``days`` days, users and items drawn from small pools."""
    rng = np.random.default_rng(seed)
    return events(
        rng.integers(0, 80, n).tolist(),
        rng.integers(0, 50, n).tolist(),
        np.sort(rng.integers(0, days * DAY, n)).tolist(),
    )


def test_walk_forward_small() -> None:
    # last event at day 9 (ts 9 * DAY): end = 9 * DAY + 1; folds of 3 days end there
    log = events(
        users=[1, 1, 2, 1, 2, 3, 1, 2],
        items=[10, 11, 10, 12, 11, 10, 10, 13],
        timestamps=[0, DAY, 2 * DAY, 4 * DAY, 5 * DAY, 6 * DAY, 8 * DAY, 9 * DAY],
    )
    folds = walk_forward(log, n_folds=2, fold_days=3)
    end = 9 * DAY + 1
    assert [f.cut_ts for f in folds] == [end - 6 * DAY, end - 3 * DAY]
    assert [f.test_end_ts for f in folds] == [end - 3 * DAY, end]
    assert [f.fold for f in folds] == [0, 1] and {f.protocol for f in folds} == {WALK_FORWARD}
    # fold 0 tests on [3 DAY + 1, 6 DAY + 1): rows 3, 4 (users 1, 2 have history), not row 5
    # (user 3 has none); it trains on rows 0-2
    assert folds[0].train["row"].to_list() == [0, 1, 2]
    assert folds[0].test["row"].to_list() == [3, 4]
    # fold 1 tests on [6 DAY + 1, 9 DAY + 1): row 6 (user 1 re-watches item 10) is not
    # scoreable, row 7 is
    assert folds[1].train["row"].to_list() == [0, 1, 2, 3, 4, 5]
    assert folds[1].test["row"].to_list() == [7]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("n_folds", "fold_days"), [(1, 30), (3, 30), (4, 7)])
def test_walk_forward_properties(seed: int, n_folds: int, fold_days: int) -> None:
    log = daily_log(seed)
    folds = walk_forward(log, n_folds, fold_days)
    assert len(folds) == n_folds
    last = int(log[Columns.timestamp].max())
    assert folds[-1].test_end_ts == last + 1
    for prev, fold in itertools.pairwise(folds):
        assert prev.test_end_ts == fold.cut_ts  # consecutive windows
    for fold in folds:
        assert fold.cut_ts is not None and fold.test_end_ts is not None
        assert fold.test_end_ts - fold.cut_ts == fold_days * DAY
        # train is exactly everything before the cut; test inside the window
        assert fold.train.height == (log[Columns.timestamp] < fold.cut_ts).sum()
        assert (fold.train[Columns.timestamp] < fold.cut_ts).all()
        ts = fold.test[Columns.timestamp]
        assert ((ts >= fold.cut_ts) & (ts < fold.test_end_ts)).all()
        assert set(fold.test[Columns.user]) <= set(fold.train[Columns.user])
        seen = fold.train.select(Columns.user, Columns.item)
        assert fold.test.join(seen, on=[Columns.user, Columns.item], how="semi").is_empty()


def test_walk_forward_reads_nothing_after_its_window() -> None:
    """Whatever happens after a fold's window (or after its cut, for its train) cannot change
    that fold: every event after the first fold's window is replaced by different ones."""
    log = daily_log(3)
    folds = walk_forward(log, n_folds=3, fold_days=20)
    first = folds[0]
    assert first.test_end_ts is not None
    later = pl.col(Columns.timestamp) >= first.test_end_ts
    rng = np.random.default_rng(9)
    n_later = int(log.select(later.sum()).item())
    perturbed = log.with_columns(
        pl.when(later)
        .then(pl.Series(rng.integers(0, 80, log.height)))
        .otherwise(pl.col(Columns.user))
        .alias(Columns.user),
        pl.when(later)
        .then(pl.Series(rng.integers(0, 50, log.height)))
        .otherwise(pl.col(Columns.item))
        .alias(Columns.item),
    )
    assert n_later > 100
    # the same window positions: the last event is unchanged, so the folds' cuts are too
    again = walk_forward(perturbed, n_folds=3, fold_days=20)[0]
    assert again.cut_ts == first.cut_ts and again.test_end_ts == first.test_end_ts
    assert again.train.equals(first.train)
    assert again.test.equals(first.test)


def test_walk_forward_errors_name_the_fold() -> None:
    log = daily_log(0, days=50)
    with pytest.raises(DataError, match=r"fold 1/3 .*no event before it"):
        walk_forward(log, n_folds=3, fold_days=30)
    with pytest.raises(ValueError, match="n_folds"):
        walk_forward(log, n_folds=0)
    with pytest.raises(ValueError, match="fold_days"):
        walk_forward(log, n_folds=1, fold_days=0)
    # a window where no user with history comes back
    lonely = events([1, 2], [1, 2], [0, 40 * DAY])
    with pytest.raises(DataError, match=r"fold 1/1 .*no event of a user with earlier history"):
        walk_forward(lonely, n_folds=1, fold_days=10)
