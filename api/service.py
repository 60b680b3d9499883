"""One recommendation request: Redis I/O and the ranker's thread pool, around ``recsys.serving``.

Every answer is inside the deadline. Fallbacks, in the order they can happen:
- redis-unavailable: Redis errored or did not answer within ``redis_timeout_ms`` -> popular
  items held in memory;
- cold-start: the build has no state for this user and none of their events names an item of
  the build -> popular items minus their recent events. (A user the build never saw who has
  posted events is ranked like anyone else, from candidates anchored on those events:
  ``recsys.serving.cold_start_state``.)
- ranker-timeout: ranking is not expected to fit in what is left of the deadline, or did not
  finish in it -> stage-1 order (candidates are stored best first).

Whatever answers, items the user has reacted to (every event in their list: watches, clicks,
skips, dislikes) and items the request excludes are left out; the one exception is a
redis-unavailable answer, which cannot read the user's events.

Ranking (features + LightGBM) runs on a small pool of threads of its own, so it never blocks
the event loop, and a request can stop waiting for it at the deadline: the job finishes in the
background and only its measured time is kept.
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from api.deadline import RankTimeEstimate
from api.prometheus import FallbackReason, PrometheusMetrics, RedisStats
from recsys.config import FeedbackLogConfig, ServeConfig
from recsys.explain import ItemExplanation, explain_candidates, explain_ranked
from recsys.features import FEATURE_NAMES, RequestContext
from recsys.inspection.live_drift import LiveDriftSampler
from recsys.serving import (
    Ranked,
    RankTimes,
    ServingModel,
    apply_events,
    cold_start_state,
    event_items,
    leave_out,
    popular,
    rank,
    stage1_order,
)
from recsys.store.codec import decode_user_state
from recsys.store.connect import AsyncStore, refresh_slot_map, stop_slot_map
from recsys.store.drift_counts import DRIFT_TTL_S, add_live_counts
from recsys.store.events import WatchEvent
from recsys.store.feedback_log import LoggedEvent, log_event_async, now_ms
from recsys.store.keys import Keys
from recsys.store.user_store import UserRecord, append_event_async, read_user_async
from recsys.user_state import UserState

# Kept free at the end of the deadline for building and sending the response (~0.2 ms for 500
# items with orjson; the rest is slack for a busy event loop).
SERIALISE_RESERVE_S = 0.003
# What Redis failures look like from redis-py's asyncio clients: their own errors, our
# asyncio timeouts, socket errors raised while (re)connecting, and the cluster client's errors
# that are not RedisErrors (e.g. a slot no live master covers while the slot map is re-read).
REDIS_ERRORS = (RedisError, RedisClusterException, TimeoutError, OSError)
# An event write meets these while Redis restarts (refused or dropped connections, the data
# still loading): worth another try within the write's budget. A timeout is not: the budget
# is spent; nor a refused password (a ConnectionError to redis-py): no try will fix it.
RETRYABLE_WRITE_ERRORS = (RedisConnectionError, BusyLoadingError, ConnectionRefusedError)
PERMANENT_WRITE_ERRORS = (AuthenticationError, AuthorizationError)
WRITE_RETRY_FIRST_S = 0.01
WRITE_RETRY_MAX_S = 0.2
# Live drift samplers kept per worker: the builds it serves now (several with A/B) and the one
# it served last, whose samples are still to be flushed.
MAX_DRIFT_SAMPLERS = 4

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    model: ServingModel  # the build that answered (its item ids turn indices into ids)
    ranked: Ranked
    fallback: FallbackReason | None
    explanations: list[ItemExplanation] | None = None  # one per item, when asked for


class RecommendationService:
    def __init__(
        self,
        client: AsyncStore,
        event_client: AsyncStore,
        keys: Keys,
        cfg: ServeConfig,
        metrics: PrometheusMetrics,
        drift_sample_interval_s: float = 0.0,
        log_cfg: FeedbackLogConfig | None = None,
    ) -> None:
        self.client = client  # reads: timeouts of redis_timeout_ms
        self.event_client = event_client  # event writes: timeouts of event_timeout_ms
        self.keys = keys
        self.cfg = cfg
        self.log_cfg = log_cfg or FeedbackLogConfig()
        self.metrics = metrics
        self.deadline_s = cfg.deadline_ms / 1000
        self.redis_timeout_s = cfg.redis_timeout_ms / 1000
        self.event_timeout_s = cfg.event_timeout_ms / 1000
        self.rank_time = RankTimeEstimate(cfg.rank_threads)
        self.executor = ThreadPoolExecutor(cfg.rank_threads, thread_name_prefix="recsys-rank")
        self.drift_sample_interval_s = drift_sample_interval_s
        self._drift_samplers: dict[str, LiveDriftSampler] = {}

    async def recommend(
        self,
        model: ServingModel,
        user_id: str,
        k: int,
        device: str | None,
        ts: int | None,
        started: float,
        exclude: Sequence[str | int] = (),
        explain: bool = False,
        pool: Executor | None = None,
    ) -> Answer:
        """Top k for one user with ``model``, whatever happens to Redis or the ranker.

        ``started`` is the request's arrival (``time.perf_counter``); the deadline counts from it.
        ``exclude``: item ids to leave out; ``explain``: say why each item is there.
        ``pool``: where ranking and explaining run instead of the rank threads (the dashboard's
        own thread, issue 16): the same code and answer, but none of the request path's books
        (the rank time estimate, stage times, fallback counts, live drift samples) count it, and
        it never waits behind, or holds up, a request's ranking.
        """
        excluded = np.array([model.items.index_of(i) for i in exclude], dtype=np.int32)
        record = await self._read_user(model.version, user_id, observed=pool is None)
        if record is None:
            ranked = popular(model, k, excluded)
            return self._fallback(model, ranked, "redis-unavailable", explain, None, pool is None)
        if record.state is not None:
            state = apply_events(decode_user_state(record.state), record.events, model)
        elif (cold := cold_start_state(model, record.events)) is not None:
            # a new user with positive events: ranked like any other (and explained, and with
            # ``exclude`` applied) from candidates anchored on those events
            state = cold
        else:
            reacted = np.concatenate([event_items(record.events, model), excluded])
            ranked = popular(model, k, reacted)
            return self._fallback(model, ranked, "cold-start", explain, None, pool is None)
        remaining_s = started + self.deadline_s - SERIALISE_RESERVE_S - time.perf_counter()
        fits = remaining_s > 0 if pool is not None else self.rank_time.fits(remaining_s)
        if fits:
            ctx = RequestContext(
                ts=int(time.time()) if ts is None else ts, device=model.items.device_code(device)
            )
            if pool is None:
                done = await self._rank(model, state, ctx, k, excluded, remaining_s)
            else:
                done = await _on_pool(
                    pool, remaining_s, timed_rank_only, model, state, ctx, k, excluded
                )
            if done is not None:
                why = (
                    await self._explain(model, state, ctx, done, started, pool) if explain else None
                )
                return Answer(model, done, None, why)
        ranked = leave_out(stage1_order(state, k + len(excluded)), excluded, k)
        why = explain_candidates(state, ranked) if explain else None
        return self._fallback(model, ranked, "ranker-timeout", explain, why, pool is None)

    async def record_event(self, user_id: str, event: WatchEvent) -> None:
        """Append to the user's capped event list, then to the event log (``log.enabled``);
        raises one of ``REDIS_ERRORS`` on failure.

        Bounded by ``event_timeout_ms``, not the reads' ``redis_timeout_ms``: near saturation a
        20 ms budget turned writes into 503s that a read would have survived with a fallback.
        Within that budget a write retries (10 ms, doubling to 200 ms) while Redis refuses
        connections or loads its data, so a restart of Redis shorter than the budget costs
        clients latency, not errors. The list's transaction is all-or-nothing, and the log's
        entry goes second (on a Redis Cluster its shard lives in another slot, so one
        transaction cannot hold both): a retried write is at worst a duplicate event, harmless
        to the list and removed by ``recsys events export``.
        """
        cfg, log = self.cfg, self.log_cfg
        logged = LoggedEvent(user_id, event, now_ms()) if log.enabled else None
        pause_s = WRITE_RETRY_FIRST_S
        appended = False
        async with asyncio.timeout(self.event_timeout_s):
            while True:
                try:
                    if not appended:
                        await append_event_async(
                            self.event_client,
                            self.keys,
                            user_id,
                            event,
                            cfg.max_events_per_user,
                            cfg.events_ttl_s,
                        )
                        # a retry for the log alone must not push the event again: on a
                        # cluster the log's shard can be down (failover) while the list's
                        # master is up, and each retry added a copy (issue 11)
                        appended = True
                    if logged is not None:
                        await log_event_async(
                            self.event_client, self.keys, log.shards, log.max_events, logged
                        )
                    return
                except PERMANENT_WRITE_ERRORS:
                    raise
                except RETRYABLE_WRITE_ERRORS:
                    # on a cluster: find the replica promoted in a dead master's place
                    refresh_slot_map(self.event_client)
                    await asyncio.sleep(pause_s)
                    pause_s = min(pause_s * 2, WRITE_RETRY_MAX_S)

    async def redis_problem(self, ready_key: str | None = None) -> str | None:
        """None when Redis answers a PING in time and ``ready_key`` (the served build's) is
        there, else what is wrong."""
        try:
            async with asyncio.timeout(self.redis_timeout_s):
                if ready_key is None:
                    await self.client.ping()
                    return None
                # two round trips, not a pipeline: a cluster pipeline refuses PING (it has no
                # key, so no slot)
                await self.client.ping()
                present = await self.client.exists(ready_key)
        except TimeoutError:
            return f"redis: no answer within {self.cfg.redis_timeout_ms:g} ms"
        except (RedisError, RedisClusterException, OSError) as e:
            return f"redis: {e}"
        if not present:
            return f"the served build's keys are gone from redis ({ready_key} is missing)"
        return None

    async def read_redis_stats(self) -> None:
        """Redis memory and key counts into the metrics; off the request path (a background
        task), on the event pool whose timeout is the longer one."""
        client = self.event_client
        async with asyncio.timeout(self.event_timeout_s):
            if isinstance(client, AsyncRedisCluster):  # every master's share, summed
                infos = [await client.info(target_nodes=n) for n in client.get_primaries()]
                self.metrics.redis_read(
                    RedisStats.summed([RedisStats.from_info(i, 0) for i in infos])
                )
                return
            async with client.pipeline(transaction=False) as pipe:
                pipe.info("memory")
                pipe.info("keyspace")
                pipe.info("stats")
                memory, keyspace, stats = await pipe.execute()
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self.metrics.redis_read(RedisStats.from_info({**memory, **keyspace, **stats}, db))

    def _drift_sampler(self, model: ServingModel) -> LiveDriftSampler | None:
        """The live drift sampler of ``model``'s build (None: sampling off, or a build without
        a reference). Made on first use, on the event loop."""
        if self.drift_sample_interval_s <= 0 or model.drift_reference is None:
            return None
        if model.version not in self._drift_samplers:
            while len(self._drift_samplers) >= MAX_DRIFT_SAMPLERS:
                # the oldest goes; its last few samples are lost, never its flushed counts
                del self._drift_samplers[next(iter(self._drift_samplers))]
            self._drift_samplers[model.version] = LiveDriftSampler(
                model.drift_reference, FEATURE_NAMES, self.drift_sample_interval_s
            )
        return self._drift_samplers[model.version]

    async def flush_live_drift(self) -> None:
        """Bin the sampled requests (in a thread) and add the counts to Redis; off the request
        path (a background task), on the event pool."""
        for version, sampler in list(self._drift_samplers.items()):
            live = await asyncio.to_thread(sampler.drain)
            async with asyncio.timeout(self.event_timeout_s):
                await add_live_counts(self.event_client, self.keys, version, live, DRIFT_TTL_S)

    async def report(self) -> None:
        """The background reports of a worker: Redis stats for /metrics, live drift counts."""
        try:
            await self.read_redis_stats()
        finally:
            await self.flush_live_drift()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        stop_slot_map(self.client)
        stop_slot_map(self.event_client)

    async def _read_user(
        self, build_version: str, user_id: str, observed: bool = True
    ) -> UserRecord | None:
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: wait_for (3.11) wraps the read in a new task that
            # waits its turn at the back of the loop's ready queue, a delay that grows with load.
            # (redis-py still wraps each send in wait_for because the pool has a socket timeout;
            # dropping that timeout measured worse, see bench/LOADTEST.md.)
            async with asyncio.timeout(self.redis_timeout_s):
                return await read_user_async(
                    self.client, self.keys, build_version, user_id, self.cfg.max_events_per_user
                )
        except REDIS_ERRORS:
            refresh_slot_map(self.client)  # on a cluster: find a promoted replica (no-op otherwise)
            return None
        finally:
            if observed:
                self.metrics.observe_stage("redis", time.perf_counter() - started)

    async def _rank(
        self,
        model: ServingModel,
        state: UserState,
        ctx: RequestContext,
        k: int,
        excluded: np.ndarray,
        remaining_s: float,
    ) -> Ranked | None:
        """The ranker's answer, or None if it is not back within ``remaining_s``."""
        started = time.perf_counter()
        self.rank_time.submitted()
        sampler = self._drift_sampler(model)
        if sampler is not None and not sampler.due():
            sampler = None
        job = self.executor.submit(timed_rank, model, state, ctx, k, excluded, sampler)
        job.add_done_callback(self._rank_done)
        try:
            ranked, _ = await asyncio.wait_for(asyncio.wrap_future(job), timeout=remaining_s)
            return ranked
        except TimeoutError:
            return None
        finally:
            self.metrics.observe_stage("rank", time.perf_counter() - started)

    def _rank_done(self, job: "Future[tuple[Ranked, RankTimes]]") -> None:
        """Runs when a job ends, even one nobody waits for: its time still counts."""
        measured = not job.cancelled() and job.exception() is None
        if not measured:
            self.rank_time.finished(None)
            return
        _, times = job.result()
        self.rank_time.finished(times.total_s)
        self.metrics.observe_stage("features", times.features_s)
        self.metrics.observe_stage("model", times.model_s)

    async def _explain(
        self,
        model: ServingModel,
        state: UserState,
        ctx: RequestContext,
        ranked: Ranked,
        started: float,
        pool: Executor | None = None,
    ) -> list[ItemExplanation]:
        """A ranked answer's explanations, on a rank thread, within what is left of the
        deadline: TreeSHAP costs far more per row than scoring (docs/BENCHMARKS.md), so when it
        does not fit the answer keeps its order, sources, stage-1 facts and ranker scores, with
        no contributions, rather than falling back. Not part of the rank time estimate."""
        remaining_s = started + self.deadline_s - SERIALISE_RESERVE_S - time.perf_counter()
        if remaining_s > 0 and pool is not None:
            why = await _on_pool(
                pool,
                remaining_s,
                explain_ranked,
                model,
                state,
                ctx,
                ranked,
                self.cfg.explain_features,
            )
            if why is not None:
                return why
        elif remaining_s > 0:
            begun = time.perf_counter()
            job = self.executor.submit(
                explain_ranked, model, state, ctx, ranked, self.cfg.explain_features
            )
            try:
                return await asyncio.wait_for(asyncio.wrap_future(job), timeout=remaining_s)
            except TimeoutError:
                pass
            finally:
                self.metrics.observe_stage("explain", time.perf_counter() - begun)
        return explain_candidates(state, ranked, ranker_scored=True)

    def _fallback(
        self,
        model: ServingModel,
        ranked: Ranked,
        reason: FallbackReason,
        explain: bool,
        explanations: list[ItemExplanation] | None = None,
        counted: bool = True,
    ) -> Answer:
        if counted:
            self.metrics.count_fallback(reason)
        if explain and explanations is None:
            explanations = explain_candidates(None, ranked)
        return Answer(model, ranked, reason, explanations)


