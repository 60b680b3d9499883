"""Ranking cost vs quality: for several LightGBM sizes, NDCG@10 and in-process latency of ranking
one request's 500 candidates (features + model), the work the API does per request.

    python bench/ranking_cost.py DATA_DIR [--out FILE] [--sizes 100x31,300x63]

Each model size is a full build on the leave-last-out training split (fixed number of trees, no
early stopping), scored by the evaluation's own loop (``recsys.evaluation.runs``); latency is the
median over 300 requests of ``recsys.serving.rank`` for one user, with LightGBM on one thread as
in the API.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.evaluation.protocol import held_out_requests, split_for_protocol, train_dataset
from recsys.evaluation.runs import evaluate, published_build
from recsys.features import build_features
from recsys.serving import rank
from recsys.store.codec import decode_user_state
from recsys.store.connect import open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import read_states

SIZES = ((25, 15), (50, 31), (100, 31), (200, 31), (300, 63), (600, 63))


def sizes(text: str) -> list[tuple[int, int]]:
    """``"100x31,300x63"`` -> [(100, 31), (300, 63)]: trees x leaves, a subset when the machine
    has no time for every size (each is a full build)."""
    try:
        return [(int(t), int(n)) for t, n in (s.split("x") for s in text.split(","))]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected TREESxLEAVES[,...], got {text!r}") from e


def ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=20)
    return {"p50": round(statistics.median(samples), 3), "p95": round(q[18], 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("bench-output/ranking_cost.json"))
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--sizes", type=sizes, default=list(SIZES), help="e.g. 100x31,300x63")
    args = p.parse_args()
    dataset = load_dataset(args.data_dir)
    split = split_for_protocol(dataset.interactions, "leave-last-out")
    train = train_dataset(dataset, split)
    rows = []
    with (
        tempfile.TemporaryDirectory() as work,
        open_redis(None, Path(work) / "redis") as (client, _),
    ):
        for trees, leaves in args.sizes:
            settings = Settings(
                key_prefix=f"bench-{trees}-{leaves}",
                ranker={"num_trees": trees, "num_leaves": leaves, "early_stopping": False},
            )
            with published_build(train, client, settings, Path(work)) as (build, model):
                report = evaluate(split, build, model, client, settings).report
                req = held_out_requests(split.test, build.users, model.items)
                n = min(args.requests, len(req.users))
                blobs = read_states(
                    client, Keys(settings.key_prefix), build.version, req.user_keys[:n]
                )
                total, feats = [], []
                for blob, ctx in zip(blobs, req.contexts[:n], strict=True):
                    assert blob is not None
                    state = decode_user_state(blob)
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
                "ndcg@10": report.results["two_stage"]["ndcg@10"],
                "als_ndcg@10": report.results["als"]["ndcg@10"],
                "candidates": report.candidates.per_user,
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
