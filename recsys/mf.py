"""Stage-1 embeddings: implicit ALS on BM25-weighted interactions."""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import bm25_weight
from threadpoolctl import threadpool_limits

from recsys.config import ALSConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Factors:
    user: np.ndarray  # float32 [n_users, d]
    item: np.ndarray  # float32 [n_items, d]


def interaction_matrix(
    user_idx: np.ndarray, item_idx: np.ndarray, weight: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """users x items CSR of summed weights (repeat views add up), float32.

    Summed in float64 and capped at float32's largest value: in float32 two large weights of
    one (user, item) pair summed to inf, and ALS turned it into NaN factors (issue 12)."""
    m = sp.coo_matrix(
        (weight.astype(np.float64), (user_idx, item_idx)), shape=(n_users, n_items)
    ).tocsr()
    m.sum_duplicates()
    np.minimum(m.data, np.finfo(np.float32).max, out=m.data)
    return m.astype(np.float32)


def fit_als(
    user_items: sp.csr_matrix,
    cfg: ALSConfig,
    init_item_factors: np.ndarray | None = None,
    show_progress: bool = False,
) -> Factors:
    """Fit ALS; BLAS is held to one thread because implicit parallelises itself and
    oversubscription costs far more than it gains (implicit README).

    With ``init_item_factors`` (a fit on a subset of these events), ALS starts from them and
    runs ``cfg.warm_start_iterations`` sweeps instead of ``cfg.iterations``. User factors
    still start from implicit's small random values; the first half-sweep (3 conjugate-gradient
    steps, implicit's default solver) fits them to the given item factors, which is why a few
    sweeps are enough."""
    warm = init_item_factors is not None and cfg.warm_start_iterations > 0
    # in float64: BM25 multiplies each weight by K1 + 1 and sums rows, which overflow float32
    # for weights near its largest value; its output is bounded, so float32 again afterwards
    by_item = user_items.T.tocsr().astype(np.float64)
    weighted = bm25_weight(by_item, K1=cfg.bm25_k1, B=cfg.bm25_b).T.tocsr()
    # faiss-cpu bundles an OpenMP OpenBLAS that implicit's check (run in the constructor) counts
    # as multi-threaded; ALS runs on numpy's and scipy's BLAS, held to one thread below.
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OpenBLAS is configured", category=RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.warm_start_iterations if warm else cfg.iterations,
            random_state=cfg.seed,
            calculate_training_loss=False,
        )
        if warm and init_item_factors is not None:
            model.item_factors = np.array(init_item_factors, dtype=np.float32)
        model.fit(weighted.astype(np.float32), show_progress=show_progress)
    return Factors(
        user=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item=np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )
