"""A fitted stage 1: ALS factors, what each user has seen, the item table and index over them."""

from dataclasses import dataclass

import polars as pl
import scipy.sparse as sp

from recsys.candidates.ann import ItemIndex, build_index
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
    index: ItemIndex


def fit_stage1(
    events: IndexedEvents,
    events_df: pl.DataFrame,
    n_users: int,
    catalogue: pl.DataFrame,
    devices: list[str],
    settings: Settings,
) -> Stage1:
    """Everything stage 1 learns from ``events`` (and nothing else), as of their last timestamp."""
    seen = interaction_matrix(events.user, events.item, events.weight, n_users, catalogue.height)
    factors = fit_als(seen, settings.als)
    as_of_ts = int(events.ts.max())
    items = build_item_table(catalogue, events_df, events.item, factors.item, as_of_ts, devices)
    history = UserHistory.from_events(
        events.user, events.item, events.ts, events.device, events.completion, n_users
    )
    return Stage1(factors, seen, items, history, build_index(factors.item, settings.ann))
