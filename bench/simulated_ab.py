"""The closed loop at a larger scale: a synthetic population with known tastes against a
two-arm ``recsys serve`` (the normal build vs a popularity-only one), over HTTP, for a few
minutes; then the online report from the feedback log, checked against the simulator's counts.

    flock /work/bench.lock python bench/simulated_ab.py --users 4000 --items 800 \\
        --requests-per-user 8 --threads 4 --out bench-output/simulated_ab

Steps: synthetic data (``recsys data synth``'s generator), two builds on the embedded Redis
(``champion`` on the log, ``challenger`` on the same log with users shuffled:
``recsys.simulation.popularity_only``), ``recsys serve`` with 2 workers and
``RECSYS_SERVE__AB={"champion": 0.5, "challenger": 0.5}``, the simulation (``--threads``
clients, each over its own share of the users, one keep-alive HTTP connection each), the server
stopped (its impression logs flushed), the online report written to ``OUT/report``, and a
summary printed and written to ``OUT/summary.json``.
"""

import argparse
import http.client
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np

from loadtest.run import serve_build
from recsys.artifacts import REDIS_DIR
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic, synthetic_population
from recsys.evaluation.online import OnlineOptions, load_catalogues, online_report
from recsys.evaluation.online_report import write_online_report
from recsys.pipeline import run_build
from recsys.simulation import (
    ArmCounts,
    Population,
    ResponseModel,
    SimulationCounts,
    popularity_only,
    simulate,
    watched_items,
)
from recsys.store.connect import open_redis
from recsys.store.feedback_log import read_impressions, read_logged_events
from recsys.store.keys import Keys

log = logging.getLogger("simulated_ab")
SPLIT = {"champion": 0.5, "challenger": 0.5}


class HttpTransport:
    """One keep-alive connection to the API."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=30
        )

    def get(self, path: str, params: Mapping[str, str | int]) -> tuple[int, Any]:
        self.conn.request("GET", f"{path}?{urlencode(params)}")
        r = self.conn.getresponse()
        body = r.read()
        return r.status, json.loads(body) if r.status == 200 else None

    def post(self, path: str, body: Mapping[str, Any]) -> int:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, data, {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        return r.status


def merge(parts: list[SimulationCounts]) -> SimulationCounts:
    out = SimulationCounts()
    for part in parts:
        out.failed += part.failed
        for name, c in part.arms.items():
            mine = out.arm(name)
            for field in ArmCounts.__dataclass_fields__:
                setattr(mine, field, getattr(mine, field) + getattr(c, field))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=4000)
    p.add_argument("--items", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--requests-per-user", type=int, default=8)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench-output/simulated_ab"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    artifacts = args.out / "artifacts"
    settings = Settings(key_prefix=f"simab-{int(time.time())}")
    keys = Keys(settings.key_prefix)

    dataset = generate_synthetic(n_users=args.users, n_items=args.items, seed=args.seed)
    write_dataset(dataset, args.out / "data")
    with open_redis(None, artifacts / REDIS_DIR) as (client, url):
        started = time.perf_counter()
        run_build(dataset, artifacts, client, settings)
        run_build(popularity_only(dataset), artifacts, client, settings, name="challenger")
        log.info("two builds in %.0f s", time.perf_counter() - started)
        truth = synthetic_population(args.users, args.items, args.seed)
        last_ts = int(dataset.interactions[Columns.timestamp].max())  # type: ignore[arg-type]
        watched = watched_items(dataset)
        users = np.random.default_rng(args.seed).permutation(args.users).tolist()
        shares = [users[i :: args.threads] for i in range(args.threads)]
        parts: list[SimulationCounts] = [SimulationCounts() for _ in shares]
        with serve_build(
            artifacts, url, settings.key_prefix, args.workers, args.out / "server.log", SPLIT
        ) as (base_url, _):

            def run(i: int) -> None:
                population = Population(
                    truth, {u: watched.get(u, []) for u in shares[i]}, last_ts, ResponseModel(),
                    seed=args.seed + 1 + i,
                )  # fmt: skip
                parts[i] = simulate(
                    population, HttpTransport(base_url), shares[i], args.requests_per_user,
                    args.k, last_ts + 86400,
                )  # fmt: skip

            sim_started = time.perf_counter()
            threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sim_s = time.perf_counter() - sim_started
        counts = merge(parts)
        impressions = read_impressions(client, keys, settings.log.shards)
        events = read_logged_events(client, keys, settings.log.shards)
    catalogues = load_catalogues(artifacts, {i.build for i in impressions})
    report = online_report(impressions, events, catalogues, OnlineOptions(window_s=600))
    write_online_report(report, args.out / "report")
    answers = sum(a.answers for a in counts.arms.values())
    posted = sum(a.watches + a.skips + a.dislikes for a in counts.arms.values())
    summary: dict[str, Any] = {
        "users": args.users,
        "items": args.items,
        "simulated_s": round(sim_s, 1),
        "answers": answers,
        "events": posted,
        "requests_per_s": round((answers + posted) / sim_s, 1),
        "failed": counts.failed,
        "logged_impressions": len(impressions),
        "arms": {},
    }
    for name, c in sorted(counts.arms.items()):
        reported = report.breakdowns["arm"][name].metrics["ctr@10"]
        summary["arms"][name] = {
            "answers": c.answers,
            "simulator_ctr@10": round(c.ctr_at_10, 6),
            "report_ctr@10": reported.value,
            "report_ctr@10_ci95": reported.ci95,
        }
    (comparison,) = report.comparisons
    summary["comparison"] = comparison.metrics["ctr@10"]
    summary["hit_rate"] = comparison.metrics["hit_rate"]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
