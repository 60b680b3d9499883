"""The offline job with its per-user stage sharded on Ray: time per stage, users/s and peak RSS
per worker, Redis bytes per user and per node.

    python bench/sharded_build.py --size small|m50|medium|m500|large [--workers 0|1|2] \\
        [--redis cluster|local]

Data: ``recsys data synth`` (seed 1, ~40 events per user) in ``bench-output/data/synth-SIZE``,
made once. Redis: a local Redis Cluster of 3 masters without replicas (``cluster``: replicas
would double the memory and the CPU on this 2-core machine without changing a master's share),
or the single local redis-server on a unix socket that ``recsys build`` starts by default
(``local``). ``--workers 0`` is today's single-process build; N > 0 starts a local Ray cluster
of N nodes with one CPU each and runs the per-user stage there (``--ray-address``). The ALS
index is HNSW at every size (``ann.kind=hnsw``), so the per-user cost is measured on the index
a 1M-item catalogue would use. Writes ``bench-output/sharded_SIZE_wN_REDIS.json``.

On a machine shared with other work, run it with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads
(ALS, LightGBM, faiss in the driver) then sleep instead of spinning while another process holds
a core; spinning made the ranker's training burn 7x its quiet CPU time here.
"""

import argparse
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from provenance import git_commit

from recsys.config import Settings
from recsys.data.dataset import write_dataset
from recsys.data.load import load_dataset
from recsys.data.synth import generate_synthetic
from recsys.pipeline import run_build
from recsys.scale.local_ray import LocalRayCluster
from recsys.scale.ray_build import ray_session
from recsys.store.connect import open_redis
from recsys.store.local_cluster import LocalRedisCluster
from recsys.store.user_store import master_stats

SIZES = {
    "small": (20_000, 2_000),
    "m50": (50_000, 5_000),
    "medium": (200_000, 20_000),
    "m500": (500_000, 50_000),
    "large": (1_000_000, 100_000),
    "xlarge": (3_000_000, 300_000),
}


def ensure_data(work: Path, size: str) -> Path:
    users, items = SIZES[size]
    data = work / f"synth-{size}"
    if not (data / "interactions.parquet").exists():
        t = time.perf_counter()
        write_dataset(generate_synthetic(n_users=users, n_items=items, seed=1), data)
        print(f"synth {size}: {time.perf_counter() - t:.0f}s", flush=True)
    return data


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def object_store_mb(users: int) -> int:
    """Room for the shared inputs (~1.4 GB at 1M users measured) and the shards' arguments."""
    return max(500, int(users / 1_000_000 * 2500))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=SIZES, required=True)
    p.add_argument("--workers", type=int, default=0, help="Ray nodes of 1 CPU; 0: one process")
    p.add_argument("--redis", choices=("cluster", "local"), default="cluster")
    p.add_argument("--users-per-shard", type=int, default=50_000)
    p.add_argument("--work", type=Path, default=Path("bench-output/data"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    data = ensure_data(args.work, args.size)
    dataset = load_dataset(data)
    load_before = os.getloadavg()

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-sharded-") as work:
        url: str | None = None
        redis_pids: list[int] = []
        if args.redis == "cluster":
            cluster = stack.enter_context(LocalRedisCluster(masters=3, replicas=0))
            url = cluster.url
            redis_pids = cluster.pids
        ray_address = None
        if args.workers:
            ray_cluster = LocalRayCluster(
                nodes=args.workers,
                cpus_per_node=1,
                object_store_mb=object_store_mb(len(dataset.interactions["user_id"].unique())),
            )
            stack.enter_context(ray_cluster)
            ray_address = ray_cluster.address
        client, resolved = stack.enter_context(open_redis(url, Path(work) / "redis"))
        stack.enter_context(ray_session(ray_address))
        settings = Settings(
            redis_url=resolved,
            ann={"kind": "hnsw"},  # type: ignore[arg-type]
            ray={"address": ray_address, "users_per_shard": args.users_per_shard},  # type: ignore[arg-type]
        )
        empty = {s.node: s.used_memory_bytes for s in master_stats(client)}
        redis_cpu_before = cpu_s(redis_pids)
        started = time.perf_counter()
        build = run_build(dataset, Path(work) / "artifacts", client, settings)
        build_s = time.perf_counter() - started
        redis_cpu = cpu_s(redis_pids) - redis_cpu_before
        nodes = master_stats(client)

    m = build.manifest
    cand = m.candidates
    assert cand.sharding is not None  # every build of this version records it
    sharding = cand.sharding
    users = m.data.users
    stage_s = m.timings_s["candidates -> redis"]
    busy = [w.busy_s for w in sharding.workers]
    cpu = sum(w.cpu_s for w in sharding.workers)
    result: dict[str, Any] = {
        "size": args.size,
        "commit": git_commit(),
        "workers": args.workers,
        "engine": sharding.engine,
        "redis": args.redis,
        "users": users,
        "items": m.data.items,
        "events": m.data.events,
        "index": cand.index,
        "build_s": round(build_s, 1),
        "timings_s": m.timings_s,
        # CPU seconds of the driver per stage: robust to other work on a shared machine
        "cpu_s": m.cpu_s,
        "driver_peak_rss_mb": m.peak_rss_mb,
        "driver_process_peak_rss_mb": round(max(m.peak_rss_mb.values())),
        "per_user_stage": {
            "wall_s": stage_s,
            "users_per_s": round(users / stage_s, 1),
            "shards": sharding.shards,
            "work_s": sharding.stage_s,  # summed over workers
            "busy_s": round(sum(busy), 1),
            "cpu_s": round(cpu, 1),
            "cpu_us_per_user": round(cpu / users * 1e6, 1),
            # wall time not spent in a worker's shard: sharing inputs, start-up, stragglers
            "overhead_s": round(stage_s - max(busy), 1),
            "workers": [w.to_json_dict() for w in sharding.workers],
        },
        "redis_nodes": [
            {
                "node": s.node,
                "keys": s.keys,
                "used_memory_mb": round(s.used_memory_bytes / 2**20, 1),
                "build_bytes": s.used_memory_bytes - empty.get(s.node, 0),
            }
            for s in nodes
        ],
        "redis_value_bytes_per_user": cand.bytes_per_user,
        # CPU the masters spent during the whole build (nearly all of it on the states' SETs)
        "redis_cpu_s": round(redis_cpu, 1) if redis_pids else None,
        "redis_cpu_us_per_user": round(redis_cpu / users * 1e6, 1) if redis_pids else None,
        "redis_used_bytes_per_user": round(
            sum(s.used_memory_bytes - empty.get(s.node, 0) for s in nodes) / users, 1
        ),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2), flush=True)
    out = args.out or Path(f"bench-output/sharded_{args.size}_w{args.workers}_{args.redis}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
