"""Stage-1 embeddings: implicit ALS on BM25-weighted interactions, and the fold-in that gives a
user the build never saw a factor vector from a handful of events."""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

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


FOLD_IN_FILE = "fold_in.npz"


@dataclass(frozen=True)
class FoldIn:
    """ALS's user step for one new user, from the build's item factors.

    Given the item factors ``Y``, a user's ALS vector solves the ridge regression
    ``(YtY + Yu^T (Cu - I) Yu + reg I) x = Yu^T Cu p`` (Hu, Koren & Volinsky, ICDM 2008), as
    implicit's least-squares solver does: for a user known only from events posted to the API it
    is one small ``d x d`` solve, so their candidates get stage-1 scores that mean what they mean
    for every other user. Confidences are weighed as ``fit_als`` weighs its matrix: BM25 on the
    items x users matrix (per-item length norm, per-user idf), times alpha."""

    gram: np.ndarray  # float64 [d, d]: YtY + reg I
    length_norm: np.ndarray  # float32 [I] BM25 length norm of each item (from its row sum)
    k1: float
    alpha: float
    default_weight: float  # the weight of an event that carries none: the mean training weight

    @classmethod
    def fit(cls, seen: sp.csr_matrix, item_factors: np.ndarray, cfg: ALSConfig) -> "FoldIn":
        """From the build's users x items matrix of summed weights and its item factors."""
        y = item_factors.astype(np.float64)
        row_sums = np.ravel(seen.sum(axis=0))  # per item: the rows of implicit's items x users
        length_norm = (1.0 - cfg.bm25_b) + cfg.bm25_b * row_sums / max(row_sums.mean(), 1e-12)
        return cls(
            gram=y.T @ y + cfg.regularization * np.eye(y.shape[1]),
            length_norm=length_norm.astype(np.float32),
            k1=cfg.bm25_k1,
            alpha=cfg.alpha,
            default_weight=float(seen.data.mean()) if seen.nnz else 1.0,
        )

    def user_vector(
        self, item_factors: np.ndarray, items: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Factor vector (float32 [d]) of a user who watched ``items`` (dense indices; repeats
        add up as in the build's matrix)."""
        w = np.full(len(items), self.default_weight) if weights is None else weights
        items, at = np.unique(items, return_inverse=True)
        w = np.bincount(at, weights=w, minlength=len(items))
        idf = np.log(len(self.length_norm)) - np.log1p(len(items))
        c = self.alpha * w * (self.k1 + 1.0) / (self.k1 * self.length_norm[items] + w) * idf
        y = item_factors[items].astype(np.float64)
        x = np.linalg.solve(self.gram + (y.T * (c - 1.0)) @ y, y.T @ c)
        return x.astype(np.float32)

    def save(self, directory: Path) -> None:
        np.savez(
            directory / FOLD_IN_FILE,
            gram=self.gram,
            length_norm=self.length_norm,
            scalars=np.array([self.k1, self.alpha, self.default_weight]),
        )

    @classmethod
    def load(cls, directory: Path) -> "FoldIn":
        with np.load(directory / FOLD_IN_FILE) as z:
            k1, alpha, default_weight = (float(v) for v in z["scalars"])
            return cls(z["gram"], z["length_norm"], k1, alpha, default_weight)
