"""Ranking cost vs quality: for several LightGBM sizes, NDCG@10 and in-process latency of ranking
one request's 500 candidates (features + model), the work the API does per request.

    python bench/ranking_cost.py DATA_DIR [--out bench-output/ranking_cost.json]

Each model size is a full build on the leave-last-out training split (fixed number of trees, no
early stopping), scored by recsys.evaluation; latency is the median over 300 requests of
``recsys.serving.rank`` for one user, with LightGBM on one thread as in the API.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.evaluation import evaluate_build, split_for_protocol, test_requests, train_dataset
from recsys.features import build_features
from recsys.pipeline import run_build
from recsys.serving import ServingModel, rank
from recsys.store.codec import decode_user_state
from recsys.store.connect import open_redis
from recsys.store.keys import Keys

SIZES = ((25, 15), (50, 31), (100, 31), (200, 31), (300, 63), (600, 63))


def ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=20)
    return {"p50": round(statistics.median(samples), 3), "p95": round(q[18], 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("bench-output/ranking_cost.json"))
    p.add_argument("--requests", type=int, default=300)
    args = p.parse_args()
    dataset = load_dataset(args.data_dir)
    split = split_for_protocol(dataset.interactions, "leave-last-out")
    rows = []
    with (
        tempfile.TemporaryDirectory() as work,
        open_redis(None, Path(work) / "redis") as (client, _),
    ):
        for trees, leaves in SIZES:
            settings = Settings(
                key_prefix=f"bench-{trees}-{leaves}",
                ranker={"num_trees": trees, "num_leaves": leaves, "early_stopping": False},
            )
            build = run_build(
                train_dataset(dataset, split), Path(work) / f"a{trees}-{leaves}", client, settings
            )
            model = ServingModel.load(build.path.parent, build.version)
            report = evaluate_build(split, build, model, client, settings)
            req = test_requests(split.test, build, model)
            keys = Keys(settings.key_prefix)
            total, feats = [], []
            for j in range(min(args.requests, len(req.users))):
                state = decode_user_state(
                    client.get(keys.user_state(build.version, req.user_keys[j]))
                )
                ctx = req.contexts[j]
                t0 = time.perf_counter()
                rank(model, [state], [ctx], 20)
                t1 = time.perf_counter()
                build_features([state], [ctx], model.items)
                t2 = time.perf_counter()
                total.append((t1 - t0) * 1000)
                feats.append((t2 - t1) * 1000)
            row = {
                "trees": model.ranker.booster.num_trees(),
                "leaves": leaves,
                "ndcg@10": report["results"]["two_stage"]["ndcg@10"],
                "als_ndcg@10": report["results"]["als"]["ndcg@10"],
                "candidates": report["candidates"]["per_user"],
                "rank_ms": ms(total),
                "features_ms": ms(feats),
            }
            rows.append(row)
            print(
                f"{row['trees']:>4} trees x {leaves:>3} leaves: NDCG@10 {row['ndcg@10']:.4f} "
                f"(ALS {row['als_ndcg@10']:.4f}); rank {row['rank_ms']['p50']:.2f} ms p50 / "
                f"{row['rank_ms']['p95']:.2f} p95, "
                f"of which features {row['features_ms']['p50']:.2f}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data_dir), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
