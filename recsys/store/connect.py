"""The one place that decides which Redis client a URL gets: the given URL, or our own local
server; one Redis, or a Redis Cluster.

``redis+cluster://HOST:PORT`` (``rediss+cluster://`` with TLS) names any node of a Redis Cluster
and gets redis-py's cluster clients, which learn the slot map from that node, send each key to
the master that owns its slot, group pipelines by node, and follow MOVED/ASK redirections
(redis-py docs, "Clustering"). Every other URL (``redis://``, ``rediss://``, ``unix://``) is
one server, as before. Key names are the same on both, so a single-node deployment keeps its
data and its keys.

The offline commands' client has a socket timeout and retries with exponential backoff
(``redis_client`` settings): without a timeout a stalled Redis hung the nightly build for ever
(issue 12). URLs may carry a password: every message and log line shows them through
``redact_url``.
"""

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError, AuthorizationError, RedisClusterException
from redis.retry import Retry
from redis.utils import str_if_bytes

from recsys.config import RedisClientConfig, RedisServerConfig
from recsys.errors import StoreError
from recsys.store.server import redis_url_or_local, running_server_url

log = logging.getLogger(__name__)

SyncStore: TypeAlias = redis.Redis | RedisCluster
AsyncStore: TypeAlias = aioredis.Redis | AsyncRedisCluster

# ``<scheme>+cluster://`` -> the scheme redis-py's cluster client parses
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_node_url(url: str) -> str | None:
    """For a ``redis+cluster://`` URL, the plain URL of the node it names; else None."""
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower())
    if plain is None or not sep:
        return None
    node = f"{plain}://{rest}"
    parts = urlsplit(node)
    if not parts.hostname or parts.port is None:
        raise StoreError(
            f"a Redis Cluster URL names one node as HOST:PORT, got {redact_url(url)!r}"
        )
    if parts.path.strip("/") not in ("", "0"):
        raise StoreError(f"a Redis Cluster has only database 0, got {redact_url(url)!r}")
    return node


