"""Per-item tables a build saves for the dashboard's item page, computed from what the build has
in memory anyway, and read back only by the dashboard (never by the request path).

- **activity**: events per item per day (per week when the log spans more than 180 days), as a
  sparse table: popularity over time;
- **neighbours**: the first ``neighbours`` rows of every item-to-item source's own table (factor
  cosine, metadata cosine, and any neighbour table a later source declares), so the page shows
  exactly what those sources propose;
- **audience**: whom each item is recommended to. Ranking every user again would cost as much
  as serving them all, so a seeded sample of users is ranked by the build's own ranker (the
  request path's code, on the states read back from Redis), at the build's time on each user's
  last device; per item: how many of them get it in their top k (its reach), and the users
  who get it highest;
- **catalogue**: the items' ids, titles and genres as the dataset gave them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from recsys.candidates.generate import ActiveSource
from recsys.candidates.model import CandidateModel
from recsys.candidates.neighbours import ItemNeighbours
from recsys.columns import Columns
from recsys.config import Settings
from recsys.features import RequestContext
from recsys.serving import ServingModel, rank
from recsys.user_state import UserState

TABLES_FILE: Final = "inspection.npz"
CATALOGUE_FILE: Final = "catalogue.parquet"
AUDIENCE_USERS_FILE: Final = "audience_users.parquet"
FILES: Final = (TABLES_FILE, CATALOGUE_FILE, AUDIENCE_USERS_FILE)
DAY_S: Final = 86_400
DAILY_UP_TO_S: Final = 180 * DAY_S
RANK_BATCH_USERS: Final = 256  # users ranked per call: ~128k feature rows, ~15 MB


@dataclass(frozen=True)
class ItemActivity:
    """Events per item per bucket, sparse: item ``i``'s rows are ``offsets[i]:offsets[i+1]``."""

    start_ts: int
    bucket_s: int
    n_buckets: int
    offsets: np.ndarray  # int64 [I+1]
    bucket: np.ndarray  # int32 [N], increasing within an item
    count: np.ndarray  # int32 [N]

    def series(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """(bucket start times, events) of one item over every bucket, zeros included."""
        s, e = self.offsets[item], self.offsets[item + 1]
        counts = np.zeros(self.n_buckets, dtype=np.int64)
        counts[self.bucket[s:e]] = self.count[s:e]
        starts = self.start_ts + self.bucket_s * np.arange(self.n_buckets, dtype=np.int64)
        return starts, counts


@dataclass(frozen=True)
class Audience:
    """Whom a sample of ranked answers recommends each item to."""

    users: list[str]  # the sampled users' ids; positions are what ``top_users`` holds
    k: int  # "recommended" means in the top k of the answer
    reach: np.ndarray  # int32 [I] sampled users whose top k holds the item
    top_users: np.ndarray  # int32 [I, T] index into ``users``, -1 padded; best position first
    top_position: np.ndarray  # int16 [I, T] the item's position in that answer, 0 = first
    top_score: np.ndarray  # float32 [I, T] its ranker score there


@dataclass(frozen=True)
class InspectionTables:
    activity: ItemActivity
    neighbours: dict[str, ItemNeighbours]  # by source name, in merge-priority order
    audience: Audience | None
    catalogue: pl.DataFrame  # item id, title, genres; row = dense item index


def item_activity(item_idx: np.ndarray, ts: np.ndarray, n_items: int) -> ItemActivity:
    """Events per item per day, or per week when the events span more than 180 days."""
    if len(ts) == 0:
        empty = np.zeros(0, dtype=np.int32)
        return ItemActivity(0, DAY_S, 0, np.zeros(n_items + 1, np.int64), empty, empty)
    first, last = int(ts.min()), int(ts.max())
    bucket_s = DAY_S if last - first <= DAILY_UP_TO_S else 7 * DAY_S
    start = first - first % DAY_S  # buckets start at midnight UTC
    n_buckets = (last - start) // bucket_s + 1
    key = item_idx.astype(np.int64) * n_buckets + (ts.astype(np.int64) - start) // bucket_s
    keys, counts = np.unique(key, return_counts=True)  # sorted: by item, then bucket
    items = keys // n_buckets
    offsets = np.searchsorted(items, np.arange(n_items + 1)).astype(np.int64)
    return ItemActivity(
        start_ts=start,
        bucket_s=bucket_s,
        n_buckets=int(n_buckets),
        offsets=offsets,
        bucket=(keys % n_buckets).astype(np.int32),
        count=counts.astype(np.int32),
    )


def neighbour_tables(sources: Sequence[ActiveSource], m: int) -> dict[str, ItemNeighbours]:
    """The first ``m`` neighbours of every built source that proposes items by an item-to-item
    table (it holds ``neighbours``, an ``ItemNeighbours``), by source name."""
    out = {}
    for s in sources:
        table = getattr(s.source, "neighbours", None)
        if isinstance(table, ItemNeighbours):
            out[s.spec.name] = ItemNeighbours(
                ids=np.ascontiguousarray(table.ids[:, :m]),
                sims=np.ascontiguousarray(table.sims[:, :m]),
            )
    return out


def audience_sample(n_users: int, settings: Settings) -> np.ndarray:
    """Dense indices of the users whose answers are ranked: a seeded sample, sorted."""
    cfg = settings.inspection
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.permutation(n_users)[: cfg.audience_users]).astype(np.int32)


