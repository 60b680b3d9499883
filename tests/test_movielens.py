"""convert_movielens on the real ml-latest-small and on tiny fakes of the older layouts."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recsys.columns import UNKNOWN_DEVICE, Columns
from recsys.data.dataset import write_dataset
from recsys.data.load import load_dataset
from recsys.data.movielens import ML100K_GENRES, convert_movielens
from recsys.errors import DataError
from tests.conftest import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, ML_SMALL


def jan1(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp())


def check_contract(dataset_items: pl.DataFrame, interactions: pl.DataFrame) -> None:
    assert interactions.schema == INTERACTIONS_SCHEMA
    assert dataset_items.schema == ITEMS_SCHEMA
    assert interactions[Columns.timestamp].is_sorted()
    assert (interactions[Columns.device] == UNKNOWN_DEVICE).all()
    assert interactions[Columns.completion].null_count() == interactions.height
    assert dataset_items[Columns.duration_min].null_count() == dataset_items.height


@pytest.mark.realdata
@pytest.mark.skipif(not ML_SMALL.exists(), reason="needs shared/data/ml-latest-small")
def test_ml_latest_small(tmp_path: Path) -> None:
    data = convert_movielens(ML_SMALL)
    check_contract(data.items, data.interactions)
    assert data.n_users == 610
    assert data.n_items == 9742
    assert data.interactions.height == 100836

    toy_story = data.items.filter(pl.col(Columns.item) == 1).row(0, named=True)
    assert toy_story[Columns.title] == "Toy Story (1995)"
    assert toy_story[Columns.genres] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert toy_story[Columns.release_ts] == jan1(1995)
    assert "(no genres listed)" not in data.items[Columns.genres].to_list()
    assert (data.items[Columns.genres] == "").sum() == 34
    assert data.items[Columns.release_ts].null_count() == 12  # titles without a year
    assert set(data.interactions[Columns.weight].unique()) <= {x / 2 for x in range(1, 11)}

    write_dataset(data, tmp_path)
    again = load_dataset(tmp_path)
    assert again.interactions.equals(data.interactions)
    assert again.items.equals(data.items)


def test_without_release_years(tmp_path: Path) -> None:
    """--no-release-years: the same events and items, release_ts empty (issue 14's catalogue of
    titles and genres only), through the CLI as a user would run it."""
    from cli.main import main

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,2,3.5,964981247\n"
    )
    (tmp_path / "src" / "movies.csv").write_text(
        "movieId,title,genres\n1,Heat (1995),Action\n2,Up (2009),Animation\n"
    )
    assert main(["data", "movielens", str(tmp_path / "src"), str(tmp_path / "with")]) == 0
    argv = ["data", "movielens", str(tmp_path / "src"), str(tmp_path / "without")]
    assert main([*argv, "--no-release-years"]) == 0
    with_years, without = load_dataset(tmp_path / "with"), load_dataset(tmp_path / "without")
    assert with_years.items[Columns.release_ts].to_list() == [jan1(1995), jan1(2009)]
    assert without.items[Columns.release_ts].null_count() == 2
    assert without.items.drop(Columns.release_ts).equals(with_years.items.drop(Columns.release_ts))
    assert without.interactions.equals(with_years.interactions)


def test_csv_layout(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n2,1,5.0,964982224\n"
    )
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Death Note: Desu nôto (2006\u20132007),(no genres listed)\n"
        "3,Babylon 5 ,Sci-Fi\n"
    )
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,funny,964982703\n")
    data = convert_movielens(tmp_path)
    check_contract(data.items, data.interactions)
    assert data.items.rows() == [
        (1, "American President, The (1995)", "Comedy|Drama|Romance", jan1(1995), None),
        (2, "Death Note: Desu nôto (2006\u20132007)", "", jan1(2006), None),
        (3, "Babylon 5", "Sci-Fi", None, None),
    ]
    assert data.interactions[Columns.weight].to_list() == [3.5, 5.0, 4.0]


def write_ml1m(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    movies = (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Café au Lait (Métisse) (1993)::Comedy\n"
    )
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n")
    return folder


def test_ml1m_layout(tmp_path: Path) -> None:
    data = convert_movielens(write_ml1m(tmp_path / "ml-1m"))
    check_contract(data.items, data.interactions)
    assert data.interactions.rows() == [
        (2, 1193, 978298413, 4.0, UNKNOWN_DEVICE, None, "watch"),
        (1, 1193, 978300760, 5.0, UNKNOWN_DEVICE, None, "watch"),
        (1, 661, 978302109, 3.0, UNKNOWN_DEVICE, None, "watch"),
    ]
    cafe = data.items.filter(pl.col(Columns.item) == 3).row(0, named=True)
    assert cafe[Columns.title] == "Café au Lait (Métisse) (1993)"  # Latin-1 decoded
    assert cafe[Columns.release_ts] == jan1(1993)
    peach = data.items.filter(pl.col(Columns.item) == 661).row(0, named=True)
    assert peach[Columns.genres] == "Animation|Children's|Musical"


def test_ml1m_wrong_field_count(tmp_path: Path) -> None:
    folder = write_ml1m(tmp_path / "ml-1m")
    (folder / "ratings.dat").write_text("1::1193::5\n")
    with pytest.raises(DataError, match=r"^ratings\.dat: expected 4 fields separated by '::'"):
        convert_movielens(folder)


def write_ml100k(folder: Path, with_genre_file: bool = True) -> Path:
    folder.mkdir()
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t1\t5\t1\n")

    def flags(*names: str) -> str:
        return "|".join("1" if genre in names else "0" for genre in ML100K_GENRES)

    u_item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://imdb/toy|{flags('Animation', 'Comedy')}\n"
        f"242|Kolya (1996)|24-Jan-1997||http://imdb/kolya|{flags('Comedy')}\n"
        f"302|L.A. Confidential (1997)|||http://imdb/la|{flags('Crime', 'Film-Noir')}\n"
        f"267|unknown||||{flags('unknown')}\n"
        f"1682|Scream of Stone (Schrei aus Stein) (1991)|08-Mar-1996||http://x|{flags('Drama')}\n"
        f"1300|'Til There Was You (1997)|30-May-1997||http://x|{flags('Drama', 'Romance')}\n"
        f"1653|Entertaining Angels: The Dorothy Day Story (1996)|27-Sep-1996||x|{flags()}\n"
        f"1366|Mère (1996)|01-Jan-1996||x|{flags('Drama')}\n"
    )
    (folder / "u.item").write_bytes(u_item.encode("latin-1"))
    if with_genre_file:
        genre_lines = "".join(f"{name}|{i}\n" for i, name in enumerate(ML100K_GENRES))
        (folder / "u.genre").write_text(genre_lines + "\n")
    return folder


@pytest.mark.parametrize("with_genre_file", [True, False])
def test_ml100k_layout(tmp_path: Path, with_genre_file: bool) -> None:
    data = convert_movielens(write_ml100k(tmp_path / "ml-100k", with_genre_file))
    check_contract(data.items, data.interactions)
    assert data.interactions.height == 3
    assert data.interactions.row(0) == (196, 1, 1, 5.0, UNKNOWN_DEVICE, None, "watch")
    rows = {row[Columns.item]: row for row in data.items.iter_rows(named=True)}
    assert rows[1][Columns.genres] == "Animation|Comedy"
    assert rows[1][Columns.release_ts] == jan1(1995)
    # the release date column wins over the title year
    assert rows[242][Columns.release_ts] == int(datetime(1997, 1, 24, tzinfo=UTC).timestamp())
    assert rows[302][Columns.release_ts] == jan1(1997)  # no release date: title year
    assert rows[302][Columns.genres] == "Crime|Film-Noir"
    assert rows[267][Columns.genres] == ""  # 'unknown' genre means none
    assert rows[267][Columns.release_ts] is None
    assert rows[1653][Columns.genres] == ""
    assert rows[1366][Columns.title] == "Mère (1996)"


def test_ml100k_genre_count_mismatch(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml-100k")
    (folder / "u.genre").write_text("unknown|0\nAction|1\n")
    with pytest.raises(DataError, match=r"^u\.item: expected 7 fields separated by '\|'"):
        convert_movielens(folder)


def test_not_a_movielens_folder(tmp_path: Path) -> None:
    (tmp_path / "interactions.csv").write_text("user_id,item_id,timestamp\n1,1,1\n")
    with pytest.raises(DataError) as info:
        convert_movielens(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: not a MovieLens folder: expected ratings.csv, ratings.dat or u.data"
    )


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        convert_movielens(tmp_path / "absent")


def test_ratings_without_movies(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(DataError, match=r"has no movies\.csv"):
        convert_movielens(tmp_path)


def test_ratings_missing_column(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,timestamp\n1,1,964982703\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Action\n")
    with pytest.raises(DataError, match=r"^ratings\.csv: missing MovieLens column 'rating'"):
        convert_movielens(tmp_path)
