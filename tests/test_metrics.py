"""Ranking metrics: hand-computed cases, edge cases, a property test against a naive loop, and
agreement with an independent library (ranx) on random data."""

import math

import numpy as np
import pytest
from scipy.stats import rankdata

from recsys.evaluation.ranking_metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    mean_popularity_percentile,
    mrr_at_k,
    ndcg_at_k,
    popularity_percentile,
    ranking_metrics_at_k,
    recall_at_k,
    summarize,
)


def rel(*items: int) -> np.ndarray:
    return np.array(items, dtype=np.int64)


# --------------------------------------------------------------------------- hand-computed NDCG


def test_ndcg_single_relevant_at_rank_3() -> None:
    # hit at rank 3: DCG = 1/log2(3+1) = 1/2; IDCG (1 relevant) = 1/log2(2) = 1  ->  0.5
    rec = np.array([[10, 11, 12, 13, 14]])
    assert ndcg_at_k(rec, [rel(12)], k=5) == pytest.approx([0.5])


def test_ndcg_two_relevant_at_ranks_1_and_3() -> None:
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5; IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.6309...
    rec = np.array([[5, 6, 7, 8, 9]])
    expected = (1 + 0.5) / (1 + 1 / math.log2(3))  # = 0.9197...
    assert ndcg_at_k(rec, [rel(5, 7)], k=5) == pytest.approx([expected])
    assert expected == pytest.approx(0.919721, abs=1e-6)


def test_ndcg_perfect_and_zero() -> None:
    rec = np.array([[1, 2, 3], [4, 5, 6]])
    # user 0: both relevant at ranks 1, 2 = ideal -> 1.0; user 1: no hit -> DCG 0 -> 0.0
    assert ndcg_at_k(rec, [rel(1, 2), rel(9)], k=3) == pytest.approx([1.0, 0.0])


def test_ndcg_ideal_capped_at_k() -> None:
    # 4 relevant, k=2, hits at ranks 1, 2: DCG = 1 + 1/log2(3); IDCG over min(4, 2) = 2 positions
    # = 1 + 1/log2(3) -> 1.0
    rec = np.array([[1, 2, 3, 4]])
    assert ndcg_at_k(rec, [rel(1, 2, 3, 4)], k=2) == pytest.approx([1.0])


def test_k_truncates_longer_lists() -> None:
    # relevant item at rank 4 but k=3: outside the top k -> no credit anywhere
    rec = np.array([[1, 2, 3, 4]])
    r = [rel(4)]
    assert ndcg_at_k(rec, r, k=3) == pytest.approx([0.0])
    assert hit_rate_at_k(rec, r, k=3) == pytest.approx([0.0])
    assert recall_at_k(rec, r, k=3) == pytest.approx([0.0])
    assert mrr_at_k(rec, r, k=3) == pytest.approx([0.0])


# --------------------------------------------------------------------------- padding, K < k, dups


def test_padding_never_counts() -> None:
    # row padded with -1 after 2 items; the hit is at rank 2: DCG = 1/log2(3) = 0.6309;
    # IDCG (1 relevant) = 1 -> 0.6309; the -1 cells must not match anything
    rec = np.array([[7, 3, -1, -1], [-1, -1, -1, -1]])
    got = ndcg_at_k(rec, [rel(3), rel(0)], k=4)
    assert got == pytest.approx([1 / math.log2(3), 0.0])
    assert mrr_at_k(rec, [rel(3), rel(0)], k=4) == pytest.approx([0.5, 0.0])


def test_padding_does_not_alias_previous_users_last_item() -> None:
    # user*n + item encoding: -1 for user 1 would be (user 0, item n-1) if not masked.
    # n = 3 here (max item 2); user 0's relevant item is 2 = n-1. User 1 only has padding.
    rec = np.array([[0, 1], [-1, -1]])
    got = hit_rate_at_k(rec, [rel(2), rel(2)], k=2)
    assert got == pytest.approx([0.0, 0.0])


