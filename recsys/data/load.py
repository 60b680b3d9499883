"""Read a dataset directory, check it against the contract and normalise it (see ``dataset.py``).

Every problem is raised as one ``DataError`` line that names the file and the column, because the
person who reads it is fixing their export script, not debugging ours. All checks are polars
expressions over whole columns, so a 25M-row log is validated in seconds.
"""

import logging
from pathlib import Path

import polars as pl

from recsys.columns import UNKNOWN_DEVICE, Columns
from recsys.data.dataset import Dataset
from recsys.errors import DataError
from recsys.feedback import DEFAULT_EVENT_TYPE, EVENT_TYPE_DTYPE, EVENT_TYPES

log = logging.getLogger(__name__)

INTERACTIONS: str = "interactions"
ITEMS: str = "items"

MS_THRESHOLD: int = 100_000_000_000
"""Unix seconds above this are year 5138: such values are almost surely milliseconds."""

MAX_EVENT_TS: int = 2**32 - 1
"""The last event time that can be stored: histories keep unix seconds as uint32 (until
2106-02-07). A later one would wrap (5e9 became 705032704, issue 12)."""

_MAX_REASON = 160
_INFER_ROWS = 10_000
_EXAMPLES = 3

_STRING_TYPES = (pl.String, pl.Categorical, pl.Enum)


def find_data_file(data_dir: Path, stem: str) -> Path:
    """Return ``stem.parquet``, else ``stem.csv``: Parquet wins because it keeps the dtypes."""
    for suffix in (".parquet", ".csv"):
        path = data_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DataError(str(data_dir), f"no {stem} file: expected {stem}.parquet or {stem}.csv")


