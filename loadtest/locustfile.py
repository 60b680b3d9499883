"""Realistic traffic for ``recsys serve``: run by ``recsys loadtest``, or by hand::

    RECSYS_LOADTEST_PLAN=plan.json locust -f loadtest/locustfile.py --headless \\
        --host http://127.0.0.1:8000 -u 150 -r 30 -t 70s --reset-stats

Each simulated client draws every request from the plan (``loadtest.traffic``): 80% known
users weighted by activity, 10% unknown users, 10% ``POST /events``, with device and time
context. Waits between requests are exponential (a Poisson arrival process per client), so
clients never fall into step: ``constant_throughput`` starts them together and the requests
arrive in bursts, which raised the median from ~6 ms to 140-200 ms at 150 req/s (measured with
an early prototype on the 2-core development machine). A
client sends ``1 / (wait + latency)`` requests per second, so ``u`` clients with a mean wait of
``w`` seconds offer about ``u / w`` req/s until the server slows down.

The ``fallback`` of every recommendation is counted by reason and written as JSON to
``RECSYS_LOADTEST_OUTCOMES`` when the test stops (reset with the statistics after the ramp).
"""

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, events, task
from locust.env import Environment

from loadtest.traffic import HOSTS_ENV, PLAN_ENV, TrafficMix, TrafficPlan

WAIT_ENV = "RECSYS_LOADTEST_MEAN_WAIT_S"
OUTCOMES_ENV = "RECSYS_LOADTEST_OUTCOMES"
SEED_ENV = "RECSYS_LOADTEST_SEED"
DEFAULT_MEAN_WAIT_S = 1.0
NO_FALLBACK = "none"

_plan: TrafficPlan | None = None
# (kind, fallback reason or "none") -> answers; one locust process, one set of counts
outcomes: Counter[tuple[str, str]] = Counter()
_cpu_warnings = 0


def plan() -> TrafficPlan:
    global _plan
    if _plan is None:
        path = os.environ.get(PLAN_ENV)
        if not path:
            raise RuntimeError(f"set {PLAN_ENV} to a traffic plan JSON (recsys loadtest does)")
        _plan = TrafficPlan.load(Path(path))
    return _plan


def mean_wait_s() -> float:
    return float(os.environ.get(WAIT_ENV, DEFAULT_MEAN_WAIT_S))


def exponential_wait(user: "RecsysUser") -> float:
    return user.rng.expovariate(1.0 / mean_wait_s())


class RecsysUser(FastHttpUser):
    wait_time = exponential_wait
    _count = 0

    def __init__(self, environment: Environment) -> None:
        RecsysUser._count += 1
        replicas = [h for h in os.environ.get(HOSTS_ENV, "").split(",") if h]
        if replicas:  # several API replicas: clients dealt round-robin, each keeps to one
            self.host = replicas[RecsysUser._count % len(replicas)]
        super().__init__(environment)
        seed = os.environ.get(SEED_ENV)
        self.rng = random.Random(None if seed is None else f"{seed}-{RecsysUser._count}")
        self.mix = TrafficMix(plan(), self.rng)

    def on_start(self) -> None:
        # a random first wait too: clients spawned together must not send their first
        # requests together
        self.wait()

    @task
    def request(self) -> None:
        req = self.mix.next_request()
        if req.method == "POST":
            self.client.post(req.path, json=req.body, name=req.name)
            return
        with self.client.get(req.path, name=req.name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            try:
                fallback = orjson.loads(response.content or b"{}").get("fallback")
            except orjson.JSONDecodeError:
                response.failure("response is not JSON")
                return
            outcomes[(req.kind, fallback or NO_FALLBACK)] += 1


@events.spawning_complete.add_listener
def _reset_with_stats(user_count: int, **_: Any) -> None:
    """--reset-stats drops the ramp from locust's statistics; drop it from ours too."""
    global _cpu_warnings
    outcomes.clear()
    _cpu_warnings = 0


@events.cpu_warning.add_listener
def _cpu_warning(**_: Any) -> None:
    """Locust itself near a full core: the figures then measure the client, not the server."""
    global _cpu_warnings
    _cpu_warnings += 1


@events.test_stop.add_listener
def _write_outcomes(environment: Environment, **_: Any) -> None:
    path = os.environ.get(OUTCOMES_ENV)
    if not path:
        return
    rows = [{"kind": k, "fallback": f, "count": n} for (k, f), n in sorted(outcomes.items())]
    Path(path).write_bytes(orjson.dumps({"outcomes": rows, "locust_cpu_warnings": _cpu_warnings}))