def test_fewer_columns_than_k() -> None:
    # K = 2 < k = 5: only 2 positions exist; hit at rank 2 -> DCG = 1/log2(3).
    # Two relevant items, so IDCG over min(2, k=5) = 2 positions = 1 + 1/log2(3) (the ideal list
    # has k slots, a short list is penalised). NDCG = 0.6309 / 1.6309 = 0.3869
    rec = np.array([[8, 4]])
    r = [rel(4, 99)]
    d3 = 1 / math.log2(3)
    assert ndcg_at_k(rec, r, k=5) == pytest.approx([d3 / (1 + d3)])
    assert recall_at_k(rec, r, k=5) == pytest.approx([0.5])  # 1 hit / 2 relevant
    assert mrr_at_k(rec, r, k=5) == pytest.approx([0.5])  # first hit at rank 2


def test_duplicates_count_once() -> None:
    # item 4 at ranks 1 and 2: only rank 1 counts. DCG = 1; IDCG (2 relevant) = 1 + 1/log2(3)
    rec = np.array([[4, 4, 5]])
    r = [rel(4, 6)]
    d3 = 1 / math.log2(3)
    assert ndcg_at_k(rec, r, k=3) == pytest.approx([1 / (1 + d3)])
    assert recall_at_k(rec, r, k=3) == pytest.approx([0.5])  # not 2/2


def test_duplicate_relevant_items_count_once() -> None:
    # relevant = {3} given as [3, 3]: |rel| = 1, hit at rank 1 -> recall 1.0, ndcg 1.0
    rec = np.array([[3, 1]])
    assert recall_at_k(rec, [rel(3, 3)], k=2) == pytest.approx([1.0])
    assert ndcg_at_k(rec, [rel(3, 3)], k=2) == pytest.approx([1.0])


def test_duplicate_in_one_row_does_not_affect_other_users() -> None:
    # same item 2 relevant to both users: each user's first occurrence counts for that user
    rec = np.array([[2, 2], [0, 2]])
    assert mrr_at_k(rec, [rel(2), rel(2)], k=2) == pytest.approx([1.0, 0.5])


# --------------------------------------------------------------------------- no relevant -> nan


def test_no_relevant_items_is_nan_for_every_metric() -> None:
    rec = np.array([[1, 2], [1, 2]])
    r = [rel(), np.array([])]  # np.array([]) is float64: accepted because it is empty
    for fn in (ndcg_at_k, hit_rate_at_k, recall_at_k, mrr_at_k):
        assert np.isnan(fn(rec, r, k=2)).all()


def test_summarize_skips_nan() -> None:
    assert summarize(np.array([1.0, np.nan, 0.0])) == pytest.approx(0.5)
    assert math.isnan(summarize(np.array([np.nan])))
    assert math.isnan(summarize(np.array([])))


# --------------------------------------------------------------------------- recall, hit rate, mrr


def test_recall_hit_rate_mrr() -> None:
    rec = np.array(
        [
            [1, 2, 3, 4],  # relevant {2, 4, 9}: hits at ranks 2, 4
            [5, 6, 7, 8],  # relevant {0}: no hit
            [9, 8, 7, 6],  # relevant {9}: hit at rank 1
        ]
    )
    r = [rel(2, 4, 9), rel(0), rel(9)]
    assert recall_at_k(rec, r, k=4) == pytest.approx([2 / 3, 0.0, 1.0])
    assert hit_rate_at_k(rec, r, k=4) == pytest.approx([1.0, 0.0, 1.0])
    assert mrr_at_k(rec, r, k=4) == pytest.approx([1 / 2, 0.0, 1.0])
    # k=1: only rank 1 -> user 0 misses (item 1), user 2 hits
    assert recall_at_k(rec, r, k=1) == pytest.approx([0.0, 0.0, 1.0])
    assert mrr_at_k(rec, r, k=1) == pytest.approx([0.0, 0.0, 1.0])


def test_ranking_metrics_at_k_matches_single_functions() -> None:
    rec = np.array([[1, 2, 3], [3, -1, -1]])
    r = [rel(3, 1), rel()]
    all_ = ranking_metrics_at_k(rec, r, k=3)
    for name, fn in (
        ("ndcg", ndcg_at_k),
        ("hit_rate", hit_rate_at_k),
        ("recall", recall_at_k),
        ("mrr", mrr_at_k),
    ):
        np.testing.assert_array_equal(all_[name], fn(rec, r, k=3))


