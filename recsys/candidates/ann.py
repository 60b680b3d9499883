"""Maximum-inner-product search over item factors with FAISS.

HNSW's graph is built for metric distances; on raw inner product with varying item norms its
recall collapses (faiss #1496, hnswlib #74). We use the standard reduction to L2: append
sqrt(max_norm^2 - ||x||^2) to each item and 0 to each query, so the nearest item in L2 is the
item with the largest inner product (Bachrach et al. 2014; implicit does the same in utils.py).
``search`` returns the inner products too: exact ones from the flat index, and from HNSW the
ones its L2 distances imply, (||q||^2 + max_norm^2 - distance) / 2 in float32.
"""

from typing import TYPE_CHECKING, Any, Protocol

import faiss
import numpy as np

if TYPE_CHECKING:  # recsys.config imports the candidate sources, which use this module
    from recsys.config import ANNConfig


class ItemIndex(Protocol):
    @property
    def kind(self) -> str:
        """ "exact" or "hnsw", for manifests and reports."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, inner products) [n_queries, k], best first; -1 / -inf where fewer
        than k were found."""
        ...


class _Portable:
    """Pickled as ``faiss.serialize_index``'s numpy uint8 buffer rather than faiss' own pickle
    (bytes): Ray shares numpy buffers between the tasks of a node without copying ("Serialization",
    Ray docs), so a sharded build ships the index to its workers once."""

    index: Any

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["index"] = faiss.serialize_index(self.index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["index"] = faiss.deserialize_index(state["index"])
        self.__dict__.update(state)


class ExactIndex(_Portable):
    """Brute-force inner product: exact, and faster than HNSW on small catalogues."""

    kind = "exact"

    def __init__(self, item_factors: np.ndarray) -> None:
        self.index = faiss.IndexFlatIP(item_factors.shape[1])
        self.index.add(np.ascontiguousarray(item_factors, dtype=np.float32))
        self.n_items = item_factors.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = self.index.search(q, min(k, self.n_items))
        return ids, np.where(ids >= 0, scores, -np.inf)


class HNSWIndex(_Portable):
    """IndexHNSWFlat over MIPS-to-L2 augmented item factors."""

    kind = "hnsw"

    def __init__(self, item_factors: np.ndarray, cfg: "ANNConfig") -> None:
        items = np.ascontiguousarray(item_factors, dtype=np.float32)
        norms_sq = np.einsum("ij,ij->i", items, items)
        extra = np.sqrt(np.maximum(norms_sq.max() - norms_sq, 0.0)).astype(np.float32)
        self.index = faiss.IndexHNSWFlat(items.shape[1] + 1, cfg.hnsw_m, faiss.METRIC_L2)
        self.index.hnsw.efConstruction = cfg.ef_construction
        self.index.add(np.hstack([items, extra[:, None]]))
        self.max_norm_sq = float(norms_sq.max())
        self.ef_search = cfg.ef_search
        self.n_items = items.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n_items)
        q = np.hstack([queries.astype(np.float32), np.zeros((len(queries), 1), np.float32)])
        # efSearch below k loses recall and returns -1s (faiss #1244, #1199)
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))  # type: ignore[attr-defined]
        dist, ids = self.index.search(np.ascontiguousarray(q), k, params=params)
        # IndexHNSWFlat distances are exact: ||q - x'||^2 = ||q||^2 + max_norm^2 - 2 q.x
        q_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
        scores = (q_sq + self.max_norm_sq - dist) / 2
        return ids, np.where(ids >= 0, scores, -np.inf).astype(np.float32)


def build_index(item_factors: np.ndarray, cfg: "ANNConfig") -> ItemIndex:
    exact = cfg.kind == "exact" or (cfg.kind == "auto" and len(item_factors) <= cfg.exact_max_items)
    return ExactIndex(item_factors) if exact else HNSWIndex(item_factors, cfg)
