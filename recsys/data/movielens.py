"""Turn a MovieLens folder (any of the published layouts) into a contract ``Dataset``.

MovieLens is the public data set every recommender paper reports on, so being able to run the whole
pipeline on it makes our numbers comparable. Output goes through ``normalise_dataset``, the same
checks a user's own export gets. Tags are not converted: the dataset contract has no tags column.
"""

import io
from pathlib import Path

import polars as pl

from recsys.columns import Columns
from recsys.data.dataset import Dataset
from recsys.data.load import normalise_dataset
from recsys.errors import DataError

NO_GENRES = "(no genres listed)"
"""ml-latest / ml-25m spelling of 'no genres'; the contract spells it ``""``."""

ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""ml-100k's genre flag order, used only when the folder lacks ``u.genre``."""

_ML100K_UNKNOWN_GENRE = "unknown"
_EN_DASH = "\u2013"
_YEAR_IN_TITLE = r"\((\d{4})(?:[-" + _EN_DASH + r"]\d{4})?\)\s*$"
"""'Heat (1995)', 'Death Note (2006-2007)' (en dash): the year opens the last parenthesis."""

_DAT_SEPARATOR = "::"
_UNIT_SEPARATOR = "\x1f"  # a byte no MovieLens text contains: lets polars split on '::'