# --------------------------------------------------------------------------- coverage


def test_catalogue_coverage() -> None:
    rec = np.array([[0, 1, 2], [1, 0, 3], [-1, -1, -1]])
    # top 2: {0, 1} u {1, 0} = 2 distinct / 10 items
    assert catalogue_coverage(rec, k=2, n_items=10) == pytest.approx(0.2)
    # top 3: {0, 1, 2, 3} -> 4 / 10; padding excluded
    assert catalogue_coverage(rec, k=3, n_items=10) == pytest.approx(0.4)
    # k larger than K: only K columns exist
    assert catalogue_coverage(rec, k=100, n_items=4) == pytest.approx(1.0)


def test_catalogue_coverage_rejects_out_of_range_items() -> None:
    with pytest.raises(ValueError, match="outside"):
        catalogue_coverage(np.array([[0, 5]]), k=2, n_items=5)


# --------------------------------------------------------------------------- validation


def test_input_validation() -> None:
    rec = np.array([[1, 2]])
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(rec, [rel(1)], k=0)
    with pytest.raises(ValueError, match="entries"):
        ndcg_at_k(rec, [rel(1), rel(2)], k=2)
    with pytest.raises(ValueError, match="2-D"):
        ndcg_at_k(np.array([1, 2]), [rel(1)], k=2)
    with pytest.raises(ValueError, match="integer"):
        ndcg_at_k(np.array([[1.5, 2.0]]), [rel(1)], k=2)
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k(rec, [rel(-3)], k=2)


def test_empty_inputs() -> None:
    rec = np.empty((0, 5), dtype=np.int64)
    assert ndcg_at_k(rec, [], k=5).shape == (0,)
    assert math.isnan(summarize(ndcg_at_k(rec, [], k=5)))


# --------------------------------------------------------------------------- property test


def _reference(rec: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Straightforward per-user loops, written from the module docstring's definitions."""
    out: dict[str, list[float]] = {"ndcg": [], "hit_rate": [], "recall": [], "mrr": []}
    for row, r in zip(rec, relevant, strict=True):
        rset = {int(x) for x in r}
        if not rset:
            for v in out.values():
                v.append(math.nan)
            continue
        seen: set[int] = set()
        hit_ranks = []
        for rank, item in enumerate(row[:k], start=1):
            item = int(item)
            if item < 0 or item in seen:
                continue
            seen.add(item)
            if item in rset:
                hit_ranks.append(rank)
        dcg = sum(1 / math.log2(rank + 1) for rank in hit_ranks)
        idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(rset), k) + 1))
        out["ndcg"].append(dcg / idcg)
        out["hit_rate"].append(1.0 if hit_ranks else 0.0)
        out["recall"].append(len(hit_ranks) / len(rset))
        out["mrr"].append(1 / hit_ranks[0] if hit_ranks else 0.0)
    return {name: np.array(v, dtype=np.float64) for name, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, width, n_items = 300, 15, 40  # small catalogue: many hits and duplicates
    rec = rng.integers(0, n_items, size=(n_users, width))
    # random padding tails
    lengths = rng.integers(0, width + 1, size=n_users)
    rec[np.arange(width)[None, :] >= lengths[:, None]] = -1
    relevant = [rng.integers(0, n_items, size=rng.integers(0, 8)) for _ in range(n_users)]
    for k in (1, 5, 15, 30):
        got = ranking_metrics_at_k(rec, relevant, k)
        ref = _reference(rec, relevant, k)
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-12, err_msg=f"{name}@{k}")
        expected_cov = len({int(x) for x in rec[:, :k].ravel() if x >= 0}) / n_items
        assert catalogue_coverage(rec, k, n_items) == pytest.approx(expected_cov)


# --------------------------------------------------------------------------- independent: ranx