async def _on_pool(
    pool: Executor, timeout_s: float, fn: Callable[..., T], *args: object
) -> T | None:
    """``fn(*args)`` on ``pool``, or None if it is not back within ``timeout_s`` (it then
    finishes in the background)."""
    job = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    try:
        return await asyncio.wait_for(job, timeout=timeout_s)
    except TimeoutError:
        return None


def timed_rank_only(
    model: ServingModel,
    state: UserState,
    ctx: RequestContext,
    k: int,
    excluded: np.ndarray,
) -> Ranked:
    """``timed_rank`` without its times (nobody keeps them): the answer alone."""
    return timed_rank(model, state, ctx, k, excluded)[0]


def timed_rank(
    model: ServingModel,
    state: UserState,
    ctx: RequestContext,
    k: int,
    excluded: np.ndarray,
    sampler: LiveDriftSampler | None = None,
) -> tuple[Ranked, RankTimes]:
    """Runs on a rank thread: the ranker's top k minus ``excluded``, ranked ``k + excluded``
    deep so the rest keep their order. When ``sampler`` is given, the request's features and
    scores are handed to it as they are (binning them is the flush's job, later and
    elsewhere)."""
    times = RankTimes()
    kept: list[tuple[np.ndarray, np.ndarray]] | None = [] if sampler is not None else None
    ranked = rank(model, [state], [ctx], k + len(excluded), times, kept)[0]
    if sampler is not None and kept:
        sampler.offer(*kept[0])
    return leave_out(ranked, excluded, k), times
