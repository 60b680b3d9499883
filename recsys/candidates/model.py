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
from recsys.candidates.generate import (
    ActiveSource,
    CandidateBatch,
    SearchTimes,
    batch_candidates,
    generate_candidates,
    search_batches,
)
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
class ItemSide:
    """What every user's candidates are searched against: the same for every shard, so a
    sharded build puts it into Ray's object store once, and each node holds one copy that all
    its tasks read (arrays and the faiss index buffer, without copying)."""

    item_factors: np.ndarray
    sources: list[ActiveSource]  # in merge-priority order
    cfg: CandidateConfig
    batch_size: int


@dataclass(frozen=True)
class UserSide:
    """The per-user inputs, rows by dense user index. A shard gets only its own users' rows
    (``take``), so the data moved grows with the users, not with users x nodes."""

    factors: np.ndarray  # float32 [U, d]
    seen: sp.csr_matrix  # users x items
    history: UserHistory

    def take(self, users: np.ndarray) -> "UserSide":
        """The rows of ``users`` alone, in that order: ``users[j]`` becomes user ``j``."""
        return UserSide(self.factors[users], self.seen[users], self.history.take(users))


@dataclass(frozen=True)
class CandidateInputs:
    """What the per-user stage (candidates, merge, state encoding) reads, and nothing else."""

    items: ItemSide
    users: UserSide

    @property
    def cfg(self) -> CandidateConfig:
        return self.items.cfg

    @property
    def history(self) -> UserHistory:
        return self.users.history

    def batches(self, users: np.ndarray) -> list[np.ndarray]:
        return search_batches(users, self.users.seen, self.items.batch_size)

    def batch(self, batch_users: np.ndarray, times: SearchTimes | None = None) -> CandidateBatch:
        return batch_candidates(
            batch_users,
            self.users.factors,
            self.items.item_factors,
            self.users.seen,
            self.users.history,
            self.items.sources,
            self.items.cfg,
            times,
        )


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

    def candidate_inputs(self, settings: Settings) -> CandidateInputs:
        return CandidateInputs(
            ItemSide(self.factors.item, self.sources, settings.candidates, settings.ann.batch_size),
            UserSide(self.factors.user, self.seen, self.history),
        )

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
