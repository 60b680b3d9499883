"""What ``explain=true`` costs: one request's ranking with and without explanations, in process,
on a published build (the load test's), through the API's own rank job (``api.service``).

    flock /work/bench.lock python bench/explain_cost.py bench-output/loadtest/build-20k \\
        [--requests 300] [--out bench-output/explain_cost.json]

For k = 10, 20, 50 and each of ``--requests`` users the build stored (a fixed random sample),
it times the rank job, then the explanation job the API runs after it (features recomputed,
LightGBM ``pred_contrib`` on the k rows), LightGBM on one thread as in the API. Reported:
median and p99 in ms. The states come from the build's own Redis (its data dir) or
``--redis-url``.
"""

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from api.service import timed_rank
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.explain import explain_ranked
from recsys.features import RequestContext
from recsys.serving import ServingModel
from recsys.store.codec import decode_user_state
from recsys.store.connect import open_shared_redis
from recsys.store.keys import Keys
from recsys.store.user_store import current_build

KS = (10, 20, 50)


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"p50": round(statistics.median(ordered), 3), "p99": round(p99, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifacts", type=Path)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--redis-url")
    p.add_argument("--out", type=Path, default=Path("bench-output/explain_cost.json"))
    args = p.parse_args()
    settings = Settings(redis_url=args.redis_url)
    keys = Keys(settings.key_prefix)
    with open_shared_redis(settings.redis_url, args.artifacts / REDIS_DIR) as client:
        version = current_build(client, keys)
        assert version is not None, f"no build published in {args.artifacts}"
        model = ServingModel.load(args.artifacts, version)
        users = [
            key.decode().rsplit("{", 1)[1].rstrip("}")
            for key in client.scan_iter(match=f"{keys.prefix}:b:{version}:u:*", count=5000)
        ]
        random.Random(0).shuffle(users)
        blobs = [client.get(keys.user_state(version, u)) for u in users[: args.requests]]
    states = [decode_user_state(b) for b in blobs if b is not None]
    ctx = RequestContext(ts=model.items.as_of_ts + 3600, device=model.items.device_code("tv"))
    none = np.empty(0, dtype=np.int32)
    for state in states[:20]:  # warm-up: LightGBM's first calls are slower
        explain_ranked(model, state, ctx, timed_rank(model, state, ctx, 50, none)[0], 5)
    rows = []
    for k in KS:
        plain, explained, explain_only = [], [], []
        for state in states:
            t0 = time.perf_counter()
            ranked, _ = timed_rank(model, state, ctx, k, none)
            t1 = time.perf_counter()
            explain_ranked(model, state, ctx, ranked, 5)
            t2 = time.perf_counter()
            plain.append((t1 - t0) * 1000)
            explained.append((t2 - t0) * 1000)
            explain_only.append((t2 - t1) * 1000)
        row = {
            "k": k,
            "rank_ms": quantiles(plain),
            "rank_and_explain_ms": quantiles(explained),
            "explain_ms": quantiles(explain_only),
        }
        rows.append(row)
        print(
            f"k={k:>3}: rank {row['rank_ms']['p50']:.2f} ms p50 / {row['rank_ms']['p99']:.2f} "
            f"p99; with explanations {row['rank_and_explain_ms']['p50']:.2f} / "
            f"{row['rank_and_explain_ms']['p99']:.2f} (explanations alone "
            f"{row['explain_ms']['p50']:.2f} / {row['explain_ms']['p99']:.2f})",
            flush=True,
        )
    out = {
        "build": version,
        "trees": model.ranker.booster.num_trees(),
        "candidates_per_user": round(float(np.mean([len(s.cand_item) for s in states])), 1),
        "requests": len(states),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
