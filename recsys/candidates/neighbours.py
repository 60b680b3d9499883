"""Item-to-item neighbour tables: for every item, its most similar items (self excluded).

Two notions of similar: cosine of ALS factors (what co-watching says), and cosine of a metadata
vector (genres, title words; what the catalogue says, which also covers items nobody watched).
Vectors have equal norms here, so HNSW searches them well; exact search below ``EXACT_BELOW``.
"""

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

EXACT_BELOW = 20_000
TITLE_BUCKETS = 256
_WORD = re.compile(r"[a-z][a-z']{2,}")
_STOP = frozenset(
    ["the", "and", "of", "a", "an", "in", "on", "to", "for", "with", "from", "at", "by", "title"]
)


@dataclass(frozen=True)
class ItemNeighbours:
    ids: np.ndarray  # int32 [I, M], -1 where fewer than M
    sims: np.ndarray  # float32 [I, M]

    def named(self, name: str) -> dict[str, Any]:
        """Its arrays under keys that start with ``name``, as ``np.savez`` keywords."""
        return {f"{name}_ids": self.ids, f"{name}_sims": self.sims}

    @classmethod
    def read(cls, arrays: Mapping[str, np.ndarray], name: str) -> "ItemNeighbours":
        """What ``named(name)`` saved."""
        return cls(arrays[f"{name}_ids"], arrays[f"{name}_sims"])


def nearest_items(vectors: np.ndarray, m: int) -> ItemNeighbours:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    k = min(m + 1, n)
    index: faiss.Index
    if n < EXACT_BELOW:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    sims, ids = index.search(x, k)
    # drop each item itself (wherever ties put it), keep the first m others
    not_self = ids != np.arange(n)[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)[:, :m]
    sims = np.take_along_axis(sims, order, axis=1)[:, :m]
    if ids.shape[1] < m:
        pad = m - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
    sims = np.where(ids >= 0, sims, -np.inf).astype(np.float32)
    return ItemNeighbours(ids=ids.astype(np.int32), sims=sims)


def content_vectors(
    genre_mask: np.ndarray, titles: pl.Series, popularity: np.ndarray
) -> np.ndarray:
    """Unit vectors of genres and hashed title words (idf-weighted), with a small popularity
    component so that among equally similar items the popular ones come first."""
    n = len(genre_mask)
    bits = np.arange(64, dtype=np.uint64)
    genres = ((genre_mask[:, None] >> bits[None, :]) & np.uint64(1)).astype(np.float32)
    genres = genres[:, genres.any(axis=0)]
    words = np.zeros((n, TITLE_BUCKETS), dtype=np.float32)
    tokens = [
        [w for w in _WORD.findall(t.lower()) if w not in _STOP] if t else []
        for t in titles.to_list()
    ]
    for i, toks in enumerate(tokens):
        for w in toks:
            words[i, zlib.crc32(w.encode()) % TITLE_BUCKETS] = 1.0  # stable across runs
    df = words.sum(axis=0)
    idf = np.where(df > 0, np.log((n + 1) / (df + 1)), 0.0).astype(np.float32)
    words *= idf
    content = np.hstack([genres, words])
    content /= np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-9)
    pop = popularity / max(float(popularity.max()), 1e-9)
    eps = 0.1
    return np.hstack([content * np.sqrt(1 - eps**2), eps * pop[:, None]]).astype(np.float32)


def content_neighbours(
    genre_mask: np.ndarray, titles: pl.Series, popularity: np.ndarray, m: int
) -> ItemNeighbours:
    return nearest_items(content_vectors(genre_mask, titles, popularity), m)


NEIGHBOURS_FILE = "neighbours.npz"


@dataclass(frozen=True)
class NeighbourTables:
    """The item-to-item tables of a build's similarity sources, computed once and saved with
    the build: the API builds the same sources again from them to answer users the build never
    saw (``recsys.serving.cold_start_state``)."""

    factors: ItemNeighbours  # factor cosine
    content: ItemNeighbours  # genres and title words

    def save(self, directory: Path) -> None:
        tables = self.factors.named("factor") | self.content.named("content")
        np.savez(directory / NEIGHBOURS_FILE, **tables)

    @classmethod
    def load(cls, directory: Path) -> "NeighbourTables":
        with np.load(directory / NEIGHBOURS_FILE) as z:
            return cls(ItemNeighbours.read(z, "factor"), ItemNeighbours.read(z, "content"))
