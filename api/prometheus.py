"""Prometheus metrics of the API, on a registry of the app's own.

Each app gets its own ``CollectorRegistry`` so tests can build many apps in one process. Label
values come from small fixed sets (route templates, outcomes, fallback reasons, stages), never
from raw paths or user ids, so the number of series stays bounded whatever clients send.
Labelled children are cached: a request costs a dict lookup and an ``observe`` (about 1 us).

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set before the workers start,
prometheus-client writes every value to per-process files there, and ``/metrics`` (answered by
any one worker) sums all of them. ``recsys serve`` sets it up for ``workers > 1``.
"""

import os
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

# Fine below the 100 ms deadline, where the interesting answers are; coarse above it.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
)
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
STAGES = ("redis", "rank", "features", "model", "explain", "serialise")
FallbackReason = Literal["cold-start", "redis-unavailable", "ranker-timeout"]
FALLBACK_REASONS: tuple[FallbackReason, ...] = get_args(FallbackReason)
NO_FALLBACK = "none"  # the fallback label of an answer the ranker gave
ImpressionOutcome = Literal["logged", "dropped", "failed"]
IMPRESSION_OUTCOMES: tuple[ImpressionOutcome, ...] = get_args(ImpressionOutcome)
COMPLETION_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)
UNMATCHED_ROUTE = "unmatched"
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Names other tools read (recsys loadtest diffs them around each step).
REQUEST_METRIC = "recsys_http_request_duration_seconds"
STAGE_METRIC = "recsys_stage_duration_seconds"
SWAPS_METRIC = "recsys_model_swaps"  # a counter: exported as recsys_model_swaps_total
REDIS_MEMORY_METRIC = "recsys_redis_memory_bytes"
REDIS_KEYS_METRIC = "recsys_redis_keys"
REDIS_EVICTED_METRIC = "recsys_redis_evicted_keys"


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RedisStats:
    """What /metrics shows of Redis, from INFO memory, keyspace and stats."""

    used_memory_bytes: int
    maxmemory_bytes: int
    keys: int
    expiring_keys: int
    evicted_keys: int

    @classmethod
    def summed(cls, parts: list["RedisStats"]) -> "RedisStats":
        """A Redis Cluster's figures: the sum of its masters'."""
        return cls(
            used_memory_bytes=sum(p.used_memory_bytes for p in parts),
            maxmemory_bytes=sum(p.maxmemory_bytes for p in parts),
            keys=sum(p.keys for p in parts),
            expiring_keys=sum(p.expiring_keys for p in parts),
            evicted_keys=sum(p.evicted_keys for p in parts),
        )

    @classmethod
    def from_info(cls, info: dict[str, Any], db: int) -> "RedisStats":
        space = info.get(f"db{db}") or {}
        return cls(
            used_memory_bytes=int(info.get("used_memory", 0)),
            maxmemory_bytes=int(info.get("maxmemory", 0)),
            keys=int(space.get("keys", 0)),
            expiring_keys=int(space.get("expires", 0)),
            evicted_keys=int(info.get("evicted_keys", 0)),
        )


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, if one is configured."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Shown:
    """Which items of one build a worker has shown for one arm (the live coverage)."""

    def __init__(self, build: str, bitmap: np.ndarray) -> None:
        self.build = build
        self.bitmap = bitmap
        self.count = 0

    def add(self, item_idx: np.ndarray) -> float:
        """Mark ``item_idx`` (distinct, as answers are) shown; the share of items shown."""
        self.count += int(len(item_idx) - np.count_nonzero(self.bitmap[item_idx]))
        self.bitmap[item_idx] = True
        return self.count / max(len(self.bitmap), 1)