def load_dataset(data_dir: Path) -> Dataset:
    """Read, validate and normalise ``data_dir`` so downstream code never has to check a column."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(str(data_dir), "data directory does not exist")
    if not data_dir.is_dir():
        raise DataError(str(data_dir), "not a directory")
    interactions_path = find_data_file(data_dir, INTERACTIONS)
    items_path = find_data_file(data_dir, ITEMS)
    interactions = read_table(interactions_path, id_columns=(Columns.user, Columns.item))
    items = read_table(items_path, id_columns=(Columns.item,))
    return normalise_dataset(
        interactions, items, interactions_file=interactions_path.name, items_file=items_path.name
    )


def read_table(path: Path, id_columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """Read one Parquet or CSV file; any reader failure becomes a one-line ``DataError``.

    CSV id columns are read as text and turned into integers only when every value is a canonical
    integer, so ids such as ``"007"`` survive exactly as the user wrote them.
    """
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = _read_csv(path, dict.fromkeys(id_columns, pl.String))
            frame = frame.with_columns(
                _ids_as_ints_if_canonical(frame[c]) for c in id_columns if c in frame.columns
            )
    except pl.exceptions.NoDataError:
        raise DataError(path.name, "file is empty") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise DataError(path.name, f"cannot read: {_short(exc)}") from None
    return frame


def _read_csv(path: Path, overrides: dict[str, type[pl.String]]) -> pl.DataFrame:
    """Infer column types from the first rows (fast); if a later row breaks them, from all rows."""
    try:
        return pl.read_csv(path, schema_overrides=overrides, infer_schema_length=_INFER_ROWS)
    except pl.exceptions.ComputeError:
        return pl.read_csv(path, schema_overrides=overrides, infer_schema_length=None)


def normalise_dataset(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    *,
    interactions_file: str = INTERACTIONS,
    items_file: str = ITEMS,
) -> Dataset:
    """Validate two raw frames and return them in the normalised schema of ``dataset.py``.

    Shared by ``load_dataset`` and the converters (MovieLens, synthetic), so every dataset that
    reaches the offline job went through the same checks. The file names are only for messages.
    """
    inter = _normalise_interactions(interactions, interactions_file)
    its = _normalise_items(items, items_file)

    inter_id, items_id = inter.schema[Columns.item], its.schema[Columns.item]
    if inter_id != items_id:
        log.warning(
            "%s has %s item ids but %s has %s: using text ids in both",
            interactions_file,
            inter_id,
            items_file,
            items_id,
        )
        inter = inter.with_columns(pl.col(Columns.item).cast(pl.String))
        its = its.with_columns(pl.col(Columns.item).cast(pl.String))

    its = _add_missing_items(inter, its, interactions_file, items_file)
    inter = inter.sort([Columns.timestamp, Columns.user], maintain_order=True)
    return Dataset(interactions=inter, items=its)


# --- interactions ---------------------------------------------------------------------------------


def _normalise_interactions(frame: pl.DataFrame, file: str) -> pl.DataFrame:
    _require(frame, Columns.interactions_required, file)
    frame = frame.select(
        c for c in (*Columns.interactions_required, *Columns.interactions_optional) if c in frame
    )
    user = _id_column(frame, Columns.user, file)
    item = _id_column(frame, Columns.item, file)
    ts = _unix_seconds(frame, Columns.timestamp, file, allow_negative=False)
    late = ts.filter(ts > MAX_EVENT_TS)
    if late.len():
        what = _count(late.len(), "value")
        raise DataError(
            file,
            f"column '{Columns.timestamp}' has {what} like {late[0]} after {MAX_EVENT_TS} "
            "(2106-02-07), the last time that can be stored",
        )
    weight = _optional_float(frame, Columns.weight, file, default=1.0)
    negative = weight.filter(weight < 0)
    if negative.len():
        what = _count(negative.len(), "negative value")
        raise DataError(
            file, f"column '{Columns.weight}' has {what} like {negative[0]:g}: weights are >= 0"
        )
    device = _optional_text(frame, Columns.device, file, default=UNKNOWN_DEVICE)
    completion = _optional_float(frame, Columns.completion, file, default=None)
    _check_unit_interval(completion, Columns.completion, file)
    event_type = _event_types(frame, file)
    return pl.DataFrame([user, item, ts, weight, device, completion, event_type])


def _event_types(frame: pl.DataFrame, file: str) -> pl.Series:
    """The ``type`` column as ``EVENT_TYPE_DTYPE``; absent or null means a watch."""
    text = _optional_text(frame, Columns.event_type, file, default=DEFAULT_EVENT_TYPE)
    bad = text.filter(~text.is_in(list(EVENT_TYPES))).unique(maintain_order=True)
    if bad.len():
        raise DataError(
            file,
            f"column '{Columns.event_type}' has {_count(bad.len(), 'unknown event type')} "
            f"(e.g. {_examples(bad)}): expected one of {', '.join(EVENT_TYPES)}",
        )
    return text.cast(EVENT_TYPE_DTYPE)


# --- items ----------------------------------------------------------------------------------------


def _normalise_items(frame: pl.DataFrame, file: str) -> pl.DataFrame:
    _require(frame, Columns.items_required, file)
    frame = frame.select(
        c for c in (*Columns.items_required, *Columns.items_optional) if c in frame
    )
    item = _id_column(frame, Columns.item, file)
    dup = item.filter(item.is_duplicated()).unique(maintain_order=True)
    if dup.len():
        raise DataError(
            file,
            f"column '{Columns.item}' has {dup.len()} duplicated ids (e.g. {_examples(dup)}): "
            "each item must appear once",
        )
    title = _optional_text(frame, Columns.title, file, default=None)
    genres = _optional_text(frame, Columns.genres, file, default="")
    release = (
        _unix_seconds(frame, Columns.release_ts, file, allow_negative=True)
        if Columns.release_ts in frame
        else pl.Series(Columns.release_ts, [None] * frame.height, dtype=pl.Int64)
    )
    duration = _optional_float(frame, Columns.duration_min, file, default=None)
    negative = int((duration < 0).sum())
    if negative:
        raise DataError(
            file, f"column '{Columns.duration_min}' has {_count(negative, 'negative value')}"
        )
    return pl.DataFrame([item, title, genres, release, duration])


def _add_missing_items(
    interactions: pl.DataFrame, items: pl.DataFrame, interactions_file: str, items_file: str
) -> pl.DataFrame:
    """Add items known only from interactions, with empty metadata: dropping events is worse."""
    missing = (
        interactions.select(Columns.item)
        .unique(maintain_order=True)
        .join(items.select(Columns.item), on=Columns.item, how="anti", maintain_order="left")
    )
    if missing.is_empty():
        return items
    log.warning(
        "%d item ids in %s are not in %s (e.g. %s): added with empty metadata",
        missing.height,
        interactions_file,
        items_file,
        _examples(missing[Columns.item]),
    )
    filler = missing.with_columns(
        pl.lit(None, pl.String).alias(Columns.title),
        pl.lit("", pl.String).alias(Columns.genres),
        pl.lit(None, pl.Int64).alias(Columns.release_ts),
        pl.lit(None, pl.Float32).alias(Columns.duration_min),
    )
    return pl.concat([items, filler], how="vertical")


# --- column checks --------------------------------------------------------------------------------


def _require(frame: pl.DataFrame, columns: tuple[str, ...], file: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise DataError(
            file,
            f"missing required column {names} (found: {', '.join(frame.columns) or 'none'})",
        )
    if frame.height == 0:
        raise DataError(file, "has no rows")


def _no_nulls(series: pl.Series, file: str) -> None:
    nulls = series.null_count()
    if nulls:
        raise DataError(
            file, f"column '{series.name}' is empty (null) in {nulls} of {series.len()} rows"
        )


def _id_column(frame: pl.DataFrame, name: str, file: str) -> pl.Series:
    """Ids stay what the user gave: any integer becomes Int64, any text becomes String."""
    series = frame[name]
    _no_nulls(series, file)
    dtype = series.dtype
    if dtype.is_integer():
        return _cast(series, pl.Int64, file)
    if isinstance(dtype, _STRING_TYPES):
        return series.cast(pl.String)
    raise DataError(file, f"column '{name}' must hold integers or text ids, got {dtype}")


def _unix_seconds(frame: pl.DataFrame, name: str, file: str, *, allow_negative: bool) -> pl.Series:
    """Integer unix seconds; whole floats are accepted (CSV exports), text and dates are not."""
    series = frame[name]
    if name in Columns.interactions_required:
        _no_nulls(series, file)
    dtype = series.dtype
    if _all_null(series):
        return series.cast(pl.Int64)
    if dtype.is_float():
        bad = int((~series.is_finite() | (series.round(0) != series)).sum())
        if bad:
            what = _count(bad, "value")
            raise DataError(
                file, f"column '{name}' must be whole unix seconds: {what} with a fraction"
            )
    elif not dtype.is_integer():
        raise DataError(file, f"column '{name}' must be integer unix seconds, got {dtype}")
    series = _cast(series, pl.Int64, file)
    too_big = series.filter(series.abs() > MS_THRESHOLD)
    if too_big.len():
        what = _count(too_big.len(), "value")
        raise DataError(
            file,
            f"column '{name}' has {what} like {too_big[0]} that look like milliseconds: "
            "expected unix seconds",
        )
    if not allow_negative:
        negative = series.filter(series < 0)
        if negative.len():
            what = _count(negative.len(), "negative value")
            raise DataError(file, f"column '{name}' has {what} like {negative[0]}")
    return series


def _optional_float(
    frame: pl.DataFrame, name: str, file: str, *, default: float | None
) -> pl.Series:
    """A numeric column as Float32, nulls (or an absent column) replaced by ``default``."""
    if name not in frame:
        return pl.Series(name, [default] * frame.height, dtype=pl.Float32)
    series = frame[name]
    dtype = series.dtype
    if _all_null(series):
        series = series.cast(pl.Null)
    elif not dtype.is_numeric():
        raise DataError(file, f"column '{name}' must be numeric, got {dtype}")
    series = series.cast(pl.Float32)  # a value beyond float32's range becomes inf here
    bad = int((~series.is_finite()).sum())
    if bad:
        what = _count(bad, "NaN, infinite or too large value")
        raise DataError(file, f"column '{name}' has {what} (float32 holds up to 3.4e38)")
    return series if default is None else series.fill_null(default)


def _optional_text(frame: pl.DataFrame, name: str, file: str, *, default: str | None) -> pl.Series:
    """A text column as String, nulls (or an absent column) replaced by ``default``.

    Numbers are accepted and written as text: a CSV whose titles are all years reads as integers.
    """
    if name not in frame:
        return pl.Series(name, [default] * frame.height, dtype=pl.String)
    series = frame[name]
    dtype = series.dtype
    if not (
        isinstance(dtype, _STRING_TYPES)
        or dtype == pl.Null
        or dtype.is_integer()
        or dtype.is_float()
    ):
        raise DataError(file, f"column '{name}' must be text, got {dtype}")
    series = series.cast(pl.String)
    return series if default is None else series.fill_null(default)


def _check_unit_interval(series: pl.Series, name: str, file: str) -> None:
    outside = series.filter((series < 0) | (series > 1))
    if outside.len():
        what = _count(outside.len(), "value")
        raise DataError(
            file, f"column '{name}' must be within [0, 1]: {what} outside, e.g. {outside[0]:g}"
        )


def _cast(series: pl.Series, dtype: pl.DataType | type[pl.DataType], file: str) -> pl.Series:
    try:
        return series.cast(dtype)
    except pl.exceptions.PolarsError:
        raise DataError(
            file, f"column '{series.name}' has values that do not fit {dtype}"
        ) from None


def _ids_as_ints_if_canonical(series: pl.Series) -> pl.Series:
    """Int64 when each id is exactly an integer's text ("12", not "012" or "1e3"); else String."""
    as_int = series.cast(pl.Int64, strict=False)
    same = as_int.cast(pl.String) == series
    if series.len() and bool(same.fill_null(False).sum() == series.drop_nulls().len()):
        return as_int
    return series


def _all_null(series: pl.Series) -> bool:
    """An empty CSV column reads as String: its type says nothing, so any type will do."""
    return series.null_count() == series.len()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _examples(series: pl.Series) -> str:
    return ", ".join(repr(v) for v in series.head(_EXAMPLES).to_list())


def _short(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= _MAX_REASON else first[: _MAX_REASON - 3] + "..."
