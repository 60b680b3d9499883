"""How long each dashboard endpoint holds the serving worker's event loop, on the load test's build.

    flock /work/bench.lock python bench/ui_loop_block.py
        [--artifacts bench-output/loadtest/build-20k]
        [--calls 40] [--out bench-output/ui_loop_block.json]

While the loop runs one piece of synchronous work, every request that arrives on that worker
waits, and its 20 ms Redis read budget runs out meanwhile: the cost a dashboard puts on
recommendations is the longest slice it holds the loop, not its answer's latency. This runs one
API worker in this process (uvicorn on uvloop, the app of ``recsys serve``) with a probe task
that wakes every millisecond and records how late it woke: the lateness is how long the loop was
held. Each endpoint is called ``--calls`` times in a row (after a warm-up that loads the build's
tables), from a client thread, with nothing else running; a call's "blocked" figure is the
largest lateness seen while it was in flight, "held" the sum of latenesses above 1 ms.
Paths are drawn from the load test's traffic plan, as ``bench/ui_latency.py`` does. The first
row is the probe alone over 20 ms windows: the machine's own noise.

To measure other code with the same script (the code before a change, in a git worktree):
``PYTHONPATH=OTHER_TREE python bench/ui_loop_block.py ...``.
"""

import argparse
import asyncio
import json
import logging
import platform
import random
import statistics
import threading
import time
from pathlib import Path

import httpx2 as httpx
import uvicorn
import uvloop
from ui_latency import _paths  # bench/ is on the path when this runs as a script

from api.app import create_app
from loadtest.run import PLAN_FILE
from loadtest.traffic import TrafficPlan
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.net import free_port
from recsys.store.connect import open_redis

log = logging.getLogger("ui_loop_block")
PROBE_S = 0.001


class Probe:
    """Wakes every ``PROBE_S`` on the loop it runs on; keeps (time, lateness) of every wake."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            now = time.perf_counter()
            with self.lock:
                self.samples.append((now, now - before - PROBE_S))

    def window(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [lag for t, lag in self.samples if start <= t <= end + 0.05]


def serve(app: object, port: int, probe: Probe, ready: threading.Event) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(probe.run())
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        ready.set()
        await serving
        task.cancel()

    def run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())

    threading.Thread(target=run, daemon=True).start()
    return server


def measure(base: str, probe: Probe, paths: dict[str, list[str]], calls: int) -> dict[str, dict]:
    out = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for page, choices in {"(no call: the probe alone)": [""], **paths}.items():
            if choices[0]:
                client.get(choices[0]).raise_for_status()  # loads the build's tables
            blocked, held, latency = [], [], []
            for i in range(calls):
                time.sleep(0.05)  # let the loop settle; the probe's samples separate calls
                start = time.perf_counter()
                if choices[0]:
                    client.get(choices[(1 + i) % len(choices)]).raise_for_status()
                else:
                    time.sleep(0.02)
                end = time.perf_counter()
                lags = probe.window(start, end)
                blocked.append(1000 * max(lags, default=0.0))
                held.append(1000 * sum(x for x in lags if x > 0.001))
                latency.append(1000 * (end - start))
            blocked.sort()
            out[page] = {
                "calls": calls,
                "latency_median_ms": round(statistics.median(latency), 2),
                "blocked_median_ms": round(statistics.median(blocked), 2),
                "blocked_p95_ms": round(blocked[int(0.95 * (len(blocked) - 1))], 2),
                "blocked_max_ms": round(blocked[-1], 2),
                "held_median_ms": round(statistics.median(held), 2),
            }
            log.info("%-15s %s", page, out[page])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("bench-output/loadtest/build-20k"))
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench-output/ui_loop_block.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = TrafficPlan.load(args.artifacts / PLAN_FILE)
    with open_redis(None, args.artifacts / REDIS_DIR) as (_, url):
        settings = Settings(redis_url=url)
        app = create_app(settings, args.artifacts)
        probe, ready, port = Probe(), threading.Event(), free_port()
        server = serve(app, port, probe, ready)
        if not ready.wait(120):
            raise SystemExit("the API did not start within 120 s")
        time.sleep(1.0)
        try:
            results = measure(
                f"http://127.0.0.1:{port}",
                probe,
                _paths(plan, random.Random(args.seed)),
                args.calls,
            )
        finally:
            server.should_exit = True
            time.sleep(1.0)
    record = {"machine": f"{platform.machine()}, {platform.python_version()}", "endpoints": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
