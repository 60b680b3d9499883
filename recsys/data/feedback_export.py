"""Events posted to the API, as interactions of the data contract: how the next build sees them.

``POST /events`` writes each event to the user's real-time list (what the API folds in at once)
and to the event log (``recsys.store.feedback_log``). ``recsys events export`` reads the log,
turns it into interaction rows (``type`` included, so skips and dislikes reach the next build
as negatives) and merges them into a copy of the dataset the last build read.

Delivery of events is at least once (a client retries after a 503, and the retried write may
have landed), so identical events are kept once; an event already in the dataset (exported by
an earlier run) is not added again.
"""

from collections.abc import Sequence
from typing import Final

import polars as pl

from recsys.columns import UNKNOWN_DEVICE, Columns
from recsys.data.dataset import Dataset
from recsys.data.load import normalise_dataset
from recsys.feedback import EVENT_TYPE_DTYPE
from recsys.store.feedback_log import LoggedEvent

IDENTITY: Final = (Columns.user, Columns.item, Columns.timestamp, Columns.event_type)
"""What makes two rows the same event."""


def events_frame(logged: Sequence[LoggedEvent]) -> pl.DataFrame:
    """Logged events as interaction rows (ids as text), duplicates of one event kept once."""
    frame = pl.DataFrame(
        {
            Columns.user: [e.user_id for e in logged],
            Columns.item: [str(e.event.item_id) for e in logged],
            Columns.timestamp: [e.event.timestamp for e in logged],
            Columns.weight: [1.0] * len(logged),
            Columns.device: [e.event.device or UNKNOWN_DEVICE for e in logged],
            Columns.completion: [e.event.completion for e in logged],
            Columns.event_type: [e.event.type for e in logged],
        },
        schema={
            Columns.user: pl.String,
            Columns.item: pl.String,
            Columns.timestamp: pl.Int64,
            Columns.weight: pl.Float32,
            Columns.device: pl.String,
            Columns.completion: pl.Float32,
            Columns.event_type: EVENT_TYPE_DTYPE,
        },
    )
    return frame.unique(subset=list(IDENTITY), keep="first", maintain_order=True)


def _as_ids_of(series: pl.Series, dtype: pl.DataType) -> pl.Series | None:
    """Text ids in the dataset's id type when they all fit (every id the text of an integer,
    for Int64 ids); None when they do not."""
    if dtype == pl.String:
        return series
    as_int = series.cast(pl.Int64, strict=False)
    ok = as_int.is_not_null() & (as_int.cast(pl.String) == series)
    return as_int if bool(ok.all()) else None


def _align_ids(
    base: pl.DataFrame, new: pl.DataFrame, column: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both frames with ``column`` of one type: the dataset's, or text in both when the API's
    ids do not fit it (an id the dataset never had, like "new-user-7")."""
    cast = _as_ids_of(new[column], base.schema[column])
    if cast is not None:
        return base, new.with_columns(cast.alias(column))
    return base.with_columns(pl.col(column).cast(pl.String)), new


def merge_events(dataset: Dataset, events: pl.DataFrame) -> tuple[Dataset, int]:
    """``dataset`` with the events it does not hold yet appended, validated like any dataset
    (``normalise_dataset``); and how many events were new."""
    base, items = dataset.interactions, dataset.items
    base, events = _align_ids(base, events, Columns.user)
    base, events = _align_ids(base, events, Columns.item)
    if base.schema[Columns.item] != items.schema[Columns.item]:
        items = items.with_columns(pl.col(Columns.item).cast(base.schema[Columns.item]))
    new = events.select(base.columns).join(
        base.select(IDENTITY), on=list(IDENTITY), how="anti", maintain_order="left"
    )
    merged = normalise_dataset(pl.concat([base, new], how="vertical"), items)
    return merged, new.height
