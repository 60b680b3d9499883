"""HNSW vs exact top-500 over real ALS factors: recall against exact, and throughput.

    python bench/hnsw_recall.py DATA_DIR [--users 5000] [--out bench-output/hnsw.json]

Fits ALS (the build's own settings) on DATA_DIR, then searches the top 500 for a sample of users
with exact inner product (faiss IndexFlatIP, the ground truth) and with HNSW variants: raw inner
product, and the MIPS-to-L2 augmentation the build uses, over M and efSearch. Throughput is
users per second for batched search with every core.
"""

import argparse
import json
import time
from pathlib import Path

import recsys  # noqa: F401  first: it holds BLAS to one thread before numpy loads

# isort: split
import faiss
import numpy as np

from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.devices import device_vocabulary
from recsys.events_index import index_events
from recsys.ids import IdIndex
from recsys.mf import fit_als, interaction_matrix

K = 500


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean(
            [len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth, strict=True)]
        )
    )


def timed_search(search, queries: np.ndarray, repeats: int = 3) -> tuple[np.ndarray, float]:
    best = float("inf")
    ids = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        ids = search(queries)
        best = min(best, time.perf_counter() - start)
    return ids, len(queries) / best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", type=Path)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--out", type=Path, default=Path("bench-output/hnsw.json"))
    args = p.parse_args()
    ds = load_dataset(args.data_dir)
    settings = Settings()
    users = IdIndex.from_values(ds.interactions[Columns.user])
    items = IdIndex(ds.items[Columns.item])
    ev = index_events(ds.interactions, users, items, device_vocabulary(ds.interactions))
    seen = interaction_matrix(ev.user, ev.item, ev.weight, len(users), len(items))
    t = time.perf_counter()
    f = fit_als(seen, settings.als)
    als_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    q = f.user[rng.choice(len(users), min(args.users, len(users)), replace=False)]
    x = np.ascontiguousarray(f.item)
    norms = np.linalg.norm(x, axis=1)
    rows: list[dict[str, object]] = []

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    truth, exact_qps = timed_search(lambda qq: exact.search(qq, K)[1], q)
    rows.append({"index": "exact IndexFlatIP", "recall@500": 1.0, "users_per_s": round(exact_qps)})
    print(
        f"items {len(x)}, d {x.shape[1]}, item norm max/median {norms.max() / np.median(norms):.2f}"
    )
    print(f"exact: {exact_qps:.0f} users/s")

    aug = np.hstack([x, np.sqrt(np.maximum((norms**2).max() - norms**2, 0))[:, None]]).astype("f4")
    q_aug = np.hstack([q, np.zeros((len(q), 1), "f4")])
    for variant, vecs, queries, metric in (
        ("HNSW inner product", x, q, faiss.METRIC_INNER_PRODUCT),
        ("HNSW L2 + MIPS augmentation", aug, q_aug, faiss.METRIC_L2),
    ):
        for m in (16, 32):
            index = faiss.IndexHNSWFlat(vecs.shape[1], m, metric)
            index.hnsw.efConstruction = 200
            t = time.perf_counter()
            index.add(vecs)
            build_s = time.perf_counter() - t
            for ef in (500, 600, 800, 1200):
                params = faiss.SearchParametersHNSW(efSearch=ef)
                ids, qps = timed_search(
                    lambda qq, index=index, params=params: index.search(qq, K, params=params)[1],
                    queries,
                )
                r = recall(ids, truth)
                rows.append(
                    {
                        "index": variant,
                        "M": m,
                        "efSearch": ef,
                        "build_s": round(build_s, 1),
                        "recall@500": round(r, 4),
                        "users_per_s": round(qps),
                    }
                )
                print(
                    f"{variant:<30} M={m:<3} ef={ef:<5} recall@500 {r:.4f}  "
                    f"{qps:7.0f} users/s  (build {build_s:.1f}s)"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "data": str(args.data_dir),
                "items": len(x),
                "users": len(users),
                "als_fit_s": round(als_s, 1),
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