def audience(
    serving: ServingModel,
    user_ids: list[str],
    states: Sequence[UserState | None],
    settings: Settings,
) -> Audience | None:
    """Rank the sampled users' states (as Redis holds them) with the build's ranker, at the
    build's time on each user's last device, and record, per item, its reach and the users it
    is recommended to highest. ``None`` states (no candidates stored) are left out."""
    cfg = settings.inspection
    kept = [(u, s) for u, s in zip(user_ids, states, strict=True) if s is not None]
    if cfg.audience_users == 0 or not kept:
        return None
    as_of = serving.items.as_of_ts
    contexts = [
        RequestContext(ts=as_of, device=int(s.hist_device[-1]) if len(s.hist_device) else 0)
        for _, s in kept
    ]
    rows_user, rows_item, rows_pos, rows_score = [], [], [], []
    for start in range(0, len(kept), RANK_BATCH_USERS):
        part = slice(start, start + RANK_BATCH_USERS)
        batch_states = [s for _, s in kept[part]]
        ranked = rank(
            serving, batch_states, contexts[part], cfg.audience_k, num_threads=cfg.threads
        )
        for u, answer in zip(range(start, start + len(batch_states)), ranked, strict=True):
            n = len(answer.item_idx)
            rows_user.append(np.full(n, u, dtype=np.int32))
            rows_item.append(answer.item_idx.astype(np.int32))
            rows_pos.append(np.arange(n, dtype=np.int16))
            rows_score.append(answer.scores.astype(np.float32))
    n_items = serving.items.n_items
    user = np.concatenate(rows_user)
    item = np.concatenate(rows_item)
    pos = np.concatenate(rows_pos)
    score = np.concatenate(rows_score)
    # per item: best position first, then the higher score, then the user (a stable order)
    order = np.lexsort((user, -score, pos, item))
    item, user, pos, score = item[order], user[order], pos[order], score[order]
    starts = np.searchsorted(item, np.arange(n_items))
    rank_in_item = np.arange(len(item)) - starts[item]
    keep = rank_in_item < cfg.audience_top
    shape = (n_items, cfg.audience_top)
    top_users = np.full(shape, -1, dtype=np.int32)
    top_position = np.full(shape, -1, dtype=np.int16)
    top_score = np.full(shape, np.nan, dtype=np.float32)
    at = (item[keep], rank_in_item[keep])
    top_users[at], top_position[at], top_score[at] = user[keep], pos[keep], score[keep]
    return Audience(
        users=[u for u, _ in kept],
        k=cfg.audience_k,
        reach=np.bincount(item, minlength=n_items).astype(np.int32),
        top_users=top_users,
        top_position=top_position,
        top_score=top_score,
    )


