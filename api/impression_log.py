"""Impressions written to Redis off the request path: the answer never waits for the log.

A request only appends its impression to an in-memory backlog (a deque append). One task per
worker writes the backlog every ``log.flush_ms`` in one pipelined round trip, on a Redis pool of
its own (two connections), so log writes never take a connection a read is waiting for. The
backlog is bounded (``log.max_pending``): when Redis is slow or down, new impressions are
dropped rather than held, and a batch that fails or times out is lost. Both are counted in
``recsys_impressions_total{outcome}``, never turned into an error for the client. At most one
batch is in flight, so the log costs Redis at most one round trip per flush interval per worker.

What can be lost: the backlog of a worker that is killed (up to one flush interval of answers),
and whatever a Redis outage or a full backlog drops. Reports read what was logged.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from itertools import islice

from api.prometheus import PrometheusMetrics
from api.service import REDIS_ERRORS, Answer
from recsys.config import FeedbackLogConfig
from recsys.store.connect import AsyncStore, refresh_slot_map, stop_slot_map
from recsys.store.feedback_log import Impression, now_ms, queue_impressions
from recsys.store.keys import Keys

log = logging.getLogger(__name__)

MAX_BATCH = 2000  # impressions per pipeline: bounds one write's size and time


def impression_of(
    answer: Answer, request_id: str, user_id: str, arm: str, ts: int | None, device: str | None
) -> Impression:
    """What the user was shown: the answer's items as the response gave them."""
    ids = answer.model.items.ids_list
    return Impression(
        request_id=request_id,
        user_id=user_id,
        build=answer.model.version,
        arm=arm,
        items=[ids[i] for i in answer.ranked.item_idx.tolist()],
        scores=[round(float(x), 6) for x in answer.ranked.scores.tolist()],
        fallback=answer.fallback,
        ts=int(time.time()) if ts is None else ts,
        device=device,
        at_ms=now_ms(),
    )


class ImpressionLog:
    def __init__(
        self,
        client: AsyncStore,
        keys: Keys,
        cfg: FeedbackLogConfig,
        metrics: PrometheusMetrics,
    ) -> None:
        self.client = client
        self.keys = keys
        self.cfg = cfg
        self.metrics = metrics
        self._backlog: deque[Impression] = deque()
        self._timeout_s = cfg.write_timeout_ms / 1000

    def record(self, impression: Impression) -> None:
        """Queue one impression; never blocks, never raises."""
        if not self.cfg.enabled:
            return
        if len(self._backlog) >= self.cfg.max_pending:
            self.metrics.count_impressions("dropped")
            return
        self._backlog.append(impression)

    @property
    def pending(self) -> int:
        return len(self._backlog)

    async def run(self, stop: asyncio.Event) -> None:
        """Write the backlog every flush interval until ``stop`` is set, then once more."""
        every_s = self.cfg.flush_ms / 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            await self.flush()
        await self.flush()
        stop_slot_map(self.client)

    async def flush(self) -> None:
        """Write everything queued so far, in batches of at most ``MAX_BATCH``."""
        while self._backlog:
            batch = list(islice(self._backlog, MAX_BATCH))
            for _ in batch:
                self._backlog.popleft()
            await self._write(batch)

    async def _write(self, batch: list[Impression]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self.client.pipeline(transaction=False) as pipe:
                    queue_impressions(
                        pipe, self.keys, self.cfg.shards, self.cfg.max_impressions, batch
                    )
                    await pipe.execute()
        except REDIS_ERRORS as e:
            self.metrics.count_impressions("failed", len(batch))
            refresh_slot_map(self.client)  # on a cluster: find a promoted replica (no-op otherwise)
            log.debug("impression log: %d lost: %s", len(batch), e)
            return
        self.metrics.count_impressions("logged", len(batch))
