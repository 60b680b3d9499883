"""The item table of a build: per-item arrays the features read, indexed by dense item index.

Built by one function from the events a model may see (everything before its cut), so the
offline training set and the API compute features from tables made the same way.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from recsys.candidates.neighbours import ItemNeighbours
from recsys.columns import Columns
from recsys.devices import device_codes
from recsys.evaluation.ranking_metrics import popularity_percentile

RECENT_WINDOW_S = 7 * 86400
MAX_GENRES = 64  # genres are a uint64 bitmask; rarer genres beyond 63 share the last bit


@dataclass(frozen=True)
class ItemTable:
    item_ids: pl.Series  # the user's ids; position = dense index
    pop_all: np.ndarray  # float32 [I] log1p(events)
    pop_recent: np.ndarray  # float32 [I] log1p(events in the RECENT_WINDOW_S before as_of_ts)
    release_ts: np.ndarray  # float64 [I] nan = unknown
    duration_min: np.ndarray  # float32 [I] nan = unknown
    genre_mask: np.ndarray  # uint64 [I]
    device_share: np.ndarray  # float32 [I, n_devices] smoothed share of the item's views per device
    factors: np.ndarray  # float32 [I, d]
    factors_normed: np.ndarray  # float32 [I, d]
    popular: np.ndarray  # int32 item indices, most popular first (recent, then all time)
    devices: list[str]  # device vocabulary; code 0 = unknown
    genres: list[str]
    as_of_ts: int
    # from the order of events (recsys.candidates.covisitation); part of the serving model, so
    # an event posted to the API changes the next answer's sequential features
    transitions: ItemNeighbours  # directed: sims = P(next = b | a)
    covisits: ItemNeighbours  # undirected: sims = co-visit count

    @property
    def n_items(self) -> int:
        return len(self.pop_all)

    @cached_property
    def ids_list(self) -> list[str | int]:
        """Item ids as Python values, for building responses without a polars call per item."""
        return self.item_ids.to_list()

    @cached_property
    def pop_percentile(self) -> np.ndarray:
        """Each item's popularity percentile in [0, 1] (mid-rank by training events), as the
        offline report's pop pct@k defines it; the API's live popularity metric reads it."""
        return popularity_percentile(self.pop_all)

    def device_code(self, device: str | None) -> int:
        try:
            return self.devices.index(device) if device else 0
        except ValueError:
            return 0

    def index_of(self, item_id: str | int) -> int:
        """Dense index of an item id as it arrives over HTTP (-1 if not in this build)."""
        return self._positions.get(str(item_id), -1)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.item_ids.cast(pl.String).to_list())}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({Columns.item: self.item_ids}).write_parquet(directory / "item_ids.parquet")
        np.savez(
            directory / "item_table.npz",
            pop_all=self.pop_all,
            pop_recent=self.pop_recent,
            release_ts=self.release_ts,
            duration_min=self.duration_min,
            genre_mask=self.genre_mask,
            device_share=self.device_share,
            factors=self.factors,
            popular=self.popular,
            devices=np.array(self.devices),
            genres=np.array(self.genres),
            as_of_ts=np.array(self.as_of_ts),
            **self.transitions.named("transition"),
            **self.covisits.named("covisit"),
        )

    @classmethod
    def load(cls, directory: Path) -> "ItemTable":
        ids = pl.read_parquet(directory / "item_ids.parquet")[Columns.item]
        with np.load(directory / "item_table.npz") as z:
            factors = z["factors"]
            return cls(
                item_ids=ids,
                pop_all=z["pop_all"],
                pop_recent=z["pop_recent"],
                release_ts=z["release_ts"],
                duration_min=z["duration_min"],
                genre_mask=z["genre_mask"],
                device_share=z["device_share"],
                factors=factors,
                factors_normed=_normalise(factors),
                popular=z["popular"],
                devices=[str(d) for d in z["devices"]],
                genres=[str(g) for g in z["genres"]],
                as_of_ts=int(z["as_of_ts"]),
                transitions=ItemNeighbours.read(z, "transition"),
                covisits=ItemNeighbours.read(z, "covisit"),
            )


def _normalise(factors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return (factors / np.maximum(norms, 1e-9)).astype(np.float32)


def build_item_table(
    items: pl.DataFrame,
    events: pl.DataFrame,
    item_idx_of_events: np.ndarray,
    item_factors: np.ndarray,
    as_of_ts: int,
    devices: list[str],
    transitions: ItemNeighbours,
    covisits: ItemNeighbours,
) -> ItemTable:
    """Aggregate ``events`` (all before ``as_of_ts``) into per-item arrays.

    ``items`` is in dense-index order; ``item_idx_of_events`` gives each event's dense index.
    """
    n = items.height
    ts = events[Columns.timestamp].to_numpy()
    counts = np.bincount(item_idx_of_events, minlength=n)
    recent = np.bincount(item_idx_of_events[ts >= as_of_ts - RECENT_WINDOW_S], minlength=n)
    dev_code = device_codes(events[Columns.device], devices)
    per_device = np.zeros((n, len(devices)), dtype=np.float64)
    np.add.at(per_device, (item_idx_of_events, dev_code), 1.0)
    # smoothed towards the catalogue-wide device mix, so rarely seen items get a neutral share
    prior = (per_device.sum(axis=0) + 1.0) / (per_device.sum() + len(devices))
    device_share = (per_device + 5.0 * prior) / (counts[:, None] + 5.0)
    genres, genre_mask = _genre_masks(items[Columns.genres])
    popular = np.lexsort((-counts, -recent)).astype(np.int32)
    return ItemTable(
        item_ids=items[Columns.item],
        pop_all=np.log1p(counts).astype(np.float32),
        pop_recent=np.log1p(recent).astype(np.float32),
        release_ts=items[Columns.release_ts].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        duration_min=items[Columns.duration_min].cast(pl.Float32).fill_null(np.nan).to_numpy(),
        genre_mask=genre_mask,
        device_share=device_share.astype(np.float32),
        factors=item_factors.astype(np.float32),
        factors_normed=_normalise(item_factors),
        popular=popular,
        devices=devices,
        genres=genres,
        as_of_ts=as_of_ts,
        transitions=transitions,
        covisits=covisits,
    )


def _genre_masks(genres: pl.Series) -> tuple[list[str], np.ndarray]:
    exploded = (
        pl.DataFrame({"row": np.arange(genres.len()), "g": genres.fill_null("").str.split("|")})
        .explode("g")
        .filter(pl.col("g") != "")
    )
    vocab = exploded["g"].value_counts(sort=True)["g"].to_list()
    code = {g: min(i, MAX_GENRES - 1) for i, g in enumerate(vocab)}
    rows = exploded["row"].to_numpy()
    bits = np.array([code[g] for g in exploded["g"].to_list()], dtype=np.uint64)
    mask = np.zeros(genres.len(), dtype=np.uint64)
    np.bitwise_or.at(mask, rows, np.left_shift(np.uint64(1), bits))
    return vocab, mask
