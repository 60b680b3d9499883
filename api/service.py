"""One recommendation request: Redis I/O with timeouts around the pure ``recsys.serving`` path.

Fallbacks, in the order they can happen:
- redis-unavailable: Redis errored or timed out -> popular items held in memory;
- cold-start: the build has no state for this user -> popular items minus their recent events;
- ranker-timeout: too little of the deadline is left to rank -> stage-1 order.
"""

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from recsys.config import ServeConfig
from recsys.features import RequestContext
from recsys.serving import Ranked, ServingModel, apply_events, popular, rank, stage1
from recsys.store.codec import decode_user_state
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys
from recsys.store.user_store import append_event_async, read_user_async

# ranking 500 candidates costs a few ms; below this much budget left, answer in stage-1 order
RANK_RESERVE_MS = 15.0


@dataclass(frozen=True)
class Answer:
    items: list[tuple[str | int, float]]
    model_version: str
    fallback: str | None


class RecommendationService:
    def __init__(self, client: aioredis.Redis, keys: Keys, cfg: ServeConfig) -> None:
        self.client = client
        self.keys = keys
        self.cfg = cfg

    async def recommend(
        self,
        model: ServingModel,
        user_id: str,
        k: int,
        device: str | None,
        ts: int | None,
        started: float,
    ) -> Answer:
        ctx = RequestContext(
            ts=int(time.time()) if ts is None else ts, device=model.items.device_code(device)
        )
        try:
            record = await asyncio.wait_for(
                read_user_async(
                    self.client, self.keys, model.version, user_id, self.cfg.max_events_per_user
                ),
                timeout=self.cfg.redis_timeout_ms / 1000,
            )
        except (RedisError, TimeoutError, OSError):
            return self._answer(model, popular(model, k), "redis-unavailable")
        if record.state is None:
            return self._answer(model, popular(model, k, record.events), "cold-start")
        state = apply_events(decode_user_state(record.state), record.events, model)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms > self.cfg.deadline_ms - RANK_RESERVE_MS:
            return self._answer(model, stage1(state, k), "ranker-timeout")
        ranked = await run_in_threadpool(rank, model, [state], [ctx], k)
        return self._answer(model, ranked[0], None)

    async def record_event(self, user_id: str, event: WatchEvent) -> None:
        await asyncio.wait_for(
            append_event_async(
                self.client, self.keys, user_id, event, self.cfg.max_events_per_user
            ),
            timeout=max(self.cfg.redis_timeout_ms, 100.0) / 1000,
        )

    @staticmethod
    def _answer(model: ServingModel, ranked: Ranked, fallback: str | None) -> Answer:
        ids = model.items.ids_list
        return Answer(
            items=[
                (ids[i], round(float(s), 6))
                for i, s in zip(
                    ranked.item_idx.tolist(), np.asarray(ranked.scores).tolist(), strict=True
                )
            ],
            model_version=model.version,
            fallback=fallback,
        )
