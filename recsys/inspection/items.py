"""The item page: what the catalogue says of an item, how much it was watched over time, its
nearest items by every item-to-item table the build saved, and whom it is recommended to."""

import math
from typing import Final

import numpy as np
import polars as pl

from recsys.candidates.registry import SOURCES
from recsys.columns import Columns
from recsys.inspection.tables import InspectionTables
from recsys.items import RECENT_WINDOW_S, ItemTable
from recsys.records import Record

ItemId = str | int


class ItemRef(Record):
    item_id: ItemId
    title: str | None


class Neighbour(ItemRef):
    similarity: float


class NeighbourList(Record):
    source: str
    label: str
    """What "near" means in this table, for the page's heading."""
    description: str
    items: list[Neighbour]


NEAR_BY: Final = {
    "item_factors": "factors (ALS cosine, learnt from co-watching)",
    "item_content": "content (genres and title words)",
    "sequential": "what comes next (transition probability, from the order of events)",
}
"""Headings of the item-to-item sources' tables; a table not listed is headed by its source."""


class Activity(Record):
    bucket_s: int
    start_ts: int
    counts: list[int]


class AudienceUser(Record):
    user_id: str
    position: int  # 0 = first in that user's answer
    score: float


class AudienceView(Record):
    sample_users: int
    k: int
    reach: int
    """Sampled users whose top k holds the item."""
    users: list[AudienceUser]


class ItemView(Record):
    model_version: str
    item_id: ItemId
    index: int
    title: str | None
    genres: list[str]
    release_ts: int | None
    duration_min: float | None
    events_all_time: int
    events_recent: int
    recent_window_s: int
    popularity_rank: int  # 0 = the most popular (recent first, as the cold-start answer)
    activity: Activity
    neighbours: list[NeighbourList]
    audience: AudienceView | None


def titles_of(catalogue: pl.DataFrame) -> list[str | None]:
    return catalogue[Columns.title].to_list()


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _description(source: str) -> str:
    try:
        return SOURCES[source].description
    except KeyError:  # a source of a newer build this code does not declare
        return source


def neighbour_lists(
    index: int, items: ItemTable, tables: InspectionTables, titles: list[str | None]
) -> list[NeighbourList]:
    ids = items.ids_list
    out = []
    for source, table in tables.neighbours.items():
        row_ids, row_sims = table.ids[index], table.sims[index]
        keep = row_ids >= 0
        out.append(
            NeighbourList(
                source=source,
                label=NEAR_BY.get(source, source),
                description=_description(source),
                items=[
                    Neighbour(item_id=ids[j], title=titles[j], similarity=round(float(s), 4))
                    for j, s in zip(row_ids[keep].tolist(), row_sims[keep].tolist(), strict=True)
                ],
            )
        )
    return out


def audience_view(index: int, tables: InspectionTables) -> AudienceView | None:
    a = tables.audience
    if a is None:
        return None
    users = a.top_users[index]
    keep = users >= 0
    return AudienceView(
        sample_users=len(a.users),
        k=a.k,
        reach=int(a.reach[index]),
        users=[
            AudienceUser(user_id=a.users[u], position=int(p), score=round(float(s), 6))
            for u, p, s in zip(
                users[keep].tolist(),
                a.top_position[index][keep].tolist(),
                a.top_score[index][keep].tolist(),
                strict=True,
            )
        ],
    )


def item_view(version: str, index: int, items: ItemTable, tables: InspectionTables) -> ItemView:
    """Everything the item page shows of the item at dense ``index`` of the build."""
    titles = titles_of(tables.catalogue)
    genres_text = tables.catalogue[Columns.genres][index]
    _, counts = tables.activity.series(index)
    release = items.release_ts[index]
    popularity_rank = int(np.flatnonzero(items.popular == index)[0])
    return ItemView(
        model_version=version,
        item_id=items.ids_list[index],
        index=index,
        title=titles[index],
        genres=[g for g in (genres_text or "").split("|") if g],
        release_ts=None if math.isnan(release) else int(release),
        duration_min=_finite_or_none(float(items.duration_min[index])),
        events_all_time=round(float(np.expm1(items.pop_all[index]))),
        events_recent=round(float(np.expm1(items.pop_recent[index]))),
        recent_window_s=RECENT_WINDOW_S,
        popularity_rank=popularity_rank,
        activity=Activity(
            bucket_s=tables.activity.bucket_s,
            start_ts=tables.activity.start_ts,
            counts=counts.tolist(),
        ),
        neighbours=neighbour_lists(index, items, tables, titles),
        audience=audience_view(index, tables),
    )