def _random_lists(
    seed: int, n_users: int, width: int, n_items: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rows of distinct items (ranx takes a run as item -> score, so no duplicates), random
    -1 padding tails, and 1..7 relevant items per user (ranx drops users without any)."""
    rng = np.random.default_rng(seed)
    rec = np.array([rng.permutation(n_items)[:width] for _ in range(n_users)])
    lengths = rng.integers(0, width + 1, size=n_users)
    rec[np.arange(width)[None, :] >= lengths[:, None]] = -1
    relevant = [rng.choice(n_items, rng.integers(1, 8), replace=False) for _ in range(n_users)]
    return rec, relevant


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:unsafe cast:numba.core.errors.NumbaTypeSafetyWarning")
def test_matches_ranx_on_random_data() -> None:
    """ranx (Bassani, ECIR 2022) implements the same textbook definitions independently:
    NDCG with binary gains (its default, non-Jarvelin form), hit rate, recall, MRR."""
    from ranx import Qrels, Run, evaluate

    rec, relevant = _random_lists(seed=7, n_users=400, width=120, n_items=300)
    users = [f"u{u}" for u in range(len(rec))]
    qrels = Qrels(
        {q: {f"i{i}": 1 for i in r.tolist()} for q, r in zip(users, relevant, strict=True)}
    )
    # scores fall with rank; an empty row is no run entry, which ranx scores 0, as we do
    run = Run(
        {
            q: {f"i{i}": float(len(row) - rank) for rank, i in enumerate(row.tolist()) if i >= 0}
            for q, row in zip(users, rec, strict=True)
        }
    )
    names = ("ndcg", "hit_rate", "recall", "mrr")  # ranx's metric names are ours
    for k in (1, 5, 10, 20, 50, 100):
        ours = ranking_metrics_at_k(rec, relevant, k)
        metrics = [f"{name}@{k}" for name in names]
        evaluate(qrels, run, metrics, make_comparable=True)  # per-user scores land in run.scores
        for name in names:
            per_user = run.scores[f"{name}@{k}"]
            np.testing.assert_allclose(
                ours[name],
                [per_user[q] for q in users],
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"{name}@{k}",
            )
    assert 0.0 < summarize(ours["ndcg"]) < 1.0  # the data has both hits and misses


# --------------------------------------------------------------------------- popularity


def test_popularity_percentile_hand_computed() -> None:
    # counts 3, 0, 5, 0 sorted: 0, 0, 3, 5 at 0-based positions 0..3; the two zeros share
    # mid-rank 0.5; divided by n - 1 = 3: [2/3, 1/6, 1, 1/6], mean 0.5
    pct = popularity_percentile(np.array([3, 0, 5, 0]))
    assert pct == pytest.approx([2 / 3, 1 / 6, 1.0, 1 / 6])
    assert pct.mean() == pytest.approx(0.5)
    assert popularity_percentile(np.array([7.0])) == pytest.approx([0.5])
    with pytest.raises(ValueError, match="non-empty"):
        popularity_percentile(np.array([]))


@pytest.mark.parametrize("seed", [0, 1])
def test_popularity_percentile_matches_scipy_rankdata(seed: int) -> None:
    counts = np.random.default_rng(seed).poisson(3.0, size=500)  # many ties
    expected = (rankdata(counts, method="average") - 1) / (counts.size - 1)
    np.testing.assert_allclose(popularity_percentile(counts), expected, rtol=1e-12)
    # only the order matters: log1p(counts) gives the same percentiles
    np.testing.assert_allclose(popularity_percentile(np.log1p(counts)), expected, rtol=1e-12)


def test_mean_popularity_percentile() -> None:
    pct = np.array([0.0, 0.25, 0.5, 1.0])
    rec = np.array([[3, 2, -1], [-1, -1, -1], [0, 1, 2]])
    # user 0, k=2: mean(1.0, 0.5) = 0.75; user 1: nothing recommended -> nan; user 2: (0+0.25)/2
    got = mean_popularity_percentile(rec, 2, pct)
    assert got[0] == pytest.approx(0.75) and math.isnan(got[1]) and got[2] == pytest.approx(0.125)
    # k=3: padding excluded -> user 0 still 0.75; user 2: 0.75 / 3
    got = mean_popularity_percentile(rec, 3, pct)
    assert got[0] == pytest.approx(0.75) and got[2] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="outside"):
        mean_popularity_percentile(np.array([[4]]), 1, pct)
