"""Who is writing a build and who is serving one, as recorded in Redis.

Garbage collection (``recsys.gc``) removes a build's data only when nobody can still need it,
and these records say who might:

* a running build holds an **in-progress marker** (``Keys.building``: version -> host, pid,
  the process's start time and an expiry), refreshed by a heartbeat thread. A marker naming a
  process that no longer runs on this host, or written on another host and past its expiry,
  belongs to a build that was killed (SIGKILL, the OOM killer): its keys and staging folder are
  garbage;
* each serving worker records the builds it holds or is loading (``Keys.serving``: members
  ``"<worker> <version>"`` scored by expiry), so a superseded build stays while a worker that
  has not swapped yet, or failed to load the new one, still answers from it.

Times are Redis' own (``TIME``): every host compares expiries with the same clock.
"""

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson
import redis

from recsys.errors import StoreError
from recsys.store.connect import AsyncStore, SyncStore
from recsys.store.keys import Keys
from recsys.store.user_store import masters
from recsys.versions import valid_versions

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def redis_time(client: SyncStore) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


async def redis_time_async(client: AsyncStore) -> float:
    seconds, micros = await client.time()
    return float(seconds) + micros / 1e6


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot, Linux /proc), None if unknown: with the
    pid it names one process, even after the pid is reused."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])  # field 22, starttime


def _process_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or process_start(pid) in (started, None)


# ---------------------------------------------------------------------------- builds in progress


@dataclass(frozen=True)
class BuildMarker:
    """A running build's claim on its version: where it runs, and until when it is believed."""

    host: str
    pid: int
    expires_at: float  # Redis time
    started: int | None = None  # the process's start time (process_start)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "expires_at": self.expires_at,
                "started": self.started,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> "BuildMarker | None":
        try:
            d = orjson.loads(raw)
            started = d.get("started")
            return cls(
                host=str(d["host"]),
                pid=int(d["pid"]),
                expires_at=float(d["expires_at"]),
                started=int(started) if started is not None else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def alive(self, now: float) -> bool:
        """On this host, whether its process still runs (a heartbeat can be late: a native
        call holding the GIL for minutes); elsewhere, whether it beat recently enough."""
        if self.host == HOST:
            return _process_alive(self.pid, self.started)
        return now <= self.expires_at


class BuildInProgress:
    """The in-progress marker of one build, kept alive by a heartbeat thread for the block.

    The heartbeat beats every ``ttl_s / 4``: a build spends minutes in stages that never touch
    Redis (ALS, training), and its marker must outlive them.
    """

    def __init__(self, client: SyncStore, keys: Keys, version: str, ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.version = version
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat_until_stopped, name=f"build-heartbeat-{version}", daemon=True
        )

    def beat(self) -> None:
        expires_at = redis_time(self.client) + self.ttl_s
        marker = BuildMarker(HOST, os.getpid(), expires_at, process_start(os.getpid()))
        self.client.hset(self.keys.building, self.version, marker.to_json())

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.beat()
            except (redis.RedisError, OSError) as e:  # the build's own writes will fail too
                log.warning("build %s: heartbeat failed: %s", self.version, e)

    def __enter__(self) -> Self:
        self.beat()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.hdel(self.keys.building, self.version)


def builds_in_progress(client: SyncStore, keys: Keys, now: float) -> tuple[set[str], set[str]]:
    """(live, dead) versions among the in-progress markers; unreadable entries count as dead."""
    live: set[str] = set()
    dead: set[str] = set()
    for raw_version, raw_marker in client.hgetall(keys.building).items():
        version = _text(raw_version)
        marker = BuildMarker.from_json(raw_marker)
        (live if marker is not None and marker.alive(now) else dead).add(version)
    return live, dead


# ---------------------------------------------------------------------------- published builds


def registered_builds(client: SyncStore, keys: Keys) -> list[tuple[str, float]]:
    """Published builds, newest first, with their publish times; anything in the registry that
    is not a build version is logged and left out (never used as a path or a key)."""
    raw: list[tuple[bytes, float]] = client.zrevrange(keys.builds, 0, -1, withscores=True)  # type: ignore[assignment]
    entries = [(_text(v), float(t)) for v, t in raw]
    valid = set(valid_versions([v for v, _ in entries], f"redis key {keys.builds}"))
    return [(v, t) for v, t in entries if v in valid]


def versions_with_keys(client: SyncStore, keys: Keys, scan_count: int = 10_000) -> set[str]:
    """Every build version that has keys in Redis (one SCAN over the key space)."""
    found: set[str] = set()
    for raw in client.scan_iter(match=keys.all_builds_pattern, count=scan_count):
        version = keys.version_of_key(_text(raw))
        if version is not None:
            found.add(version)
    return set(valid_versions(sorted(found), f"redis keys {keys.all_builds_pattern}"))


def check_eviction_policy(client: SyncStore) -> None:
    """Refuse a Redis that may evict any key under memory pressure: build data would vanish
    without a word (users silently falling back to cold start). volatile-* policies evict only
    keys with a TTL (event lists), noeviction refuses writes, and both fail loudly. On a
    cluster every master is asked: each holds its share of the build."""
    for name, node in masters(client):
        try:
            policy = str(node.info("memory").get("maxmemory_policy", ""))
        except redis.ResponseError:
            return  # INFO disabled (some managed services): nothing to check with
        if policy.startswith("allkeys"):
            where = "" if name == "single" else f" (master {name})"
            raise StoreError(
                f"the build's Redis{where} has maxmemory-policy {policy}: under memory pressure "
                "it would evict build data silently. Use a volatile-* policy (only keys with a "
                "TTL, i.e. event lists, are evicted) or noeviction."
            )


# ---------------------------------------------------------------------------- serving workers


def serving_member(worker: str, version: str) -> str:
    return f"{worker} {version}"


async def record_serving(
    client: AsyncStore,
    keys: Keys,
    worker: str,
    versions: Iterable[str],
    previous: Iterable[str],
    ttl_s: float,
) -> None:
    """Say that ``worker`` holds ``versions`` for the next ``ttl_s``; drop what it no longer
    holds from ``previous``."""
    held = set(versions)
    now = await redis_time_async(client)
    async with client.pipeline(transaction=False) as pipe:
        dropped = [serving_member(worker, v) for v in set(previous) - held]
        if dropped:
            pipe.zrem(keys.serving, *dropped)
        if held:
            pipe.zadd(keys.serving, {serving_member(worker, v): now + ttl_s for v in held})
        await pipe.execute()


async def forget_serving(
    client: AsyncStore, keys: Keys, worker: str, versions: Iterable[str]
) -> None:
    members = [serving_member(worker, v) for v in versions]
    if members:
        await client.zrem(keys.serving, *members)


def serving_versions(client: SyncStore, keys: Keys, now: float) -> set[str]:
    """Versions some worker reported holding, and whose report has not expired."""
    members = client.zrangebyscore(keys.serving, now, "+inf")
    versions = [_text(m).rpartition(" ")[2] for m in members]
    return set(valid_versions(versions, f"redis key {keys.serving}"))
