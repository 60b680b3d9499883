"""How fast each dashboard page's data comes: its one JSON endpoint, on the load test's build.

    flock /work/bench.lock python bench/ui_latency.py [--artifacts bench-output/loadtest/build-20k]
        [--workers 2] [--calls 100] [--out bench-output/ui_latency.json]

The build is the one ``make loadtest`` makes (20,000 users x 2,000 items, 500 candidates per
user; run ``make loadtest``, or ``recsys loadtest --artifacts DIR``, first: this script builds
nothing). ``recsys serve`` runs with ``--workers`` processes on a local Redis, with no other
traffic. Each endpoint is called
``--calls`` times in a row after a warm-up that reaches every worker (the first call of a build
on a worker loads its inspection tables: reported apart, as ``cold_ms``); users, devices, times
and items are drawn from the load test's traffic plan. Latency is the client's (HTTP on
loopback included), in milliseconds; the issue's bar is 50 ms per page.
"""

import argparse
import json
import logging
import platform
import random
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import httpx2 as httpx

from loadtest.run import PLAN_FILE, serve_build
from loadtest.traffic import TrafficPlan
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.store.connect import open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import current_build

log = logging.getLogger("ui_latency")
LIMIT_MS = 50.0


def _paths(plan: TrafficPlan, rng: random.Random) -> dict[str, list[str]]:
    def user_path() -> str:
        user = rng.choices(plan.users, weights=plan.user_weights)[0]
        device = rng.choices(plan.devices, weights=plan.device_weights)[0]
        ts = plan.ts_start + rng.randrange(plan.ts_span_s)
        return f"/ui/api/users/{quote(user, safe='')}?device={quote(device)}&ts={ts}"

    def item_path() -> str:
        item = rng.choices(plan.items, weights=plan.item_weights)[0]
        return f"/ui/api/items/{quote(str(item), safe='')}"

    return {
        "overview": ["/ui/api/overview"],
        "builds": ["/ui/api/builds"],
        "user inspector": [user_path() for _ in range(200)],
        "item": [item_path() for _ in range(200)],
        "drift": ["/ui/api/drift"],
    }


def measure(base: str, paths: dict[str, list[str]], calls: int, workers: int) -> dict[str, dict]:
    out = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for page, choices in paths.items():
            cold = []
            for i in range(2 * workers):  # every worker's first call of this build
                started = time.perf_counter()
                r = client.get(choices[i % len(choices)])
                cold.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
            times = []
            for i in range(calls):
                path = choices[(2 * workers + i) % len(choices)]
                started = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
            times.sort()
            out[page] = {
                "calls": calls,
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
                "max_ms": round(times[-1], 2),
                "cold_ms": round(max(cold), 2),
                "bytes": len(r.content),
            }
            log.info("%-15s %s", page, out[page])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("bench-output/loadtest/build-20k"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench-output/ui_latency.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(redis_url=None)
    plan_path = args.artifacts / PLAN_FILE
    if not plan_path.exists():
        raise SystemExit(f"{plan_path}: no load-test build here; run `make loadtest` first")
    plan = TrafficPlan.load(plan_path)
    with open_redis(None, args.artifacts / REDIS_DIR) as (client, url):
        version = current_build(client, Keys(settings.key_prefix))
        manifest = json.loads((args.artifacts / str(version) / "manifest.json").read_text())
        with serve_build(
            args.artifacts,
            url,
            settings.key_prefix,
            args.workers,
            args.artifacts.parent / "ui-latency-server.log",
        ) as (base, _):
            paths = _paths(plan, random.Random(args.seed))
            results = measure(base, paths, args.calls, args.workers)
    record = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "build": version,
        "data": manifest["data"],
        "workers": args.workers,
        "limit_ms": LIMIT_MS,
        "endpoints": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    worst = max(r["p95_ms"] for r in results.values())
    print(f"wrote {args.out}; slowest p95 {worst:.1f} ms (bar: {LIMIT_MS:g} ms)")


if __name__ == "__main__":
    main()
