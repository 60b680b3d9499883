"""The user inspector's pieces that need no I/O: a user's recent history, their candidates by
source, and how two answers for the same user differ."""

from collections.abc import Sequence

import numpy as np

from recsys.candidates.registry import SOURCES
from recsys.inspection.items import ItemId, ItemRef
from recsys.items import ItemTable
from recsys.records import Record
from recsys.store.events import WatchEvent
from recsys.user_state import UserState


class HistoryRow(ItemRef):
    ts: int
    device: str
    completion: float | None
    live: bool
    """Recorded through ``POST /events`` after the build (not yet in a build's training log)."""


class Candidate(ItemRef):
    stage1_rank: int  # position in stage-1 order, 0 = first
    stage1_score: float
    sources: list[str]


class SourceCandidates(Record):
    source: str
    description: str
    count: int
    """Candidates this source found (an item found by several counts for each)."""
    items: list[Candidate]
    """The first of them in stage-1 order."""


class Change(ItemRef):
    rank_a: int | None  # 0 = first; None: not in that answer
    rank_b: int | None


def history_rows(
    state: UserState,
    events: Sequence[WatchEvent],
    items: ItemTable,
    titles: Sequence[str | None],
    limit: int,
) -> list[HistoryRow]:
    """The user's last ``limit`` events, newest first: the state's history with the real-time
    events folded in (``state`` after ``apply_events``), the latter marked ``live``."""
    live = {(items.index_of(e.item_id), int(e.timestamp)) for e in events}
    ids = items.ids_list
    rows = []
    n = len(state.hist_item)
    for j in range(n - 1, max(n - limit, 0) - 1, -1):
        i, ts = int(state.hist_item[j]), int(state.hist_ts[j])
        completion = float(state.hist_completion[j])
        device = int(state.hist_device[j])
        rows.append(
            HistoryRow(
                item_id=ids[i] if i >= 0 else "(not in this build)",
                title=titles[i] if i >= 0 else None,
                ts=ts,
                device=items.devices[device] if device < len(items.devices) else "unknown",
                completion=None if np.isnan(completion) else round(completion, 3),
                live=(i, ts) in live,
            )
        )
    return rows


def candidates_by_source(
    state: UserState, items: ItemTable, titles: Sequence[str | None], per_source: int
) -> list[SourceCandidates]:
    """For every declared source, how many of the user's candidates it found and the first
    ``per_source`` of them in stage-1 order (the order Redis stores them in)."""
    ids = items.ids_list
    out = []
    for spec in SOURCES:
        positions = np.flatnonzero(state.cand_sources & spec.flag)
        out.append(
            SourceCandidates(
                source=spec.name,
                description=spec.description,
                count=len(positions),
                items=[
                    Candidate(
                        item_id=ids[int(state.cand_item[p])],
                        title=titles[int(state.cand_item[p])],
                        stage1_rank=int(p),
                        stage1_score=round(float(state.cand_score[p]), 6),
                        sources=SOURCES.names_of(int(state.cand_sources[p])),
                    )
                    for p in positions[:per_source].tolist()
                ],
            )
        )
    return out


def answer_changes(
    a: Sequence[ItemId], b: Sequence[ItemId], titles: dict[ItemId, str | None]
) -> list[Change]:
    """Every item of either answer with its rank in each, in order of answer ``b`` then the
    items only ``a`` has: what changing the context did to the list."""
    rank_a = {item: r for r, item in enumerate(a)}
    rank_b = {item: r for r, item in enumerate(b)}
    order = list(b) + [item for item in a if item not in rank_b]
    return [
        Change(
            item_id=item,
            title=titles.get(item),
            rank_a=rank_a.get(item),
            rank_b=rank_b.get(item),
        )
        for item in order
    ]
