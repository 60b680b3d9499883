"""Live drift counts in Redis: one hash per build, which every worker adds its counts to
(``HINCRBY``), so any worker reads the sum. It expires ``ttl_s`` after the last flush: live
drift describes a build while it serves, and the key goes away some time after it stops."""

from recsys.inspection.live_drift import LiveCounts, counts_from_fields, to_fields
from recsys.store.connect import AsyncStore
from recsys.store.keys import Keys

DRIFT_TTL_S = 7 * 86_400


async def add_live_counts(
    client: AsyncStore, keys: Keys, build_version: str, live: LiveCounts, ttl_s: int
) -> None:
    if live.requests == 0:
        return
    key = keys.live_drift(build_version)
    # one key, so one slot: redis-py runs it as a transaction on a Redis Cluster too
    async with client.pipeline(transaction=True) as pipe:
        for field, value in to_fields(live).items():
            if value:
                pipe.hincrby(key, field, value)
            else:
                pipe.hsetnx(key, field, 0)  # every bin present, so reads see full arrays
        pipe.expire(key, ttl_s)
        await pipe.execute()


async def read_live_counts(client: AsyncStore, keys: Keys, build_version: str) -> LiveCounts:
    raw = await client.hgetall(keys.live_drift(build_version))
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    return counts_from_fields(fields)
