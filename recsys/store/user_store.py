"""Reading and writing per-user state in Redis, one server or a Redis Cluster.

Offline writes go through pipelines of ``batch_size`` SETs: pipelining is several times the
throughput of one round trip per key (redis.io, "Redis pipelining", and redis-benchmark -P 16
in the "Redis benchmark" page); on a cluster, redis-py's cluster pipeline splits each batch by
node and sends every master its share before reading any reply. Online reads fetch the user's
build state and real-time events in one pipelined round trip: both keys carry the user's hash
tag (``recsys.store.keys``), so on a cluster that is one master too.

The global keys (build pointer, registry, in-progress markers, serving records) keep their
single-node names and are only ever touched by single-key commands, so they need no common
slot, and a single-node deployment needs no migration.
"""

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from recsys.errors import StoreError
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.store.connect import AsyncStore, SyncStore
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys
from recsys.versions import valid_versions

# How long a build waits for replicas to hold what it wrote before it flips the pointer.
REPLICATION_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class UserRecord:
    """Raw Redis answer for one user: the build's packed state (None: unknown user) and events."""

    state: bytes | None
    events: list[WatchEvent]


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _events(raw: list[bytes]) -> list[WatchEvent]:
    # stored newest first (LPUSH); callers want oldest first
    return [WatchEvent.from_bytes(r) for r in reversed(raw)]


class BuildWriter:
    """Writes one build's user states and publishes it as the newest build of its line
    (``name``; ``recsys.gc`` removes old builds)."""

    def __init__(
        self,
        client: SyncStore,
        keys: Keys,
        build_version: str,
        name: str = DEFAULT_BUILD_NAME,
    ) -> None:
        self.client = client
        self.keys = keys
        self.build_version = build_version
        self.name = name

    def write(self, states: Iterable[tuple[str, bytes]], batch_size: int = 1000) -> Iterator[int]:
        """Write (user_id, packed state) pairs; yields the number written after each batch."""
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for user_id, blob in states:
            pipe.set(self.keys.user_state(self.build_version, user_id), blob)
            pending += 1
            if pending == batch_size:
                self._execute(pipe)
                yield pending
                pending = 0
        if pending:
            self._execute(pipe)
            yield pending

    def _execute(self, pipe: Any) -> None:  # a Pipeline, or a cluster's ClusterPipeline
        try:
            pipe.execute()
        except redis.OutOfMemoryError as e:
            raise StoreError(full_message(self.client, self.build_version)) from e

    def wait_replicated(self, timeout_s: float = REPLICATION_TIMEOUT_S) -> None:
        """Return once every replica holds what was written so far; call before ``publish``.

        Replication is asynchronous: a master that died right after the pointer flip would
        otherwise be replaced by a replica without part of the build, and its users would get
        cold-start answers from a published build."""
        wait_replicated(self.client, timeout_s)

    def publish(self) -> None:
        """Mark this build ready, register it (with its line, when not the champion's), and flip
        its line's pointer to it, last, so a reader never sees a half-written build. Registered
        under Redis' clock (TIME), the one clock every host that collects garbage compares
        with. Returns once the replicas hold the new pointer too."""
        now_s, now_us = self.client.time()
        self.client.set(self.keys.build_ready(self.build_version), b"1")
        if self.name != DEFAULT_BUILD_NAME:
            self.client.hset(self.keys.build_names, self.build_version, self.name)
        self.client.zadd(self.keys.builds, {self.build_version: now_s + now_us / 1e6})
        self.client.set(self.keys.pointer(self.name), self.build_version)
        wait_replicated(self.client, REPLICATION_TIMEOUT_S)

    def abort(self) -> None:
        """Remove whatever this build wrote (a failed build leaves nothing behind).

        Passes until one finds nothing: a write that was in flight when the first pass began
        (a cancelled shard of a sharded build) is caught by the next."""
        for _ in range(3):
            if not delete_build(self.client, self.keys, self.build_version):
                return