def convert_movielens(src_dir: Path, release_years: bool = True) -> Dataset:
    """Detect the layout of ``src_dir`` and convert it; ratings become the ``weight`` column.

    ``release_years=False`` leaves ``release_ts`` empty: items keep only title and genres, like
    a catalogue without release dates (issue 14 measures quality both ways). The title keeps its
    "(1995)": it is the title as published."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise DataError(str(src_dir), "not a directory")
    if (src_dir / "ratings.csv").is_file():
        interactions, items = _read_csv_layout(src_dir)
        names = ("ratings.csv", "movies.csv")
    elif (src_dir / "ratings.dat").is_file():
        interactions, items = _read_dat_layout(src_dir)
        names = ("ratings.dat", "movies.dat")
    elif (src_dir / "u.data").is_file():
        interactions, items = _read_100k_layout(src_dir)
        names = ("u.data", "u.item")
    else:
        raise DataError(
            str(src_dir), "not a MovieLens folder: expected ratings.csv, ratings.dat or u.data"
        )
    if not release_years:
        items = items.with_columns(pl.lit(None, dtype=pl.Int64).alias(Columns.release_ts))
    return normalise_dataset(interactions, items, interactions_file=names[0], items_file=names[1])


# --- layouts --------------------------------------------------------------------------------------


def _read_csv_layout(src_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ml-latest-small, ml-latest, ml-20m, ml-25m: headered CSV files, UTF-8."""
    ratings_path, movies_path = src_dir / "ratings.csv", _need_file(src_dir, "movies.csv")
    ratings = _read(
        ratings_path,
        schema_overrides={"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float32},
    )
    _need_columns(ratings, ("userId", "movieId", "rating", "timestamp"), ratings_path.name)
    movies = _read(movies_path, schema_overrides={"movieId": pl.Int64, "title": pl.String})
    _need_columns(movies, ("movieId", "title", "genres"), movies_path.name)
    return _interactions(ratings), _items(movies.select("movieId", "title", "genres"))


def _read_dat_layout(src_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ml-1m (and ml-10m): '::'-separated, no header, Latin-1 text in ml-1m."""
    ratings = _read_dat(src_dir / "ratings.dat", ("userId", "movieId", "rating", "timestamp"))
    movies = _read_dat(_need_file(src_dir, "movies.dat"), ("movieId", "title", "genres"))
    return _interactions(ratings), _items(movies)


def _read_100k_layout(src_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ml-100k: tab-separated ``u.data``; ``u.item`` separated by '|', one flag per genre."""
    data_path = src_dir / "u.data"
    ratings = _read(data_path, separator="\t", has_header=False, quote_char=None)
    ratings = _named(ratings, ("userId", "movieId", "rating", "timestamp"), data_path.name, "tab")

    item_path = _need_file(src_dir, "u.item")
    genres = _read_100k_genres(src_dir)
    fixed = ("movieId", "title", "release_date", "video_release_date", "imdb_url")
    flags = tuple(f"genre_{i}" for i in range(len(genres)))
    raw = _read(
        io.BytesIO(_utf8(item_path)),
        name=item_path.name,
        separator="|",
        has_header=False,
        quote_char=None,
        infer_schema=False,
    )
    raw = _named(raw, fixed + flags, item_path.name, "'|'")
    genre_names = [
        pl.when(pl.col(flag) == "1").then(pl.lit(name))
        for flag, name in zip(flags, genres, strict=True)
        if name != _ML100K_UNKNOWN_GENRE
    ]
    released = (
        pl.col("release_date")
        .str.strip_chars()
        .str.to_date("%d-%b-%Y", strict=False)
        .dt.epoch("s")
        .cast(pl.Int64)
    )
    movies = raw.select(
        pl.col("movieId").cast(pl.Int64, strict=False),
        pl.col("title"),
        pl.concat_str(genre_names, separator="|", ignore_nulls=True).alias("genres"),
        released.alias("release_date_ts"),
    )
    bad = movies["movieId"].null_count()
    if bad:
        raise DataError(item_path.name, f"{bad} rows have a movie id that is not an integer")
    items = _items(movies.drop("release_date_ts"))
    # u.item's release date is more precise than the title's year, which is only the fallback.
    items = items.with_columns(
        pl.coalesce(movies["release_date_ts"], pl.col(Columns.release_ts)).alias(Columns.release_ts)
    )
    return _interactions(ratings), items


def _read_100k_genres(src_dir: Path) -> tuple[str, ...]:
    """Genre names by flag position from ``u.genre`` ("Action|1"), else the published list."""
    path = src_dir / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    lines = [line for line in _utf8(path).decode().splitlines() if line.strip()]
    pairs = [line.rsplit("|", 1) for line in lines]
    if any(len(p) != 2 or not p[1].strip().isdigit() for p in pairs):
        raise DataError(path.name, "expected lines 'Genre|index'")
    by_index = {int(index): name for name, index in pairs}
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(path.name, "genre indexes must be 0, 1, 2, ... without gaps")
    return tuple(by_index[i] for i in range(len(by_index)))


# --- shared pieces --------------------------------------------------------------------------------


def _interactions(ratings: pl.DataFrame) -> pl.DataFrame:
    """MovieLens ratings in contract columns; the rating (0.5-5) is the interaction weight."""
    return ratings.select(
        pl.col("userId").alias(Columns.user),
        pl.col("movieId").alias(Columns.item),
        pl.col("timestamp").alias(Columns.timestamp),
        pl.col("rating").cast(pl.Float32, strict=False).alias(Columns.weight),
    )


def _items(movies: pl.DataFrame) -> pl.DataFrame:
    """Movies in contract columns: NO_GENRES becomes '', release_ts comes from the title year."""
    title = pl.col("title").cast(pl.String).str.strip_chars()
    year = title.str.extract(_YEAR_IN_TITLE, 1).cast(pl.Int32, strict=False)
    return movies.select(
        pl.col("movieId").alias(Columns.item),
        title.alias(Columns.title),
        pl.when(pl.col("genres") == NO_GENRES)
        .then(pl.lit(""))
        .otherwise(pl.col("genres"))
        .alias(Columns.genres),
        pl.date(year, 1, 1).dt.epoch("s").cast(pl.Int64).alias(Columns.release_ts),
    )


def _read_dat(path: Path, names: tuple[str, ...]) -> pl.DataFrame:
    """Read a '::'-separated file; polars splits on one byte only, so '::' becomes one first."""
    text = _utf8(path).decode().replace(_DAT_SEPARATOR, _UNIT_SEPARATOR)
    frame = _read(
        io.BytesIO(text.encode()),
        name=path.name,
        separator=_UNIT_SEPARATOR,
        has_header=False,
        quote_char=None,
    )
    return _named(frame, names, path.name, "'::'")


def _utf8(path: Path) -> bytes:
    """The file as UTF-8 bytes: ml-1m and ml-100k are Latin-1, newer releases UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path.name, f"cannot read: {exc.strerror or exc}") from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1").encode("utf-8")
    return raw


def _read(source: Path | io.BytesIO, *, name: str | None = None, **options: object) -> pl.DataFrame:
    """``pl.read_csv`` whose failures become a one-line ``DataError`` naming the file."""
    file = name if name is not None else Path(str(source)).name
    try:
        frame = pl.read_csv(source, **options)  # type: ignore[arg-type]
    except pl.exceptions.NoDataError:
        raise DataError(file, "file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(file, f"cannot read: {reason}") from None
    if frame.height == 0:
        raise DataError(file, "has no rows")
    return frame


def _named(frame: pl.DataFrame, names: tuple[str, ...], file: str, separator: str) -> pl.DataFrame:
    """Name a header-less frame's columns, failing clearly when the field count is off."""
    if frame.width != len(names):
        raise DataError(
            file,
            f"expected {len(names)} fields separated by {separator} per line, found {frame.width}",
        )
    return frame.rename(dict(zip(frame.columns, names, strict=True)))


def _need_file(src_dir: Path, name: str) -> Path:
    path = src_dir / name
    if not path.is_file():
        raise DataError(str(src_dir), f"MovieLens folder has no {name}")
    return path


def _need_columns(frame: pl.DataFrame, columns: tuple[str, ...], file: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(file, f"missing MovieLens column {', '.join(repr(c) for c in missing)}")
