"""A fitted stage 1: ALS factors, what each user has seen, the item table and index over them."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.candidates.ann import build_index
from recsys.candidates.generate import CandidateBatch, SourceSpec, generate_candidates
from recsys.candidates.neighbours import content_neighbours, nearest_items
from recsys.candidates.sources import AlsSource, ItemToItemSource, RankedListSource, Source
from recsys.columns import Columns
from recsys.config import Settings
from recsys.events_index import IndexedEvents
from recsys.history import UserHistory
from recsys.items import ItemTable, build_item_table
from recsys.mf import Factors, fit_als, interaction_matrix


@dataclass(frozen=True)
class Stage1:
    factors: Factors
    seen: sp.csr_matrix  # users x items, summed weights
    items: ItemTable
    history: UserHistory
    sources: list[SourceSpec]

    @property
    def als_index_kind(self) -> str:
        als = next(s.source for s in self.sources if isinstance(s.source, AlsSource))
        return als.index.kind

    def candidates(self, users: np.ndarray, settings: Settings) -> Iterator[CandidateBatch]:
        return generate_candidates(
            users,
            self.factors.user,
            self.factors.item,
            self.seen,
            self.history,
            self.sources,
            settings.candidates,
            settings.ann.batch_size,
        )


def fresh_items(items: ItemTable, days: int) -> np.ndarray:
    """Items released in the ``days`` before the build, most watched recently first."""
    age_s = items.as_of_ts - items.release_ts
    fresh = np.flatnonzero((age_s >= 0) & (age_s <= days * 86400))
    return fresh[np.lexsort((-items.pop_all[fresh], -items.pop_recent[fresh]))].astype(np.int32)


def build_sources(items: ItemTable, titles: pl.Series, settings: Settings) -> list[SourceSpec]:
    """The configured source mix; a source with no quota is not even built."""
    q, m = settings.candidates.quotas, settings.candidates.neighbours
    specs = [SourceSpec(AlsSource(build_index(items.factors, settings.ann)), q.als)]
    if q.item_factors:
        nbrs = nearest_items(items.factors_normed, m)
        specs.append(SourceSpec(ItemToItemSource(nbrs, Source.ITEM_FACTORS), q.item_factors))
    if q.item_content:
        nbrs = content_neighbours(items.genre_mask, titles, items.pop_all, m)
        specs.append(SourceSpec(ItemToItemSource(nbrs, Source.ITEM_CONTENT), q.item_content))
    if q.popular:
        specs.append(SourceSpec(RankedListSource(items.popular, Source.POPULAR), q.popular))
    if q.fresh:
        fresh = fresh_items(items, settings.candidates.fresh_days)
        specs.append(SourceSpec(RankedListSource(fresh, Source.FRESH), q.fresh))
    return specs


def fit_stage1(
    events: IndexedEvents,
    events_df: pl.DataFrame,
    n_users: int,
    catalogue: pl.DataFrame,
    devices: list[str],
    settings: Settings,
    init_item_factors: np.ndarray | None = None,
) -> Stage1:
    """Everything stage 1 learns from ``events`` (and nothing else), as of their last timestamp."""
    seen = interaction_matrix(events.user, events.item, events.weight, n_users, catalogue.height)
    factors = fit_als(seen, settings.als, init_item_factors)
    as_of_ts = int(events.ts.max())
    items = build_item_table(catalogue, events_df, events.item, factors.item, as_of_ts, devices)
    history = UserHistory.from_events(
        events.user, events.item, events.ts, events.device, events.completion, n_users
    )
    titles = catalogue[Columns.title].fill_null("")
    return Stage1(factors, seen, items, history, build_sources(items, titles, settings))
