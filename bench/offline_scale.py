"""The offline job at scale: time and peak memory per stage, against a plain ALS fit.

    python bench/offline_scale.py --size small|medium|large [--work DIR] [--out FILE]

Sizes (``recsys data synth``): small 20k users x 2k items, medium 200k x 20k, large
1M x 100k (about 40 events per user). For each: a plain implicit ALS fit (64 factors, 15
iterations, the build's weighting) on the same events as the reference cost, then the whole
``recsys build`` against a local redis-server, with per-stage times and peak RSS from the
build manifest, Redis bytes per user and memory, and candidates written per second.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset, write_dataset
from recsys.data.load import load_dataset
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
from recsys.events_index import index_events
from recsys.ids import IdIndex
from recsys.mf import fit_als, interaction_matrix
from recsys.pipeline import run_build
from recsys.store.connect import open_redis

SIZES = {"small": (20_000, 2_000), "medium": (200_000, 20_000), "large": (1_000_000, 100_000)}


def plain_als_seconds(dataset: Dataset, settings: Settings) -> float:
    """The reference: a plain ALS fit on the same events (64 factors, 15 iterations)."""
    uidx = IdIndex.from_values(dataset.interactions[Columns.user])
    iidx = IdIndex(dataset.items[Columns.item])
    ev = index_events(dataset.interactions, uidx, iidx, device_vocabulary(dataset.interactions))
    seen = interaction_matrix(ev.user, ev.item, ev.weight, len(uidx), len(iidx))
    t = time.perf_counter()
    fit_als(seen, settings.als)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=SIZES, required=True)
    p.add_argument("--work", type=Path, default=Path("bench-output/data"))
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--als-reference-s",
        type=float,
        help="reuse a measured plain-ALS time instead of fitting it again (saves minutes at 1M)",
    )
    args = p.parse_args()
    users, items = SIZES[args.size]
    data = args.work / f"synth-{args.size}"
    if not (data / "interactions.parquet").exists():
        t = time.perf_counter()
        write_dataset(generate_synthetic(n_users=users, n_items=items, seed=1), data)
        print(f"synth {args.size}: {time.perf_counter() - t:.0f}s", flush=True)
    dataset = load_dataset(data)
    settings = Settings()

    als_s = args.als_reference_s or plain_als_seconds(dataset, settings)
    print(f"plain ALS fit: {als_s:.1f}s", flush=True)

    with (
        tempfile.TemporaryDirectory() as work,
        open_redis(None, Path(work) / "redis") as (client, _),
    ):
        t = time.perf_counter()
        build = run_build(dataset, Path(work) / "artifacts", client, settings)
        build_s = time.perf_counter() - t
        redis_mem = client.info("memory")["used_memory"]
    m = build.manifest
    result = {
        "size": args.size,
        "users": m.data.users,
        "items": m.data.items,
        "events": m.data.events,
        "als_fit_s": round(als_s, 1),
        "build_s": round(build_s, 1),
        "build_over_als": round(build_s / als_s, 2),
        "timings_s": m.timings_s,
        "peak_rss_mb": m.peak_rss_mb,
        # stage peaks are reset per stage (recsys.progress), so the process peak is their max
        "process_peak_rss_mb": round(max(m.peak_rss_mb.values())),
        "redis_bytes_per_user_value": m.candidates.bytes_per_user,
        "redis_used_memory_mb": round(redis_mem / 2**20),
        "candidates_users_per_s": m.candidates.users_per_s,
        "index": m.candidates.index,
    }
    print(json.dumps(result, indent=2), flush=True)
    out = args.out or Path(f"bench-output/offline_{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
