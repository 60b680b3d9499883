"""Live drift counts in Redis: one hash per build, which every worker adds its counts to
(``HINCRBY``), so any worker reads the sum. It expires ``ttl_s`` after the last flush: live
drift describes a build while it serves, and the key goes away some time after it stops."""

from recsys.inspection.live_drift import LiveCounts, counts_from_fields, to_fields
from recsys.store.connect import AsyncStore
from recsys.store.keys import Keys

DRIFT_TTL_S = 7 * 86_400


# Every increment in one script, so one atomic command (a read never sees half a flush). Not a
# MULTI/EXEC pipeline of ~700 HINCRBYs: on redis-py's asyncio cluster client that held the
# serving event loop 340-530 ms per flush (measured, issue 11), against 2.7 ms for this.
# HINCRBY by 0 creates a missing field at 0 and leaves an existing one alone, so every bin is
# present when read back.
_ADD_COUNTS_LUA = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


async def add_live_counts(
    client: AsyncStore, keys: Keys, build_version: str, live: LiveCounts, ttl_s: int
) -> None:
    if live.requests == 0:
        return
    args: list[str | int] = [ttl_s]
    for field, value in to_fields(live).items():
        args += [field, value]
    await client.eval(_ADD_COUNTS_LUA, 1, keys.live_drift(build_version), *args)


async def read_live_counts(client: AsyncStore, keys: Keys, build_version: str) -> LiveCounts:
    raw = await client.hgetall(keys.live_drift(build_version))
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    return counts_from_fields(fields)
