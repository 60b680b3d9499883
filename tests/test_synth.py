"""The synthetic log keeps the dataset contract and carries the signals the generator plants.

A single small log (2000 users x 800 items, about 40k events, well under a second) is shared by
most tests. The thresholds have wide margins over what seeds 0-9 give, so a failure here means
a signal was lost, not bad luck.
"""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.columns import Columns
from recsys.data import synth
from recsys.data.dataset import Dataset, write_dataset
from recsys.data.synth import DEVICES, GENRES, generate_synthetic
from tests.conftest import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

N_USERS, N_ITEMS, EVENTS, SEED = 2000, 800, 20.0, 7
START, DAYS = 1_700_000_000, 90
FILM_MIN = 80.0  # films are 80-150 min, episodes 20-50 min


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return generate_synthetic(
        n_users=N_USERS, n_items=N_ITEMS, seed=SEED, events_per_user=EVENTS, start_ts=START,
        days=DAYS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def joined(ds: Dataset) -> pl.DataFrame:
    """Interactions with item attributes and time-of-day columns."""
    return ds.interactions.join(ds.items, on=Columns.item, how="left").with_columns(
        film=pl.col(Columns.duration_min) >= FILM_MIN,
        hour=(pl.col(Columns.timestamp) // 3600) % 24,
        weekend=(pl.col(Columns.timestamp) // 86_400 + 3) % 7 >= 5,
        main_genre=pl.col(Columns.genres).str.split("|").list.first(),
    )


@pytest.fixture(scope="module")
def consecutive(joined: pl.DataFrame) -> pl.DataFrame:
    """Each watch next to the same user's previous watch (first watches dropped)."""
    prev = [Columns.timestamp, Columns.duration_min, Columns.completion, "main_genre"]
    return (
        joined.sort([Columns.user, Columns.timestamp])
        .with_columns(pl.col(c).shift(1).over(Columns.user).alias(f"prev_{c}") for c in prev)
        .drop_nulls(f"prev_{Columns.timestamp}")
    )


def test_schema_is_exactly_the_normalised_one(ds: Dataset) -> None:
    assert ds.interactions.schema == INTERACTIONS_SCHEMA
    assert ds.items.schema == ITEMS_SCHEMA
    assert ds.interactions.null_count().sum_horizontal().item() == 0
    assert ds.items.null_count().sum_horizontal().item() == 0


def test_ids_cover_every_user_and_item_table_covers_interactions(ds: Dataset) -> None:
    assert ds.items[Columns.item].to_list() == list(range(N_ITEMS))
    assert ds.items[Columns.title][123] == "Title 123"
    assert sorted(ds.interactions[Columns.user].unique().to_list()) == list(range(N_USERS))
    assert ds.interactions[Columns.item].is_in(ds.items[Columns.item].implode()).all()
    assert ds.n_users == N_USERS and ds.n_items == N_ITEMS


def test_values_are_in_range_and_log_is_sorted(ds: Dataset) -> None:
    inter = ds.interactions
    assert inter[Columns.timestamp].is_sorted()
    assert inter[Columns.timestamp].min() >= START  # type: ignore[operator]
    assert inter[Columns.timestamp].max() < START + DAYS * 86_400  # type: ignore[operator]
    assert (inter[Columns.weight] == 1.0).all()
    assert set(inter[Columns.device].unique()) == set(DEVICES)
    assert inter[Columns.completion].is_between(0.0, 1.0).all()


def test_same_seed_same_log_other_seed_other_log(ds: Dataset) -> None:
    again = generate_synthetic(N_USERS, N_ITEMS, SEED, EVENTS, START, DAYS)
    assert_frame_equal(again.interactions, ds.interactions)
    assert_frame_equal(again.items, ds.items)
    other = generate_synthetic(N_USERS, N_ITEMS, SEED + 1, EVENTS, START, DAYS)
    assert not other.interactions.equals(ds.interactions)


def test_no_user_watches_a_title_twice(ds: Dataset) -> None:
    pairs = ds.interactions.select(Columns.user, Columns.item)
    assert pairs.is_duplicated().sum() == 0


def test_nothing_is_watched_before_release_and_new_titles_arrive_during_window(
    ds: Dataset, joined: pl.DataFrame
) -> None:
    assert (joined[Columns.timestamp] >= joined[Columns.release_ts]).all()
    released_in_window = ds.items.filter(pl.col(Columns.release_ts) >= START)
    assert 0.05 * N_ITEMS < released_in_window.height < 0.25 * N_ITEMS
    assert (ds.items[Columns.release_ts] < START - 365 * 86_400).mean() > 0.5  # type: ignore[operator]
    watched_new = joined.filter(pl.col(Columns.release_ts) >= START)[Columns.item].n_unique()
    assert watched_new > 0.8 * released_in_window.height


def test_new_releases_draw_viewers_and_the_boost_decays(joined: pl.DataFrame) -> None:
    day, end = 86_400, START + DAYS * 86_400
    released = pl.col(Columns.release_ts)
    age = pl.col(Columns.timestamp) - released
    # Views per title-day: titles in their first two weeks vs the back catalogue (1y+ old).
    new_titles = joined.filter(released.is_between(START, end - 14 * day))
    fresh_rate = new_titles.filter(age < 14 * day).height / (
        new_titles[Columns.item].n_unique() * 14
    )
    old_titles = joined.filter(released < START - 365 * day)
    old_rate = old_titles.height / (old_titles[Columns.item].n_unique() * DAYS)
    assert fresh_rate > 3 * old_rate

    # Titles released in the first month, so each has 6+ weeks in the window: views fall with age.
    early = joined.filter(released.is_between(START, START + 30 * day, closed="left"))
    age_weeks = (early[Columns.timestamp] - early[Columns.release_ts]) // (7 * day)
    first_two, weeks_four_five = int((age_weeks < 2).sum()), int(age_weeks.is_between(4, 5).sum())
    assert first_two > 1.5 * weeks_four_five


def test_catalogue_has_episodes_films_and_one_to_three_genres(ds: Dataset) -> None:
    dur = ds.items[Columns.duration_min]
    episodes, films = dur.filter(dur < FILM_MIN), dur.filter(dur >= FILM_MIN)
    assert episodes.is_between(20, 50).all() and films.is_between(80, 150).all()
    assert 0.25 < films.len() / dur.len() < 0.75
    genre_lists = ds.items[Columns.genres].str.split("|")
    assert genre_lists.list.len().is_between(1, 3).all()
    used = set(genre_lists.explode().to_list())
    assert used <= set(GENRES) and len(used) >= 15
    assert genre_lists.list.len().mean() > 1.3  # type: ignore[operator]


def test_item_popularity_is_heavy_tailed(ds: Dataset) -> None:
    counts = np.sort(np.bincount(ds.interactions[Columns.item].to_numpy(), minlength=N_ITEMS))
    top_decile = counts[::-1][: N_ITEMS // 10].sum() / counts.sum()
    assert top_decile > 0.4
    assert counts[-1] > 20 * np.median(counts)


def test_user_activity_is_heavy_tailed_with_at_least_two_events(ds: Dataset) -> None:
    per_user = ds.interactions.group_by(Columns.user).len()["len"]
    assert per_user.min() >= 2  # type: ignore[operator]
    assert abs(per_user.mean() - EVENTS) < 0.25 * EVENTS  # type: ignore[operator]
    assert per_user.mean() > 1.3 * per_user.median()  # type: ignore[operator]
    assert per_user.max() > 8 * per_user.median()  # type: ignore[operator]


def test_long_titles_are_watched_on_tv_short_ones_on_mobile(joined: pl.DataFrame) -> None:
    film_share = joined.group_by(Columns.device).agg(pl.col("film").mean())
    share = dict(zip(film_share[Columns.device], film_share["film"], strict=True))
    assert share["tv"] > share["mobile"] + 0.3
    # and a film on a phone is abandoned more often than a film on a tv
    films = joined.filter("film").group_by(Columns.device).agg(pl.col(Columns.completion).mean())
    compl = dict(zip(films[Columns.device], films[Columns.completion], strict=True))
    assert compl["tv"] > compl["mobile"] + 0.1


def test_daily_rhythm_weekends_and_genre_by_hour(joined: pl.DataFrame) -> None:
    hours = np.bincount(joined["hour"].to_numpy(), minlength=24) / joined.height
    assert hours[19:23].mean() > 4 * hours[3:7].mean()  # evening peak, night trough
    days = joined.with_columns(day=pl.col(Columns.timestamp) // 86_400)
    per_day = days.group_by("day", "weekend").len().group_by("weekend").agg(pl.col("len").mean())
    mean_per_day = dict(zip(per_day["weekend"], per_day["len"], strict=True))
    assert mean_per_day[True] > 1.15 * mean_per_day[False]

    kids = joined.with_columns(kids=pl.col(Columns.genres).str.contains("kids"))
    daytime = kids.filter(pl.col("hour").is_between(7, 17))["kids"].mean()
    late = kids.filter((pl.col("hour") >= 22) | (pl.col("hour") < 5))["kids"].mean()
    assert daytime > 2 * late  # type: ignore[operator]


def test_sessions_stay_near_a_genre_unless_the_title_was_abandoned(
    consecutive: pl.DataFrame,
) -> None:
    prev_end = pl.col(f"prev_{Columns.timestamp}") + pl.col(
        f"prev_{Columns.duration_min}"
    ) * 60 * pl.col(f"prev_{Columns.completion}")
    in_session = consecutive.filter(pl.col(Columns.timestamp) - prev_end < 1200)
    same = in_session["main_genre"] == in_session["prev_main_genre"]
    shuffled = in_session["main_genre"] == in_session["prev_main_genre"].shuffle(seed=0)
    assert same.mean() > 2 * shuffled.mean()  # type: ignore[operator]

    liked = in_session[f"prev_{Columns.completion}"] >= 0.5
    assert same.filter(liked).mean() > 1.5 * same.filter(~liked).mean()  # type: ignore[operator]


def test_tastes_are_low_rank_so_factorisation_beats_popularity(ds: Dataset) -> None:
    """A rank-16 SVD of the user-item matrix predicts each user's last watch better than
    popularity does: there is latent structure for matrix factorisation to learn."""
    ranked = ds.interactions.with_columns(
        last=pl.col(Columns.timestamp).rank("ordinal", descending=True).over(Columns.user) == 1
    )
    train, test = ranked.filter(~pl.col("last")), ranked.filter("last")
    X = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    X[train[Columns.user].to_numpy(), train[Columns.item].to_numpy()] = 1.0
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    mf = (u[:, :16] * s[:16]) @ vt[:16]
    pop = np.broadcast_to(X.sum(axis=0), X.shape).copy()
    users, targets = test[Columns.user].to_numpy(), test[Columns.item].to_numpy()

    def hit_rate(scores: np.ndarray) -> float:
        scores[X > 0] = -np.inf
        top10 = np.argpartition(-scores[users], 10, axis=1)[:, :10]
        return float((top10 == targets[:, None]).any(axis=1).mean())

    assert hit_rate(mf) > 1.2 * hit_rate(pop)


def test_several_chunks_keep_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_MAX_CHUNK_USERS", 256)  # 700 users -> 3 chunks
    out = generate_synthetic(n_users=700, n_items=200, seed=3, events_per_user=10)
    inter = out.interactions
    assert sorted(inter[Columns.user].unique().to_list()) == list(range(700))
    assert inter.select(Columns.user, Columns.item).is_duplicated().sum() == 0
    assert inter.group_by(Columns.user).len()["len"].min() >= 2  # type: ignore[operator]
    assert inter[Columns.timestamp].is_sorted()


def test_write_dataset_round_trip(ds: Dataset, tmp_path: Path) -> None:
    write_dataset(ds, tmp_path)
    assert_frame_equal(pl.read_parquet(tmp_path / "interactions.parquet"), ds.interactions)
    assert_frame_equal(pl.read_parquet(tmp_path / "items.parquet"), ds.items)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_users": 0}, {"n_items": 5}, {"days": 2}, {"events_per_user": 1.0}],
)
def test_rejects_arguments_it_cannot_honour(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate_synthetic(**kwargs)  # type: ignore[arg-type]