def catalogue(items: pl.DataFrame) -> pl.DataFrame:
    return items.select(Columns.item, Columns.title, Columns.genres)


def save_tables(directory: Path, tables: InspectionTables) -> list[Path]:
    """Write the tables into a build folder; returns the files written."""
    arrays: dict[str, np.ndarray] = {
        "activity_meta": np.array(
            [tables.activity.start_ts, tables.activity.bucket_s, tables.activity.n_buckets],
            dtype=np.int64,
        ),
        "activity_offsets": tables.activity.offsets,
        "activity_bucket": tables.activity.bucket,
        "activity_count": tables.activity.count,
        "neighbour_sources": np.array(list(tables.neighbours), dtype=np.str_),
    }
    for name, table in tables.neighbours.items():
        arrays[f"neighbours_{name}_ids"] = table.ids
        arrays[f"neighbours_{name}_sims"] = table.sims
    users = tables.audience.users if tables.audience else []
    if tables.audience is not None:
        a = tables.audience
        arrays |= {
            "audience_k": np.array(a.k),
            "audience_reach": a.reach,
            "audience_top_users": a.top_users,
            "audience_top_position": a.top_position,
            "audience_top_score": a.top_score,
        }
    np.savez_compressed(directory / TABLES_FILE, **arrays)  # type: ignore[arg-type]
    tables.catalogue.write_parquet(directory / CATALOGUE_FILE)
    pl.DataFrame({Columns.user: pl.Series(users, dtype=pl.String)}).write_parquet(
        directory / AUDIENCE_USERS_FILE
    )
    return [directory / name for name in FILES]


def has_tables(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES)


def load_tables(directory: Path) -> InspectionTables:
    """The tables of a build folder (``OSError``/``KeyError``/``ValueError`` when absent or
    unreadable: a build from before they existed has none)."""
    with np.load(directory / TABLES_FILE) as z:
        start_ts, bucket_s, n_buckets = (int(x) for x in z["activity_meta"])
        activity = ItemActivity(
            start_ts,
            bucket_s,
            n_buckets,
            z["activity_offsets"],
            z["activity_bucket"],
            z["activity_count"],
        )
        neighbours = {
            str(name): ItemNeighbours(
                ids=z[f"neighbours_{name}_ids"], sims=z[f"neighbours_{name}_sims"]
            )
            for name in z["neighbour_sources"]
        }
        audience_part = None
        if "audience_k" in z.files:
            users = pl.read_parquet(directory / AUDIENCE_USERS_FILE)[Columns.user].to_list()
            audience_part = Audience(
                users=users,
                k=int(z["audience_k"]),
                reach=z["audience_reach"],
                top_users=z["audience_top_users"],
                top_position=z["audience_top_position"],
                top_score=z["audience_top_score"],
            )
    return InspectionTables(
        activity=activity,
        neighbours=neighbours,
        audience=audience_part,
        catalogue=pl.read_parquet(directory / CATALOGUE_FILE),
    )


def write_inspection(
    directory: Path,
    model: CandidateModel,
    serving: ServingModel,
    item_idx: np.ndarray,
    ts: np.ndarray,
    items: pl.DataFrame,
    sampled: tuple[list[str], Sequence[UserState | None]],
    settings: Settings,
) -> tuple[InspectionTables, list[Path]]:
    """Compute every table from the build's stage 1 on all events, its events and the sampled
    users' states (``audience_sample``: ids, states as read back from Redis), and save them
    into ``directory``."""
    tables = InspectionTables(
        activity=item_activity(item_idx, ts, items.height),
        neighbours=neighbour_tables(model.sources, settings.inspection.neighbours),
        audience=audience(serving, *sampled, settings),
        catalogue=catalogue(items),
    )
    return tables, save_tables(directory, tables)
