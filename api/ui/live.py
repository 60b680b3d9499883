"""Live traffic for the overview, from the process's own Prometheus metrics (summed over workers).

Rates need two readings. Each call of ``LiveTraffic.read`` takes one and compares it with the
oldest reading of the last ``WINDOW_S`` it kept (at least ``MIN_WINDOW_S`` old), else with the
start: the first look at the dashboard shows the totals since the server started, the next
ones (it refreshes every few seconds) a sliding minute. Quantiles come from the latency
histogram's buckets, interpolated within a bucket as Prometheus' ``histogram_quantile`` does.
Fallback shares come from the same histogram's ``outcome`` label, so only answers of
``GET /recommendations`` count (not the dashboard's own user-inspector calls).

Online metrics by arm come from the API's live counters (``recsys_online_*``, issue 15), since
the servers started: the same ratios as the PromQL in docs/API.md ("Metrics"), events counted as
posted rather than attributed, so they track ``recsys online-report`` without reproducing it.
"""

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from api.prometheus import (
    FALLBACK_REASONS,
    NO_FALLBACK,
    REDIS_EVICTED_METRIC,
    REDIS_KEYS_METRIC,
    REDIS_MEMORY_METRIC,
    REQUEST_METRIC,
    PrometheusMetrics,
    Sample,
)
from recsys.records import Record

RECOMMEND_ROUTE: Final = "/recommendations/{user_id}"
EVENTS_ROUTE: Final = "/events"
WINDOW_S: Final = 60.0
MIN_WINDOW_S: Final = 2.0
ONLINE_ANSWERS: Final = "recsys_online_answers"
ONLINE_SHOWN: Final = "recsys_online_items_shown"
ONLINE_POPULARITY: Final = "recsys_online_shown_popularity"
ONLINE_EVENTS: Final = "recsys_online_events"
ONLINE_COMPLETION: Final = "recsys_online_watch_completion"
ONLINE_COVERAGE: Final = "recsys_online_catalogue_coverage"
ONLINE_FAMILIES: Final = frozenset(
    {
        ONLINE_ANSWERS,
        ONLINE_SHOWN,
        ONLINE_POPULARITY,
        ONLINE_EVENTS,
        ONLINE_COMPLETION,
        ONLINE_COVERAGE,
    }
)
FAMILIES: Final = (
    frozenset({REQUEST_METRIC, REDIS_MEMORY_METRIC, REDIS_KEYS_METRIC, REDIS_EVICTED_METRIC})
    | ONLINE_FAMILIES
)
CTR_TYPES: Final = frozenset({"click", "watch"})


@dataclass(frozen=True)
class Reading:
    """Cumulative counts at one moment."""

    at_s: float  # time.monotonic()
    by_outcome: dict[str, float]  # GET /recommendations answers by outcome
    buckets: dict[float, float]  # its latency histogram: upper bound (s) -> cumulative count
    events: dict[str, float] = field(default_factory=dict)  # POST /events by outcome

    def minus(self, base: "Reading") -> "Reading":
        return Reading(
            self.at_s - base.at_s,
            {k: v - base.by_outcome.get(k, 0.0) for k, v in self.by_outcome.items()},
            {k: v - base.buckets.get(k, 0.0) for k, v in self.buckets.items()},
            {k: v - base.events.get(k, 0.0) for k, v in self.events.items()},
        )


