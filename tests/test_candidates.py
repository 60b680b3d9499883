"""Candidate sources (one contract every source passes), the merge rules, and the index."""

import numpy as np
import polars as pl
import pytest

from recsys.candidates.ann import ExactIndex, HNSWIndex
from recsys.candidates.merge import SourceList, merge
from recsys.candidates.neighbours import content_vectors, nearest_items
from recsys.candidates.sources import (
    AlsSource,
    CandidateSource,
    ItemToItemSource,
    RankedListSource,
    Source,
    UserBatch,
    top_unique_per_row,
)
from recsys.config import ANNConfig

N_ITEMS, D = 300, 8


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_ITEMS, D)).astype(np.float32)


@pytest.fixture(scope="module")
def batch() -> UserBatch:
    rng = np.random.default_rng(1)
    recent = rng.integers(0, N_ITEMS, size=(6, 4))
    recent[0, :2] = -1  # a user with a short history
    recent[1, :] = -1  # and one with none
    return UserBatch(
        users=np.arange(6),
        factors=rng.normal(size=(6, D)).astype(np.float32),
        recent=recent,
        max_seen=7,
    )


def all_sources(factors: np.ndarray) -> list[CandidateSource]:
    normed = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    return [
        AlsSource(ExactIndex(factors)),
        AlsSource(HNSWIndex(factors, ANNConfig(hnsw_m=8, ef_construction=40, ef_search=64))),
        RankedListSource(np.arange(N_ITEMS, dtype=np.int32)[::-1].copy(), Source.POPULAR),
        ItemToItemSource(nearest_items(normed, 10), Source.ITEM_FACTORS),
    ]


@pytest.mark.parametrize("which", range(4))
def test_every_source_keeps_the_contract(factors: np.ndarray, batch: UserBatch, which: int) -> None:
    source = all_sources(factors)[which]
    out = source.candidates(batch, 20)
    assert out.shape[0] == len(batch.users)
    assert out.shape[1] <= 20 + batch.max_seen
    assert ((out >= -1) & (out < N_ITEMS)).all()
    for row in out:
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real)  # no duplicates
        assert (row[len(real) :] == -1).all()  # blanks only at the end
    assert isinstance(source.flag, Source)


def test_item_to_item_needs_history(factors: np.ndarray, batch: UserBatch) -> None:
    normed = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    out = ItemToItemSource(nearest_items(normed, 10), Source.ITEM_FACTORS).candidates(batch, 5)
    assert (out[1] == -1).all()  # no history, no neighbours
    assert (out[0] >= 0).sum() > 0


def test_top_unique_keeps_best_score_per_item() -> None:
    ids = np.array([[5, 7, 5, 9], [1, 1, 1, -1]])
    score = np.array([[0.1, 0.5, 0.9, 0.2], [0.3, 0.2, 0.1, -np.inf]])
    out = top_unique_per_row(ids, score, 3)
    assert out.tolist() == [[5, 7, 9], [1, -1, -1]]


def test_nearest_items_excludes_self() -> None:
    x = np.eye(5, dtype=np.float32)
    x[1] = x[0]  # item 1 is a copy of item 0
    nbrs = nearest_items(x, 2)
    assert (nbrs.ids != np.arange(5)[:, None]).all()
    assert nbrs.ids[0, 0] == 1 and nbrs.ids[1, 0] == 0
    assert nbrs.sims[0, 0] == pytest.approx(1.0)


def test_content_vectors_put_shared_genres_close() -> None:
    mask = np.array([0b011, 0b011, 0b100, 0b001], dtype=np.uint64)
    titles = pl.Series(["Star Wars", "Star Trek", "Cooking", None])
    v = content_vectors(mask, titles, np.array([1.0, 1.0, 1.0, 1.0]))
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 3] > sim[0, 2]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def _rows(m: np.ndarray) -> list[list[int]]:
    return [list(r) for r in m]


def test_merge_quotas_dedupe_flags_and_fill() -> None:
    als = SourceList(np.array([[1, 2, 3, 4, 5, 6]]), Source.ALS, quota=2, width=6)
    pop = SourceList(np.array([[2, 9, 8, 7]]), Source.POPULAR, quota=2, width=4)
    fresh = SourceList(np.array([[9, 10, -1, -1]]), Source.FRESH, quota=1, width=2)
    seen = np.array([3], dtype=np.int64)  # row 0 has seen item 3
    out = merge([als, pop, fresh], seen, n_items=20, per_user=7)
    got = dict(zip(out.items.tolist(), out.flags.tolist(), strict=True))
    # quotas: ALS {1,2}; popular {9,8} (2 was taken); fresh {10} (9 was taken);
    # fill to 7 with leftovers in priority order: ALS 4, 5 (3 is seen)
    assert set(got) == {1, 2, 9, 8, 10, 4, 5}
    assert got[2] == Source.ALS | Source.POPULAR  # found by both, one slot
    assert got[9] == Source.POPULAR | Source.FRESH
    assert got[10] == Source.FRESH
    assert out.offsets.tolist() == [0, 7]


def test_a_source_offers_only_its_width_of_unseen_items() -> None:
    als = SourceList(np.array([[1, 2], [1, 2]]), Source.ALS, quota=0, width=2)
    pop = SourceList(np.array([[5, 6, 1, 2], [5, 6, 1, 2]]), Source.POPULAR, quota=4, width=2)
    seen = np.array([0 * 20 + 5], dtype=np.int64)  # row 0 has seen item 5
    out = merge([als, pop], seen, n_items=20, per_user=10)
    rows = np.split(out.items, out.offsets[1:-1])
    flags = np.split(out.flags, out.offsets[1:-1])
    # row 0: popular's two unseen are 6 and 1, so 1 is flagged popular and 2 is not
    f0 = dict(zip(rows[0].tolist(), flags[0].tolist(), strict=True))
    assert f0 == {6: Source.POPULAR, 1: Source.ALS | Source.POPULAR, 2: Source.ALS}
    f1 = dict(zip(rows[1].tolist(), flags[1].tolist(), strict=True))
    assert f1 == {5: Source.POPULAR, 6: Source.POPULAR, 1: Source.ALS, 2: Source.ALS}


def test_merge_of_nothing_is_empty() -> None:
    empty = SourceList(np.full((3, 4), -1), Source.FRESH, quota=4, width=4)
    out = merge([empty], np.empty(0, np.int64), n_items=10, per_user=5)
    assert out.offsets.tolist() == [0, 0, 0, 0]
    assert len(out.items) == len(out.flags) == 0


def test_merge_caps_at_per_user_and_handles_many_rows() -> None:
    rng = np.random.default_rng(3)
    a = SourceList(rng.integers(0, 50, size=(4, 30)), Source.ALS, quota=30, width=30)
    b = SourceList(rng.integers(0, 50, size=(4, 30)), Source.POPULAR, quota=30, width=30)
    out = merge([a, b], np.empty(0, np.int64), n_items=50, per_user=12)
    assert np.diff(out.offsets).tolist() == [12, 12, 12, 12]
    for r in range(4):
        row = out.items[out.offsets[r] : out.offsets[r + 1]]
        assert len(set(row.tolist())) == 12
