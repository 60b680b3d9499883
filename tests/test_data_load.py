"""load_dataset: a broken contract gives one line naming file and column; good data normalises."""

import logging
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recsys.columns import UNKNOWN_DEVICE, Columns
from recsys.data.dataset import Dataset, write_dataset
from recsys.data.load import find_data_file, load_dataset, normalise_dataset
from recsys.errors import DataError

INTERACTIONS_SCHEMA = {
    Columns.timestamp: pl.Int64,
    Columns.weight: pl.Float32,
    Columns.device: pl.String,
    Columns.completion: pl.Float32,
    Columns.event_type: pl.Enum(["watch", "click", "skip", "dislike"]),
}
ITEMS_SCHEMA = {
    Columns.title: pl.String,
    Columns.genres: pl.String,
    Columns.release_ts: pl.Int64,
    Columns.duration_min: pl.Float32,
}


def interactions(columns: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """Three good events over two users; ``columns`` replaces or adds columns."""
    base: dict[str, list[Any]] = {
        Columns.user: [1, 2, 1],
        Columns.item: [10, 20, 20],
        Columns.timestamp: [1_700_000_300, 1_700_000_100, 1_700_000_200],
    }
    return {**base, **(columns or {})}


def items(columns: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    base: dict[str, list[Any]] = {Columns.item: [10, 20], Columns.title: ["Ten", "Twenty"]}
    return {**base, **(columns or {})}


def write(
    data_dir: Path,
    inter: dict[str, list[Any]] | pl.DataFrame | str | None = None,
    its: dict[str, list[Any]] | pl.DataFrame | str | None = None,
    fmt: str = "csv",
) -> Path:
    """Write a dataset directory; a ``str`` is written verbatim as the file's content."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for stem, content in (
        ("interactions", interactions() if inter is None else inter),
        ("items", items() if its is None else its),
    ):
        path = data_dir / f"{stem}.{fmt}"
        if isinstance(content, str):
            path.write_text(content)
            continue
        frame = content if isinstance(content, pl.DataFrame) else pl.DataFrame(content)
        if fmt == "csv":
            frame.write_csv(path)
        else:
            frame.write_parquet(path)
    return data_dir


def load_error(data_dir: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(data_dir)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --- directory and files --------------------------------------------------------------------------


def test_missing_dir(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope")
    assert "nope" in message and "does not exist" in message


def test_dir_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert "not a directory" in load_error(path)


@pytest.mark.parametrize("stem", ["interactions", "items"])
def test_missing_file(tmp_path: Path, stem: str) -> None:
    write(tmp_path)
    (tmp_path / f"{stem}.csv").unlink()
    message = load_error(tmp_path)
    assert f"{stem}.parquet or {stem}.csv" in message


def test_parquet_preferred_over_csv(tmp_path: Path) -> None:
    write(tmp_path, fmt="csv")
    write(tmp_path, inter=interactions({Columns.weight: [2.0, 2.0, 2.0]}), fmt="parquet")
    assert find_data_file(tmp_path, "interactions").name == "interactions.parquet"
    assert load_dataset(tmp_path).interactions[Columns.weight].to_list() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("stem", ["interactions", "items"])
def test_corrupt_parquet(tmp_path: Path, stem: str) -> None:
    write(tmp_path, fmt="parquet")
    (tmp_path / f"{stem}.parquet").write_bytes(b"definitely not parquet")
    assert load_error(tmp_path).startswith(f"{stem}.parquet: cannot read: ")


def test_bad_csv(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id,item_id,timestamp\n1,10,5,99,100\n")
    assert load_error(tmp_path).startswith("interactions.csv: cannot read: ")


@pytest.mark.parametrize("stem", ["interactions", "items"])
def test_empty_file(tmp_path: Path, stem: str) -> None:
    write(tmp_path)
    (tmp_path / f"{stem}.csv").write_text("")
    assert load_error(tmp_path) == f"{stem}.csv: file is empty"


def test_header_only_csv(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id,item_id,timestamp\n")
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "no rows" in message


def test_zero_row_parquet(tmp_path: Path) -> None:
    empty = pl.DataFrame(schema={Columns.item: pl.Int64, Columns.title: pl.String})
    write(tmp_path, its=empty, fmt="parquet")
    message = load_error(tmp_path)
    assert "items.parquet" in message and "no rows" in message


# --- columns --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "column"),
    [
        ("interactions", Columns.user),
        ("interactions", Columns.item),
        ("interactions", Columns.timestamp),
        ("items", Columns.item),
    ],
)
def test_missing_required_column(tmp_path: Path, stem: str, column: str) -> None:
    frames = {"interactions": interactions(), "items": items()}
    del frames[stem][column]
    write(tmp_path, frames["interactions"], frames["items"])
    message = load_error(tmp_path)
    assert f"{stem}.csv" in message and column in message and "missing required column" in message


@pytest.mark.parametrize(
    ("stem", "column", "values"),
    [
        ("interactions", Columns.timestamp, ["2023-01-01", "2023-01-02", "2023-01-03"]),
        ("interactions", Columns.timestamp, [1.5, 2.0, 3.0]),
        ("interactions", Columns.weight, ["high", "low", "high"]),
        ("interactions", Columns.completion, ["all", "half", "none"]),
        ("items", Columns.release_ts, ["1995", "1996-02-01"]),
        ("items", Columns.release_ts, [1.25, 2.0]),
        ("items", Columns.duration_min, ["long", "short"]),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_wrong_type(tmp_path: Path, stem: str, column: str, values: list[Any], fmt: str) -> None:
    frames = {"interactions": interactions(), "items": items()}
    frames[stem][column] = values
    write(tmp_path, frames["interactions"], frames["items"], fmt=fmt)
    message = load_error(tmp_path)
    assert f"{stem}.{fmt}" in message and f"'{column}'" in message


@pytest.mark.parametrize(
    ("stem", "column", "values"),
    [
        ("interactions", Columns.user, [1.5, 2.5, 3.5]),
        ("interactions", Columns.item, [True, False, True]),
        ("items", Columns.item, [1.5, 2.5]),
    ],
)
def test_wrong_id_type(tmp_path: Path, stem: str, column: str, values: list[Any]) -> None:
    """Only Parquet has typed ids: in a CSV, '1.5' is a valid text id."""
    frames = {"interactions": interactions(), "items": items()}
    frames[stem][column] = values
    write(tmp_path, frames["interactions"], frames["items"], fmt="parquet")
    message = load_error(tmp_path)
    assert f"{stem}.parquet" in message and f"'{column}'" in message
    assert "integers or text" in message


def test_whole_float_timestamps_are_cast(tmp_path: Path) -> None:
    write(
        tmp_path,
        interactions({Columns.timestamp: [3.0, 1.0, 2.0]}),
        items({Columns.release_ts: [10.0, None]}),
        fmt="parquet",
    )
    data = load_dataset(tmp_path)
    assert data.interactions[Columns.timestamp].to_list() == [1, 2, 3]
    assert data.interactions.schema[Columns.timestamp] == pl.Int64
    assert data.items[Columns.release_ts].to_list() == [10, None]


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_completion_outside_unit_interval(tmp_path: Path, value: float) -> None:
    write(tmp_path, interactions({Columns.completion: [0.0, 1.0, value]}))
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "'completion'" in message and "[0, 1]" in message


def test_nan_weight(tmp_path: Path) -> None:
    write(tmp_path, interactions({Columns.weight: [1.0, float("nan"), 2.0]}), fmt="parquet")
    message = load_error(tmp_path)
    assert "interactions.parquet" in message and "'weight'" in message and "NaN" in message


@pytest.mark.parametrize(
    ("stem", "column"),
    [
        ("interactions", Columns.user),
        ("interactions", Columns.item),
        ("interactions", Columns.timestamp),
        ("items", Columns.item),
    ],
)
def test_nulls_in_required_column(tmp_path: Path, stem: str, column: str) -> None:
    frames = {"interactions": interactions(), "items": items()}
    frames[stem][column] = [None] * (len(frames[stem][column]) - 1) + frames[stem][column][-1:]
    nulls = len(frames[stem][column]) - 1
    write(tmp_path, frames["interactions"], frames["items"])
    message = load_error(tmp_path)
    assert (
        f"{stem}.csv" in message and f"'{column}'" in message and f"null) in {nulls} of" in message
    )


def test_millisecond_timestamps(tmp_path: Path) -> None:
    write(tmp_path, interactions({Columns.timestamp: [1_700_000_000_000, 1, 2]}))
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "'timestamp'" in message
    assert "milliseconds" in message


def test_negative_timestamps(tmp_path: Path) -> None:
    write(tmp_path, interactions({Columns.timestamp: [-5, 1, 2]}))
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "'timestamp'" in message and "negative" in message


def test_timestamps_past_2106_are_refused(tmp_path: Path) -> None:
    """Issue 12: 5e9 passed (below the millisecond guess) and wrapped to 705032704 in the
    uint32 history codec."""
    write(tmp_path, interactions({Columns.timestamp: [5_000_000_000, 1, 2]}))
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "'timestamp'" in message
    assert "5000000000" in message and "4294967295" in message
    write(tmp_path, interactions({Columns.timestamp: [4_294_967_295, 1, 2]}))
    assert load_dataset(tmp_path).interactions[Columns.timestamp].max() == 4_294_967_295


def test_negative_weights_are_refused(tmp_path: Path) -> None:
    write(tmp_path, interactions({Columns.weight: [1.0, -0.5, 2.0]}))
    message = load_error(tmp_path)
    assert "interactions.csv" in message and "'weight'" in message and "negative" in message


def test_weights_beyond_float32_are_refused(tmp_path: Path) -> None:
    write(tmp_path, interactions({Columns.weight: [1.0, 1e300, 2.0]}), fmt="parquet")
    message = load_error(tmp_path)
    assert "'weight'" in message and "too large" in message


def test_negative_release_ts_is_fine(tmp_path: Path) -> None:
    """Films from before 1970 have negative unix release times."""
    write(tmp_path, its=items({Columns.release_ts: [-1_000_000_000, 0]}))
    assert load_dataset(tmp_path).items[Columns.release_ts].to_list() == [-1_000_000_000, 0]


def test_negative_duration(tmp_path: Path) -> None:
    write(tmp_path, its=items({Columns.duration_min: [90.0, -3.0]}))
    message = load_error(tmp_path)
    assert "items.csv" in message and "'duration_min'" in message


def test_duplicate_item_ids(tmp_path: Path) -> None:
    write(tmp_path, its={Columns.item: [10, 20, 20, 10, 30]})
    message = load_error(tmp_path)
    assert "items.csv" in message and "'item_id'" in message and "2 duplicated" in message


# --- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("ids", ["int", "str"])
def test_normalisation_round_trip(tmp_path: Path, fmt: str, ids: str) -> None:
    def as_ids(values: list[int]) -> list[Any]:
        return values if ids == "int" else [f"u{v}" for v in values]

    inter = {
        Columns.user: as_ids([2, 1, 2, 1]),
        Columns.item: as_ids([20, 10, 10, 20]),
        Columns.timestamp: [300, 100, 100, 200],
        Columns.device: ["tv", None, "phone", "tv"],
        Columns.completion: [0.5, None, 1.0, 0.0],
        "extra_column": ["dropped", "dropped", "dropped", "dropped"],
    }
    its = {
        Columns.item: as_ids([10, 20]),
        Columns.genres: ["Drama|Comedy", None],
        Columns.duration_min: [90, None],
        "poster_url": ["x", "y"],
    }
    data = load_dataset(write(tmp_path / "in", inter, its, fmt=fmt))

    id_dtype = pl.Int64 if ids == "int" else pl.String
    assert data.interactions.schema == pl.Schema(
        {Columns.user: id_dtype, Columns.item: id_dtype, **INTERACTIONS_SCHEMA}
    )
    assert data.items.schema == pl.Schema({Columns.item: id_dtype, **ITEMS_SCHEMA})
    # sorted by (timestamp, user_id); defaults filled; optional nulls kept where null is the default
    assert data.interactions[Columns.user].to_list() == as_ids([1, 2, 1, 2])
    assert data.interactions[Columns.timestamp].to_list() == [100, 100, 200, 300]
    assert data.interactions[Columns.weight].to_list() == [1.0] * 4
    assert data.interactions[Columns.device].to_list() == [UNKNOWN_DEVICE, "phone", "tv", "tv"]
    assert data.interactions[Columns.completion].to_list() == [None, 1.0, 0.0, 0.5]
    assert data.items[Columns.genres].to_list() == ["Drama|Comedy", ""]
    assert data.items[Columns.title].to_list() == [None, None]
    assert data.items[Columns.release_ts].to_list() == [None, None]
    assert data.items[Columns.duration_min].to_list() == [90.0, None]

    write_dataset(data, tmp_path / "out")
    again = load_dataset(tmp_path / "out")
    assert again.interactions.equals(data.interactions)
    assert again.items.equals(data.items)


def test_empty_optional_csv_columns(tmp_path: Path) -> None:
    """A CSV column with no values reads as text; it must still count as all-null."""
    write(
        tmp_path,
        "user_id,item_id,timestamp,weight,device,completion\n1,10,5,,,\n",
        "item_id,title,genres,release_ts,duration_min\n10,,,,\n",
    )
    data = load_dataset(tmp_path)
    assert data.interactions.row(0) == (1, 10, 5, 1.0, UNKNOWN_DEVICE, None, "watch")
    assert data.items.row(0) == (10, None, "", None, None)
    assert data.items.schema == pl.Schema({Columns.item: pl.Int64, **ITEMS_SCHEMA})


def test_csv_types_from_all_rows(tmp_path: Path) -> None:
    """A fraction far down a weight column must not break the fast type inference."""
    n = 20_050
    rows = "".join(f"1,10,{t},{1.5 if t == n - 1 else 1}\n" for t in range(n))
    write(tmp_path, "user_id,item_id,timestamp,weight\n" + rows)
    weights = load_dataset(tmp_path).interactions[Columns.weight]
    assert weights.sum() == n - 1 + 1.5


def test_sort_is_stable(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            Columns.user: [1, 1, 1],
            Columns.item: [20, 10, 20],
            Columns.timestamp: [5, 5, 5],
            Columns.weight: [1.0, 2.0, 3.0],
        },
    )
    assert load_dataset(tmp_path).interactions[Columns.weight].to_list() == [1.0, 2.0, 3.0]


def test_csv_ids_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "user_id,item_id,timestamp\n007,10,1\n7,20,2\n",
        "item_id,title\n10,Ten\n20,Twenty\n",
    )
    data = load_dataset(tmp_path)
    assert data.interactions[Columns.user].to_list() == ["007", "7"]
    assert data.interactions.schema[Columns.item] == pl.Int64


def test_item_id_dtype_mismatch_becomes_text(tmp_path: Path) -> None:
    write(tmp_path, its=items({Columns.item: ["10", "20"]}), fmt="parquet")
    data = load_dataset(tmp_path)
    assert data.interactions.schema[Columns.item] == pl.String
    assert data.items.schema[Columns.item] == pl.String
    assert set(data.interactions[Columns.item]) == {"10", "20"}


def test_missing_items_are_added(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, its=items({Columns.item: [10, 99], Columns.genres: ["Drama", "Comedy"]}))
    with caplog.at_level(logging.WARNING, logger="recsys.data.load"):
        data = load_dataset(tmp_path)
    assert data.items[Columns.item].to_list() == [10, 99, 20]
    added = data.items.row(2, named=True)
    assert added == {
        Columns.item: 20,
        Columns.title: None,
        Columns.genres: "",
        Columns.release_ts: None,
        Columns.duration_min: None,
    }
    assert "1 item ids in interactions.csv are not in items.csv" in caplog.text
    assert data.n_items == 3


def test_normalise_dataset_accepts_frames() -> None:
    """Converters call it directly; categorical ids become plain text."""
    data = normalise_dataset(
        pl.DataFrame(interactions()).with_columns(pl.col(Columns.user).cast(pl.String)),
        pl.DataFrame(items()),
    )
    assert isinstance(data, Dataset)
    assert data.interactions.schema[Columns.user] == pl.String
    assert data.n_users == 2