# scheme://[user][:password]@host...: the password is what lies between the first ":" after
# "//" and the last "@" before the host
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` query parameter)
    replaced by ``***``: safe for logs, error messages and command lines."""
    match = _USERINFO.match(url)
    if match is not None:
        user, sep, _ = match["userinfo"].partition(":")
        userinfo = f"{user}:***" if sep else ("***" if user else "")
        url = f"{match['scheme']}{userinfo}@{url[match.end() :]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


# Errors another try cannot fix; redis-py files a wrong password under ConnectionError, which
# its retries would otherwise repeat for the whole backoff.
_PERMANENT_ERRORS = (AuthenticationError, AuthorizationError)


def client_for(url: str, cfg: RedisClientConfig | None = None) -> SyncStore:
    """A client for offline work, checked with a PING (retried like every other command).

    A first PING without retries catches a wrong password at once."""
    cfg = cfg or RedisClientConfig()
    node = cluster_node_url(url)
    if node is not None:
        return _cluster_client(url, node, cfg)
    with redis.Redis.from_url(
        url,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    ) as probe:
        try:
            probe.ping()
        except _PERMANENT_ERRORS as e:
            raise StoreError(f"cannot use Redis at {redact_url(url)}: {e}") from e
        except redis.RedisError:
            pass  # maybe passing: the retrying client below tries again
    client = redis.Redis.from_url(
        url,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        retry=Retry(
            ExponentialBackoff(cap=cfg.backoff_cap_s, base=cfg.backoff_base_s), cfg.retries
        ),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
    )
    try:
        client.ping()
    except redis.RedisError as e:
        client.close()
        raise StoreError(
            f"cannot reach Redis at {redact_url(url)} ({cfg.retries} retries, socket timeout "
            f"{cfg.socket_timeout_s:g}s): {e}"
        ) from e
    return client


def _cluster_client(url: str, node: str, cfg: RedisClientConfig) -> RedisCluster:
    """redis-py's cluster client, connected: it reads the slot map from ``node`` now, and
    retries a command after a connection error, a timeout or a cluster-down answer with the
    slot map read again (how a failover is ridden out), with the settings' backoff."""
    try:
        return RedisCluster.from_url(
            node,
            socket_timeout=cfg.socket_timeout_s,
            socket_connect_timeout=cfg.connect_timeout_s,
            retry=Retry(
                ExponentialBackoff(cap=cfg.backoff_cap_s, base=cfg.backoff_base_s), cfg.retries
            ),
        )
    except (redis.RedisError, RedisClusterException) as e:
        raise StoreError(f"cannot reach the Redis Cluster at {redact_url(url)}: {e}") from e


def async_client_for(url: str, *, timeout_s: float, max_connections: int) -> AsyncStore:
    """The API's client: one timeout for connecting, waiting for a connection and each round
    trip, and no retries. A retry would spend the request's deadline on a Redis that just
    failed; the request falls back instead and the next one reconnects, so the API recovers
    by itself (on a cluster: ``ServingCluster`` re-reads the slot map in the background, which
    is how a promoted replica is found)."""
    no_retry = AsyncRetry(NoBackoff(), 0)
    node = cluster_node_url(url)
    if node is not None:
        # max_connections is per node here, and a full pool fails at once instead of waiting
        cluster = ServingCluster.from_url(
            node,
            max_connections=max_connections,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=no_retry,
        )
        cluster.commands_parser = _CommandTableOnce()
        return cluster
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,  # waiting for a free connection counts against the same budget
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=no_retry,
    )
    return aioredis.Redis.from_pool(pool)


class _CommandTableOnce(AsyncCommandsParser):
    """The server's COMMAND table, read when the client first connects and then kept.

    redis-py reads it again at every re-initialisation, i.e. after any connection error on a
    single command (the build watcher's GET, a readiness PING). Parsing it holds the event loop
    for ~45 ms (measured here, Redis 7.0), long enough to push requests in flight during a
    failover past their deadline; the table cannot change while the servers keep their version.
    """

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if node is not None:
            self.node = node
        if not self.commands:
            await super().initialize(node)


class SlotMapRefresher:
    """Re-reads a cluster client's slot map in the background, when asked after a failed round
    trip; one refresh at a time, at most every ``min_interval_s``.

    A refresh first asks one live node for CLUSTER SLOTS and compares its masters with the
    client's map: only when a range changed owner (a replica was promoted) does it rebuild the
    map (redis-py's ``NodesManager.initialize``, which keeps the pools of nodes still there, so
    requests in flight are not disturbed). Rebuilding walks all 16,384 slots in Python: 8-12 ms
    of event-loop time per rebuild on this 2-core machine under load (measured with the failover
    test), against well under 1 ms for the comparison. While a master is down and not yet
    replaced, every failed request asks for a refresh, so without the comparison the loop spent
    its time rebuilding an unchanged map, and answers were late (issue 11).
    """

    def __init__(self, client: AsyncRedisCluster, min_interval_s: float = 0.05) -> None:
        self.client = client
        self.min_interval_s = min_interval_s
        self.rebuilds = 0  # how often the map changed and was rebuilt
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0

    def request(self) -> None:
        """Start a refresh unless one is running or one started less than the interval ago."""
        now = time.monotonic()
        if (
            self._task is not None and not self._task.done()
        ) or now - self._last < self.min_interval_s:
            return
        self._last = now
        self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            if await self._map_is_current():
                return
            await self.client.nodes_manager.initialize()
            self.rebuilds += 1
        except (redis.RedisError, RedisClusterException, OSError) as e:
            log.debug("slot map refresh failed: %s", e)

    async def _map_is_current(self) -> bool:
        """Whether the first node that answers CLUSTER SLOTS names, for every range, the master
        the client's map has. When no node answers there is nothing to rebuild from (a rebuild
        asks the same question): True, and the next failed round trip asks again."""
        manager = self.client.nodes_manager
        cached = manager.slots_cache
        for node in list(manager.nodes_cache.values()):
            try:
                ranges = await node.execute_command("CLUSTER SLOTS")
            except (redis.RedisError, OSError):
                continue  # a dead node: ask the next one
            for entry in ranges:
                start, end, master = int(entry[0]), int(entry[1]), entry[2]
                name = f"{str_if_bytes(master[0]) or node.host}:{int(master[1])}"
                for slot in (start, end):
                    owners = cached.get(slot)
                    if not owners or owners[0].name != name:
                        return False
            return True
        return True

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class ServingCluster(AsyncRedisCluster):
    """redis-py's asyncio cluster client, for serving: it never re-reads the slot map on a
    caller's time.

    redis-py marks its client for re-initialisation after a connection error on a single
    command, and the next command of *any* caller then rebuilds the slot map first (a full
    rebuild: CLUSTER SLOTS, 16,384 slots walked in Python), under a lock that every other
    command queues on; a caller's timeout cancelling that rebuild makes redis-py close every
    node's connections. During a failover, each failed event write or log write did that, on
    the event loop that serves requests (issue 11). Here, once a first map exists, such a
    command goes on with the map it has and the refresh runs in the background
    (``SlotMapRefresher``); the first connection still reads the map as redis-py does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot_map = SlotMapRefresher(self)

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> "ServingCluster":
        manager = self.nodes_manager
        if self._initialize and manager.default_node is not None and manager.slots_cache:
            self._initialize = False
            self.slot_map.request()
            return self
        await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        return self


async def read_slot_map(client: AsyncStore, timeout_s: float) -> None:
    """A serving cluster client's first slot map, read now (at start-up), not on the first
    request's time; a failure is left for the first command to retry."""
    if isinstance(client, ServingCluster):
        try:
            async with asyncio.timeout(timeout_s):
                await client.initialize()
        except (redis.RedisError, RedisClusterException, OSError) as e:
            log.warning("cannot read the Redis Cluster's slot map yet: %s", e)


def refresh_slot_map(client: AsyncStore) -> None:
    """After a failed round trip: on a serving cluster client, a background look for a changed
    slot map (a promoted replica); on a single server, nothing."""
    if isinstance(client, ServingCluster):
        client.slot_map.request()


def stop_slot_map(client: AsyncStore) -> None:
    if isinstance(client, ServingCluster):
        client.slot_map.cancel()


@contextmanager
def open_redis(
    url: str | None,
    local_data_dir: Path,
    *,
    client_cfg: RedisClientConfig | None = None,
    server_cfg: RedisServerConfig | None = None,
    bulk: bool = False,
) -> Iterator[tuple[SyncStore, str]]:
    """(client, url) for the block; without a URL, a local redis-server on ``local_data_dir``
    that keeps its data there when the block ends. ``bulk``: the block writes a build."""
    with redis_url_or_local(url, local_data_dir, server_cfg, bulk=bulk) as resolved:
        client = client_for(resolved, client_cfg)
        try:
            yield client, resolved
        finally:
            client.close()


@contextmanager
def open_shared_redis(
    url: str | None,
    local_data_dir: Path,
    *,
    client_cfg: RedisClientConfig | None = None,
    server_cfg: RedisServerConfig | None = None,
) -> Iterator[SyncStore]:
    """``open_redis`` for commands that read or flip what serving uses (``recsys ab promote``,
    the online report, the event export): without a URL, the local server that a running
    ``recsys serve`` holds on ``local_data_dir``, when there is one, rather than a refusal."""
    with open_redis(
        url or running_server_url(local_data_dir),
        local_data_dir,
        client_cfg=client_cfg,
        server_cfg=server_cfg,
    ) as (client, _):
        yield client