def reading_of(samples: list[Sample], at_s: float) -> Reading:
    by_outcome: dict[str, float] = {}
    buckets: dict[float, float] = {}
    events: dict[str, float] = {}
    for name, labels, value in samples:
        route = labels.get("route")
        if name == f"{REQUEST_METRIC}_count":
            if route == RECOMMEND_ROUTE:
                outcome = labels.get("outcome", "ok")
                by_outcome[outcome] = by_outcome.get(outcome, 0.0) + value
            elif route == EVENTS_ROUTE:
                outcome = labels.get("outcome", "ok")
                events[outcome] = events.get(outcome, 0.0) + value
        elif name == f"{REQUEST_METRIC}_bucket" and route == RECOMMEND_ROUTE:
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
    return Reading(at_s, by_outcome, buckets, events)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile from cumulative bucket counts, linear within the bucket (Prometheus'
    ``histogram_quantile``); None without observations, the largest finite bound past it."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    target = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= target:
            if le == float("inf"):
                return lower
            inside = count - below
            return lower + (le - lower) * ((target - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return lower


class TrafficView(Record):
    window_s: float
    since_start: bool
    """True when there was no earlier reading to compare with: totals since the start."""
    requests: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    outcome_shares: dict[str, float]
    """Share of answers per outcome: ok, each fallback reason, 4xx, 5xx."""
    events: int
    events_per_s: float
    event_errors: int


class RedisView(Record):
    ok: bool
    problem: str | None
    used_bytes: int | None
    max_bytes: int | None
    keys: int | None
    expiring_keys: int | None
    evicted_keys: int | None


def traffic_view(delta: Reading, since_start: bool) -> TrafficView:
    total = sum(delta.by_outcome.values())
    outcomes = ["ok", *FALLBACK_REASONS, "4xx", "5xx"]
    shares = {o: round(delta.by_outcome.get(o, 0.0) / total, 5) if total else 0.0 for o in outcomes}
    p50, p99 = quantile(0.5, delta.buckets), quantile(0.99, delta.buckets)
    events = sum(delta.events.values())
    window = max(delta.at_s, 1e-9)
    return TrafficView(
        window_s=round(delta.at_s, 1),
        since_start=since_start,
        requests=round(total),
        requests_per_s=round(total / window, 2),
        p50_ms=round(p50 * 1000, 2) if p50 is not None else None,
        p99_ms=round(p99 * 1000, 2) if p99 is not None else None,
        outcome_shares=shares,
        events=round(events),
        events_per_s=round(events / window, 2),
        event_errors=round(delta.events.get("4xx", 0.0) + delta.events.get("5xx", 0.0)),
    )


class ArmOnline(Record):
    """One arm's online metrics since the servers started (``recsys_online_*``)."""

    arm: str
    answers: int
    ranked_share: float | None
    """Answers the ranker gave (no fallback) / answers."""
    items_shown: int
    ctr: float | None
    """Clicks and watches that name their answer (``request_id``) / items shown."""
    completion: float | None
    """Mean completion of the watches that report one."""
    watches_with_completion: int
    skip_rate: float | None
    dislike_rate: float | None
    pop_pct: float | None
    """Mean popularity percentile of the items shown (0 least watched, 1 most)."""
    coverage: float | None
    """Share of the catalogue shown (the largest of the workers': a lower bound)."""


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 5) if den > 0 else None


def online_view(samples: list[Sample]) -> list[ArmOnline] | None:
    """Online metrics by arm from the live counters; None while no answer has shown an item."""
    sums: dict[tuple[str, str], float] = {}
    coverage: dict[str, float] = {}
    arms: set[str] = set()

    def add(arm: str, what: str, value: float) -> None:
        sums[arm, what] = sums.get((arm, what), 0.0) + value

    for name, labels, value in samples:
        arm = labels.get("arm")
        if arm is None or name.endswith("_created"):
            continue
        arms.add(arm)
        if name.startswith(ONLINE_ANSWERS):
            add(arm, "answers", value)
            if labels.get("fallback") == NO_FALLBACK:
                add(arm, "ranked", value)
        elif name.startswith(ONLINE_SHOWN):
            add(arm, "shown", value)
        elif name.startswith(ONLINE_POPULARITY):
            add(arm, "popularity", value)
        elif name.startswith(ONLINE_EVENTS):
            kind = labels.get("type", "")
            if kind in CTR_TYPES and labels.get("attributed") == "yes":
                add(arm, "clicks", value)
            if kind in ("skip", "dislike"):
                add(arm, kind, value)
        elif name == f"{ONLINE_COMPLETION}_sum":
            add(arm, "completion_sum", value)
        elif name == f"{ONLINE_COMPLETION}_count":
            add(arm, "completion_count", value)
        elif name == ONLINE_COVERAGE:
            coverage[arm] = max(coverage.get(arm, 0.0), value)
    if not any(sums.get((arm, "shown"), 0.0) > 0 for arm in arms):
        return None

    def get(arm: str, what: str) -> float:
        return sums.get((arm, what), 0.0)

    return [
        ArmOnline(
            arm=arm,
            answers=round(get(arm, "answers")),
            ranked_share=_ratio(get(arm, "ranked"), get(arm, "answers")),
            items_shown=round(get(arm, "shown")),
            ctr=_ratio(get(arm, "clicks"), get(arm, "shown")),
            completion=_ratio(get(arm, "completion_sum"), get(arm, "completion_count")),
            watches_with_completion=round(get(arm, "completion_count")),
            skip_rate=_ratio(get(arm, "skip"), get(arm, "shown")),
            dislike_rate=_ratio(get(arm, "dislike"), get(arm, "shown")),
            pop_pct=_ratio(get(arm, "popularity"), get(arm, "shown")),
            coverage=round(coverage[arm], 5) if arm in coverage else None,
        )
        for arm in sorted(arms)
    ]


def redis_view(samples: list[Sample], problem: str | None) -> RedisView:
    def gauge(name: str, kind: str | None = None) -> int | None:
        values = [v for n, labels, v in samples if n == name and labels.get("kind") == kind]
        return round(values[0]) if values else None

    return RedisView(
        ok=problem is None,
        problem=problem,
        used_bytes=gauge(REDIS_MEMORY_METRIC, "used"),
        max_bytes=gauge(REDIS_MEMORY_METRIC, "max"),
        keys=gauge(REDIS_KEYS_METRIC, "all"),
        expiring_keys=gauge(REDIS_KEYS_METRIC, "expiring"),
        evicted_keys=gauge(REDIS_EVICTED_METRIC),
    )


class LiveTraffic:
    """The readings one worker keeps for windowed rates (a few dozen, a few KB)."""

    def __init__(self, metrics: PrometheusMetrics, started_s: float | None = None) -> None:
        self.metrics = metrics
        self.started_s = time.monotonic() if started_s is None else started_s
        self._readings: deque[Reading] = deque(maxlen=64)

    def read(self) -> tuple[TrafficView, list[Sample]]:
        """The traffic since the oldest reading of the last minute (or the start), and the
        samples read (the Redis gauges come from them too)."""
        samples = self.metrics.samples(FAMILIES)
        now = reading_of(samples, time.monotonic())
        while self._readings and now.at_s - self._readings[0].at_s > WINDOW_S:
            self._readings.popleft()
        base = self._readings[0] if self._readings else None
        if base is None or now.at_s - base.at_s < MIN_WINDOW_S:
            base, since_start = Reading(self.started_s, {}, {}), True
        else:
            since_start = False
        self._readings.append(now)
        return traffic_view(now.minus(base), since_start), samples