def full_message(client: SyncStore, build_version: str) -> str:
    """Why a build could not be written into a full Redis, and what to change."""
    try:
        memory = client.info("memory")
        ceiling = int(memory.get("maxmemory", 0)) / 2**20
        policy = memory.get("maxmemory_policy", "?")
    except redis.RedisError:
        ceiling, policy = float("nan"), "?"
    return (
        f"Redis is full: build {build_version} does not fit under its memory ceiling "
        f"(maxmemory {ceiling:.0f} MB, policy {policy}), and build data is never evicted. "
        "Its keys are removed and the current build keeps serving. Raise the ceiling "
        "(RECSYS_REDIS_SERVER__MAXMEMORY_MB for the embedded server) or lower keep_builds."
    )


def delete_build(client: SyncStore, keys: Keys, build_version: str) -> int:
    """Delete every key of a build; returns how many. The ready key goes first, so a worker
    still serving the build fails /readyz from the start of the deletion."""
    client.delete(keys.build_ready(build_version))
    deleted = unlink_matching(client, keys.build_pattern(build_version))
    client.zrem(keys.builds, build_version)
    client.hdel(keys.build_names, build_version)
    return deleted


def build_lines(client: SyncStore, keys: Keys) -> dict[str, str]:
    """Build version -> the name of its line, for every build published under a name other
    than the champion's; a version absent is a champion build."""
    raw = client.hgetall(keys.build_names)
    return {_text(v): _text(n) for v, n in raw.items()}


def line_pointers(client: SyncStore, keys: Keys) -> dict[str, str]:
    """Line name -> the build its pointer names, for the champion and every named line."""
    names = {DEFAULT_BUILD_NAME, *build_lines(client, keys).values()}
    found = {name: current_build(client, keys, name) for name in sorted(names)}
    return {name: version for name, version in found.items() if version is not None}


def promote(
    client: SyncStore, keys: Keys, name: str, replication_timeout_s: float = REPLICATION_TIMEOUT_S
) -> tuple[str | None, str]:
    """Point the champion at the newest build of ``name``: (previous champion, new champion).

    One SET: a serving worker swaps the build in as it swaps any new build in (no restart, no
    failed request), on its next poll; garbage collection keeps every build a line points to.
    Returns once the replicas hold the new pointer, as ``BuildWriter.publish`` does: a master
    lost right after the flip must not bring the old champion back."""
    if name == DEFAULT_BUILD_NAME:
        raise StoreError(f"{name} is the champion already; promote another build line")
    version = current_build(client, keys, name)
    if version is None:
        raise StoreError(f"no build named {name!r} in Redis (recsys build --name {name})")
    previous = current_build(client, keys)
    client.set(keys.current, version)
    wait_replicated(
        client,
        replication_timeout_s,
        late=f"{keys.current} names {version} on its master only: promote again once they run",
    )
    return previous, version


def unlink_matching(client: SyncStore, pattern: str, batch_size: int = 5000) -> int:
    """Delete every key matching ``pattern`` with SCAN + UNLINK: non-blocking on the server,
    unlike KEYS + DEL. Returns how many were deleted.

    On a cluster, redis-py's ``scan_iter`` walks every master, and its ``unlink`` sends one
    UNLINK per hash slot (a multi-key command may not cross slots), pipelined by node."""
    deleted = 0
    batch: list[str | bytes] = []
    for key in client.scan_iter(match=pattern, count=batch_size):
        batch.append(key)
        if len(batch) == batch_size:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def current_build(client: SyncStore, keys: Keys, name: str = DEFAULT_BUILD_NAME) -> str | None:
    """The newest build of the line ``name`` (the champion's: the build served by default);
    None when there is none or the pointer holds anything but a build version (logged)."""
    pointer = keys.pointer(name)
    raw = client.get(pointer)
    if raw is None:
        return None
    valid = valid_versions([_text(raw)], f"redis key {pointer}")
    return valid[0] if valid else None


def read_user(
    client: SyncStore, keys: Keys, build_version: str, user_id: str, n_events: int
) -> UserRecord:
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.user_state(build_version, user_id))
    pipe.lrange(keys.events(user_id), 0, n_events - 1)
    state, events = pipe.execute()
    return UserRecord(state=state, events=_events(events))


