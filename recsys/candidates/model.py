"""What stage 1 learns from a build's events: ALS factors and the fold-in for new users, what
each user has seen, the item table (with the transition tables from the order of events), the
item-to-item neighbour tables, the index over the item factors, every user's history, and the
candidate sources built from them."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.candidates.ann import ItemIndex, build_index
from recsys.candidates.covisitation import CovisitParams, sequence_tables
from recsys.candidates.generate import ActiveSource, CandidateBatch, generate_candidates
from recsys.candidates.neighbours import NeighbourTables, content_neighbours, nearest_items
from recsys.candidates.registry import SOURCES
from recsys.candidates.source import SourceInputs
from recsys.columns import Columns
from recsys.config import CandidateConfig, Settings
from recsys.events_index import IndexedEvents
from recsys.feedback import positives
from recsys.history import UserHistory
from recsys.items import ItemTable, build_item_table
from recsys.mf import Factors, FoldIn, fit_als, interaction_matrix


@dataclass(frozen=True)
class CandidateModel:
    """A fitted stage 1."""

    factors: Factors
    fold_in: FoldIn  # factor vectors of users the build never saw, from their positive events
    seen: sp.csr_matrix  # users x items, summed weights of every event, negative ones included
    items: ItemTable
    neighbours: NeighbourTables
    item_index: ItemIndex  # over the item factors; what the ALS source searches
    history: UserHistory
    sources: list[ActiveSource]  # in merge-priority order

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


def build_sources(inputs: SourceInputs) -> list[ActiveSource]:
    """Every declared source with a slot to fill, built; a source with no quota is not even
    built (unless it fills the slots the others leave)."""
    quotas = inputs.config.quotas
    return [
        ActiveSource(spec, spec.build(inputs), quotas.of(spec.name))
        for spec in SOURCES
        if spec.fills_rest or quotas.of(spec.name)
    ]


def neighbour_tables(
    items: ItemTable, titles: pl.Series, config: CandidateConfig
) -> NeighbourTables:
    """The item-to-item sources' tables: factor cosine, and metadata (genres, title words)."""
    m = config.neighbours
    return NeighbourTables(
        factors=nearest_items(items.factors_normed, m),
        content=content_neighbours(items.genre_mask, titles, items.pop_all, m),
    )


def fit_candidate_model(
    events: IndexedEvents,
    events_df: pl.DataFrame,
    n_users: int,
    catalogue: pl.DataFrame,
    devices: list[str],
    settings: Settings,
    init_item_factors: np.ndarray | None = None,
) -> CandidateModel:
    """Everything stage 1 learns from ``events`` (and nothing else), as of their last timestamp.

    Taste comes from positive events only (ALS and its fold-in, the item table, the sequence
    tables, histories); every event, a skip or a dislike included, removes its item from that
    user's candidates (recsys.feedback)."""
    seen = interaction_matrix(events.user, events.item, events.weight, n_users, catalogue.height)
    liked = events.only_positive()
    if liked is not events:
        events_df = positives(events_df)
        seen_positive = interaction_matrix(
            liked.user, liked.item, liked.weight, n_users, catalogue.height
        )
    else:
        seen_positive = seen
    factors = fit_als(seen_positive, settings.als, init_item_factors)
    as_of_ts = int(events.ts.max())
    # "what comes next" is taste too: a skip between two watches is not a transition (issue 15)
    params = CovisitParams.from_config(settings.candidates.sequence, len(liked))
    n_items = catalogue.height
    tables = sequence_tables(liked.user, liked.item, liked.ts, n_items, as_of_ts, params)
    items = build_item_table(
        catalogue,
        events_df,
        liked.item,
        factors.item,
        as_of_ts,
        devices,
        tables.transitions,
        tables.covisits,
    )
    history = UserHistory.from_events(
        liked.user, liked.item, liked.ts, liked.device, liked.completion, n_users
    )
    titles = catalogue[Columns.title].fill_null("")
    neighbours = neighbour_tables(items, titles, settings.candidates)
    item_index = build_index(items.factors, settings.ann)
    inputs = SourceInputs(items, neighbours, item_index, settings.candidates)
    return CandidateModel(
        factors=factors,
        # on the matrix ALS was fitted on: the fold-in replays ALS's user step, so its BM25
        # length norms and default weight must be those of the positive events the item factors
        # came from; a dislike counted in them would make its item look more popular
        fold_in=FoldIn.fit(seen_positive, factors.item, settings.als),
        seen=seen,
        items=items,
        neighbours=neighbours,
        item_index=item_index,
        history=history,
        sources=build_sources(inputs),
    )