class PrometheusMetrics:
    """Every metric the API exports, with the few operations the request path needs."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir() is None:
            ProcessCollector(registry=self.registry)  # CPU and memory; per process only
        self.request_seconds = self._histogram(
            REQUEST_METRIC,
            "Time from the request's arrival to its response, by route template and outcome "
            "(ok, a fallback reason, 4xx, 5xx).",
            ["route", "outcome"],
            LATENCY_BUCKETS_S,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks",
            "Recommendation answers that did not come from the ranker, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.stage_seconds = self._histogram(
            STAGE_METRIC,
            "Time per stage of GET /recommendations: redis (one pipelined read), rank "
            "(features + LightGBM, including the wait for a rank thread), within it features "
            "and model (the ranker's own run), serialise.",
            ["stage"],
            STAGE_BUCKETS_S,
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "1 for the build a worker is serving, 0 for builds it served before.",
            ["version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.model_swaps = Counter(
            SWAPS_METRIC,
            "Builds loaded and switched to without a restart (the first load included).",
            registry=self.registry,
        )
        # Redis, read by every worker each build_poll_s off the request path (the most recent
        # reading wins across workers)
        self.redis_memory = Gauge(
            REDIS_MEMORY_METRIC,
            "Redis memory: used (used_memory) and the ceiling (maxmemory; 0: none).",
            ["kind"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.redis_keys = Gauge(
            REDIS_KEYS_METRIC,
            "Keys in the Redis database: all, and expiring (those with a TTL: event lists).",
            ["kind"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.redis_evicted = Gauge(
            REDIS_EVICTED_METRIC,
            "Keys Redis evicted at its memory ceiling since it started; with a volatile-* "
            "policy only event lists.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.arm_info = Gauge(
            "recsys_arm_info",
            "1 for the build each A/B arm (build line) is answering with, 0 for its past builds.",
            ["arm", "version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.impressions = Counter(
            "recsys_impressions",
            "Answers sent to the impression log: logged (written to Redis), dropped (the "
            "backlog was full), failed (the write failed or timed out). Never an error to the "
            "client.",
            ["outcome"],
            registry=self.registry,
        )
        # Live online metrics, the counterparts of recsys online-report's (by arm; bounded sets)
        self.answers = Counter(
            "recsys_online_answers",
            "Recommendation answers by A/B arm and fallback (none: the ranker answered).",
            ["arm", "fallback"],
            registry=self.registry,
        )
        self.items_shown = Counter(
            "recsys_online_items_shown",
            "Items shown in answers, by arm: the denominator of live CTR and dislike rate.",
            ["arm"],
            registry=self.registry,
        )
        self.shown_popularity = Counter(
            "recsys_online_shown_popularity",
            "Sum of the popularity percentiles (0..1, the build's) of items shown, by arm; "
            "divided by recsys_online_items_shown_total, the mean popularity.",
            ["arm"],
            registry=self.registry,
        )
        self.events = Counter(
            "recsys_online_events",
            "Events posted, by the user's arm, type, and whether they name the answer they came "
            "from (request_id). Live CTR: click and watch events with a request_id over items "
            "shown.",
            ["arm", "type", "attributed"],
            registry=self.registry,
        )
        self.watch_completion = self._histogram(
            "recsys_online_watch_completion",
            "Completion of watch events that report one, by arm.",
            ["arm"],
            COMPLETION_BUCKETS,
        )
        self.coverage = Gauge(
            "recsys_online_catalogue_coverage",
            "Share of the catalogue this worker has shown since it loaded the arm's build; with "
            "several workers the largest (a lower bound of the union).",
            ["arm"],
            multiprocess_mode="max",
            registry=self.registry,
        )
        self._stages = {s: self.stage_seconds.labels(stage=s) for s in STAGES}
        self._fallbacks = {r: self.fallbacks.labels(reason=r) for r in FALLBACK_REASONS}
        self._impressions = {o: self.impressions.labels(outcome=o) for o in IMPRESSION_OUTCOMES}
        for outcome in self._impressions.values():
            outcome.inc(0)
        self._requests: dict[tuple[str, str], Histogram] = {}
        self._shown: dict[str, _Shown] = {}

    def _histogram(
        self, name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def observe_request(self, route: str, outcome: str, seconds: float) -> None:
        child = self._requests.get((route, outcome))
        if child is None:  # at most routes x outcomes children, all created on first use
            child = self.request_seconds.labels(route=route, outcome=outcome)
            self._requests[(route, outcome)] = child
        child.observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._stages[stage].observe(seconds)

    def count_fallback(self, reason: FallbackReason) -> None:
        self._fallbacks[reason].inc()

    def model_swapped(self, old_version: str | None, new_version: str) -> None:
        if old_version is not None:
            self.model_info.labels(version=old_version).set(0)
        self.model_info.labels(version=new_version).set(1)
        self.model_swaps.inc()

    def redis_read(self, stats: RedisStats) -> None:
        self.redis_memory.labels(kind="used").set(stats.used_memory_bytes)
        self.redis_memory.labels(kind="max").set(stats.maxmemory_bytes)
        self.redis_keys.labels(kind="all").set(stats.keys)
        self.redis_keys.labels(kind="expiring").set(stats.expiring_keys)
        self.redis_evicted.set(stats.evicted_keys)

    def arm_swapped(
        self, arm: str, old_version: str | None, new_version: str, served: set[str]
    ) -> None:
        """An arm switched builds; ``served``: every build some arm of this worker serves now
        (two arms may serve one build, e.g. after a promotion)."""
        if old_version is not None:
            self.arm_info.labels(arm=arm, version=old_version).set(0)
            if old_version not in served:
                self.model_info.labels(version=old_version).set(0)
        self.arm_info.labels(arm=arm, version=new_version).set(1)
        self.model_info.labels(version=new_version).set(1)
        self.model_swaps.inc()

    def count_impressions(self, outcome: ImpressionOutcome, n: int = 1) -> None:
        self._impressions[outcome].inc(n)

    def observe_answer(
        self,
        arm: str,
        build: str,
        fallback: str | None,
        item_idx: np.ndarray,
        pop_percentile: np.ndarray,
    ) -> None:
        """One answer shown: counts, the popularity of what it showed, coverage by arm."""
        self.answers.labels(arm=arm, fallback=fallback or NO_FALLBACK).inc()
        n = len(item_idx)
        if not n:
            return
        self.items_shown.labels(arm=arm).inc(n)
        self.shown_popularity.labels(arm=arm).inc(float(pop_percentile[item_idx].sum()))
        shown = self._shown.get(arm)
        if shown is None or shown.build != build:
            shown = self._shown[arm] = _Shown(build, np.zeros(len(pop_percentile), dtype=bool))
        self.coverage.labels(arm=arm).set(shown.add(item_idx))

    def count_event(
        self, arm: str, event_type: str, attributed: bool, completion: float | None
    ) -> None:
        self.events.labels(arm=arm, type=event_type, attributed="yes" if attributed else "no").inc()
        if event_type == "watch" and completion is not None:
            self.watch_completion.labels(arm=arm).observe(completion)

    def _readable(self) -> CollectorRegistry:
        """This process's registry, or one that sums every worker's files."""
        directory = multiprocess_dir()
        if directory is None:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return registry

    def render(self) -> bytes:
        """The text exposition format: this process's registry, or every worker's files."""
        return generate_latest(self._readable())

    def samples(self, names: frozenset[str]) -> list[Sample]:
        """Every sample of the metric families in ``names`` (e.g. ``REQUEST_METRIC``), summed
        over workers like ``render``; what the dashboard's live traffic reads."""
        return [
            Sample(s.name, s.labels, s.value)
            for family in self._readable().collect()
            if family.name in names
            for s in family.samples
        ]

    @staticmethod
    def process_exited(pid: int) -> None:
        """Drop a finished worker's live gauges from the shared directory."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(pid)