def read_states(
    client: SyncStore, keys: Keys, build_version: str, user_ids: Sequence[str]
) -> list[bytes | None]:
    """The packed states of many users of one build, in one pipelined round trip (None: the
    build has no state for that user). For offline readers: evaluation, benchmarks."""
    pipe = client.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.get(keys.user_state(build_version, user_id))
    return list(pipe.execute())


async def current_build_async(
    client: AsyncStore, keys: Keys, name: str = DEFAULT_BUILD_NAME
) -> str | None:
    """The line's pointer's raw text (checked by the caller, which reports a bad one once)."""
    raw = await client.get(keys.pointer(name))
    return _text(raw) if raw is not None else None


async def read_user_async(
    client: AsyncStore, keys: Keys, build_version: str, user_id: str, n_events: int
) -> UserRecord:
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.user_state(build_version, user_id))
        pipe.lrange(keys.events(user_id), 0, n_events - 1)
        state, events = await pipe.execute()
    return UserRecord(state=state, events=_events(events))


# Push, trim, (re)start the TTL: one script, so one command that Redis runs atomically (Redis
# docs, "Scripting with Lua": a script blocks the server while it runs, like MULTI/EXEC). Not a
# MULTI/EXEC pipeline: redis-py's asyncio cluster client spends ~0.6 ms of event-loop time per
# queued command of a transaction (measured, redis-py 8.1: 682 commands 340-530 ms, the same
# as one EVAL 2.7 ms), time every request waiting on the loop loses (issue 11). If LPUSH is
# refused (maxmemory), the script stops before writing anything: all or nothing, as before.
_APPEND_EVENT_LUA = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


async def append_event_async(
    client: AsyncStore, keys: Keys, user_id: str, event: WatchEvent, cap: int, ttl_s: int
) -> None:
    """Push, trim to ``cap``, and (re)start the list's TTL, atomically: a list lives
    ``ttl_s`` past its user's last event, and having a TTL makes it the only kind of key that
    a volatile-* maxmemory policy may evict."""
    await _eval(client, _APPEND_EVENT_LUA, keys.events(user_id), event.to_bytes(), cap, ttl_s)


async def _eval(client: AsyncStore, script: str, key: str, *args: bytes | str | int) -> Any:
    """One single-key script: on a cluster, one command to the key's master."""
    return await client.eval(script, 1, key, *args)


@dataclass(frozen=True)
class MasterStats:
    """One master's share of the data (a single server is its own only master)."""

    node: str
    used_memory_bytes: int
    keys: int


def masters(client: SyncStore) -> list[tuple[str, SyncStore]]:
    """(name, client of that node) for every master: the slot owners of a cluster, or the one
    server."""
    if isinstance(client, RedisCluster):
        return [(n.name, n.redis_connection) for n in client.get_primaries()]
    return [("single", client)]


def master_stats(client: SyncStore) -> list[MasterStats]:
    out = []
    for name, node in masters(client):
        memory = node.info("memory")
        out.append(MasterStats(name, int(memory["used_memory"]), int(node.dbsize())))
    return out


def wait_replicated(
    client: SyncStore, timeout_s: float, poll_s: float = 0.05, late: str = "not publishing"
) -> None:
    """Until each master's replicas have acknowledged its replication offset as of now;
    ``late`` ends the error's message when they have not within ``timeout_s``.

    Offsets instead of WAIT: WAIT counts only the writes of the connection it is sent on, and
    a build writes through many connections (and, sharded, through many processes)."""
    pending = []
    for name, node in masters(client):
        offset = int(node.info("replication").get("master_repl_offset", 0))
        pending.append((name, node, offset))
    deadline = time.monotonic() + timeout_s
    while pending:
        behind = []
        for name, node, offset in pending:
            info = node.info("replication")
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if any(int(r.get("offset", 0)) < offset for r in replicas):
                behind.append((name, node, offset))
        pending = behind
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(name for name, _, _ in pending)
            raise StoreError(f"replicas of {names} did not catch up within {timeout_s:g}s; {late}")
        time.sleep(poll_s)
